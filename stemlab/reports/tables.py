"""Tables derived from a results directory: leaderboards with CIs, latency
percentiles, cost per hour, failures, Pareto frontier. All take the tidy
frames of :class:`stemlab.runs.results.Results`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import MIN_SAMPLES_CI, bootstrap_ci

__all__ = [
    "primary_metric",
    "leaderboard",
    "per_track",
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


def leaderboard(scores: pd.DataFrame, metric: str, *, stat: str = "median", ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """provider × target: ``stat`` over tracks with a bootstrap CI (NaN when
    fewer than 3 tracks) and the number of tracks."""
    df = scores[scores["metric"] == metric]
    rows = []
    for (prov, tgt), g in df.groupby(["provider", "target"], sort=False):
        vals = g["value"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            est = lo = hi = float("nan")
        elif vals.size >= MIN_SAMPLES_CI:
            est, lo, hi = bootstrap_ci(vals, stat=stat, ci=ci, seed=seed, n_boot=4000)
        else:
            est = float(np.median(vals) if stat == "median" else np.mean(vals))
            lo = hi = float("nan")
        rows.append({"provider": prov, "target": tgt, "value": est, "ci_low": lo, "ci_high": hi, "n_tracks": int(vals.size)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    order = out.groupby("provider")["value"].mean().sort_values(ascending=False).index
    out["provider"] = pd.Categorical(out["provider"], categories=list(order), ordered=True)
    return out.sort_values(["provider", "target"]).reset_index(drop=True)


def per_track(scores: pd.DataFrame, metric: str, target: str) -> pd.DataFrame:
    df = scores[(scores["metric"] == metric) & (scores["target"] == target)]
    return df.pivot_table(index="provider", columns="track", values="value", aggfunc="mean")


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


def quality_vs_cost(scores: pd.DataFrame, jobs: pd.DataFrame, metric: str, targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Per provider: mean of per-target medians of ``metric``, USD per audio
    minute (0 for local), median turnaround."""
    if scores.empty:
        return pd.DataFrame()
    df = scores[scores["metric"] == metric]
    if targets:
        df = df[df["target"].isin(targets)]
    q = df.groupby(["provider", "target"])["value"].median().groupby("provider").mean()
    c = cost_table(jobs).set_index("provider") if not jobs.empty else pd.DataFrame()
    lat = latency_table(jobs).set_index("provider") if not jobs.empty else pd.DataFrame()
    out = pd.DataFrame({"quality": q})
    if not c.empty:
        out["usd_per_min"] = (c["usd_per_audio_hour"] / 60).reindex(out.index).fillna(0.0)
        out["kind"] = c["kind"].reindex(out.index)
    if not lat.empty:
        out["turnaround_p50_s"] = lat["turnaround_p50_s"].reindex(out.index)
    return out.reset_index()


def pareto_frontier(points: pd.DataFrame, quality: str = "quality", cost: str = "usd_per_min") -> pd.DataFrame:
    """The providers no other provider beats on both quality (higher) and
    cost (lower), sorted by cost."""
    pts = points.dropna(subset=[quality, cost]).sort_values([cost, quality], ascending=[True, False])
    keep = []
    best = -math.inf
    for idx, r in pts.iterrows():
        if r[quality] > best:
            keep.append(idx)
            best = r[quality]
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
