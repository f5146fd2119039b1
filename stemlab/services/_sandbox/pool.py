"""One running sandbox per remote provider family, for the harness.

``SandboxPool().options_for("aistemsplitter")`` starts that family's
emulator on first use and returns the provider options that point at it
(``base_url``, a fake ``api_key``, the shared scaled ``clock``, and for
Suno a ``clip_ids`` resolver). :meth:`SandboxPool.register` teaches every
sandbox — running or started later — a dataset track, so uploads of it are
separated by the degraded oracle and score meaningfully."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .faults import FaultPlan

__all__ = ["SandboxPool"]


class SandboxPool:
    """Sandboxes started lazily, stopped by :meth:`close`.

    ``faults``: family → fault spec (string, list or :class:`FaultPlan`);
    ``scale``: the scaled clock's factor (virtual seconds pass 1/scale
    times faster); ``options``: family → extra constructor arguments."""

    def __init__(self, *, faults: Mapping[str, Any] | None = None, scale: float = 0.01, seed: int = 0,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.faults = dict(faults or {})
        self.scale = scale
        self.seed = seed
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        self._sandboxes: dict[str, Any] = {}
        self._tracks: list[Any] = []
        self._lock = threading.Lock()

    def get(self, family: str) -> Any:
        """The running sandbox of ``family`` (started on first use)."""
        from .. import sandbox_class

        fam = family.lower()
        with self._lock:
            sb = self._sandboxes.get(fam)
            if sb is None:
                cls = sandbox_class(fam)
                kwargs = {"scale": self.scale, "seed": self.seed, **self.options.get(fam, {})}
                if fam in self.faults:
                    kwargs["faults"] = FaultPlan.parse(self.faults[fam], seed=self.seed)
                sb = cls(**kwargs).start()
                for t in self._tracks:
                    sb.register_track(t)
                self._sandboxes[fam] = sb
            return sb

    def options_for(self, family: str) -> dict[str, Any]:
        """Provider options that point ``family`` at its sandbox."""
        return self.get(family).provider_options()

    def register(self, track: Any) -> None:
        """Teach every sandbox (now and later) ``track`` and its references."""
        with self._lock:
            self._tracks.append(track)
            running = list(self._sandboxes.values())
        for sb in running:
            sb.register_track(track)

    @property
    def running(self) -> dict[str, Any]:
        return dict(self._sandboxes)

    def close(self) -> None:
        with self._lock:
            sandboxes, self._sandboxes = list(self._sandboxes.values()), {}
        for sb in sandboxes:
            sb.stop()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
