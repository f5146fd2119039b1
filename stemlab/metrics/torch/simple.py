"""The whole-track metrics of :mod:`stemlab.metrics.simple` in torch: CPU or
CUDA tensors, batched over items (tracks or chunks).

Every function takes ``references`` and ``estimates`` shaped ``(batch,
sources, channels, samples)`` (or ``(sources, channels, samples)``, then the
result has no batch axis) — the numpy functions' ``(n_sources, channels,
samples)`` with a leading batch axis — and returns one value per source,
``(batch, sources)``, as a tensor on the inputs' device. Nothing is copied
to the host and no value is read back: inputs are not checked for NaN/Inf
(a non-finite sample gives a NaN/Inf value instead of the numpy path's
:class:`~stemlab.errors.InputError`).

Definitions (see :mod:`stemlab.metrics.simple` and docs/metrics.md):

* ``usdr`` — ``10·log10((Σs² + ε)/(Σ(s − ŝ)² + ε))``, ε = 1e-8, sums in
  float64 (equal to the numpy path to ~1e-12 dB);
* ``usdr_mdx`` — the same with δ = 1e-7 on float32 samples and float32 sums
  (torch's summation order, not numpy's pairwise one: ≲ 1e-5 dB apart);
* ``si_sdr`` — MSST's ε placement, one α per source over all channels,
  ``α = (Σŝs + Nε)/(Σs² + Nε)``, ``10·log10(Σ(αs)²/(Σ(αs − ŝ)² + ε) + ε)``;
  the error summed directly (no cancellation), float64;
* ``sdr_gain`` — SDR after ``g = ⟨ŝ,s⟩/‖ŝ‖²`` on the estimate, float64;
* ``l1_freq`` — MSST's L1 magnitude-spectrogram score, float64;
* ``bleedless``/``fullness`` — MSST ``bleed_full`` in float32 (its
  precision; ``dtype=torch.float64`` for the numpy path's ``precision="float64"``).

NaN policy: the numpy path's — these metrics never mark anything NaN: a
silent reference gives usdr ``10·log10(ε/(Σŝ² + ε))`` and SI-SDR −80 dB, as
there.
"""

from __future__ import annotations

from typing import Any

import torch

from ...errors import InputError
from ..simple import MDX_DELTA, MSST_EPS, mel_filterbank

__all__ = [
    "TRACK_METRICS",
    "bleed_full",
    "bleedless",
    "fullness",
    "l1_freq",
    "sdr_gain",
    "si_sdr",
    "usdr",
    "usdr_mdx",
]

#: bytes of STFT intermediates per batch of rows (bounded memory)
_BUDGET = {"cpu": 256 << 20, "cuda": 2 << 30}


def _pair(references: torch.Tensor, estimates: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(batch, sources, channels, samples) views of both, and whether a batch
    axis was added; :class:`InputError` for other shapes."""
    if not isinstance(references, torch.Tensor) or not isinstance(estimates, torch.Tensor):
        raise InputError(f"{what}: references and estimates must be torch tensors", field="references")
    if references.dim() not in (3, 4) or references.shape != estimates.shape:
        raise InputError(f"{what}: expected equal (batch, sources, channels, samples) or (sources, channels, "
                         f"samples) shapes, got references {tuple(references.shape)}, estimates "
                         f"{tuple(estimates.shape)}", field="estimates")
    if references.device != estimates.device:
        raise InputError(f"{what}: references on {references.device}, estimates on {estimates.device}",
                         field="estimates")
    if references.shape[-1] == 0 or references.shape[-2] == 0 or references.shape[-3] == 0:
        raise InputError(f"{what}: empty input {tuple(references.shape)}", field="references")
    added = references.dim() == 3
    if added:
        references, estimates = references[None], estimates[None]
    return references, estimates, added


def _out(x: torch.Tensor, added: bool) -> torch.Tensor:
    return x[0] if added else x


def _sum(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over channels and samples of ``x·y`` (``x²`` without ``y``) in float64: (batch, sources)."""
    x64 = x.to(torch.float64)
    y64 = x64 if y is None else y.to(torch.float64)
    return torch.einsum("bsct,bsct->bs", x64, y64)


def _db_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(num / den)


@torch.no_grad()
def usdr(references: torch.Tensor, estimates: torch.Tensor, *, eps: float = MSST_EPS) -> torch.Tensor:
    """MSST/MDX "uSDR" in dB, float64: ``10·log10((Σs² + ε)/(Σ(s − ŝ)² + ε))``."""
    r, e, added = _pair(references, estimates, "usdr")
    d = e.to(torch.float64) - r.to(torch.float64)
    return _out(_db_ratio(_sum(r) + eps, _sum(d) + eps), added)


@torch.no_grad()
def usdr_mdx(references: torch.Tensor, estimates: torch.Tensor, *, delta: float = MDX_DELTA,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """MDX 2021 / SDX 2023 global SDR in dB: δ = 1e-7, samples and sums in
    ``dtype`` (float32 as the challenge evaluator); returned as float64."""
    r, e, added = _pair(references, estimates, "usdr_mdx")
    r32, e32 = r.to(dtype), e.to(dtype)
    num = (r32 * r32).sum((-2, -1)) + delta
    d = r32 - e32
    den = (d * d).sum((-2, -1)) + delta
    return _out((10 * torch.log10(num / den)).to(torch.float64), added)


@torch.no_grad()
def si_sdr(references: torch.Tensor, estimates: torch.Tensor, *, eps: float = MSST_EPS,
           zero_mean: bool = False) -> torch.Tensor:
    """Scale-invariant SDR in dB (MSST's placement of ε), float64."""
    r, e, added = _pair(references, estimates, "si_sdr")
    r64, e64 = r.to(torch.float64), e.to(torch.float64)
    if zero_mean:
        r64 = r64 - r64.mean(-1, keepdim=True)
        e64 = e64 - e64.mean(-1, keepdim=True)
    n = r.shape[-2] * r.shape[-1]
    alpha = (_sum(e64, r64) + n * eps) / (_sum(r64) + n * eps)
    target = alpha[..., None, None] * r64
    tt = _sum(target)
    err = _sum(target - e64)
    return _out(10.0 * torch.log10(tt / (err + eps) + eps), added)


@torch.no_grad()
def sdr_gain(references: torch.Tensor, estimates: torch.Tensor, *, eps: float = MSST_EPS) -> torch.Tensor:
    """SDR in dB after the least-squares scalar gain ``g = ⟨ŝ,s⟩/‖ŝ‖²`` (0
    for a silent estimate) on the estimate, float64."""
    r, e, added = _pair(references, estimates, "sdr_gain")
    r64, e64 = r.to(torch.float64), e.to(torch.float64)
    ee = _sum(e64)
    g = torch.where(ee > 0, _sum(e64, r64) / torch.where(ee > 0, ee, 1.0), 0.0)
    dd = _sum(r64 - g[..., None, None] * e64)
    return _out(_db_ratio(_sum(r64) + eps, dd + eps), added)


def _rows_step(n_rows: int, per_row: int, device: torch.device) -> int:
    return max(1, min(n_rows, _BUDGET.get(device.type, _BUDGET["cuda"]) // max(per_row, 1)))


@torch.no_grad()
def l1_freq(references: torch.Tensor, estimates: torch.Tensor, *, n_fft: int = 2048, hop: int = 1024) -> torch.Tensor:
    """MSST's L1 distance of magnitude spectrograms as a 0–100 score:
    rectangular window, centred with reflect padding, float64;
    ``100 / (1 + 10·mean| |Ŝ| − |S| |)`` over channels, bins and frames."""
    r, e, added = _pair(references, estimates, "l1_freq")
    nb, ns, C, T = r.shape
    if T <= n_fft // 2:
        raise InputError(f"references: l1_freq needs more than {n_fft // 2} samples (reflect padding), got {T}",
                         field="references")
    rr = r.reshape(nb * ns * C, T).to(torch.float64)
    ee = e.reshape(nb * ns * C, T).to(torch.float64)
    frames = 1 + T // hop
    F = n_fft // 2 + 1
    step = _rows_step(rr.shape[0], frames * F * 16 * 4, r.device)
    ones = torch.ones(n_fft, dtype=torch.float64, device=r.device)  # rectangular, as MSST's window=None
    tot = []
    for a in range(0, rr.shape[0], step):
        mr = torch.stft(rr[a : a + step], n_fft, hop, window=ones, center=True, pad_mode="reflect",
                        return_complex=True).abs()
        me = torch.stft(ee[a : a + step], n_fft, hop, window=ones, center=True, pad_mode="reflect",
                        return_complex=True).abs()
        tot.append((me - mr).abs().sum((-2, -1)))
    total = torch.cat(tot).reshape(nb, ns, C).sum(-1)
    L = 10.0 * total / (C * F * frames)
    return _out(100.0 / (1.0 + L), added)


def _mel_db(x: torch.Tensor, mel: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int,
            top_db: float) -> torch.Tensor:
    """Mel dB spectrograms (items, C, n_mels, frames) of ``x`` (items, C, T),
    each item floored ``top_db`` below its own maximum over channels, bands
    and frames (torchaudio ``AmplitudeToDB`` on a 3-D tensor, as MSST)."""
    n, C, T = x.shape
    rows = x.reshape(n * C, T)
    frames = 1 + T // hop
    step = _rows_step(rows.shape[0], frames * (n_fft // 2 + 1) * x.element_size() * 6, x.device)
    parts = []
    for a in range(0, rows.shape[0], step):
        spec = torch.stft(rows[a : a + step], n_fft=n_fft, hop_length=hop, window=window, center=True,
                          pad_mode="constant", return_complex=True)
        parts.append(torch.matmul(mel, spec.abs()))
        del spec
    m = torch.cat(parts).reshape(n, C, mel.shape[0], -1)
    d = 20.0 * torch.log10(torch.clamp(m, min=1e-10))
    return torch.maximum(d, d.amax(dim=(-3, -2, -1), keepdim=True) - top_db)


@torch.no_grad()
def bleed_full(references: torch.Tensor, estimates: torch.Tensor, sample_rate: int = 44100, *, n_fft: int = 4096,
               hop: int = 1024, n_mels: int = 512, top_db: float = 80.0,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bleedless, fullness)`` per source, MSST's ``bleed_full``: inputs
    rounded to float32 (MSST's cast), then STFT (periodic Hann, zero-padded
    centring), librosa's Slaney mel filters, dB floored ``top_db`` below each
    source's maximum, ``Δ = D_est − D_ref``, ``P``/``Q`` the means of the
    positive/negative Δ (0 when none; the means accumulated in float64),
    ``100/(1 + P)`` and ``100/(1 − Q)``. ``dtype``: the spectrograms'
    precision (float32: MSST's; float64: the numpy path's ``precision="float64"``)."""
    r, e, added = _pair(references, estimates, "bleed_full")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"sample_rate: expected a positive int (Hz), got {sample_rate!r}", field="sample_rate")
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"bleed_full: dtype must be torch.float32 or torch.float64, got {dtype}", field="dtype")
    nb, ns, C, T = r.shape
    dev = r.device
    mel = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)).to(device=dev, dtype=dtype)
    window = torch.hann_window(n_fft, dtype=torch.float32, device=dev).to(dtype)
    r32 = r.to(torch.float32).to(dtype).reshape(nb * ns, C, T)
    e32 = e.to(torch.float32).to(dtype).reshape(nb * ns, C, T)
    diff = _mel_db(e32, mel, window, n_fft, hop, top_db) - _mel_db(r32, mel, window, n_fft, hop, top_db)
    diff = diff.flatten(1)
    pos, neg = diff > 0, diff < 0
    zero = torch.zeros((), dtype=diff.dtype, device=dev)
    d64 = diff.to(torch.float64)
    p = torch.where(pos, d64, zero).sum(1) / pos.sum(1).clamp(min=1)
    q = torch.where(neg, d64, zero).sum(1) / neg.sum(1).clamp(min=1)
    bleed = (100.0 / (1.0 + p)).reshape(nb, ns)
    full = (100.0 / (1.0 - q)).reshape(nb, ns)
    return _out(bleed, added), _out(full, added)


def bleedless(references: torch.Tensor, estimates: torch.Tensor, sample_rate: int = 44100,
              **options: Any) -> torch.Tensor:
    """MSST bleedless (0–100, higher = less bleed from other sources)."""
    return bleed_full(references, estimates, sample_rate, **options)[0]


def fullness(references: torch.Tensor, estimates: torch.Tensor, sample_rate: int = 44100,
             **options: Any) -> torch.Tensor:
    """MSST fullness (0–100, higher = less of the target missing)."""
    return bleed_full(references, estimates, sample_rate, **options)[1]


#: the whole-track metrics the torch backend computes, by registry name;
#: ``True``: the function takes ``sample_rate``
TRACK_METRICS: dict[str, tuple[Any, bool]] = {
    "usdr": (usdr, False),
    "usdr_mdx": (usdr_mdx, False),
    "si_sdr": (si_sdr, False),
    "sdr_gain": (sdr_gain, False),
    "l1_freq": (l1_freq, False),
    "bleedless": (bleedless, True),
    "fullness": (fullness, True),
}
