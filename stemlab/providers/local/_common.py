"""Shared plumbing of the local providers: input checks, per-variant
parameters, STFT helpers and run bookkeeping (timings, peak memory)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from ...audio import check_audio
from ...errors import ConfigError, InputError, ProviderRejected
from ...types import ACCOMPANIMENT, Stems, Track, accompaniment
from ..base import Provider

__all__ = [
    "VariantParams",
    "check_mixture",
    "check_references",
    "mask_sources",
    "with_accompaniment",
    "StftGrid",
    "OverlapAdd",
    "WholeSignal",
    "stft_grid",
    "block_frames",
    "peak_rss",
    "Stopwatch",
    "ACCOMPANIMENT",
]

_VOCALS = "vocals"


def check_mixture(track: Track, provider: str, min_samples: int = 1) -> np.ndarray:
    """The track's mixture as float32 ``(channels, samples)``; raises
    :class:`InputError` for NaN/Inf, 0 samples, a wrong shape, or fewer than
    ``min_samples`` samples (a model's analysis frame)."""
    mix = check_audio(track.mixture, f"track {track.name!r} mixture")
    if mix.shape[1] < min_samples:
        raise InputError(f"{provider}: track {track.name!r} has {mix.shape[1]} sample(s); it needs at least "
                         f"{min_samples} (its analysis frame's overlap)", field="mixture", track=track.name)
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
    """Add ``accompaniment`` to ``stems`` in place and return them:
    :func:`stemlab.types.accompaniment` (musdb's sum of the non-vocal stems,
    float64 a block at a time, float32 out) when ``vocals`` and another stem
    are present and it is not there yet."""
    acc = accompaniment(stems, _VOCALS)
    if acc is not None:
        stems[ACCOMPANIMENT] = acc
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
    def describe(cls) -> dict[str, Any]:
        info = Provider.describe.__func__(cls)  # type: ignore[attr-defined]
        info["variant_params"] = {v: list(ps) for v, ps in cls.variant_params.items()}
        info["variant_defaults"] = {v: dict(d) for v, d in cls.variant_defaults.items()}
        return info


# --------------------------------------------------------------- blocked STFT

#: Samples of signal per block of STFT frames: the working set of a blocked
#: STFT → mask → overlap-add stays a few tens of MB whatever the track length.
BLOCK_SAMPLES = 1 << 18


def block_frames(hop: int, minimum: int = 16) -> int:
    """Frames per block for a hop (about :data:`BLOCK_SAMPLES` of signal)."""
    return max(minimum, BLOCK_SAMPLES // max(1, int(hop)))


class StftGrid:
    """``scipy.signal.stft``/``istft`` (periodic Hann, zero boundary
    extension of ``nfft // 2``, ``padded=True``, ``scaling='spectrum'``,
    float64) computed a block of frames at a time, with the same values.

    Frame ``t`` covers samples ``[t·hop − nfft/2, t·hop + nfft/2)`` of the
    signal (zeros outside it), so the STFT of frames ``[t0, t1)`` needs only
    those samples; :meth:`stft` returns them time-major, ``(channels, frames,
    bins)``. An :class:`OverlapAdd` inverts blocks in frame order: every
    output sample is the same sum, in the same order, of the same windowed
    inverse FFTs as in ``scipy.signal.istft``, divided by the same window
    normalisation, so the result matches the whole-signal inverse.

    Valid for ``num_samples >= nfft``; scipy shortens the window of shorter
    inputs (see :class:`WholeSignal`)."""

    def __init__(self, num_samples: int, nfft: int, hop: int) -> None:
        from scipy.signal import get_window

        if num_samples < nfft:
            raise ValueError(f"StftGrid: {num_samples} samples, fewer than nfft={nfft}")
        self.num_samples, self.nfft, self.hop = int(num_samples), int(nfft), int(hop)
        self.pad = self.nfft // 2
        ext = self.num_samples + 2 * self.pad
        nadd = (-(ext - self.nfft) % self.hop) % self.nfft
        self.frames = (ext + nadd - self.nfft) // self.hop + 1
        self.bins = self.nfft // 2 + 1
        self.window = get_window("hann", self.nfft)
        self.scale = np.sqrt(1.0 / self.window.sum() ** 2)  # scipy: 'spectrum' scaling, square-rooted for stft
        self.window_sum = self.window.sum()
        self.window_sq = self.window**2

    def blocks(self, size: int) -> list[tuple[int, int]]:
        size = max(1, int(size))
        return [(t0, min(self.frames, t0 + size)) for t0 in range(0, self.frames, size)]

    def stft(self, x: np.ndarray, t0: int, t1: int | None) -> np.ndarray:
        """Frames ``[t0, t1)`` of the STFT of ``x`` ``(channels, samples)``:
        complex128 ``(channels, t1 − t0, bins)``; ``t1`` None: to the last
        frame (as :class:`WholeSignal`, whose one block is ``(0, None)``)."""
        from numpy.lib.stride_tricks import sliding_window_view
        from scipy import fft as sp_fft

        x = np.asarray(x)
        if t1 is None:
            t1 = self.frames
        start = t0 * self.hop - self.pad  # signal index of the first sample of frame t0
        length = (t1 - t0 - 1) * self.hop + self.nfft
        seg = np.zeros((x.shape[0], length))
        lo, hi = max(start, 0), min(start + length, self.num_samples)
        if hi > lo:
            seg[:, lo - start : hi - start] = x[:, lo:hi]
        frames = sliding_window_view(seg, self.nfft, axis=-1)[:, :: self.hop]
        z = sp_fft.rfft(self.window * frames, n=self.nfft)
        z *= self.scale
        return z

    def overlap_add(self, out: np.ndarray) -> OverlapAdd:
        return OverlapAdd(self, out)


class OverlapAdd:
    """Inverse STFT of a :class:`StftGrid`, fed blocks of frames in order and
    written into ``out`` (float32 ``(channels, samples)``) as soon as a
    sample has all its frames. Holds the ``nfft − hop`` samples still
    waiting for later frames."""

    def __init__(self, grid: StftGrid, out: np.ndarray) -> None:
        self.grid = grid
        self.out = out
        keep = grid.nfft - grid.hop
        self._carry = np.zeros((out.shape[0], keep))
        self._carry_norm = np.zeros(keep)
        self.next_frame = 0

    def add(self, z: np.ndarray) -> None:
        """The next block of frames, complex ``(channels, frames, bins)``."""
        from scipy import fft as sp_fft

        g = self.grid
        nfft, hop = g.nfft, g.hop
        count = z.shape[1]
        t0 = self.next_frame
        t1 = t0 + count
        if t1 > g.frames:
            raise ValueError(f"OverlapAdd: {t1} frames fed, the signal has {g.frames}")
        xs = sp_fft.irfft(z, n=nfft, axis=-1)
        xs *= g.window_sum
        length = (count - 1) * hop + nfft
        keep = nfft - hop
        acc = np.zeros((z.shape[0], length))
        acc[:, :keep] = self._carry
        norm = np.zeros(length)
        norm[:keep] = self._carry_norm
        if nfft % hop == 0:
            # piece r of frame j lands on hop-chunk j + r; chunks receive frames in increasing order
            # (pieces r = R−1 … 0), as scipy's frame loop adds them
            r_count = nfft // hop
            pieces = (xs * g.window).reshape(z.shape[0], count, r_count, hop)
            acc3 = acc.reshape(z.shape[0], count + r_count - 1, hop)
            norm2 = norm.reshape(count + r_count - 1, hop)
            wsq = g.window_sq.reshape(r_count, hop)
            for r in range(r_count - 1, -1, -1):
                acc3[:, r : r + count] += pieces[:, :, r]
                norm2[r : r + count] += wsq[r]
            del pieces
        else:
            for j in range(count):
                acc[:, j * hop : j * hop + nfft] += xs[:, j] * g.window
                norm[j * hop : j * hop + nfft] += g.window_sq
        del xs
        final = t1 == g.frames
        done = length if final else count * hop
        p0 = t0 * hop  # padded index of acc[:, 0]
        j0, j1 = max(p0 - g.pad, 0), min(p0 + done - g.pad, g.num_samples)
        if j1 > j0:
            a, b = j0 + g.pad - p0, j1 + g.pad - p0
            nb = norm[a:b]
            self.out[:, j0:j1] = acc[:, a:b] / np.where(nb > 1e-10, nb, 1.0)
        if not final:
            self._carry = acc[:, done:].copy()
            self._carry_norm = norm[done:].copy()
        self.next_frame = t1


class WholeSignal:
    """The former whole-signal ``scipy.signal.stft``/``istft`` calls behind
    the :class:`StftGrid` interface (one block holding every frame), for
    inputs shorter than ``nfft``: scipy then shortens the window to the
    input, which only the whole-signal calls reproduce. Such inputs are a
    few thousand samples: their memory does not matter."""

    frames = None

    def __init__(self, stft, istft, num_samples: int) -> None:
        self._stft, self._istft, self.num_samples = stft, istft, int(num_samples)

    def blocks(self, size: int) -> list[tuple[int, int | None]]:
        return [(0, None)]

    def stft(self, x: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
        return np.swapaxes(self._stft(x), -1, -2)

    def overlap_add(self, out: np.ndarray) -> _WholeInverse:
        return _WholeInverse(self, out)


class _WholeInverse:
    def __init__(self, whole: WholeSignal, out: np.ndarray) -> None:
        self.whole, self.out = whole, out

    def add(self, z: np.ndarray) -> None:
        self.out[...] = self.whole._istft(np.swapaxes(z, -1, -2), self.whole.num_samples)


def stft_grid(num_samples: int, nfft: int, hop: int, stft, istft) -> StftGrid | WholeSignal:
    """A :class:`StftGrid`, or for inputs shorter than ``nfft`` the former
    whole-signal ``stft(x)`` / ``istft(z, num_samples)`` (see :class:`WholeSignal`)."""
    if num_samples >= nfft:
        return StftGrid(num_samples, nfft, hop)
    return WholeSignal(stft, istft, num_samples)


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


def to_track_stems(est: Mapping[str, np.ndarray], ch: int, mch: int, sr: int, msr: int,
                   n: int) -> dict[str, np.ndarray]:
    """A model's stems (``mch`` channels at ``msr`` Hz) as stems of the track:
    its ``ch`` channels, its rate ``sr`` and its length ``n`` samples, float32."""
    from ...audio import fit_length, resample, to_channels

    stems: dict[str, np.ndarray] = {}
    for name, s in est.items():
        if ch != mch:
            s = to_channels(s, ch)
        if sr != msr:
            s = resample(s, msr, sr)
        stems[name] = np.ascontiguousarray(fit_length(s, n), dtype=np.float32)
    return stems
