"""Align a provider's stems to the reference mixture before scoring.

Remote services return lossy MP3/M4A, sometimes at 48 kHz, mono, padded or
truncated, shifted by encoder delay. :func:`align` undoes this, in order:

1. **Rate**: every stem is resampled to the reference rate with libsoxr VHQ
   (:func:`stemlab.audio.resample`; linear phase, so no delay is added).
2. **Channels**: :func:`stemlab.audio.to_channels` — mono → dual mono,
   stereo → mono by averaging (for a mono mixture).
3. **Offset**: with ``y`` the sum of the stems and ``x`` the mixture, the
   channel-summed cross-correlation ``c[d] = Σ_c Σ_n y_c[n + d]·x_c[n]`` is
   computed by FFT (float64) and normalised by the total energies,
   ``ρ[d] = c[d] / (‖x‖·‖y‖)`` (1 for an exact, complete copy; a truncated
   or padded copy scores the fraction of energy it shares). The offset is
   ``d* = argmax ρ[d]`` over ``|d| ≤ round(max_shift_ms·sr/1000)`` samples;
   ``d* > 0`` means the stems arrived *late* by ``d*`` samples.
4. **Refusal**: if ``ρ[d*] < min_correlation`` (default 0.5) the output is
   not the separated mixture (wrong file, silence, polarity flip, offset
   beyond the search range) and :class:`~stemlab.errors.ProviderOutputError`
   is raised instead of scoring garbage.
5. **Shift and length**: ``ŝ[n] ← ŝ[n + d*]``, zero-padding or trimming both
   ends so every stem has exactly the mixture's length.
6. **Gain** (``gain=True``): one least-squares scalar for all stems,
   ``g = ⟨y, x⟩ / ‖y‖²`` on the aligned sum, reported as ``20·log10 g`` dB.

The corrections dict (JSON-ready) records everything applied:
``offset_samples`` (d*, at the reference rate), ``offset_ms``,
``correlation`` (ρ[d*]), ``search_samples`` (the bound), ``at_search_limit``,
``gain_db`` (applied; 0.0 without ``gain``), ``ls_gain_db`` (measured either
way), ``resampled_from`` (Hz or None), ``channel_fix`` ("mono->stereo",
"stereo->mono" or None), ``input_samples`` (after resampling),
``padded_samples`` and ``trimmed_samples`` (totals over both ends).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import scipy.fft as sfft

from ..audio import check_audio, resample, to_channels
from ..errors import InputError, ProviderOutputError
from ..types import Stems

__all__ = ["align", "find_offset"]


def find_offset(estimate_sum: np.ndarray, mixture: np.ndarray, max_shift: int) -> tuple[int, float]:
    """``(d*, ρ[d*])``: the lag in samples (``|d*| ≤ max_shift``) maximising
    the normalised cross-correlation of ``estimate_sum`` (C, n) against
    ``mixture`` (C, T); ``d* > 0`` when the estimate is late. ρ is 0 when
    either signal is silent."""
    y = np.asarray(estimate_sum, dtype=np.float64)
    x = np.asarray(mixture, dtype=np.float64)
    norm = math.sqrt(float(np.sum(x * x)) * float(np.sum(y * y)))
    if norm == 0.0:
        return 0, 0.0
    n, t = y.shape[1], x.shape[1]
    nfft = sfft.next_fast_len(n + t - 1, real=True)
    spec = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    for c in range(x.shape[0]):
        spec += sfft.rfft(y[c], nfft) * np.conj(sfft.rfft(x[c], nfft))
    cc = sfft.irfft(spec, nfft)  # cc[d mod nfft] = Σ_m y[m + d]·x[m]
    pos = min(max_shift, n - 1)  # lags that overlap at all
    neg = min(max_shift, t - 1)
    lags = np.arange(-neg, pos + 1)
    vals = cc[lags % nfft]
    i = int(np.argmax(vals))
    return int(lags[i]), float(vals[i] / norm)


def _positive_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or int(sample_rate) <= 0:
        raise InputError(f"sample_rate: expected a positive int (Hz), got {sample_rate!r}", field="sample_rate")
    return int(sample_rate)


def align(
    estimates: Stems,
    mixture: np.ndarray,
    sample_rate: int,
    *,
    max_shift_ms: float = 250.0,
    gain: bool = False,
    min_correlation: float = 0.5,
) -> tuple[Stems, dict[str, Any]]:
    """Resample, fix channels, shift, fit length and (optionally) rescale
    ``estimates`` onto ``mixture`` ``(channels, samples)`` at ``sample_rate``.

    Returns the aligned :class:`Stems` (mixture's rate, channels and length)
    and the corrections dict (see the module doc). Raises
    :class:`ProviderOutputError` when the peak normalised correlation is
    below ``min_correlation`` or the stems cannot be mapped to the mixture's
    channel layout; :class:`InputError` for bad arguments."""
    if not isinstance(estimates, Stems):
        raise InputError(f"estimates: expected Stems, got {type(estimates).__name__}", field="estimates")
    sr = _positive_rate(sample_rate)
    mix = check_audio(mixture, "mixture")
    if not (isinstance(max_shift_ms, numbers.Real) and math.isfinite(max_shift_ms) and max_shift_ms >= 0):
        raise InputError(f"max_shift_ms: expected a finite number ≥ 0 (ms), got {max_shift_ms!r}", field="max_shift_ms")
    if not (isinstance(min_correlation, numbers.Real) and -1.0 <= min_correlation <= 1.0):
        raise InputError(
            f"min_correlation: expected a number in [-1, 1], got {min_correlation!r}", field="min_correlation"
        )
    n_ch, t = mix.shape
    corrections: dict[str, Any] = {
        "resampled_from": None,
        "channel_fix": None,
    }

    stems = {k: np.asarray(v, dtype=np.float32) for k, v in estimates.items()}
    for k, v in stems.items():
        if not np.isfinite(v).all():
            raise ProviderOutputError(f"stem {k!r}: contains NaN/Inf samples", stem=k)
    if estimates.sample_rate != sr:
        corrections["resampled_from"] = int(estimates.sample_rate)
        stems = {k: resample(v, estimates.sample_rate, sr) for k, v in stems.items()}
    have = estimates.num_channels
    if have != n_ch:
        try:
            stems = {k: to_channels(v, n_ch, name=f"stem {k!r}") for k, v in stems.items()}
        except InputError as e:
            raise ProviderOutputError(
                f"stems have {have} channels; cannot map them onto the mixture's {n_ch}: {e.message}",
                channels=have,
            ) from None
        names = {1: "mono", 2: "stereo"}
        corrections["channel_fix"] = f"{names.get(have, f'{have}ch')}->{names.get(n_ch, f'{n_ch}ch')}"
    n = next(iter(stems.values())).shape[1]
    corrections["input_samples"] = int(n)

    total = np.zeros((n_ch, n), dtype=np.float64)
    for v in stems.values():
        total += v
    max_shift = int(round(max_shift_ms * sr / 1000.0))
    offset, rho = find_offset(total, mix, max_shift)
    corrections.update(
        offset_samples=offset,
        offset_ms=1000.0 * offset / sr,
        correlation=rho,
        search_samples=max_shift,
        at_search_limit=bool(max_shift > 0 and abs(offset) == max_shift),
    )
    if not rho >= min_correlation:
        silent = " (the stems sum to silence)" if not total.any() else ""
        raise ProviderOutputError(
            f"cannot align the stems to the mixture{silent}: peak normalised correlation {rho:.3f} "
            f"(at {offset} samples, search ±{max_shift}) is below the threshold {min_correlation}",
            correlation=rho,
            threshold=min_correlation,
            offset_samples=offset,
        )

    # ŝ[n] <- ŝ[n + offset], then fit to t samples
    start = offset  # first input sample that lands on output sample 0
    pad_start = max(0, -start)
    trim_start = max(0, start)
    avail = n - trim_start  # input samples from trim_start on
    body = min(avail, t - pad_start)
    pad_end = t - pad_start - max(body, 0)
    trim_end = max(0, avail - body)
    corrections.update(padded_samples=int(pad_start + pad_end), trimmed_samples=int(trim_start + trim_end))

    def place(v: np.ndarray) -> np.ndarray:
        out = np.zeros((n_ch, t), dtype=np.float32)
        if body > 0:
            out[:, pad_start : pad_start + body] = v[:, trim_start : trim_start + body]
        return out

    aligned = {k: place(v) for k, v in stems.items()}
    s = np.zeros((n_ch, t), dtype=np.float64)
    for v in aligned.values():
        s += v
    ss = float(np.sum(s * s))
    g = float(np.sum(s * mix)) / ss if ss > 0 else 0.0
    corrections["ls_gain_db"] = 20.0 * math.log10(g) if g > 0 else -math.inf
    corrections["gain_db"] = 0.0
    if gain and g > 0:
        aligned = {k: (v * g).astype(np.float32) for k, v in aligned.items()}
        corrections["gain_db"] = corrections["ls_gain_db"]
    return Stems(aligned, sr), corrections
