"""One inference engine for the local neural models (MSST, UVR, Spleeter).

A *model* here is any callable ``model(x) -> y`` from a batch of audio
segments ``x`` (torch float32 ``(batch, channels, samples)``) to stems ``y``
(``(batch, stems, channels, samples)``). :class:`Engine` cuts a track into
segments, batches them, runs the model, and puts the pieces back with a
weighted overlap-add::

    out[t] = Σ_k w_k(t − s_k) · y_k(t − s_k)  /  Σ_k w_k(t − s_k)

``s_k`` is the start of segment ``k`` and ``w_k`` its fade window. Because
the sum is divided by the sum of the weights, a model that returns its input
gives the mixture back exactly (up to float32 rounding, < 1e-6 — see
``tests/providers/test_engine.py``), whatever the segment, overlap, fade
shape, batch size or test-time augmentation; every sample is covered by at
least one positive weight (the first segment does not fade in, the last does
not fade out, and a fade never extends beyond the overlap).

What it does, and the knobs (:class:`EngineConfig`):

* **chunking** — ``segment`` samples per model call (``None``: the whole
  track in one call), ``overlap`` (fraction of a segment shared with the
  next; or ``step``, the hop in samples, as MSST's ``chunk_size //
  num_overlap``), ``fade`` shape: ``linear`` (MSST: ramps of
  ``fade_length`` samples, default the whole overlap), ``hann``
  (audio-separator's MDX-Net: a Hann window over the whole segment),
  ``triangle`` (Demucs' weight), ``constant``; ``edge``: how the last,
  short segment is padded (``zeros``, or ``reflect`` when more than half of
  it is real, as MSST); ``pad_ends``: pad the whole track by the overlap at
  both ends before cutting (MSST's *generic* mode: ``reflect``).
* **batching** — ``batch_size`` segments per model call (no effect on the
  output beyond float rounding).
* **test-time augmentation** — ``shifts`` random delays in ``[0,
  max_shift)`` samples (drawn from ``numpy.random.default_rng(seed)``, so
  runs repeat), ``flip_channels`` (left/right swapped and swapped back),
  ``polarity`` (input negated, output negated back); every combination is
  run and the results averaged (MSST's ``--use_tta`` = flip + polarity).
* **device and precision** — ``device`` (``cpu``, ``cuda[:N]``, ``mps``)
  and ``precision`` (``float32``; ``bfloat16``/``float16`` run the model
  under :func:`torch.autocast`; the overlap-add stays float32).
* **progress** — :meth:`Engine.run` calls ``progress(done, total)`` after
  each model call (segments × passes) and/or shows a tqdm bar named after
  the track.

Demucs keeps using its own :func:`demucs.apply.apply_model` (the reference
behaviour of its published numbers); everything else local goes through
here. ``benchmarks/engine_overhead.py`` measures the engine's cost against
the model's direct call on one segment.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ...errors import ConfigError, InputError

__all__ = ["EngineConfig", "Engine", "FADES", "fade_window", "segment_starts", "identity_model"]

FADES = ("linear", "hann", "triangle", "constant")
PRECISIONS = ("float32", "bfloat16", "float16")

Model = Callable[[Any], Any]
Progress = Callable[[int, int], None]


def _edge_window(base: np.ndarray, s: int, starts: Sequence[int], peak_first: int, peak_last: int) -> np.ndarray:
    """The overlap-add window of the segment at ``s``: ``base``, held at its
    peak before it for the first segment and after it for the last."""
    if s != starts[0] and s != starts[-1]:
        return base
    w = base.copy()
    if s == starts[0]:
        w[:peak_first] = w[peak_first]
    if s == starts[-1]:
        w[peak_last:] = w[peak_last]
    return w


def _add_segments(out: np.ndarray, wsum: np.ndarray, y_np: np.ndarray, batch: Sequence[int], seg: int,
                  base: np.ndarray, starts: Sequence[int], peak_first: int, peak_last: int) -> None:
    """Overlap-add a batch's outputs ``y_np`` into ``out``, each weighted by its
    segment's window (:func:`_edge_window`), and the windows into ``wsum``
    (both as long as the padded signal)."""
    padded = len(wsum)
    for j, s in enumerate(batch):
        n = min(seg, padded - s)
        w = _edge_window(base, s, starts, peak_first, peak_last)
        w32 = w[:n].astype(np.float32)
        if w is not base and np.all(w32 == 1.0):
            out[:, :, s:s + n] += y_np[j, :, :, :n]
        else:
            out[:, :, s:s + n] += y_np[j, :, :, :n] * w32
        wsum[s:s + n] += w32


@dataclass(frozen=True)
class EngineConfig:
    """How :class:`Engine` cuts, batches, augments and rebuilds (see the module doc)."""

    segment: int | None = None
    overlap: float = 0.25
    step: int | None = None
    fade: str = "linear"
    fade_length: int | None = None
    edge: str = "zeros"
    pad_ends: str = "none"
    batch_size: int = 1
    shifts: int = 0
    max_shift: int = 0
    flip_channels: bool = False
    polarity: bool = False
    seed: int = 0
    device: str = "cpu"
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.segment is not None and int(self.segment) < 1:
            raise ConfigError(f"engine: segment must be ≥ 1 sample or None, got {self.segment}", field="segment")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ConfigError(f"engine: overlap must be in [0, 1), got {self.overlap}", field="overlap")
        if self.step is not None and int(self.step) < 1:
            raise ConfigError(f"engine: step must be ≥ 1 sample, got {self.step}", field="step")
        if self.segment is not None and self.step is not None and self.step > self.segment:
            raise ConfigError(f"engine: step ({self.step}) longer than segment ({self.segment}) would skip audio",
                              field="step")
        if self.fade not in FADES:
            raise ConfigError(f"engine: fade must be one of {list(FADES)}, got {self.fade!r}", field="fade")
        if self.edge not in ("zeros", "reflect"):
            raise ConfigError(f"engine: edge must be 'zeros' or 'reflect', got {self.edge!r}", field="edge")
        if self.pad_ends not in ("none", "zeros", "reflect"):
            raise ConfigError(f"engine: pad_ends must be none, zeros or reflect, got {self.pad_ends!r}",
                              field="pad_ends")
        if int(self.batch_size) < 1:
            raise ConfigError(f"engine: batch_size must be ≥ 1, got {self.batch_size}", field="batch_size")
        if int(self.shifts) < 0 or (self.shifts and int(self.max_shift) < 1):
            raise ConfigError("engine: shifts must be ≥ 0 and need max_shift ≥ 1 sample", field="shifts")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"engine: precision must be one of {list(PRECISIONS)}, got {self.precision!r}",
                              field="precision")

    def hop(self, segment: int) -> int:
        """Samples between segment starts for a segment of ``segment`` samples."""
        if self.step is not None:
            return min(int(self.step), segment)
        return max(1, segment - int(round(self.overlap * segment)))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fade_window(kind: str, segment: int, overlap: int, fade_length: int | None = None) -> np.ndarray:
    """The weight of one segment (float64, max 1). ``overlap`` is the number of
    samples shared with the next segment; a linear fade never exceeds it."""
    n = int(segment)
    if kind == "constant" or overlap <= 0:
        return np.ones(n)
    if kind == "linear":
        f = overlap if fade_length is None else min(int(fade_length), overlap)
        w = np.ones(n)
        if f > 0:
            w[:f] = np.linspace(0.0, 1.0, f)
            w[n - f:] = np.linspace(1.0, 0.0, f)
        return w
    if kind == "hann":
        return np.hanning(n) if n > 1 else np.ones(n)
    if kind == "triangle":  # demucs.apply: arange(1, n//2+1) ++ arange(n − n//2, 0, −1), divided by its max
        w = np.concatenate([np.arange(1, n // 2 + 1), np.arange(n - n // 2, 0, -1)]).astype(np.float64)
        return w / w.max()
    raise ConfigError(f"engine: unknown fade {kind!r}", field="fade")


def segment_starts(length: int, segment: int, step: int) -> list[int]:
    """Segment starts covering ``[0, length)``: ``0, step, 2·step, …`` up to
    the first segment that reaches the end."""
    starts = [0]
    while starts[-1] + segment < length:
        starts.append(starts[-1] + step)
    return starts


def identity_model(x: Any) -> Any:
    """A model that returns its input as one stem: ``(B, C, T) → (B, 1, C, T)``."""
    return x[:, None]


@dataclass
class RunStats:
    """What one :meth:`Engine.run` did (kept as ``engine.last``)."""

    segments: int = 0
    passes: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0
    total_seconds: float = 0.0
    shifts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_mixture(mix: np.ndarray) -> np.ndarray:
    """``mix`` as float32 ``(channels, samples)`` with samples > 0; InputError otherwise."""
    x = np.asarray(mix, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"engine: expected (channels, samples) with samples > 0, got shape {x.shape}",
                         field="mixture")
    return x


def _progress_ticker(progress: Progress | bool | None, total: int, desc: str | None,
                     ) -> tuple[Callable[[], None], Any]:
    """``(tick, bar)``: ``tick()`` counts one batch done, on the tqdm ``bar`` (``progress=True``; the
    caller closes it) or through the callback ``progress`` (called with ``(done, total)``)."""
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc or "separating", unit="batch", leave=False)
    callback = progress if callable(progress) else None
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(done, total)

    return tick, bar


def _pass_input(x: np.ndarray, shift: int, flip: bool, sign: int) -> np.ndarray:
    """The mixture as one pass sees it: delayed by ``shift`` samples, channels swapped, polarity inverted."""
    if shift:
        x = np.concatenate([np.zeros((x.shape[0], shift), np.float32), x], axis=1)
    if flip:
        x = x[::-1]
    if sign < 0:
        x = -x
    return x


def _pass_output(y: np.ndarray, shift: int, flip: bool, sign: int, length: int) -> np.ndarray:
    """Undo :func:`_pass_input` on a pass's ``(stems, channels, samples)`` output (in place where it can)."""
    if sign < 0:
        np.negative(y, out=y)
    if flip:
        y = y[:, ::-1]
    if shift:
        y = y[..., shift:shift + length]
    return y


class Engine:
    """Runs a segment model over whole tracks (see the module doc)."""

    def __init__(self, config: EngineConfig | None = None, **overrides: Any) -> None:
        cfg = config or EngineConfig()
        if overrides:
            cfg = EngineConfig(**{**cfg.as_dict(), **overrides})
        self.config = cfg
        self.last = RunStats()

    # ------------------------------------------------------------------ planning
    def plan(self, length: int) -> tuple[int, int, list[int], int]:
        """``(segment, step, starts, border)`` for a track of ``length``
        samples (``border``: padding added at both ends by ``pad_ends``)."""
        c = self.config
        border = 0
        seg = int(c.segment) if c.segment is not None else None
        if c.pad_ends != "none" and seg is not None:
            b = seg - c.hop(seg)
            if b > 0 and length > 2 * b:
                border = b
        padded = length + 2 * border
        if seg is None:
            seg = padded
        step = c.hop(seg)
        return seg, step, segment_starts(padded, seg, step), border

    def passes(self, channels: int) -> list[tuple[int, bool, int]]:
        """The augmentation passes ``(shift, flip, sign)`` averaged."""
        c = self.config
        if c.shifts:
            rng = np.random.default_rng(c.seed)
            shifts = [int(s) for s in rng.integers(0, c.max_shift, size=c.shifts)]
        else:
            shifts = [0]
        flips = [False, True] if (c.flip_channels and channels > 1) else [False]
        signs = [1, -1] if c.polarity else [1]
        return list(itertools.product(shifts, flips, signs))

    # ------------------------------------------------------------------ running
    def run(self, model: Model, mix: np.ndarray, *, progress: Progress | bool | None = None,
            desc: str | None = None) -> np.ndarray:
        """Separate ``mix`` (float ``(channels, samples)``) with ``model``;
        returns float32 ``(stems, channels, samples)``."""
        import torch

        t_start = time.perf_counter()
        x = _as_mixture(mix)
        channels, length = x.shape
        passes = self.passes(channels)
        seg, step, starts, border = self.plan(length)
        total = len(passes) * sum(1 for _ in self._batches(starts))
        stats = RunStats(segments=len(starts), passes=len(passes), shifts=sorted({p[0] for p in passes}))
        tick, bar = _progress_ticker(progress, total, desc)
        acc: np.ndarray | None = None
        try:
            with torch.inference_mode(), self._autocast(torch):
                for shift, flip, sign in passes:
                    xp = _pass_input(x, shift, flip, sign)
                    y = self._one_pass(torch, model, np.ascontiguousarray(xp), stats, tick)
                    y = _pass_output(y, shift, flip, sign, length)
                    if acc is None:
                        acc = np.ascontiguousarray(y, dtype=np.float32)
                    else:
                        acc += y
        finally:
            if bar is not None:
                bar.close()
        assert acc is not None
        if len(passes) > 1:
            acc /= np.float32(len(passes))
        stats.total_seconds = time.perf_counter() - t_start
        self.last = stats
        return acc

    def _autocast(self, torch: Any) -> Any:
        prec = self.config.precision
        if prec == "float32":
            return nullcontext()
        dev = self.config.device.split(":")[0]
        return torch.autocast(device_type=dev, dtype=getattr(torch, prec))

    def _batches(self, starts: Sequence[int]) -> Iterator[list[int]]:
        b = int(self.config.batch_size)
        for i in range(0, len(starts), b):
            yield list(starts[i:i + b])

    def _segment(self, x: np.ndarray, s: int, seg: int) -> np.ndarray:
        """``x[:, s:s + seg]``, padded to ``seg`` samples at the end of the signal."""
        part = x[:, s:s + seg]
        n = part.shape[1]
        if n < seg:
            mode: Literal["reflect", "constant"] = (
                "reflect" if (self.config.edge == "reflect" and n > seg // 2 and n > 1) else "constant"
            )
            if mode == "reflect" and seg - n >= n:
                mode = "constant"  # numpy's reflect needs fewer pad samples than the segment has
            part = np.pad(part, ((0, 0), (0, seg - n)), mode=mode)
        return part

    def _model_batch(self, torch: Any, model: Model, x: np.ndarray, batch: list[int], seg: int, stats: RunStats
                     ) -> np.ndarray:
        """The model's ``(segments, stems, channels, samples)`` output for the
        segments of ``x`` at ``batch`` (on the configured device), timed into
        ``stats``; refused when its shape does not fit the input."""
        channels = x.shape[0]
        device = self.config.device
        parts = [self._segment(x, s, seg) for s in batch]
        xb = torch.from_numpy(np.ascontiguousarray(np.stack(parts)) if len(parts) > 1 else parts[0][None])
        if device != "cpu":
            xb = xb.to(device)
        t0 = time.perf_counter()
        yb = model(xb)
        if isinstance(yb, np.ndarray):
            y_np = yb
        else:
            y_np = yb.detach().float().cpu().numpy()
        stats.model_seconds += time.perf_counter() - t0
        stats.model_calls += 1
        if y_np.ndim != 4 or y_np.shape[0] != len(batch) or y_np.shape[2] != channels or y_np.shape[3] < seg:
            raise InputError(f"engine: model returned shape {tuple(y_np.shape)}, expected "
                             f"({len(batch)}, stems, {channels}, {seg})", field="model")
        return y_np

    def _one_pass(self, torch: Any, model: Model, x: np.ndarray, stats: RunStats, tick: Callable[[], None]
                  ) -> np.ndarray:
        c = self.config
        channels, length = x.shape
        seg, step, starts, border = self.plan(length)
        if border:
            x = np.pad(x, ((0, 0), (border, border)), mode="reflect" if c.pad_ends == "reflect" else "constant")
        padded = x.shape[1]
        base = fade_window(c.fade, seg, seg - step, c.fade_length)
        peak_first = int(np.argmax(base))
        peak_last = len(base) - 1 - int(np.argmax(base[::-1]))
        out: np.ndarray | None = None
        wsum = np.zeros(padded, dtype=np.float32)
        for batch in self._batches(starts):
            y_np = self._model_batch(torch, model, x, batch, seg, stats)
            if len(starts) == 1 and seg >= padded:  # one segment covering everything: its output is the result
                out = np.ascontiguousarray(y_np[0, :, :, :padded], dtype=np.float32)
                tick()
                break
            if out is None:
                out = np.zeros((y_np.shape[1], channels, padded), dtype=np.float32)
            _add_segments(out, wsum, y_np, batch, seg, base, starts, peak_first, peak_last)
            tick()
        assert out is not None
        if len(starts) > 1 or seg < padded:
            if not np.all(wsum > 0):  # pragma: no cover - guarded by the window construction
                raise RuntimeError("engine: a sample received no weight (segment/step/fade combination)")
            out /= wsum
        if border:
            out = np.ascontiguousarray(out[..., border:border + length])
        return out

    def describe(self) -> dict[str, Any]:
        """The configuration, for provenance."""
        return self.config.as_dict()


def seconds_to_samples(seconds: float | None, sample_rate: int) -> int | None:
    return None if seconds is None else max(1, int(math.ceil(float(seconds) * sample_rate)))
