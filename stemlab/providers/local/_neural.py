"""Shared base of the engine-driven neural providers (``spleeter``, ``msst``,
``uvr``): options, the engine parameters every family takes, input
conversion (rate, channels, length) and the :class:`~stemlab.types.Separation`
with timings and provenance."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError, InputError, ProviderRejected
from ...types import ACCOMPANIMENT, Cost, Separation, Stems, Track
from ..base import Param, Provider, Status, as_track
from ._common import check_mixture, peak_rss, to_track_stems
from .engine import FADES, Engine, EngineConfig

__all__ = ["NeuralProvider", "engine_params", "stem_name", "complement_name"]

log = logging.getLogger("stemlab.providers.neural")

#: one model run at a time per process (threads/seed are process-wide)
_RUN_LOCK = threading.Lock()


def engine_params(segment_help: str, overlap_default: float | None = None, fade_default: str = "linear"
                  ) -> tuple[Param, ...]:
    """The engine parameters of a family (they change the output: part of the id)."""
    return (
        Param("segment", float, None, segment_help, unit="seconds", min=0.05, max=600.0, nullable=True),
        Param("overlap", float, overlap_default, "overlap between segments (none = the model's own)",
              unit="fraction of a segment", min=0.0, max=0.95, nullable=True),
        Param("fade", str, fade_default, "cross-fade shape of the overlap-add", choices=FADES),
        Param("shifts", int, 0, "test-time augmentation: random delays averaged (0 = none)", unit="count",
              min=0, max=20),
        Param("shift_max", float, 0.5, "largest random delay of `shifts`", unit="seconds", min=0.001, max=5.0),
        Param("flip", bool, False, "test-time augmentation: also run with left/right swapped, average"),
        Param("polarity", bool, False, "test-time augmentation: also run with the input negated, average"),
        Param("seed", int, 0, "seed of the random delays", min=0),
        Param("precision", str, "float32", "compute precision; bfloat16/float16 run under torch.autocast",
              choices=("float32", "bfloat16", "float16")),
    )


def stem_name(name: str) -> str:
    """Lower-case stem name, the musdb spelling where one exists
    (``Instrumental`` → ``accompaniment`` is decided by :func:`complement_name`)."""
    return str(name).strip().lower().replace(" ", "_")


_COMPLEMENT_WORDS = {"other", "instrumental", "instrum", "instrumentals", "accompaniment", "no_vocals",
                     "karaoke", "inst"}


def complement_name(names: list[str]) -> list[str]:
    """For a vocals/X model whose X is "everything else" (``other``,
    ``instrumental``, ``no vocals`` …), name X ``accompaniment`` — musdb's
    name for the complement of vocals, which the scorer compares it with.
    Other names are kept."""
    low = [stem_name(n) for n in names]
    if len(low) == 2 and "vocals" in low:
        other = low[1 - low.index("vocals")]
        if other in _COMPLEMENT_WORDS:
            return ["vocals" if n == "vocals" else ACCOMPANIMENT for n in low]
    return low


class NeuralProvider(Provider):
    """A model run by :class:`~stemlab.providers.local.engine.Engine` at a
    fixed sample rate and channel count (:attr:`model_rate`, :attr:`model_channels`). Subclasses implement
    :meth:`_load` (build the model, set ``self._stems``) and
    :meth:`_separate_model_rate` (``(channels, n)`` float32 at
    :attr:`model_rate` → stem name → ``(channels, n)``)."""

    kind = "local"
    option_names = ("device", "threads", "batch_size", "progress", "offline")
    in_demo: ClassVar[bool] = False
    #: CPU real-time factor guess before the first run (replaced by the measured one)
    rtf_guess: ClassVar[float] = 1.0

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        p = dict(params or {})
        for opt in self.option_names:  # options given in the spec string
            if opt in p:
                options.setdefault(opt, p.pop(opt))
        super().__init__(variant, p, **options)
        self._load_lock = threading.Lock()
        self._loaded = False
        self._rtf: float | None = None
        self._model_info: dict[str, Any] = {}

    # -- configuration -----------------------------------------------------------
    model_rate: int = 44100

    @property
    def model_channels(self) -> int:
        """Channels the network takes (a property: some families read it from their config)."""
        return 2

    def validate(self) -> None:
        from .demucs import _DEVICES

        fam = self.family
        dev = self.options.get("device", "auto")
        if not isinstance(dev, str) or not _DEVICES.match(dev.lower()):
            raise ConfigError(f"provider {fam}: option device: expected auto, cpu, cuda, cuda:N or mps, got {dev!r}",
                              field=f"{fam}.options.device")
        for name in ("threads", "batch_size"):
            v = self.options.get(name)
            if v is None:
                continue
            try:
                ok = int(v) >= 1 and float(v) == int(v)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"provider {fam}: option {name}: expected an int ≥ 1, got {v!r}",
                                  field=f"{fam}.options.{name}")
            self.options[name] = int(v)
        for name in ("progress", "offline"):
            v = self.options.get(name)
            if v is None or isinstance(v, bool):
                continue
            parsed, problem = Param(name, bool, False).check(v)
            if problem:
                raise ConfigError(f"provider {fam}: option {name}: {problem}", field=f"{fam}.options.{name}")
            self.options[name] = parsed

    def offline(self) -> bool | None:
        v = self.options.get("offline")
        return None if v is None else bool(v)

    # -- to implement ------------------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _separate_model_rate(self, x: np.ndarray, engine: Engine, desc: str) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover

    def default_segment(self) -> float | None:
        """The model's own segment (seconds; None = whole track)."""
        return None

    def default_overlap(self) -> float:
        return 0.25

    # -- shared ------------------------------------------------------------------
    def load(self) -> None:
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def engine_config(self, *, segment_samples: int | None, device: str, **fixed: Any) -> EngineConfig:
        c = self.config
        overlap = c.get("overlap")
        kw: dict[str, Any] = dict(
            segment=segment_samples,
            overlap=self.default_overlap() if overlap is None else overlap,
            fade=c.get("fade", "linear"),
            batch_size=int(self.options.get("batch_size") or 1),
            shifts=int(c.get("shifts", 0)),
            max_shift=max(1, int(round(float(c.get("shift_max", 0.5)) * self.model_rate))),
            flip_channels=bool(c.get("flip", False)),
            polarity=bool(c.get("polarity", False)),
            seed=int(c.get("seed", 0)),
            device=device,
            precision=c.get("precision", "float32"),
        )
        kw.update(fixed)
        return EngineConfig(**kw)

    def segment_samples(self) -> int | None:
        seg = self.config.get("segment")
        if seg is None:
            seg = self.default_segment()
        return None if seg is None else max(1, int(round(float(seg) * self.model_rate)))

    def estimate_cost(self, track: Track | float) -> Cost:
        seconds = float(track if isinstance(track, (int, float)) else track.seconds)
        rtf = self._rtf if self._rtf is not None else self.rtf_guess * self._passes()
        return Cost(compute_seconds=max(rtf, 1e-3) * seconds, estimated=True)

    def _passes(self) -> int:
        c = self.config
        return max(1, int(c.get("shifts", 0))) * (2 if c.get("flip") else 1) * (2 if c.get("polarity") else 1)

    def status(self) -> Status:  # pragma: no cover - overridden
        return Status(True)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out.update(self._model_info)
        try:
            import torch

            out["torch"] = torch.__version__
        except Exception:  # pragma: no cover
            pass
        return out

    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        import torch

        from ...audio import resample, to_channels
        from .demucs import _resolve_device, _scoped_threads

        t0 = time.perf_counter()
        t = as_track(track, sample_rate)
        mix = check_mixture(t, self.id)
        if mix.shape[0] > 2:
            raise InputError(f"{self.id}: track {t.name!r} has {mix.shape[0]} channels; mix it down to stereo first",
                             field="channels")
        warnings: list[str] = []
        t_load = time.perf_counter()
        was_loaded = self._loaded
        self.load()
        t_load = 0.0 if was_loaded else time.perf_counter() - t_load
        device, warn = _resolve_device(str(self.options.get("device", "auto")))
        if warn:
            warnings.append(warn)
            log.warning("%s: %s", self.id, warn)
        sr, n, ch = t.sample_rate, mix.shape[1], mix.shape[0]
        t1 = time.perf_counter()
        x = mix
        if sr != self.model_rate:
            x = resample(x, sr, self.model_rate)
            warnings.append(f"resampled {sr} Hz → {self.model_rate} Hz for the model and back")
        mch = int(self.model_channels)
        if ch != mch:
            x = to_channels(x, mch, name=f"track {t.name!r}")
        engine = Engine(self.engine_config(segment_samples=self.segment_samples(), device=device))
        progress = bool(self.options.get("progress", False))
        t2 = time.perf_counter()
        with _RUN_LOCK, _scoped_threads(self.options.get("threads")), peak_rss() as mem:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(device)
            try:
                est = self._separate_model_rate(np.ascontiguousarray(x, dtype=np.float32), engine,
                                                t.name if progress else "")
            except RuntimeError as e:
                if "out of memory" not in str(e).lower():
                    raise
                raise ProviderRejected(f"{self.id}: out of memory on {device} for {n / sr:.1f} s; use a shorter "
                                       f"segment, a smaller batch_size or device=cpu ({e})", provider=self.id,
                                       track=t.name) from None
            if device.startswith("cuda"):
                mem["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        t3 = time.perf_counter()
        stems = to_track_stems(est, ch, mch, sr, self.model_rate, n)
        t4 = time.perf_counter()
        seconds = n / sr
        self._rtf = (t3 - t2) / seconds if seconds > 0 else None
        prov = self.provenance()
        prov["run"] = {
            "device": device,
            "threads": self.options.get("threads") or torch.get_num_threads(),
            "real_time_factor": self._rtf,
            "audio_seconds": seconds,
            "engine": engine.describe(),
            "engine_stats": engine.last.as_dict(),
            **mem,
        }
        return Separation(
            Stems(stems, sr),
            self.id,
            params=dict(self.config)
            | {
                "segment_used": engine.config.segment and engine.config.segment / self.model_rate,
                "overlap_used": engine.config.overlap,
            },
            timings={
                "load": t_load,
                "prepare": t2 - t1,
                "separate": t3 - t2,
                "post": t4 - t3,
                "total": time.perf_counter() - t0,
            },
            device=device,
            warnings=tuple(warnings),
            cost=Cost(compute_seconds=t4 - t0, estimated=False),
            provenance=prov,
        )

    def close(self) -> None:
        with self._load_lock:
            self._loaded = False
            self._drop()

    def _drop(self) -> None:
        """Free the loaded model (override)."""
