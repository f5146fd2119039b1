"""Small frozen value types shared by every layer.

Audio arrays are ``float32`` shaped ``(channels, samples)``; stacks of sources
are ``(n_sources, channels, samples)``. Sample rates are in Hz, durations and
timings in seconds, money in USD.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "MUSDB_TARGETS",
    "Stems",
    "Track",
    "Cost",
    "Separation",
    "Result",
    "freeze",
    "ACCOMPANIMENT",
    "accompaniment_parts",
    "sum_stems",
    "accompaniment",
]

#: Target order used by museval/musdb reports.
MUSDB_TARGETS: tuple[str, ...] = ("vocals", "drums", "bass", "other")


#: musdb's name for "everything but vocals"
ACCOMPANIMENT = "accompaniment"
#: stem names that are mixtures, not sources: never part of an accompaniment
_MIXTURES = ("mixture", "linear_mix")


def accompaniment_parts(names: Iterable[str], vocals: str = "vocals") -> tuple[str, ...]:
    """The stems musdb's accompaniment sums, in their order: every stem but
    ``vocals`` and the mixtures (``mixture``, ``linear_mix``). ``()`` when
    none is derived: no ``vocals``, an ``accompaniment`` already there, or
    no other stem. The one definition :func:`accompaniment`,
    :meth:`Stems.with_accompaniment`, the local providers and the metrics'
    lazy accompaniment (:func:`stemlab.metrics.evaluation.with_accompaniment`)
    share."""
    names = list(names)
    if vocals not in names or ACCOMPANIMENT in names:
        return ()
    return tuple(n for n in names if n != vocals and n not in _MIXTURES)


def sum_stems(parts: Sequence[Any], block: int = 1 << 16) -> np.ndarray:
    """The float32 sum of same-shape arrays ``(…, samples)``, accumulated in
    float64 in the order given (``((p₀ + p₁) + p₂) …``), a block of samples
    at a time: the only full-length array made is the result."""
    first = np.asarray(parts[0])
    out = np.empty(first.shape, dtype=np.float32)
    n = first.shape[-1]
    for a in range(0, n, block):
        acc = np.zeros(first[..., a : a + block].shape, dtype=np.float64)
        for p in parts:
            acc += p[..., a : a + block]
        out[..., a : a + block] = acc
    return out


def accompaniment(stems: Mapping[str, Any], vocals: str = "vocals") -> np.ndarray | None:
    """musdb's accompaniment of ``stems`` (:func:`accompaniment_parts`,
    summed by :func:`sum_stems`: float64 per block, float32 out), or None
    when none is derived."""
    parts = accompaniment_parts(stems, vocals)
    return sum_stems([stems[n] for n in parts]) if parts else None


def freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view of ``mapping`` (``{}`` for None). An existing
    read-only view is kept as is (loaders use one to add facts, such as the
    decoded sample counts, after decoding)."""
    if isinstance(mapping, MappingProxyType):
        return mapping
    return MappingProxyType(dict(mapping or {}))


class _Picklable:
    """Frozen dataclasses holding read-only mapping views pickle as plain
    dicts (worker processes, Ray actors) and are frozen again on load."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, MappingProxyType) else v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, MappingProxyType(v) if isinstance(v, dict) and k != "__dict__" else v)


def _as_audio(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise InputError(f"{name}: expected audio shaped (channels, samples), got shape {a.shape}", field=name)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{name}: expected floating-point samples, got dtype {a.dtype}", field=name)
    return a.astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class Stems(_Picklable):
    """Named stems sharing one sample rate and one shape ``(channels, samples)``."""

    audio: Mapping[str, np.ndarray]
    sample_rate: int

    def __post_init__(self) -> None:
        if not self.audio:
            raise InputError("Stems: expected at least one stem, got none", field="stems")
        if int(self.sample_rate) <= 0:
            raise InputError(
                f"Stems: sample_rate must be a positive int (Hz), got {self.sample_rate!r}", field="sample_rate"
            )
        arrays = {str(k): _as_audio(v, f"stem {k!r}") for k, v in self.audio.items()}
        shapes = {k: a.shape for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise InputError(f"Stems: all stems must share (channels, samples); got {shapes}", field="stems")
        object.__setattr__(self, "audio", MappingProxyType(arrays))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    # mapping-like access -------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.audio)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.audio[name]
        except KeyError:
            raise KeyError(f"no stem {name!r}; have {list(self.audio)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.audio

    def __iter__(self) -> Iterator[str]:
        return iter(self.audio)

    def __len__(self) -> int:
        return len(self.audio)

    def items(self):
        return self.audio.items()

    # shape --------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return next(iter(self.audio.values())).shape[0]

    @property
    def num_samples(self) -> int:
        return next(iter(self.audio.values())).shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    # conversions ----------------------------------------------------------
    def to_array(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Stack as ``(n_sources, channels, samples)`` in ``names`` order."""
        names = tuple(names) if names is not None else self.names
        return np.stack([self[n] for n in names])

    @classmethod
    def from_array(cls, array: np.ndarray, names: Sequence[str], sample_rate: int) -> Stems:
        arr = np.asarray(array)
        if arr.ndim != 3 or arr.shape[0] != len(names):
            raise InputError(
                f"Stems.from_array: expected (n_sources={len(names)}, channels, samples), got {arr.shape}",
                field="array",
            )
        return cls({n: arr[i] for i, n in enumerate(names)}, sample_rate)

    def subset(self, names: Sequence[str]) -> Stems:
        return Stems({n: self[n] for n in names}, self.sample_rate)

    def sum(self, names: Sequence[str] | None = None, block: int = 1 << 16) -> np.ndarray:
        """The float32 sum of ``names`` (all stems), accumulated in float64 a
        block of samples at a time (no full-length float64 copy)."""
        names = tuple(names) if names is not None else self.names
        if not names:
            return np.zeros((self.num_channels, self.num_samples), dtype=np.float32)
        return sum_stems([self[n] for n in names], block)

    def with_accompaniment(self, vocals: str = "vocals") -> Stems:
        """A copy with ``accompaniment`` (:func:`accompaniment`: musdb's sum of
        the non-vocal stems, float32); itself when none is derived."""
        acc = accompaniment(self.audio, vocals)
        if acc is None:
            return self
        return Stems({**self.audio, ACCOMPANIMENT: acc}, self.sample_rate)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], sample_rate: int | None = None) -> Stems:
        return Stems({k: fn(v) for k, v in self.audio.items()}, sample_rate or self.sample_rate)


def _pcm_hash(audio: np.ndarray, sample_rate: int) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(audio, dtype=np.float32)
    h.update(f"{a.shape}|{sample_rate}|".encode())
    h.update(a.data.cast("B"))  # no copy of the samples (ndarray.data is its memoryview)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Track:
    """One song: a lazily decoded mixture and, when known, reference stems.

    Nothing is decoded until ``mixture``/``references`` is read; each is then
    cached on this object only (call :meth:`release` to drop it), so iterating
    a dataset holds one track in memory at a time.
    """

    name: str
    sample_rate: int
    dataset: str = "memory"
    subset: str | None = None
    duration: float | None = None  # seconds, from the header/card before decoding
    target_names: tuple[str, ...] = ()
    path: Path | None = None  # mixture file on disk, if any (uploads re-use it)
    suno_clip_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    load_mixture: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    load_references: Callable[[], Mapping[str, np.ndarray]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze(self.metadata))
        object.__setattr__(self, "target_names", tuple(self.target_names))
        if self.load_mixture is None:
            raise InputError(f"track {self.name!r}: no mixture loader", field="load_mixture")

    # constructors ---------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        name: str,
        mixture: np.ndarray | None,
        sample_rate: int,
        references: Mapping[str, np.ndarray] | None = None,
        **kwargs: Any,
    ) -> Track:
        """A track held in memory. ``mixture=None`` uses the sum of references."""
        refs = Stems(references, sample_rate) if references else None
        if mixture is None:
            if refs is None:
                raise InputError(f"track {name!r}: need a mixture or references", field="mixture")
            mix = refs.sum()
        else:
            mix = _as_audio(mixture, f"track {name!r} mixture")
        if refs is not None and refs.num_samples != mix.shape[1]:
            raise InputError(
                f"track {name!r}: references have {refs.num_samples} samples, mixture {mix.shape[1]}",
                field="references",
            )
        return cls(
            name=name,
            sample_rate=int(sample_rate),
            duration=mix.shape[1] / sample_rate,
            target_names=refs.names if refs else (),
            load_mixture=lambda: mix,
            load_references=(lambda: dict(refs.audio)) if refs else None,
            **kwargs,
        )

    # lazy audio -------------------------------------------------------------
    @cached_property
    def mixture(self) -> np.ndarray:
        """The mixture, float32 ``(channels, samples)`` at ``sample_rate``."""
        assert self.load_mixture is not None
        return _as_audio(self.load_mixture(), f"track {self.name!r} mixture")

    @property
    def has_references(self) -> bool:
        return self.load_references is not None and bool(self.target_names)

    @cached_property
    def references(self) -> Stems | None:
        """Reference stems (``None`` for mixture-only tracks)."""
        if self.load_references is None:
            return None
        return Stems(self.load_references(), self.sample_rate)

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the decoded mixture PCM (float32), its shape and rate."""
        return _pcm_hash(self.mixture, self.sample_rate)

    @property
    def reference_files(self) -> dict[str, Path]:
        """The files the references are decoded from, by stem (a MUSDB18
        ``.stem.mp4`` holds them all: ``{"stems": path}``); ``{}`` when they
        live in memory only."""
        if not self.has_references:
            return {}
        files = self.metadata.get("reference_files") or self.metadata.get("stem_files") or {}
        if files:
            return {str(k): Path(v) for k, v in dict(files).items()}
        if self.path is not None and str(self.path).endswith(".stem.mp4"):
            return {"stems": Path(self.path)}
        return {}

    @property
    def num_samples(self) -> int:
        return int(self.mixture.shape[1])

    @property
    def seconds(self) -> float:
        """Duration in seconds: from the header if known, else from decoding."""
        if self.duration is not None and math.isfinite(self.duration):
            return float(self.duration)
        return self.num_samples / self.sample_rate

    def release(self) -> None:
        """Drop decoded audio held by this object."""
        for key in ("mixture", "references"):
            self.__dict__.pop(key, None)

    def replace(self, **changes: Any) -> Track:
        return replace(self, **changes)


@dataclass(frozen=True)
class Cost:
    """What a job costs. ``usd`` in dollars; ``credits`` in the provider's own
    unit (``credit_unit``: "seconds", "mvsep_credits", "dango_points");
    ``compute_seconds`` of local wall time."""

    usd: float = 0.0
    credits: float = 0.0
    credit_unit: str = ""
    compute_seconds: float = 0.0
    estimated: bool = True

    def __add__(self, other: Cost) -> Cost:
        unit = self.credit_unit or other.credit_unit
        if self.credit_unit and other.credit_unit and self.credit_unit != other.credit_unit:
            unit = "mixed"
        return Cost(
            usd=self.usd + other.usd,
            credits=self.credits + other.credits,
            credit_unit=unit,
            compute_seconds=self.compute_seconds + other.compute_seconds,
            estimated=self.estimated or other.estimated,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "usd": self.usd,
            "credits": self.credits,
            "credit_unit": self.credit_unit,
            "compute_seconds": self.compute_seconds,
            "estimated": self.estimated,
        }


@dataclass(frozen=True, eq=False)
class Separation(_Picklable):
    """What a provider returned for one track.

    ``timings`` maps phase → seconds (``total`` always; local: ``load``,
    ``separate``; remote: ``upload``, ``queue``, ``processing``, ``download``).
    ``params`` are the parameters actually used (defaults filled in)."""

    stems: Stems
    provider: str
    params: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    device: str = "cpu"
    warnings: tuple[str, ...] = ()
    cost: Cost = field(default_factory=Cost)
    remote_id: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    corrections: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", freeze(self.params))
        object.__setattr__(self, "timings", freeze(self.timings))
        object.__setattr__(self, "provenance", freeze(self.provenance))
        object.__setattr__(self, "corrections", freeze(self.corrections))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def real_time_factor(self) -> float | None:
        """Processing seconds per second of audio (lower is faster)."""
        t = self.timings.get("separate", self.timings.get("total"))
        if t is None or self.stems.duration <= 0:
            return None
        return float(t) / self.stems.duration

    def replace(self, **changes: Any) -> Separation:
        return replace(self, **changes)


@dataclass(frozen=True)
class Result:
    """The outcome of one (track, provider) job.

    ``scores[target][metric]`` holds per-track values; failed jobs carry
    ``error_kind``/``error`` and no scores."""

    track: str
    provider: str
    status: str  # "done" | "failed" | "skipped" | "budget"
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    error_kind: str | None = None
    error: str | None = None
    separation: Separation | None = None
