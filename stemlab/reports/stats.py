"""Paired statistics for "is A better than B" across tracks.

* :func:`bootstrap_ci` — percentile bootstrap CI of a mean or median.
* :func:`paired_bootstrap_ci` — CI of the mean/median *difference* A − B over
  tracks (resampling tracks, so the pairing is kept).
* :func:`wilcoxon` — Wilcoxon signed-rank test (scipy; exact distribution for
  small n without ties), with the matched-pairs rank-biserial correlation and
  Cohen's d_z as effect sizes.
* :func:`holm` — Holm–Bonferroni step-down adjustment of a family of p-values.
* :func:`compare` — every pair of providers on one (metric, target), Holm-
  corrected, from a tidy scores table.

Too few tracks is refused with a clear :class:`~stemlab.errors.InputError`
rather than printing a p-value from two numbers: with n ≤ 5 pairs the smallest
two-sided exact p is 0.0625, so no difference can ever reach 0.05.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "MIN_PAIRS_TEST",
    "MIN_SAMPLES_CI",
    "WILCOXON_ARE",
    "power_summary",
    "tracks_needed",
    "bootstrap_ci",
    "paired_bootstrap_ci",
    "wilcoxon",
    "holm",
    "compare",
    "Comparison",
]

MIN_PAIRS_TEST = 6
MIN_SAMPLES_CI = 3


def _clean(x: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence of per-track values, got shape {a.shape}", field=name)
    return a


def _stat(kind: str) -> Callable[[np.ndarray, int], np.ndarray]:
    if kind == "mean":
        return lambda a, axis: a.mean(axis=axis)
    if kind == "median":
        return lambda a, axis: np.median(a, axis=axis)
    raise InputError(f"statistic must be 'mean' or 'median', got {kind!r}", field="stat")


def bootstrap_ci(
    x: Sequence[float],
    *,
    stat: str = "mean",
    ci: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high) of ``stat`` over ``x`` (NaN dropped) with a
    percentile bootstrap; deterministic for a given ``seed``."""
    a = _clean(x, "x")
    a = a[np.isfinite(a)]
    if a.size < MIN_SAMPLES_CI:
        raise InputError(
            f"bootstrap CI needs at least {MIN_SAMPLES_CI} finite values, got {a.size}", field="x", n=int(a.size)
        )
    if not 0 < ci < 1:
        raise InputError(f"ci must be in (0, 1), got {ci}", field="ci")
    f = _stat(stat)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    boots = f(a[idx], 1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(f(a, 0)), float(lo), float(hi)


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    stat: str = "mean",
    ci: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """CI of ``stat(a − b)`` resampling the pairs (tracks)."""
    x, y = _clean(a, "a"), _clean(b, "b")
    if x.shape != y.shape:
        raise InputError(f"paired samples must have equal length, got {x.size} and {y.size}", field="b")
    d = x - y
    return bootstrap_ci(d[np.isfinite(d)], stat=stat, ci=ci, n_boot=n_boot, seed=seed)


def wilcoxon(a: Sequence[float], b: Sequence[float], *, zero_method: str = "wilcox") -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of a − b.

    Returns ``n`` (pairs used), ``statistic`` (scipy's W = min(W+, W−)),
    ``p``, ``rank_biserial`` ((W+ − W−)/(W+ + W−), in [−1, 1]; positive means
    A tends to be higher) and ``cohens_dz`` (mean(d)/sd(d))."""
    from scipy import stats

    x, y = _clean(a, "a"), _clean(b, "b")
    if x.shape != y.shape:
        raise InputError(f"paired samples must have equal length, got {x.size} and {y.size}", field="b")
    d = x - y
    d = d[np.isfinite(d)]
    n_nonzero = int(np.count_nonzero(d)) if zero_method == "wilcox" else d.size
    if n_nonzero < MIN_PAIRS_TEST:
        raise InputError(
            f"Wilcoxon signed-rank test needs at least {MIN_PAIRS_TEST} paired tracks with a non-zero difference, "
            f"got {n_nonzero}: with n ≤ 5 the smallest two-sided p is 0.0625, so no test can be significant",
            field="n",
            n=n_nonzero,
        )
    res = stats.wilcoxon(d, zero_method=zero_method, alternative="two-sided")
    nz = d[d != 0] if zero_method == "wilcox" else d
    ranks = stats.rankdata(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    w_minus = float(ranks[nz < 0].sum())
    total = w_plus + w_minus
    sd = float(np.std(d, ddof=1)) if d.size > 1 else float("nan")
    return {
        "n": float(d.size),
        "statistic": float(res.statistic),
        "p": float(res.pvalue),
        "w_plus": w_plus,
        "w_minus": w_minus,
        "rank_biserial": (w_plus - w_minus) / total if total > 0 else 0.0,
        "cohens_dz": float(np.mean(d)) / sd if sd and math.isfinite(sd) and sd > 0 else float("nan"),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj.tolist()


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    metric: str
    target: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    win_rate: float  # fraction of tracks where A > B
    p: float
    p_holm: float
    rank_biserial: float
    cohens_dz: float
    verdict: str
    aggregation: str = ""  # the per-track rows paired, e.g. median_frames

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compare(
    scores,  # pandas.DataFrame with columns track, provider, target, metric, value (, aggregation)
    metric: str,
    target: str,
    providers: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = 10_000,
    seed: int = 0,
    higher_is_better: bool | None = None,
    frames: str | None = None,
) -> list[Comparison]:
    """All pairwise comparisons on tracks both providers scored, with
    Holm-corrected Wilcoxon p-values and paired bootstrap CIs of the mean
    difference. Pairs with too few tracks are reported with NaN p and the
    verdict "too few tracks (n=…)" instead of a misleading p-value.

    The pairs are the per-track values of ONE aggregation
    (:func:`stemlab.metrics.aggregate.track_values`: ``median_frames`` for
    framewise metrics unless ``frames='mean'``, ``track`` for whole-track
    metrics), never an average of a track's median and mean rows.
    ``higher_is_better``: the metric's direction (None: as the metric
    registry declares it; larger for metrics it does not declare)."""
    from ..metrics.aggregate import track_values
    from ..metrics.registry import higher_is_better as _declared_direction

    if higher_is_better is None:
        higher_is_better = _declared_direction(metric)

    df = scores[(scores["metric"] == metric) & (scores["target"] == target)]
    if df.empty:
        raise InputError(f"no scores for metric {metric!r} and target {target!r}", field="metric")
    per = track_values(df, metric, frames=frames, by=("provider", "target"))
    keys = [c for c in ("dataset", "track") if c in per.columns]
    wide = per.pivot(index=keys, columns="provider", values="value")
    row_agg = str(per["aggregation"].iloc[0])
    names = list(providers) if providers is not None else list(wide.columns)
    missing = [p for p in names if p not in wide.columns]
    if missing:
        raise InputError(f"no scores for provider(s) {missing}; have {list(wide.columns)}", field="providers")
    raw = []
    for a, b in itertools.combinations(names, 2):
        pair = wide[[a, b]].dropna()
        x, y = pair[a].to_numpy(), pair[b].to_numpy()
        sign = 1.0 if higher_is_better else -1.0
        entry: dict[str, Any] = {"a": a, "b": b, "n": len(pair)}
        if len(pair) >= MIN_SAMPLES_CI:
            m, lo, hi = paired_bootstrap_ci(x, y, n_boot=n_boot, seed=seed)
        else:
            m, lo, hi = (float(np.mean(x - y)) if len(pair) else float("nan")), float("nan"), float("nan")
        entry.update(mean_diff=m, ci_low=lo, ci_high=hi,
                     win_rate=float(np.mean(sign * (x - y) > 0)) if len(pair) else float("nan"))
        try:
            w = wilcoxon(x, y)
            entry.update(p=w["p"], rank_biserial=w["rank_biserial"], cohens_dz=w["cohens_dz"])
        except InputError:
            entry.update(p=float("nan"), rank_biserial=float("nan"), cohens_dz=float("nan"))
        raw.append(entry)
    tested = [i for i, e in enumerate(raw) if math.isfinite(e["p"])]
    adj = holm([raw[i]["p"] for i in tested]) if tested else []
    out = []
    for i, e in enumerate(raw):
        p_h = adj[tested.index(i)] if i in tested else float("nan")
        if not math.isfinite(e["p"]):
            verdict = f"too few tracks (n={e['n']}) for a test"
        elif p_h < alpha:
            better = e["a"] if (e["mean_diff"] > 0) == higher_is_better else e["b"]
            verdict = f"{better} better (Holm p={p_h:.3g})"
        else:
            verdict = f"no significant difference (Holm p={p_h:.3g})"
        out.append(Comparison(metric=metric, target=target, p_holm=p_h, verdict=verdict, aggregation=row_agg, **e))
    return out


#: asymptotic relative efficiency of the Wilcoxon signed-rank test against the paired t-test (normal data)
WILCOXON_ARE = 3.0 / math.pi


def tracks_needed(dz: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Tracks a two-sided paired test needs to detect a standardized mean
    difference ``dz`` (Cohen's d_z = mean(d)/sd(d)) at ``alpha`` with
    ``power``: the normal approximation ``((z₁₋α/₂ + z_power)/d_z)²``,
    divided by the Wilcoxon test's efficiency (3/π), and never fewer than
    :data:`MIN_PAIRS_TEST`."""
    from scipy.stats import norm

    if not (math.isfinite(dz) and dz != 0):
        raise InputError(f"tracks_needed: d_z must be finite and non-zero, got {dz}", field="dz")
    n = ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / abs(dz)) ** 2 / WILCOXON_ARE
    return max(MIN_PAIRS_TEST, int(math.ceil(n)))


def power_summary(scores, metric: str, target: str, providers: Sequence[str] | None = None, *,
                  alpha: float = 0.05, power: float = 0.8, frames: str | None = None) -> dict[str, Any]:
    """Whether paired tests can run on ``target`` and, if not, how many
    tracks they would need: ``n`` (tracks every pair shares, at most),
    ``testable`` (n ≥ :data:`MIN_PAIRS_TEST`), ``pairs`` (provider pairs with
    ≥ 2 shared tracks and a non-zero spread), ``median_dz`` (median |d_z|
    over them — the observed spread of per-track differences) and
    ``n_needed`` (:func:`tracks_needed` at that d_z; None without pairs),
    and the hardest pair to tell apart: ``closest`` (its two providers),
    ``closest_dz``, ``closest_n_needed``."""
    from ..metrics.aggregate import track_values

    df = scores[(scores["metric"] == metric) & (scores["target"] == target)]
    per = track_values(df, metric, frames=frames, by=("provider", "target"))
    keys = [c for c in ("dataset", "track") if c in per.columns]
    wide = per.pivot(index=keys, columns="provider", values="value")
    names = [p for p in (providers if providers is not None else wide.columns) if p in wide.columns]
    dzs: list[tuple[float, str, str]] = []
    n_max = 0
    for a, b in itertools.combinations(names, 2):
        d = (wide[a] - wide[b]).to_numpy(dtype=float)
        d = d[np.isfinite(d)]
        n_max = max(n_max, int(d.size))
        if d.size >= 2:
            sd = float(np.std(d, ddof=1))
            if sd > 0 and float(np.mean(d)) != 0:
                dzs.append((abs(float(np.mean(d)) / sd), str(a), str(b)))
    med = float(np.median([x for x, _, _ in dzs])) if dzs else float("nan")
    close = min(dzs) if dzs else None
    return {"target": target, "n": n_max, "testable": n_max >= MIN_PAIRS_TEST, "pairs": len(dzs),
            "median_dz": med, "n_needed": tracks_needed(med, alpha=alpha, power=power) if dzs else None,
            "closest": (close[1], close[2]) if close else None,
            "closest_dz": close[0] if close else float("nan"),
            "closest_n_needed": tracks_needed(close[0], alpha=alpha, power=power) if close else None,
            "alpha": alpha, "power": power}
