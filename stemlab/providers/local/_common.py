"""Shared plumbing of the local providers: input checks, per-variant
parameters, STFT helpers and run bookkeeping (timings, peak memory)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from ...audio import check_audio
from ...errors import ConfigError, InputError, ProviderRejected
from ...types import Stems, Track
from ..base import Provider

__all__ = [
    "VariantParams",
    "check_mixture",
    "check_references",
    "mask_sources",
    "with_accompaniment",
    "peak_rss",
    "Stopwatch",
    "ACCOMPANIMENT",
]

#: Name of "everything but vocals" (the MUSDB convention).
ACCOMPANIMENT = "accompaniment"
_VOCALS = "vocals"


def check_mixture(track: Track, provider: str) -> np.ndarray:
    """The track's mixture as float32 ``(channels, samples)``; raises
    :class:`InputError` for NaN/Inf, 0 samples or a wrong shape."""
    mix = check_audio(track.mixture, f"track {track.name!r} mixture")
    return np.asarray(mix, dtype=np.float32)


def check_references(track: Track, provider: str, num_samples: int) -> Stems:
    """The track's references, checked: present (else :class:`ProviderRejected`),
    finite and as long as the mixture (else :class:`InputError`)."""
    if not track.has_references or track.references is None:
        raise ProviderRejected(
            f"{provider}: needs reference stems, track {track.name!r} has none", provider=provider, track=track.name
        )
    refs = track.references
    for name, a in refs.items():
        check_audio(a, f"track {track.name!r} reference {name!r}")
    if refs.num_samples != num_samples:
        raise InputError(
            f"track {track.name!r}: references have {refs.num_samples} samples, mixture {num_samples}",
            field="references",
        )
    return refs


def mask_sources(names: Sequence[str]) -> tuple[str, ...]:
    """Which references to build masks from: all of them, except an
    ``accompaniment`` reference that is itself the sum of other non-vocal
    references (it would be counted twice)."""
    names = tuple(names)
    others = [n for n in names if n not in (_VOCALS, ACCOMPANIMENT)]
    if ACCOMPANIMENT in names and others:
        return tuple(n for n in names if n != ACCOMPANIMENT)
    return names


def with_accompaniment(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add ``accompaniment`` = sum of the non-vocal stems when ``vocals`` and at
    least one other stem are present and it is not there yet (in place)."""
    if _VOCALS in stems and ACCOMPANIMENT not in stems:
        rest = [v for k, v in stems.items() if k != _VOCALS]
        if rest:
            acc = np.zeros_like(rest[0], dtype=np.float64)
            for r in rest:
                acc += r
            stems[ACCOMPANIMENT] = acc.astype(np.float32)
    return stems


class VariantParams:
    """Mixin for a family whose variants take different parameters.

    ``variant_params`` maps variant → names of the params it reads. A param a
    variant does not read must be left at its default (else
    :class:`ConfigError` naming the variants that take it). ``variant_defaults``
    gives per-variant defaults for params declared with ``default=None``; an
    explicit value equal to that default is stored as ``None`` so that
    ``oracle:irm?alpha=2`` and ``oracle:irm`` have one id and one hash."""

    variant_params: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    variant_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def _check_variant_params(self: Any) -> None:
        schema = {p.name: p for p in self.params_schema}
        valid = self.variant_params.get(self.variant, ())
        defaults = self.variant_defaults.get(self.variant, {})
        for name, value in list(self.config.items()):
            if name in defaults and value is not None and value == defaults[name]:
                self.config[name] = None
                continue
            if name not in valid and value != schema[name].default:
                takes = sorted(v for v, ps in self.variant_params.items() if name in ps)
                raise ConfigError(
                    f"provider {self.family}:{self.variant}: parameter {name!r} does not apply "
                    f"(it is for {takes}); valid for {self.variant}: {sorted(valid) or 'none'}",
                    field=f"{self.family}.params.{name}",
                )

    def used_params(self: Any) -> dict[str, Any]:
        """The parameters this variant actually uses, defaults filled in."""
        defaults = self.variant_defaults.get(self.variant, {})
        out = {}
        for name in self.variant_params.get(self.variant, ()):
            v = self.config[name]
            out[name] = defaults[name] if v is None and name in defaults else v
        return out

    @classmethod
    def describe(cls) -> dict[str, Any]:  # type: ignore[misc]
        info = Provider.describe.__func__(cls)  # type: ignore[attr-defined]
        info["variant_params"] = {v: list(ps) for v, ps in cls.variant_params.items()}
        info["variant_defaults"] = {v: dict(d) for v, d in cls.variant_defaults.items()}
        return info


# ------------------------------------------------------------------ bookkeeping

def _read_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextmanager
def peak_rss() -> Iterator[dict[str, Any]]:
    """Measure the process' peak resident memory (MiB) over the block.

    On Linux the kernel's high-water mark is reset first (``/proc/self/clear_refs``),
    so ``peak_rss_mib`` is the peak *during* the block; elsewhere it is the
    process' lifetime peak and ``peak_rss_scope`` says so."""
    out: dict[str, Any] = {}
    scoped = False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        scoped = True
    except OSError:
        pass
    try:
        yield out
    finally:
        hwm = _read_status_kib("VmHWM")
        if hwm is not None:
            out["peak_rss_mib"] = round(hwm / 1024.0, 1)
            out["peak_rss_scope"] = "call" if scoped else "process"
        else:
            try:
                import resource

                out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
                out["peak_rss_scope"] = "process"
            except Exception:  # pragma: no cover - non-POSIX
                pass


class Stopwatch:
    """Accumulates named phases (seconds) with ``with sw("phase"):``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    def finish(self) -> dict[str, float]:
        self.timings["total"] = time.perf_counter() - self._t0
        return dict(self.timings)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
