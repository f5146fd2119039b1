"""Tables derived from a results directory: leaderboards with CIs, latency
percentiles, cost per hour, failures, Pareto frontier. All take the tidy
frames of :class:`stemlab.runs.results.Results`; every number over tracks
comes from :func:`stemlab.metrics.aggregate.aggregate` and carries its
aggregation label (e.g. ``median_frames/median_tracks``)."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ..metrics.aggregate import aggregate, track_values
from ..metrics.registry import higher_is_better

__all__ = [
    "primary_metric",
    "leaderboard",
    "per_track",
    "aggregation_of",
    "latency_table",
    "cost_table",
    "failures_table",
    "pareto_frontier",
    "quality_vs_cost",
    "to_markdown",
]

PREFERRED = ("sdr_bsseval_v4", "usdr", "usdr_mdx", "si_sdr")


def primary_metric(scores: pd.DataFrame) -> str | None:
    if scores.empty:
        return None
    have = set(scores["metric"])
    for m in PREFERRED:
        if m in have:
            return m
    return sorted(have)[0]


def leaderboard(scores: pd.DataFrame, metric: str, *, stat: str = "median", ci: float | None = 0.95, seed: int = 0,
                frames: str | None = None, n_boot: int = 4000) -> pd.DataFrame:
    """provider × target rows of :func:`stemlab.metrics.aggregate.aggregate`:
    ``stat`` over tracks of each track's value (for framewise metrics the
    ``frames`` rows, default ``median_frames`` — museval's convention) with
    a percentile-bootstrap CI (NaN when fewer than 3 tracks). Columns
    ``provider, target, value, ci_low, ci_high, n_tracks, n_nan_tracks,
    metric, aggregation``; providers ordered by their mean value over
    targets, best first (the metric's direction as the registry declares it)."""
    out = aggregate(scores, metric, frames=frames, tracks=stat, by=("provider", "target"), ci=ci, n_boot=n_boot,
                    seed=seed)
    if ci is None:
        out["ci_low"] = out["ci_high"] = float("nan")
    out = out[["provider", "target", "value", "ci_low", "ci_high", "n_tracks", "n_nan_tracks", "metric",
               "aggregation"]]
    if out.empty:
        return out
    lower_first = not higher_is_better(metric)
    order = out.groupby("provider", sort=False)["value"].mean().sort_values(ascending=lower_first, kind="stable").index
    out["provider"] = pd.Categorical(out["provider"], categories=list(order), ordered=True)
    out = out.sort_values(["provider", "target"], kind="stable").reset_index(drop=True)
    out.attrs["aggregation"] = str(out["aggregation"].iloc[0])
    return out


def aggregation_of(df: pd.DataFrame) -> str:
    """The aggregation label a table was computed with ('' if none)."""
    return str(df.attrs.get("aggregation", ""))


def per_track(scores: pd.DataFrame, metric: str, target: str, *, frames: str | None = None) -> pd.DataFrame:
    """provider × track: each track's own value of ``metric`` for ``target``
    (``median_frames`` rows for framewise metrics unless ``frames`` says
    otherwise; never a mix of rows). Columns are track names, or
    ``dataset/track`` when the tracks come from several datasets."""
    per = track_values(scores, metric, frames=frames, by=("provider", "target"))
    per = per[per["target"] == target]
    if "dataset" in per and per["dataset"].nunique() > 1:
        per = per.assign(track=per["dataset"].astype(str) + "/" + per["track"].astype(str))
    wide = per.pivot(index="provider", columns="track", values="value")
    wide.attrs["aggregation"] = str(per["aggregation"].iloc[0]) if len(per) else ""
    return wide


def latency_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per provider: median seconds of each phase, turnaround p50/p95 and
    real-time factor."""
    if jobs.empty:
        return pd.DataFrame()
    done = jobs[jobs["status"] == "done"]
    rows = []
    for prov, g in done.groupby("provider", sort=False):
        tot = g["total_s"].astype(float).dropna()
        r = {"provider": prov, "jobs": len(g)}
        for ph in ("upload", "queue", "processing", "download", "separate", "scoring"):
            col = f"{ph}_s"
            if col in g and g[col].notna().any():
                r[f"{ph}_s_median"] = float(g[col].astype(float).median())
        r["turnaround_p50_s"] = float(tot.quantile(0.5)) if len(tot) else float("nan")
        r["turnaround_p95_s"] = float(tot.quantile(0.95)) if len(tot) else float("nan")
        rtf = g["rtf"].astype(float).dropna() if "rtf" in g else pd.Series(dtype=float)
        r["rtf_median"] = float(rtf.median()) if len(rtf) else float("nan")
        rows.append(r)
    return pd.DataFrame(rows)


def cost_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per provider: charged USD and credits, audio minutes, USD per hour of audio."""
    if jobs.empty:
        return pd.DataFrame()
    rows = []
    for prov, g in jobs.groupby("provider", sort=False):
        minutes = float(g["audio_seconds"].fillna(0).sum()) / 60
        usd = float(g["cost_usd"].fillna(0).sum())
        credits = float(g["credits"].fillna(0).sum())
        unit = next((u for u in g["credit_unit"].dropna() if u), "")
        comp = float(g["compute_seconds"].fillna(0).sum())
        rows.append({
            "provider": prov, "kind": g["kind"].iloc[0], "jobs": len(g), "audio_min": minutes,
            "usd": usd, "credits": credits, "credit_unit": unit, "compute_s": comp,
            "usd_per_audio_hour": usd / minutes * 60 if minutes else float("nan"),
            "compute_s_per_audio_min": comp / minutes if minutes else float("nan"),
        })
    return pd.DataFrame(rows)


def failures_table(jobs: pd.DataFrame) -> pd.DataFrame:
    if jobs.empty:
        return pd.DataFrame(columns=["provider", "status", "reason", "count"])
    bad = jobs[jobs["status"] != "done"].copy()
    if bad.empty:
        return pd.DataFrame(columns=["provider", "status", "reason", "count"])
    bad["reason"] = bad["error_kind"].fillna("") + ": " + bad["error"].fillna("").str.slice(0, 200)
    out = bad.groupby(["provider", "status", "reason"]).size().reset_index(name="count")
    return out.sort_values("count", ascending=False).reset_index(drop=True)


def quality_vs_cost(scores: pd.DataFrame, jobs: pd.DataFrame, metric: str, targets: Sequence[str] | None = None, *,
                    stat: str = "median", frames: str | None = None) -> pd.DataFrame:
    """Per provider: ``quality`` = mean over targets of the per-target
    :func:`stemlab.metrics.aggregate.aggregate` value of ``metric`` (``stat``
    over tracks of each track's ``frames`` value; default museval's median
    of medians; the label is in ``aggregation`` and ``attrs``), USD per audio minute (0 for local),
    median turnaround."""
    if scores.empty:
        return pd.DataFrame()
    df = scores[scores["target"].isin(targets)] if targets else scores
    lb = aggregate(df, metric, frames=frames, tracks=stat, by=("provider", "target"))
    q = lb.groupby("provider", sort=False)["value"].mean()
    c = cost_table(jobs).set_index("provider") if not jobs.empty else pd.DataFrame()
    lat = latency_table(jobs).set_index("provider") if not jobs.empty else pd.DataFrame()
    out = pd.DataFrame({"quality": q})
    out.index.name = "provider"
    if not c.empty:
        out["usd_per_min"] = (c["usd_per_audio_hour"] / 60).reindex(out.index).fillna(0.0)
        out["kind"] = c["kind"].reindex(out.index)
    if not lat.empty:
        out["turnaround_p50_s"] = lat["turnaround_p50_s"].reindex(out.index)
    label = f"mean over targets of {lb['aggregation'].iloc[0]}" if len(lb) else ""
    out["aggregation"] = label
    out = out.reset_index()
    out.attrs["aggregation"] = label
    return out


def pareto_frontier(points: pd.DataFrame, quality: str = "quality", cost: str = "usd_per_min", *,
                    higher_is_better: bool = True) -> pd.DataFrame:
    """The providers no other provider beats on both quality (higher, or
    lower when not ``higher_is_better``) and cost (lower), sorted by cost."""
    pts = points.dropna(subset=[quality, cost]).sort_values([cost, quality], ascending=[True, not higher_is_better])
    sign = 1.0 if higher_is_better else -1.0
    keep = []
    best = -math.inf
    for idx, r in pts.iterrows():
        if sign * r[quality] > best:
            keep.append(idx)
            best = sign * r[quality]
    return pts.loc[keep]


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub/paper-style Markdown table (no extra dependency)."""
    if df.empty:
        return "_(none)_"
    cols = [str(c) for c in df.columns]

    def fmt(v) -> str:
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in df.columns) + " |")
    return "\n".join(lines)
