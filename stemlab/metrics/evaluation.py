"""Track-level evaluation: every metric under an explicit name, with its
aggregation, from one call.

>>> ev = evaluate(track.references, estimates, 44100, metrics=("bsseval_v4", "usdr"))
>>> ev.rows[0]
{'target': 'vocals', 'metric': 'sdr_bsseval_v4', 'value': 6.1, 'aggregation': 'median_frames', ...}
>>> json.dumps(ev.museval_json())          # museval's TrackStore schema

Names (never a bare "SDR"):

* ``bsseval_v4`` → rows ``sdr_bsseval_v4``, ``isr_bsseval_v4``,
  ``sir_bsseval_v4``, ``sar_bsseval_v4``, each once with aggregation
  ``median_frames`` (museval's number) and once with ``mean_frames``;
  per-frame values go to :attr:`TrackEvaluation.frames` (metric ``SDR`` …).
* ``sdr_bsseval_v4`` → the SDR rows only, through the filter-free path (the
  same numbers as museval's SDR, ~100× faster).
* every whole-track metric (``usdr``, ``si_sdr`` …) → one row per target,
  aggregation ``track``.

Which names exist, their rows, units and kinds: :mod:`stemlab.metrics.registry`.

Inputs are read block by block and never copied whole (no float64 copies,
no stacks): arrays, Stems or mappings of lazy sources
(:mod:`stemlab.metrics.sources`, e.g. ``AudioFileSource`` to score files on
disk in O(block) memory). museval's conventions are kept: estimates are
zero-padded/truncated to the references' length (a ``PaddedSource``);
targets are evaluated jointly, except that when both
``vocals`` and ``accompaniment`` are scored, {vocals, accompaniment} is its
own 2-source problem and vocals' score comes from it; frame values are
stored rounded to 5 decimals with ±inf as NaN, and the frame aggregation
skips NaN frames — which :attr:`rows` count in ``frames_dropped``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import ACCOMPANIMENT, MUSDB_TARGETS, Stems, accompaniment_parts
from . import bsseval as B
from . import registry as R
from . import simple as SM
from . import sources as S
from .devices import torch_device
from .registry import DEFAULT_METRICS

__all__ = [
    "BSSEVAL_METRICS",
    "NAN_POLICIES",
    "TrackEvaluation",
    "evaluate",
    "evaluation_groups",
    "with_accompaniment",
    "aggregate_tracks",
    "AGGREGATIONS",
    "quantize",
    "DEFAULT_METRICS",
]

#: per-frame BSSEval criteria, museval's names and JSON key order
BSSEVAL_METRICS: tuple[str, ...] = ("SDR", "SIR", "SAR", "ISR")
NAN_POLICIES = ("museval", "target")
#: musdb's target order (track.targets): accompaniment and linear_mix last
_MUSDB_ORDER = MUSDB_TARGETS + ("accompaniment", "linear_mix")
#: bss_eval_v4's ``filter_gain`` above which ISR/SIR/SAR are flagged as set by
#: rounding — a heuristic (measured: ≤ 170 on the parity-tested inputs and
#: 16-bit MUSDB18, ~10³ on 16-bit band-limited noise, 2·10⁴
#: on float-decoded MUSDB18 AAC against an estimate with full-band noise)
ILL_CONDITIONED_GAIN = 5e3


# ------------------------------------------------------------------ results

@dataclass
class TrackEvaluation:
    """Scores of one track.

    ``rows``: tidy dicts ``target, metric, value, aggregation, unit,
    frames_used, frames_dropped``; ``frames``: per-frame BSSEval values
    ``target, metric (SDR/ISR/SIR/SAR), frame, time, duration, value`` (time
    and duration in seconds; ±inf stored as NaN as museval does);
    ``framewise[target][metric]``: the unrounded frame values (``inf`` kept);
    ``notes``: what was adjusted or could not be scored, in words."""

    targets: tuple[str, ...]
    sample_rate: int
    win: float
    hop: float
    nan_policy: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    framewise: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    frame_starts: np.ndarray | None = None  # samples
    frame_stops: np.ndarray | None = None
    json_order: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_bsseval(self) -> bool:
        return any(set(m) >= set(BSSEVAL_METRICS) for m in self.framewise.values())

    def value(self, target: str, metric: str, aggregation: str | None = None) -> float:
        """One row's value (first match; ``aggregation`` None = any)."""
        for r in self.rows:
            if r["target"] == target and r["metric"] == metric and (aggregation in (None, r["aggregation"])):
                return float(r["value"])
        raise KeyError(f"no row for target={target!r} metric={metric!r} aggregation={aggregation!r}")

    def museval_json(self) -> dict[str, Any] | None:
        """museval's TrackStore JSON (``{"targets": [{"name", "frames": [{"time",
        "duration", "metrics": {"SDR", "SIR", "SAR", "ISR"}}]}]}``), values
        rounded to 5 decimals, ±inf as NaN. None without the full BSSEval."""
        if not self.has_bsseval:
            return None
        targets = []
        for name in self.json_order:
            fw = self.framewise[name]
            n = fw["SDR"].shape[0]
            frames = [
                {
                    "time": i * self.hop,
                    "duration": self.win,
                    "metrics": {m: B.museval_round(float(fw[m][i])) for m in BSSEVAL_METRICS},
                }
                for i in range(n)
            ]
            targets.append({"name": name, "frames": frames})
        return {"targets": targets, "museval_version": "0.4.1", "generator": "stemlab"}

    def to_frame(self):
        """``rows`` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


# ------------------------------------------------------------------ inputs

def with_accompaniment(stems: Mapping[str, Any], vocals: str = "vocals") -> dict[str, Any]:
    """A copy of ``stems`` with ``accompaniment`` = musdb's sum of the
    non-vocal stems (:func:`stemlab.types.accompaniment_parts`: drums + bass
    + other), unless present or no vocals. The sum is a
    :class:`~stemlab.metrics.sources.SumSource`: the float64 sum in the same
    order as :func:`stemlab.types.sum_stems`, computed per block when read
    and never materialised — nor rounded to float32, so BSSEval sees the
    exact sum of its parts."""
    out = dict(stems)
    parts = accompaniment_parts(out, vocals)
    if parts:
        out[ACCOMPANIMENT] = S.SumSource([out[n] for n in parts])
    return out


def _array_items(x: Any, what: str, names: Sequence[str] | None) -> list[tuple[Any, Any]]:
    """A ``(n_sources, channels, samples)`` (or ``(n_sources, samples)``)
    array as ``(name, (channels, samples) view)`` pairs."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists
        raise InputError(f"{what}: cannot be read as an array ({exc})", field=what) from None
    if arr.dtype == object:
        raise InputError(f"{what}: ragged input; expected (n_sources, channels, samples) with one length", field=what)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise InputError(f"{what}: expected (n_sources, channels, samples), got shape {arr.shape}", field=what)
    nm = list(names) if names is not None else [f"source{i}" for i in range(arr.shape[0])]
    if len(nm) != arr.shape[0]:
        raise InputError(f"{what}: {arr.shape[0]} sources but {len(nm)} names {nm}", field=what)
    return [(nm[i], arr[i]) for i in range(arr.shape[0])]


def _checked_source(v: Any, fld: str) -> Any:
    """One ``(channels, samples)`` source (a 1-D array becomes one channel),
    numeric, non-empty and finite (checked block by block); not copied."""
    a = v if (S.is_source(v) and not isinstance(v, np.ndarray)) else np.asarray(v)
    dt = np.dtype(getattr(a, "dtype", np.float64))
    if dt == np.dtype(object) or not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
        raise InputError(f"{fld}: expected numeric samples, got dtype {dt}", field=fld)
    if isinstance(a, np.ndarray) and a.ndim == 1:
        a = a[None, :]
    shape = tuple(getattr(a, "shape", ()))
    if len(shape) != 2:
        raise InputError(f"{fld}: expected (channels, samples), got shape {shape}", field=fld)
    if shape[1] == 0 or shape[0] == 0:
        raise InputError(f"{fld}: empty audio, shape {shape}", field=fld)
    ok, bad = S.all_finite(a)
    if not ok:
        raise InputError(f"{fld}: {bad} NaN/Inf sample(s); expected finite audio", field=fld)
    return a


def _check_rate(rate: int, sample_rate: int | None, what: str) -> None:
    if sample_rate is not None and int(rate) != int(sample_rate):
        raise InputError(f"{what}: sample rate {rate} Hz, expected {sample_rate} Hz", field=f"{what}.sample_rate")


def _sources_rate(out: Mapping[str, Any], what: str) -> int | None:
    """The rate (Hz) lazy sources know (``AudioFileSource``), if any."""
    rates = {int(r) for r in (getattr(v, "sample_rate", None) for v in out.values()) if r is not None}
    if len(rates) > 1:
        raise InputError(f"{what}: sources at different sample rates {sorted(rates)} Hz", field=f"{what}.sample_rate")
    return rates.pop() if rates else None


def _as_named(
    x: Any, what: str, sample_rate: int | None, names: Sequence[str] | None
) -> tuple[dict[str, Any], int | None]:
    """Stems / mapping of arrays or sources / (n_src, C, T) array →
    ({name: (C, T) source}, rate in Hz). Nothing is copied: arrays stay as
    given (views), lazy sources stay lazy; every sample is checked finite,
    block by block."""
    rate = None
    if isinstance(x, Stems):
        rate = x.sample_rate
        items = list(x.items())
    elif isinstance(x, Mapping):
        items = list(x.items())
    else:
        items = _array_items(x, what, names)
    if not items:
        raise InputError(f"{what}: no sources given", field=what)
    out = {str(k): _checked_source(v, f"{what}[{k!r}]") for k, v in items}
    if rate is not None:
        _check_rate(rate, sample_rate, what)
    else:
        rate = _sources_rate(out, what)
        if rate is not None:
            _check_rate(rate, sample_rate, what)
    return out, rate


def quantize(x: np.ndarray, bits: int = 16) -> np.ndarray:
    """Round to ``bits``-bit PCM (full scale ±1, clipped), float64 out
    (:class:`~stemlab.metrics.sources.QuantizedSource` does it per block)."""
    q = float(2 ** (bits - 1))
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * q), -q, q - 1) / q


def evaluation_groups(targets: Sequence[str]) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    """museval's ``eval_mus_track`` grouping. Returns the jointly evaluated
    groups and, per target, the index of the group its score comes from.

    All targets but ``accompaniment`` form one group (if ≥ 2); when both
    ``vocals`` and ``accompaniment`` are present they form their own group and
    vocals is scored there. stemlab extension: a group of one (museval
    refuses, "at least two estimates") is evaluated alone — SIR is then
    undefined (NaN)."""
    ts = list(targets)
    has_acc = "vocals" in ts and "accompaniment" in ts
    main = [t for t in ts if not (has_acc and t == "accompaniment")]
    groups: list[tuple[str, ...]] = []
    source: dict[str, int] = {}
    if len(main) >= 2 or (main and not has_acc):
        groups.append(tuple(main))
        for t in main:
            source[t] = 0
    if has_acc:
        groups.append(("vocals", "accompaniment"))
        source["vocals"] = len(groups) - 1
        source["accompaniment"] = len(groups) - 1
    return groups, source


def _order(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [n for n in _MUSDB_ORDER if n in names]
    return known + [n for n in names if n not in known]


# ------------------------------------------------------------------ evaluate

def evaluate(
    references: Stems | Mapping[str, np.ndarray] | np.ndarray,
    estimates: Stems | Mapping[str, np.ndarray] | np.ndarray,
    sample_rate: int | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    win: float = 1.0,
    hop: float = 1.0,
    nan_policy: str = "museval",
    targets: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    filters_len: int = 512,
    reference_bits: int | None = None,
    warn: bool = True,
    device: str | None = "cpu",
) -> TrackEvaluation:
    """Score ``estimates`` against ``references``.

    ``warn=False``: the adjustments (silent stems, NaN frames …) are only
    recorded in ``notes``, not also raised as ``RuntimeWarning`` (the harness
    records them as NaN reasons; a process-wide warnings filter is not
    thread-safe when two tracks are scored at once).

    ``references``/``estimates``: :class:`Stems`, ``{name: (channels,
    samples)}`` arrays or lazy sources (:mod:`stemlab.metrics.sources`; an
    ``AudioFileSource`` also gives the rate), or ``(n_sources, channels,
    samples)`` arrays (``names`` gives the array sources' names, default
    ``source0`` …); float32 or float64 samples, read a block at a time and
    upcast per block to float64. ``sample_rate`` in Hz
    (taken from Stems when None). ``metrics``: names declared in
    :mod:`stemlab.metrics.registry` (a list or a comma-separated string).
    ``win``/``hop`` in seconds (museval: 1 s).
    ``nan_policy``: ``museval`` (a frame where any reference or estimate of
    the group is silent is NaN for every target) or ``target`` (only where the
    target's own reference or estimate is silent). ``targets``: which to
    score (default every estimate with a reference; ``accompaniment`` is
    derived from the references as drums + bass + other when absent).
    ``reference_bits``: round the references to this many bits (16: what
    musdb/stempeg hand museval, ffmpeg decoding AAC to 16-bit PCM) — see
    docs/metrics.md, "Decoders and ill-conditioned references".
    ``device``: ``"cpu"`` (default: numpy), ``"torch"``/``"torch:cpu"`` or
    ``"cuda"``/``"cuda:N"`` — the torch backend (:mod:`stemlab.metrics.devices`):
    the same numbers (float64) for BSSEval and the whole-track metrics it
    implements, the sources read whole onto the device."""
    specs = R.check_metrics(metrics, "evaluate")
    dev = torch_device(device)
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"evaluate: nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}", field="nan_policy")
    notes: list[str] = []  # adjustments worth a warning
    info_notes: list[str] = []  # routine conventions, recorded only
    refs, ests, rate = _inputs(references, estimates, sample_rate, names)
    for nm, v in (("win", win), ("hop", hop)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InputError(f"evaluate: {nm} must be a positive number of seconds, got {v!r}", field=nm)
    if reference_bits is not None:
        refs, note = _quantized(refs, reference_bits)
        info_notes.append(note)
    C, T = _layout(refs)
    refs, ests, sel = _select_targets(refs, ests, targets, info_notes)
    _fit_estimates(ests, sel, C, T, notes)
    win_n, hop_n = int(win * rate), int(hop * rate)
    if win_n < 1 or hop_n < 1:
        raise InputError(f"evaluate: win/hop of {win}/{hop} s are under one sample at {rate} Hz", field="win")
    notes += _signal_notes(refs, ests, sel, T, win_n, nan_policy)

    ev = TrackEvaluation(tuple(sel), rate, float(win), float(hop), nan_policy, notes=info_notes + notes)
    ev.info.update({"samples": T, "channels": C, "win_samples": win_n, "hop_samples": hop_n,
                    "device": "numpy" if dev is None else str(dev)})
    ev.frame_starts, ev.frame_stops = B.framing(T, win_n, hop_n)
    framewise = [s for s in specs if s.kind == "framewise"]
    if framewise:
        _bsseval(ev, refs, ests, sel, win_n, hop_n, rows=_frame_rows(framewise), filters_len=filters_len,
                 device=dev)
    _track_rows(ev, [s for s in specs if s.kind == "track"], refs, ests, sel, rate, device=dev)
    for n in (notes + [x for x in ev.notes if x.startswith("group ")]) if warn else ():
        warnings.warn(f"stemlab.metrics: {n}", RuntimeWarning, stacklevel=2)
    return ev


def _inputs(references: Any, estimates: Any, sample_rate: int | None,
            names: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, Any], int]:
    """References and estimates as named sources, and the rate (Hz) they share."""
    refs, r_rate = _as_named(references, "references", sample_rate, names)
    ests, e_rate = _as_named(estimates, "estimates", sample_rate, names)
    rate = sample_rate if sample_rate is not None else (r_rate or e_rate)
    if rate is None:
        raise InputError("evaluate: sample_rate is required for array inputs", field="sample_rate")
    if r_rate is not None and e_rate is not None and r_rate != e_rate:
        raise InputError(f"evaluate: estimates are at {e_rate} Hz, references at {r_rate} Hz; resample first "
                         "(stemlab.metrics.align)", field="estimates.sample_rate")
    rate = int(rate)
    if rate <= 0:
        raise InputError(f"evaluate: sample_rate must be positive (Hz), got {rate}", field="sample_rate")
    return refs, ests, rate


def _quantized(refs: Mapping[str, Any], reference_bits: int) -> tuple[dict[str, Any], str]:
    b = int(reference_bits)
    if not 2 <= b <= 32:
        raise InputError(f"evaluate: reference_bits must be in 2..32, got {reference_bits!r}",
                         field="reference_bits")
    return {k: S.QuantizedSource(a, b) for k, a in refs.items()}, f"references rounded to {b}-bit PCM"


def _layout(refs: Mapping[str, Any]) -> tuple[int, int]:
    """The references' one channel count and one length (samples)."""
    lens = {k: S.source_shape(a)[1] for k, a in refs.items()}
    if len(set(lens.values())) != 1:
        raise InputError(
            f"references: stems differ in length {lens} (samples); expected one length", field="references"
        )
    chans = {k: S.source_shape(a)[0] for k, a in refs.items()}
    if len(set(chans.values())) != 1:
        raise InputError(f"references: stems differ in channel count {chans}", field="references")
    return next(iter(chans.values())), next(iter(lens.values()))


def _select_targets(refs: dict[str, Any], ests: dict[str, Any], targets: Sequence[str] | None,
                    info_notes: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The targets to score (musdb order) and the sources with the
    accompaniment derived where the convention asks for it."""
    if "accompaniment" in ests and "accompaniment" not in refs and "vocals" in refs:
        refs = with_accompaniment(refs)
        info_notes.append("reference accompaniment = sum of the non-vocal references (musdb convention)")
    if targets is None:
        sel = [t for t in _order(ests) if t in refs]
        if not sel:
            raise InputError(f"evaluate: no estimate matches a reference; estimates {list(ests)}, "
                             f"references {list(refs)}", field="estimates")
        skipped = [t for t in ests if t not in refs]
        if skipped:
            info_notes.append(f"estimates without a reference not scored: {skipped}")
        return refs, ests, sel
    return _chosen_targets(refs, ests, list(dict.fromkeys(targets)), info_notes)


def _chosen_targets(refs: dict[str, Any], ests: dict[str, Any], sel: list[str],
                    info_notes: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Targets named by the caller: each needs a reference and an estimate
    (an accompaniment is derived from vocals and the rest where missing)."""
    if "accompaniment" in sel:
        if "accompaniment" not in refs and "vocals" in refs:
            refs = with_accompaniment(refs)
        if "accompaniment" not in ests and "vocals" in ests:
            ests = with_accompaniment(ests)
            info_notes.append("estimate accompaniment = sum of the non-vocal estimates")
    for t in sel:
        if t not in refs:
            raise InputError(f"evaluate: target {t!r} has no reference; have {list(refs)}", field="targets")
        if t not in ests:
            raise InputError(f"evaluate: target {t!r} has no estimate; have {list(ests)}", field="targets")
    return refs, ests, _order(sel)


def _fit_estimates(ests: dict[str, Any], sel: list[str], C: int, T: int, notes: list[str]) -> None:
    """Estimates: channels must match; the length follows the references
    (zero-padded or truncated, as museval does) — in place."""
    for t in sel:
        c_est, t_est = S.source_shape(ests[t])
        if c_est != C:
            raise InputError(f"estimates[{t!r}]: {c_est} channel(s), references have {C}; fix the layout "
                             "first (stemlab.metrics.align)", field=f"estimates[{t!r}]")
        if t_est != T:
            notes.append(f"estimate {t!r} has {t_est} samples, references {T}: "
                         f"{'zero-padded' if t_est < T else 'truncated'} as museval does")
            ests[t] = S.PaddedSource(ests[t], T)


def _signal_notes(refs: Mapping[str, Any], ests: Mapping[str, Any], sel: list[str], T: int, win_n: int,
                  nan_policy: str) -> list[str]:
    """Warnings about a signal shorter than one window and silent stems."""
    notes = []
    if T < win_n:
        notes.append(f"signal ({T} samples) is shorter than one window ({win_n}): one frame covers the whole "
                     "signal (as museval)")
    group = nan_policy == "museval"
    for t in sel:
        if not S.any_nonzero(refs[t]):
            notes.append(f"reference {t!r} is silent over the whole track: its frames are NaN"
                         + (" — and, by museval's rule, every target's frames in its group" if group else ""))
        if not S.any_nonzero(ests[t]):
            notes.append(f"estimate {t!r} is silent over the whole track: its BSSEval frames are NaN"
                         + (" — and every target's frames in its group" if group else ""))
    return notes


def _frame_rows(specs: Sequence[R.Metric]) -> list[tuple[str, str, str]]:
    """``(row name, frame criterion, unit)`` of the framewise metrics asked
    for, each row once, in declaration order."""
    out: dict[str, tuple[str, str, str]] = {}
    for s in specs:
        for row, crit in zip(s.rows, s.criteria):
            out.setdefault(row, (row, crit, s.unit))
    return list(out.values())


def _track_rows(ev: TrackEvaluation, specs: Sequence[R.Metric], refs: Mapping[str, Any], ests: Mapping[str, Any],
                sel: list[str], rate: int, *, device: Any = None) -> None:
    """Rows of the whole-track metrics. The ``streaming`` ones read the
    sources block by block (:func:`~stemlab.metrics.simple.stream_metrics`,
    their passes shared); the others need whole signals and get one target
    at a time (:func:`_whole_values`)."""
    if not specs:
        return
    values: dict[str, np.ndarray] = {}
    if device is not None:
        values.update(_torch_track_values([s.name for s in specs], refs, ests, sel, rate, device))
    stream = [s.name for s in specs if s.streaming and s.name not in values]
    if stream:
        values.update(SM.stream_metrics(stream, [refs[t] for t in sel], [ests[t] for t in sel], rate))
    whole = [s for s in specs if s.name not in values]
    if whole:  # (log_wmse: numpy path on every device)
        values.update(_whole_values(whole, refs, ests, sel, rate))
    for s in specs:
        vals = np.asarray(values[s.name], dtype=np.float64).reshape(-1)
        if vals.shape[0] != len(sel):
            raise RuntimeError(f"metric {s.name}: returned {vals.shape[0]} values for {len(sel)} targets")
        for t, v in zip(sel, vals):
            ev.rows.append({"target": t, "metric": s.name, "value": float(v), "aggregation": R.TRACK_AGGREGATION,
                            "unit": s.unit, "frames_used": None, "frames_dropped": None})


def _whole_values(specs: Sequence[R.Metric], refs: Mapping[str, Any], ests: Mapping[str, Any], sel: list[str],
                  rate: int) -> dict[str, np.ndarray]:
    """Whole-signal metrics, one target at a time: its reference (when the
    metric needs one) and estimate, in their own dtype; ``mixture=`` the
    float64 sum of the scored references for those that need it."""
    per: dict[str, list[float]] = {s.name: [] for s in specs}
    mix = None
    for t in sel:
        r1, e1 = _whole(refs[t])[None], _whole(ests[t])[None]
        for s in specs:
            kw: dict[str, Any] = {}
            if s.needs_mixture:
                if mix is None:
                    mix = S.materialize(S.SumSource([refs[x] for x in sel]), np.float64)
                kw["mixture"] = mix
            args = (r1, e1, rate) if s.needs_references else (e1, rate)
            one = np.asarray(s.function(*args, **kw), dtype=np.float64).reshape(-1)
            if one.shape[0] != 1:
                raise RuntimeError(f"metric {s.name}: returned {one.shape[0]} values for 1 target")
            per[s.name].append(float(one[0]))
        del r1, e1
    return {m: np.asarray(p) for m, p in per.items()}


def _reordered(res: B.BssEvalResult, perm: list[int]) -> B.BssEvalResult:
    """``res`` with its sources (rows) in the order ``perm``."""
    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[perm]

    return B.BssEvalResult(res.sdr[perm], take(res.isr), take(res.sir), take(res.sar), res.win, res.hop,
                           res.starts, res.silent[perm], info=res.info)


def _whole(src: Any) -> np.ndarray:
    """A source as one array: numpy arrays as they are, lazy ones read whole."""
    if isinstance(src, np.ndarray):
        return src
    return S.materialize(src, getattr(src, "dtype", np.float64))


def _bsseval(ev: TrackEvaluation, refs: dict[str, Any], ests: dict[str, Any], sel: list[str],
             win_n: int, hop_n: int, *, rows: list[tuple[str, str, str]], filters_len: int,
             device: Any = None) -> None:
    """BSSEval of museval's groups (:func:`evaluation_groups`): ``rows``
    (``(row, criterion, unit)``, :func:`_frame_rows`) per target, frames and
    museval's JSON order into ``ev``; the filters (ISR/SIR/SAR) only when a
    row needs them."""
    full = any(crit != "SDR" for _, crit, _ in rows)
    groups, source = evaluation_groups(sel)
    C, T = S.source_shape(refs[sel[0]])
    results = _group_results(ev, refs, ests, groups, win_n, hop_n, full=full, filters_len=filters_len,
                             device=device)
    for g, res in zip(groups, results):
        ev.notes += _group_notes(g, res, C, T, filters_len)
    if full and any(len(g) == 1 for g in groups):
        ev.notes.append("a single target was evaluated alone (museval refuses this): its SIR is undefined (NaN)")
    # museval's JSON order: the main group (minus vocals when scored with
    # accompaniment), then vocals and accompaniment
    order = [t for t in (groups[0] if groups else ()) if source[t] == 0] + [
        t for g in groups[1:] for t in g]
    ev.json_order = tuple(order)
    for t in _order(order):
        gi = source[t]
        j = groups[gi].index(t)
        fw = {k: v[j].astype(np.float64) for k, v in results[gi].metrics().items()}
        if full and len(groups[gi]) == 1:
            fw["SIR"] = np.full_like(fw["SIR"], np.nan)
        ev.framewise[t] = fw
        for row, crit, unit in rows:
            if crit in fw:
                _criterion_rows(ev, t, row, crit, unit, fw[crit])
    ev.info["bsseval_groups"] = [list(g) for g in groups]
    ev.info["bsseval_solver"] = [r.info.get("solver") for r in results if r.info]
    ev.info["bsseval_filter_gain"] = [r.info.get("filter_gain") for r in results if r.info]


def _group_results(ev: TrackEvaluation, refs: dict[str, Any], ests: dict[str, Any], groups: list[tuple[str, ...]],
                   win_n: int, hop_n: int, *, full: bool, filters_len: int,
                   device: Any = None) -> list[B.BssEvalResult]:
    """One BSSEval result per group: museval's pair of groups in one pass
    when the reference accompaniment is the sum of main-group references."""
    results: list[B.BssEvalResult | None] = [None] * len(groups)
    C, T = S.source_shape(refs[groups[0][0]])
    joint = _shared_accompaniment(groups, refs) if full and device is None else None
    if joint is not None and all(T >= len(g) * C * filters_len for g in groups):
        # {vocals, accompaniment} over the main group's references: the
        # reference accompaniment is the sum of main-group references, so its
        # correlations and spectra are sums of theirs (one pass for both)
        # (vocals last: the second group's rows are then contiguous, no copies)
        main = list(groups[0])
        order = [t for t in main if t != "vocals"] + ["vocals"]
        n = len(order)
        parts = tuple(order.index(main[i]) for i in joint)
        r0, r1 = B.bss_eval_v4_groups(
            [refs[t] for t in order], [ests[t] for t in order] + [ests["accompaniment"]],
            [(list(range(n)), list(range(n))), ([n - 1, parts], [n - 1, n])],
            win_n, hop_n, filters_len=filters_len, nan_policy=ev.nan_policy, check=False)
        results[0], results[1] = _reordered(r0, [order.index(t) for t in main]), r1
        ev.info["bsseval_shared"] = True
    for gi, g in enumerate(groups):
        if results[gi] is None:
            results[gi] = _one_group([refs[t] for t in g], [ests[t] for t in g], win_n, hop_n, ev.nan_policy,
                                     full=full and T >= len(g) * C * filters_len, underdetermined=full,
                                     filters_len=filters_len, device=device)
    return [r for r in results if r is not None]


def _one_group(rs: list[Any], es: list[Any], win_n: int, hop_n: int, nan_policy: str, *, full: bool,
               underdetermined: bool, filters_len: int, device: Any = None) -> B.BssEvalResult:
    """BSSEval of one group: with the filters when ``full``; else SDR only —
    with ISR/SIR/SAR NaN when ``underdetermined`` (fewer samples than filter
    coefficients: the least-squares projection has no unique solution and
    museval returns arbitrary values; SDR needs no filters)."""
    one = [(list(range(len(rs))), list(range(len(rs))))]
    if device is not None:
        res = _torch_group(rs, es, win_n, hop_n, nan_policy, full=full, filters_len=filters_len, device=device)
        if full:
            return res
    elif full:
        (res,) = B.bss_eval_v4_groups(rs, es, one, win_n, hop_n, filters_len=filters_len, nan_policy=nan_policy,
                                      check=False)
        return res
    else:
        (res,) = B.bss_eval_v4_groups(rs, es, one, win_n, hop_n, nan_policy=nan_policy, full=False, check=False)
    if underdetermined:
        nan = np.full_like(res.sdr, np.nan)
        res.isr, res.sir, res.sar = nan, nan.copy(), nan.copy()
        res.info["solver"] = "underdetermined"
    else:
        res.info = {}
    return res


def _on_device(sources: Sequence[Any], device: Any) -> Any:
    """Sources read whole (float64) into one (nsrc, channels, samples) tensor on ``device``."""
    import torch

    return torch.from_numpy(np.stack([S.materialize(s, np.float64) for s in sources])).to(device)


def _torch_group(rs: list[Any], es: list[Any], win_n: int, hop_n: int, nan_policy: str, *, full: bool,
                 filters_len: int, device: Any) -> B.BssEvalResult:
    """One group by the torch backend (float64) as the numpy path's result."""
    from .torch import bsseval as TB

    res = TB.bss_eval_v4(_on_device(rs, device), _on_device(es, device), win_n, hop_n, filters_len=filters_len,
                         nan_policy=nan_policy, full=full, dtype="float64")

    def host(v: Any) -> np.ndarray | None:
        return None if v is None else v.cpu().numpy()

    info: dict[str, Any] = {}
    if full:
        R = len(rs) * S.source_shape(rs[0])[0]
        energy = res.info["energy"][0].cpu().numpy()  # (R + E,): one item
        info = {"solver": f"torch:{res.info['solver']}", "device": str(device),
                "filter_gain": B._filter_gain(res.info["Call"].cpu().numpy().reshape(R, filters_len, R),
                                              energy[:R], energy[R:])}
    sdr, silent = host(res.sdr), host(res.silent)
    assert sdr is not None and silent is not None  # always computed; isr/sir/sar only when full
    out = B.BssEvalResult(sdr, host(res.isr), host(res.sir), host(res.sar), int(win_n), int(hop_n),
                          res.starts, silent, info=info)
    return out


def _torch_track_values(names: Sequence[str], refs: Mapping[str, Any], ests: Mapping[str, Any], sel: list[str],
                        rate: int, device: Any) -> dict[str, np.ndarray]:
    """The whole-track metrics the torch backend implements, all targets
    at once on ``device``."""
    from .torch.simple import TRACK_METRICS

    todo = [n for n in names if n in TRACK_METRICS]
    if not todo:
        return {}
    r, e = _on_device([refs[t] for t in sel], device), _on_device([ests[t] for t in sel], device)
    out = {}
    if "bleedless" in todo and "fullness" in todo:  # one pass for both
        from .torch.simple import bleed_full

        bl, fu = bleed_full(r, e, rate)
        out["bleedless"], out["fullness"] = bl.cpu().numpy(), fu.cpu().numpy()
    for n in todo:
        if n in out:
            continue
        fn, needs_rate = TRACK_METRICS[n]
        v = fn(r, e, rate) if needs_rate else fn(r, e)
        out[n] = v.cpu().numpy().astype(np.float64)
    return out


def _group_notes(g: tuple[str, ...], res: B.BssEvalResult, C: int, T: int, filters_len: int) -> list[str]:
    """What a group's result says about its ISR/SIR/SAR, in words."""
    notes = []
    if res.info.get("solver") == "underdetermined":
        n_coef = len(g) * C * filters_len
        notes.append(f"group {list(g)}: {T} samples < {n_coef} filter coefficients "
                     f"({len(g)} sources × {C} channels × {filters_len} taps): ISR/SIR/SAR "
                     "are undetermined (NaN), SDR is kept")
    gain = float(res.info.get("filter_gain", 0.0) or 0.0)
    if gain > ILL_CONDITIONED_GAIN:
        notes.append(
            f"group {list(g)}: the references are numerically rank-deficient where the estimates have "
            f"energy (filter gain {gain:.3g} ≫ 1; e.g. band-limited lossy decodes): ISR/SIR/SAR are set "
            "by rounding here — museval's too; 16-bit references (reference_bits=16, what musdb hands "
            "museval) make them well defined. See docs/metrics.md")
    return notes


def _criterion_rows(ev: TrackEvaluation, t: str, row: str, crit: str, unit: str, raw: np.ndarray) -> None:
    """A target's two rows of one criterion (median and mean over the frames
    museval stores: rounded to 5 decimals, ±inf as NaN, NaN frames skipped
    and counted) and its frames."""
    stored = np.array([B.museval_round(float(x)) for x in raw])  # museval's TrackStore values
    used = int(np.isfinite(stored).sum())
    dropped = int(stored.size - used)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = float(np.nanmedian(stored)) if used else float("nan")
        mean = float(np.nanmean(stored)) if used else float("nan")
    for agg, v in zip(R.FRAME_AGGREGATIONS, (med, mean)):
        ev.rows.append({"target": t, "metric": row, "value": v, "aggregation": agg, "unit": unit,
                        "frames_used": used, "frames_dropped": dropped})
    starts, stops, rate = ev.frame_starts, ev.frame_stops, ev.sample_rate
    assert starts is not None and stops is not None
    for i in range(raw.size):
        x = float(raw[i])
        ev.frames.append({"target": t, "metric": crit, "frame": i, "time": float(starts[i] / rate),
                          "duration": float((stops[i] - starts[i]) / rate),
                          "value": x if math.isfinite(x) else float("nan")})


def _shared_accompaniment(groups: list[tuple[str, ...]], refs: Mapping[str, Any]) -> tuple[int, ...] | None:
    """When the groups are museval's pair — the main group and {vocals,
    accompaniment} — and the reference accompaniment is a
    :class:`~stemlab.metrics.sources.SumSource` of main-group references
    (what :func:`with_accompaniment` builds), the indices of its parts in the
    main group, in its order; else None."""
    if len(groups) != 2 or groups[1] != ("vocals", "accompaniment") or "vocals" not in groups[0]:
        return None
    acc = refs.get("accompaniment")
    if not isinstance(acc, S.SumSource):
        return None
    main = list(groups[0])
    idx = []
    for p in acc.parts:
        hit = [i for i, t in enumerate(main) if refs[t] is p]
        if not hit:
            return None
        idx.append(hit[0])
    return tuple(idx)


# ------------------------------------------------------------- aggregation

from .aggregate import PRESETS as _PRESETS  # noqa: E402  (this section only wraps stemlab.metrics.aggregate)
from .aggregate import aggregate_records  # noqa: E402

#: named (frames, tracks) aggregations of published SDRs — the presets of
#: :func:`stemlab.metrics.aggregate.aggregate` (``rows``: the per-track rows)
AGGREGATIONS: dict[str, dict[str, str]] = {
    name: {"metric": p["metric"], "rows": f"{p['frames']}_frames" if p["frames"] else "track", "tracks": p["tracks"]}
    for name, p in _PRESETS.items()
}


def aggregate_tracks(
    rows: Iterable[Mapping[str, Any]] | Any,
    how: str = "museval",
    *,
    metric: str | None = None,
    tracks: str | None = None,
    by: Sequence[str] = ("target",),
) -> list[dict[str, Any]]:
    """:func:`stemlab.metrics.aggregate.aggregate` as a list of dicts
    ``{*by, metric, aggregation, value, n_tracks, n_nan_tracks}`` (kept for
    callers of this name). ``how``: ``museval`` (median of per-track frame
    medians), ``demucs`` (mean of per-track frame medians) or ``mdx`` (mean
    of uSDR); ``metric``/``tracks`` override the preset's."""
    if how not in AGGREGATIONS:
        raise InputError(f"aggregate_tracks: how must be one of {sorted(AGGREGATIONS)}, got {how!r}", field="how")
    return aggregate_records(rows, metric=metric, how=how, tracks=tracks, by=by)
