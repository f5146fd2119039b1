"""The torch backend of stemlab's metrics: the same metrics, names,
aggregation and NaN policy as the numpy path, on CPU or CUDA tensors,
batched over items (tracks or validation chunks).

Training-loop API: :func:`evaluate` takes tensors already on the device and
returns a dict of tensors on that device — no host copy, no ``.item()``::

    from stemlab.metrics.torch import evaluate

    def validation_step(self, batch, batch_idx):          # Lightning / MSST style
        mix, refs = batch                                 # refs: (B, sources, channels, samples)
        est = self.model(mix)                             # same shape, same device
        m = evaluate(est, refs, metrics=("sdr_bsseval_v4", "usdr", "si_sdr"), sample_rate=44100)
        for k, v in m.items():                            # v: (B, sources) tensors on the GPU
            self.log(f"val/{k}", v.nanmean())

Shapes: ``(batch, sources, channels, samples)`` — the numpy functions'
``(n_sources, channels, samples)`` with a leading batch axis — or
``(sources, channels, samples)`` (results then have no batch axis). Each
item's sources are evaluated jointly (one museval group, as
:func:`stemlab.metrics.bsseval.bss_eval_v4` on that item).

Modules: :mod:`.bsseval` (BSSEval v4, full and SDR-only),
:mod:`.simple` (usdr, usdr_mdx, si_sdr, sdr_gain, l1_freq,
bleedless/fullness). Importing this package imports torch; the rest of
:mod:`stemlab.metrics` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...errors import InputError
from . import simple
from .bsseval import TorchBssEval, bss_eval_v4, sdr_frames
from .simple import TRACK_METRICS

__all__ = [
    "FRAMEWISE_METRICS",
    "METRICS",
    "TorchBssEval",
    "bss_eval_v4",
    "evaluate",
    "nanmedian",
    "sdr_frames",
    "simple",
]

#: the framewise (BSSEval) metrics and the rows they produce (registry names)
FRAMEWISE_METRICS: dict[str, tuple[str, ...]] = {
    "bsseval_v4": ("sdr_bsseval_v4", "isr_bsseval_v4", "sir_bsseval_v4", "sar_bsseval_v4"),
    "sdr_bsseval_v4": ("sdr_bsseval_v4",),
}
#: every metric name :func:`evaluate` accepts (the registry's, less log_wmse)
METRICS: tuple[str, ...] = tuple(FRAMEWISE_METRICS) + tuple(TRACK_METRICS)
_AGGREGATIONS = ("median_frames", "mean_frames")


def nanmedian(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``np.nanmedian`` along ``dim``: the mean of the two middle values for an
    even count (``torch.nanmedian`` returns the lower one), NaN when every
    value is NaN."""
    x = x.movedim(dim, -1)
    valid = ~torch.isnan(x)
    n = valid.sum(-1, keepdim=True)
    s = torch.sort(torch.where(valid, x, torch.full_like(x, torch.inf)), dim=-1).values
    lo = torch.gather(s, -1, ((n - 1).clamp(min=0)) // 2)
    hi = torch.gather(s, -1, (n // 2).clamp(max=x.shape[-1] - 1))
    med = (lo + hi) / 2
    return torch.where(n > 0, med, torch.full_like(med, torch.nan)).squeeze(-1)


def _stored(v: torch.Tensor, rounding: bool) -> torch.Tensor:
    """museval's TrackStore values: ±inf → NaN, rounded to 5 decimals."""
    v = torch.where(torch.isinf(v), torch.full_like(v, torch.nan), v)
    return torch.round(v, decimals=5) if rounding else v


def _names(metrics: Sequence[str] | str) -> list[str]:
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    names = list(dict.fromkeys(metrics))
    if not names:
        raise InputError("torch evaluate: no metrics requested", field="metrics")
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise InputError(f"torch evaluate: metric(s) {bad} have no torch implementation; valid: {list(METRICS)}",
                         field="metrics")
    return names


def evaluate(
    estimates: torch.Tensor,
    references: torch.Tensor,
    metrics: Sequence[str] | str = ("bsseval_v4", "usdr", "si_sdr"),
    *,
    sample_rate: int = 44100,
    win: int | None = None,
    hop: int | None = None,
    nan_policy: str = "museval",
    aggregation: str = "median_frames",
    filters_len: int = 512,
    dtype: Any = None,
    solver: str = "auto",
    framewise: bool = False,
    museval_rounding: bool = True,
) -> dict[str, torch.Tensor]:
    """Metrics of ``estimates`` against ``references`` (note the order:
    estimates first, as ``model(x)`` outputs and torchmetrics take them),
    both ``(batch, sources, channels, samples)`` or ``(sources, channels,
    samples)`` tensors on one device.

    Returns ``{row: tensor (batch, sources)}`` on the inputs' device, float64:
    the registry's row names — ``sdr_bsseval_v4`` (and ``isr_``/``sir_``/
    ``sar_bsseval_v4`` for ``bsseval_v4``) aggregated over frames as the
    numpy path's rows (``aggregation``: ``median_frames``, museval's, or
    ``mean_frames``; frames rounded to 5 decimals and ±inf dropped as
    museval's TrackStore unless ``museval_rounding=False``; NaN frames
    skipped; NaN when every frame is), and one value per source for the
    whole-track metrics (``usdr``, ``usdr_mdx``, ``si_sdr``, ``sdr_gain``,
    ``l1_freq``, ``bleedless``, ``fullness``). ``framewise=True`` adds the
    raw frame values ``SDR``/``ISR``/``SIR``/``SAR`` (batch, sources, nwin)
    (+inf where a denominator is 0, NaN on silent frames).

    ``win``/``hop``: frames in samples (default one second at
    ``sample_rate``); ``nan_policy``, ``filters_len``: as the numpy path;
    ``dtype``: BSSEval's frame precision (default the inputs'; see
    :mod:`.bsseval`); ``solver``: BSSEval's filter solver (``auto``: block
    Levinson on CPU, batched LU on CUDA). No value is read back to the host
    unless a Levinson/Cholesky solve breaks down and its fallback is needed
    (one flag read; ``solver="lu"`` never reads)."""
    names = _names(metrics)
    if aggregation not in _AGGREGATIONS:
        raise InputError(f"torch evaluate: aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}",
                         field="aggregation")
    win_n = int(sample_rate if win is None else win)
    hop_n = int(win_n if hop is None else hop)
    out: dict[str, torch.Tensor] = {}
    fw = [m for m in names if m in FRAMEWISE_METRICS]
    if fw:
        full = "bsseval_v4" in fw
        res = bss_eval_v4(references, estimates, win_n, hop_n, filters_len=filters_len, nan_policy=nan_policy,
                          full=full, dtype=dtype, solver=solver)
        frames = res.metrics()
        rows = FRAMEWISE_METRICS["bsseval_v4" if full else "sdr_bsseval_v4"]
        for row in rows:
            v = _stored(frames[row.split("_", 1)[0].upper()], museval_rounding)
            out[row] = nanmedian(v) if aggregation == "median_frames" else v.nanmean(-1)
        if framewise:
            out.update(frames)
    for m in names:
        if m in TRACK_METRICS:
            fn, needs_rate = TRACK_METRICS[m]
            out[m] = fn(references, estimates, sample_rate) if needs_rate else fn(references, estimates)
    return out
