"""Align a provider's stems to the reference mixture before scoring.

Remote services return lossy MP3/M4A, sometimes at 48 kHz, mono, padded or
truncated, shifted by encoder delay. :func:`align` undoes this, in order:

1. **Channels**: :func:`stemlab.audio.to_channels` — mono → dual mono,
   stereo → mono by averaging (for a mono mixture); more channels than the
   mixture can take → :class:`~stemlab.errors.ProviderOutputError`.
2. **Offset**, at the output's own rate ``r`` (codec delays are whole
   samples there: LAME's 1105 samples at 48 kHz are 1015.2 at 44.1 kHz, and
   a sub-sample error costs several dB of SDR on bright material): with
   ``y`` the sum of the stems and ``x`` the mixture (resampled to ``r`` for
   this step only), the channel-summed cross-correlation
   ``c[d] = Σ_c Σ_n y_c[n + d]·x_c[n]`` is computed by FFT (float64) and
   normalised by the total energies, ``ρ[d] = c[d] / (‖x‖·‖y‖)`` (1 for an
   exact, complete copy; a truncated or padded copy scores about the root of
   the energy fraction it shares). ``d* = argmax ρ[d]`` over
   ``|d| ≤ round(max_shift_ms·r/1000)``; ``d* > 0`` means the stems arrived
   *late* by ``d*`` samples.
3. **Refusal**: if ``ρ[d*] < min_correlation`` (default 0.5) the output is
   not the separated mixture (wrong file, silence, an offset beyond the
   search range), and likewise when ``−min ρ > max ρ`` and
   ``−min ρ ≥ min_correlation`` (inverted polarity: periodic material would
   otherwise match half a period away), and
   :class:`~stemlab.errors.ProviderOutputError` is raised — with ρ, the
   threshold and a hint (silence, polarity) — instead of scoring garbage.
4. **Shift and length**: ``ŝ[n] ← ŝ[n + d*]``, zero-padding or trimming both
   ends to the mixture's length (at ``r``).
5. **Rate**: resampled to the reference rate with libsoxr VHQ
   (:func:`stemlab.audio.resample`; linear phase, so no delay is added),
   then cut or zero-padded to exactly the mixture's sample count.
6. **Gain** (``gain=True``): one least-squares scalar for all stems,
   ``g = ⟨y, x⟩ / ‖y‖²`` on the aligned sum, reported as ``20·log10 g`` dB.
   With an imperfect separation (error e) it is biased low by about
   ``10·log10(1 + ‖e‖²/‖x‖²)`` dB; it matches the levels, not the stems.

The corrections dict (JSON-ready) records everything applied, sample
counts at the reference rate: ``offset_samples`` (d*, rounded),
``offset_ms``, ``offset_samples_native`` (d* at ``r``; only when
resampled), ``correlation`` (ρ[d*]), ``search_samples`` (the bound),
``at_search_limit``, ``gain_db`` (applied; 0.0 without ``gain``),
``ls_gain_db`` (measured either way), ``resampled_from`` (Hz or None),
``channel_fix`` ("mono->stereo", "stereo->mono" or None), ``input_samples``
(the output's length), ``padded_samples`` and ``trimmed_samples`` (totals
over both ends).
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


def _xcorr(estimate_sum: np.ndarray, mixture: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Lags ``|d| ≤ max_shift`` (those that overlap at all) and ρ[d]."""
    y = np.asarray(estimate_sum, dtype=np.float64)
    x = np.asarray(mixture, dtype=np.float64)
    n, t = y.shape[1], x.shape[1]
    lags = np.arange(-min(max_shift, t - 1), min(max_shift, n - 1) + 1)
    norm = math.sqrt(float(np.sum(x * x)) * float(np.sum(y * y)))
    if norm == 0.0:
        return lags, np.zeros(lags.shape)
    nfft = sfft.next_fast_len(n + t - 1, real=True)
    spec = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    for c in range(x.shape[0]):
        spec += sfft.rfft(y[c], nfft, workers=-1) * np.conj(sfft.rfft(x[c], nfft, workers=-1))
    cc = sfft.irfft(spec, nfft, workers=-1)  # cc[d mod nfft] = Σ_m y[m + d]·x[m]
    return lags, cc[lags % nfft] / norm


def find_offset(estimate_sum: np.ndarray, mixture: np.ndarray, max_shift: int) -> tuple[int, float]:
    """``(d*, ρ[d*])``: the lag in samples (``|d*| ≤ max_shift``) maximising
    the normalised cross-correlation of ``estimate_sum`` (C, n) against
    ``mixture`` (C, T); ``d* > 0`` when the estimate is late. ρ is 0 when
    either signal is silent."""
    lags, rho = _xcorr(estimate_sum, mixture, max_shift)
    if not rho.any():
        return 0, 0.0
    i = int(np.argmax(rho))
    return int(lags[i]), float(rho[i])


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
    ``estimates`` onto ``mixture`` ``(channels, samples)`` at ``sample_rate``
    (Hz); ``max_shift_ms``: the offset search range (ms).

    Returns the aligned :class:`Stems` (mixture's rate, channels and length)
    and the corrections dict (see the module doc). Raises
    :class:`ProviderOutputError` when the peak normalised correlation is
    below ``min_correlation`` or the stems cannot be mapped to the mixture's
    channel layout; :class:`InputError` for bad arguments."""
    if not isinstance(estimates, Stems):
        raise InputError(f"estimates: expected Stems, got {type(estimates).__name__}", field="estimates")
    sr = _positive_rate(sample_rate)
    mix = check_audio(mixture, "mixture")
    _check_search(max_shift_ms, min_correlation)
    n_ch, t = mix.shape
    corrections: dict[str, Any] = {
        "resampled_from": None,
        "channel_fix": None,
    }
    if estimates.sample_rate != sr:
        corrections["resampled_from"] = int(estimates.sample_rate)
    stems = _on_channels(estimates, n_ch, corrections)
    n = next(iter(stems.values())).shape[1]
    # the offset is found and applied at the output's own rate, where codec
    # delays are whole samples (1105 at 48 kHz is 1015.2 at 44.1 kHz)
    rate = estimates.sample_rate
    mix_r = mix if rate == sr else resample(mix, sr, rate)
    total = np.zeros((n_ch, n), dtype=np.float64)
    for v in stems.values():
        total += v
    offset = _find_offset(total, mix_r, rate, sr, float(max_shift_ms), min_correlation, corrections)
    aligned = _placed(stems, offset, mix_r.shape[1], t, rate, sr, corrections)
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


def _check_search(max_shift_ms: float, min_correlation: float) -> None:
    if isinstance(max_shift_ms, bool) or not (
        isinstance(max_shift_ms, numbers.Real) and math.isfinite(max_shift_ms) and max_shift_ms >= 0
    ):
        raise InputError(f"max_shift_ms: expected a finite number ≥ 0 (ms), got {max_shift_ms!r}", field="max_shift_ms")
    if not (isinstance(min_correlation, numbers.Real) and -1.0 <= min_correlation <= 1.0):
        raise InputError(
            f"min_correlation: expected a number in [-1, 1], got {min_correlation!r}", field="min_correlation"
        )


def _on_channels(estimates: Stems, n_ch: int, corrections: dict[str, Any]) -> dict[str, np.ndarray]:
    """The stems as float32, finite, on the mixture's ``n_ch`` channels
    (``channel_fix`` recorded)."""
    stems = {k: np.asarray(v, dtype=np.float32) for k, v in estimates.items()}
    for k, v in stems.items():
        if not np.isfinite(v).all():
            raise ProviderOutputError(f"stem {k!r}: contains NaN/Inf samples", stem=k)
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
    return stems


def _find_offset(total: np.ndarray, mix_r: np.ndarray, rate: int, sr: int, max_shift_ms: float,
                 min_correlation: float, corrections: dict[str, Any]) -> int:
    """The offset (samples at ``rate``) where the stems' sum best matches the
    mixture (at ``rate``), recorded in ``corrections``;
    :class:`ProviderOutputError` when the match is too weak or inverted."""
    n = total.shape[1]
    max_shift = int(round(max_shift_ms * rate / 1000.0))
    lags, rho_all = _xcorr(total, mix_r, max_shift)
    i = int(np.argmax(rho_all)) if rho_all.any() else int(np.searchsorted(lags, 0))
    offset, rho = int(lags[i]), float(rho_all[i])
    to_ref = sr / rate
    corrections.update(
        input_samples=round(n * to_ref),
        offset_samples=round(offset * to_ref),
        offset_ms=1000.0 * offset / rate,
        correlation=rho,
        search_samples=round(max_shift * to_ref),
        at_search_limit=bool(max_shift > 0 and abs(offset) == max_shift),
    )
    if rate != sr:
        corrections["offset_samples_native"] = offset
    rho_min = float(rho_all.min())
    # the strongest match is a convincing polarity flip (periodic material
    # would otherwise be "aligned" half a period away)
    inverted = -rho_min > rho and -rho_min >= min_correlation
    if inverted or not rho >= min_correlation:
        where = f"at {corrections['offset_samples']} samples, search ±{corrections['search_samples']}"
        if inverted:
            msg = (
                f"polarity inverted: the normalised correlation reaches {rho_min:.3f}, stronger than "
                f"the best positive peak {rho:.3f} ({where}; threshold {min_correlation})"
            )
        else:
            msg = f"peak normalised correlation {rho:.3f} ({where}) is below the threshold {min_correlation}"
            if not total.any():
                msg = "the stems sum to silence; " + msg
        raise ProviderOutputError(
            f"cannot align the stems to the mixture: {msg}",
            correlation=rho,
            threshold=min_correlation,
            offset_samples=corrections["offset_samples"],
        )
    return offset


def _placed(stems: dict[str, np.ndarray], offset: int, t_r: int, t: int, rate: int, sr: int,
            corrections: dict[str, Any]) -> dict[str, np.ndarray]:
    """ŝ[n] ← ŝ[n + offset], fitted to the mixture's length ``t_r`` (at
    ``rate``), then resampled to ``sr`` and fitted to ``t`` samples."""
    n_ch, n = next(iter(stems.values())).shape
    pad_start = max(0, -offset)
    trim_start = max(0, offset)
    body = min(n - trim_start, t_r - pad_start)  # ≥ 1: the lags overlap
    pad_end = t_r - pad_start - body
    trim_end = n - trim_start - body

    def place(v: np.ndarray) -> np.ndarray:
        out = np.zeros((n_ch, t_r), dtype=np.float32)
        out[:, pad_start : pad_start + body] = v[:, trim_start : trim_start + body]
        if rate != sr:  # linear-phase, so no delay; length ceil(t_r·sr/rate) ≥ t
            out = resample(out, rate, sr)[:, :t]
            if out.shape[1] < t:
                out = np.pad(out, ((0, 0), (0, t - out.shape[1])))
        return out

    to_ref = sr / rate
    corrections.update(
        padded_samples=round((pad_start + pad_end) * to_ref),
        trimmed_samples=round((trim_start + trim_end) * to_ref),
    )
    return {k: place(v) for k, v in stems.items()}
