"""Every metric, declared once.

A :class:`Metric` says what a metric is — its name, unit, direction, kind
(framewise BSSEval or whole-track), the aggregations its per-track rows
carry, the row names it produces, its function, a one-line description and
its score-cache ``version`` — and everything else reads it:
:func:`available_metrics` and run-spec validation, :func:`~stemlab.metrics.evaluate`'s
validation, dispatch and row units, :data:`DEFAULT_METRICS`,
:func:`scores_version` (part of a run's ``metrics_hash``), the frame/track
validity checks of :mod:`stemlab.metrics.aggregate` and the units, labels
and directions of :mod:`stemlab.reports`.

Add a metric: write its function (:mod:`.simple` for whole-track metrics:
``fn(references, estimates, sample_rate) -> (n_sources,) float64``), add one
:class:`Metric` to :data:`DECLARED`; ``tests/metrics/test_registry.py``
then checks it end to end. Bump its ``version`` whenever its numbers change
for the same input and options (cached scores are then recomputed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from . import bsseval as B
from . import simple as SM

__all__ = [
    "DECLARED",
    "DEFAULT_METRICS",
    "FRAME_AGGREGATIONS",
    "KINDS",
    "METRICS",
    "SCORES_EPOCH",
    "TRACK_AGGREGATION",
    "UNITS",
    "Metric",
    "available_metrics",
    "check_metrics",
    "get",
    "higher_is_better",
    "metric_of_row",
    "scores_version",
    "unavailable_reason",
    "unit_of",
]

#: units a metric's values come in: decibels, or a unitless 0–100 score
UNITS = ("dB", "score")
#: ``framewise``: BSSEval criteria per frame, aggregated per track over the
#: frames; ``track``: one value for the whole track
KINDS = ("framewise", "track")
#: per-track row aggregations of framewise metrics (museval's is the median)
FRAME_AGGREGATIONS: tuple[str, ...] = ("median_frames", "mean_frames")
#: the per-track row aggregation of whole-track metrics
TRACK_AGGREGATION = "track"


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Metric:
    """One metric's declaration.

    ``rows``: the ``metric`` names of the result rows it produces (default:
    its own name); ``aggregations``: the per-track row aggregations it
    supports (default: both :data:`FRAME_AGGREGATIONS` for framewise
    metrics, ``("track",)`` for whole-track ones); ``needs_references``:
    its function takes ``(references, estimates, sample_rate)``, else
    ``(estimates, sample_rate)``; ``needs_mixture``: it also gets
    ``mixture=`` the float64 sum of the scored references; ``streaming``:
    computed block by block by :func:`~stemlab.metrics.simple.stream_metrics`
    (memory independent of the track's length); ``version``: bumped when its
    numbers change for the same input and options (1 = as of score-cache
    version :data:`SCORES_EPOCH`); ``requires``/``available``: an optional
    package (in words, with its pip spec) and whether it imports."""

    name: str
    unit: str
    higher_is_better: bool
    kind: str
    function: Callable[..., Any]
    description: str
    rows: tuple[str, ...] = ()
    aggregations: tuple[str, ...] = ()
    needs_references: bool = True
    needs_mixture: bool = False
    streaming: bool = False
    version: int = 1
    requires: str | None = None
    available: Callable[[], bool] = field(default=_always, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"metric {self.name!r}: unit must be one of {UNITS}, got {self.unit!r}")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        valid = FRAME_AGGREGATIONS if self.kind == "framewise" else (TRACK_AGGREGATION,)
        aggs = self.aggregations or valid
        if not set(aggs) <= set(valid):
            raise ValueError(f"metric {self.name!r}: a {self.kind} metric's aggregations are among {valid}, "
                             f"got {aggs}")
        if self.version < 1:
            raise ValueError(f"metric {self.name!r}: version must be ≥ 1, got {self.version}")
        object.__setattr__(self, "rows", tuple(self.rows) or (self.name,))
        object.__setattr__(self, "aggregations", tuple(aggs))

    @property
    def criteria(self) -> tuple[str, ...]:
        """A framewise metric's per-frame criteria (museval's names: ``SDR``,
        ``ISR`` …), one per row, in row order; () for whole-track metrics."""
        return tuple(r.split("_", 1)[0].upper() for r in self.rows) if self.kind == "framewise" else ()


_BSSEVAL_ROWS = ("sdr_bsseval_v4", "isr_bsseval_v4", "sir_bsseval_v4", "sar_bsseval_v4")

#: every metric stemlab knows, in the order listings show them (optional
#: ones included whether or not their package imports)
DECLARED: tuple[Metric, ...] = (
    Metric("bsseval_v4", "dB", True, "framewise", B.bss_eval_v4,
           "museval 0.4.1's framewise SDR/ISR/SIR/SAR (images mode, 512-tap filters, 1-s frames)",
           rows=_BSSEVAL_ROWS),
    Metric("sdr_bsseval_v4", "dB", True, "framewise", B.sdr_frames,
           "museval's framewise SDR alone, without the distortion filters (same numbers, ~100x faster)",
           rows=_BSSEVAL_ROWS[:1]),
    Metric("usdr", "dB", True, "track", SM.usdr,
           "MSST/MDX global SDR ('uSDR'), float64, eps 1e-8", streaming=True),
    Metric("usdr_mdx", "dB", True, "track", SM.usdr_mdx,
           "MDX 2021 / SDX 2023 GlobalSDR in the evaluator's float32 arithmetic, delta 1e-7", streaming=True),
    Metric("si_sdr", "dB", True, "track", SM.si_sdr,
           "scale-invariant SDR (Le Roux et al. 2019) with MSST's eps placement", streaming=True),
    Metric("sdr_gain", "dB", True, "track", SM.sdr_gain,
           "SDR after the least-squares scalar gain on the estimate", streaming=True),
    Metric("l1_freq", "score", True, "track", SM.l1_freq,
           "MSST L1Freq: 100 / (1 + 10 x mean |magnitude spectrogram difference|)"),
    Metric("bleedless", "score", True, "track", SM.bleedless,
           "MSST bleedless: 100 / (1 + mean positive mel-dB excess of the estimate)"),
    Metric("fullness", "score", True, "track", SM.fullness,
           "MSST fullness: 100 / (1 + mean mel-dB shortfall of the estimate)"),
    Metric("log_wmse", "score", True, "track", SM.log_wmse,
           "MSST log-WMSE: frequency-weighted, mixture-normalised log error (torch_log_wmse 0.x)",
           needs_mixture=True, requires="the optional package torch_log_wmse < 1.0 (pip install 'torch-log-wmse<1')",
           available=SM._log_wmse_available),
)

#: the metrics that can be computed here: :data:`DECLARED` whose packages import
METRICS: dict[str, Metric] = {m.name: m for m in DECLARED if m.available()}

#: what a run spec, ``evaluate`` and ``stemlab score`` compute when not told
DEFAULT_METRICS: tuple[str, ...] = ("bsseval_v4", "usdr", "si_sdr")

#: the score-cache version when versions became per metric (it counted every
#: change before: 2 = bleedless/fullness in MSST's float32 arithmetic)
SCORES_EPOCH = 2


def available_metrics() -> list[str]:
    """Every metric name :func:`~stemlab.metrics.evaluate` and run specs accept."""
    return list(METRICS)


def _declared(name: str) -> Metric | None:
    return next((m for m in DECLARED if m.name == name), None)


def unavailable_reason(name: str) -> str | None:
    """Why a declared metric cannot be computed here, naming the package to
    install (None: it can be, or it is not declared)."""
    m = _declared(name)
    if m is None or name in METRICS:
        return None
    return f"metric {name!r} needs {m.requires or 'a package that does not import'}"


def get(name: str) -> Metric:
    """The declaration of an available metric; :class:`InputError` naming the
    valid ones, or the missing package of an optional one."""
    if name in METRICS:
        return METRICS[name]
    why = unavailable_reason(name)
    if why:
        raise InputError(why, field="metrics")
    raise InputError(f"unknown metric {name!r}; valid: {sorted(METRICS)}", field="metrics")


def check_metrics(names: Sequence[str] | str, what: str = "evaluate") -> list[Metric]:
    """The declarations of ``names`` (a list or a comma-separated string),
    duplicates dropped, order kept. :class:`InputError` (``what: …``) for
    none, unknown names (listing the valid ones) or optional metrics whose
    package is missing (naming it)."""
    if isinstance(names, str):
        names = [m.strip() for m in names.split(",") if m.strip()]
    names = list(dict.fromkeys(names))
    if not names:
        raise InputError(f"{what}: no metrics requested", field="metrics")
    unknown = [m for m in names if m not in METRICS and _declared(m) is None]
    if unknown:
        raise InputError(f"{what}: unknown metric(s) {unknown}; valid: {sorted(METRICS)}", field="metrics")
    missing = [why for why in map(unavailable_reason, names) if why]
    if missing:
        raise InputError(f"{what}: " + "; ".join(missing), field="metrics")
    return [METRICS[m] for m in names]


def metric_of_row(row: str) -> Metric | None:
    """The declaration behind a result row's ``metric`` name (``sdr_bsseval_v4``,
    ``usdr`` …) or a per-frame criterion (``SDR``, ``ISR`` …); None when no
    declared metric produces it (rows written by other tools)."""
    for m in DECLARED:
        if row in m.rows or row in m.criteria:
            return m
    return None


def unit_of(row: str, default: str = "") -> str:
    """The unit (``dB`` or ``score``) of a row's metric; ``default`` for an
    undeclared one."""
    m = metric_of_row(row)
    return m.unit if m is not None else default


def higher_is_better(row: str, default: bool = True) -> bool:
    """Whether larger values of a row's metric are better; ``default`` for an
    undeclared one."""
    m = metric_of_row(row)
    return m.higher_is_better if m is not None else default


def scores_version(metrics: Iterable[str] | None = None) -> int:
    """The score-cache version of ``metrics`` (default: every declared metric):
    :data:`SCORES_EPOCH` plus each version bump since (``version − 1`` per
    metric). Hashed with the metric names into a run's ``metrics_hash``, it
    changes whenever one of those metrics' numbers change — and is 2, the
    value before per-metric versions, until one is bumped, so existing
    caches stay valid. Undeclared names count as version 1."""
    table = {m.name: m for m in DECLARED}
    names = table if metrics is None else list(dict.fromkeys(metrics))
    return SCORES_EPOCH + sum(table[n].version - 1 for n in names if n in table)


#: ``{name: function}`` of the whole-track metrics that can be computed here
SIMPLE_METRICS: dict[str, Callable[..., Any]] = {m.name: m.function for m in METRICS.values() if m.kind == "track"}
#: the whole-track metrics computed block by block (:func:`stemlab.metrics.simple.stream_metrics`)
STREAMING_METRICS: frozenset[str] = frozenset(m.name for m in METRICS.values() if m.kind == "track" and m.streaming)


def framewise(name: str, references: Any, estimates: Any, sample_rate: int, **kwargs: Any) -> Any:
    """A whole-track metric, by name, per frame: see
    :func:`stemlab.metrics.simple.framewise` (``(values, starts)``)."""
    m = get(name)
    if m.kind != "track":
        raise InputError(f"framewise: {name!r} is not a whole-track metric", field="metric")
    return SM.framewise(m.function, references, estimates, sample_rate, **kwargs)
