"""Tables derived from a results directory: leaderboards with CIs, like-for-
like overall numbers per target set, latency in two clocks (measured here /
simulated by a sandbox — never one table), cost in USD and the services' own
units, failures, and the quality–cost–latency points of the buyable options.
All take the tidy frames of :class:`stemlab.runs.results.Results`; every
number over tracks comes from :func:`stemlab.metrics.aggregate.aggregate`
and carries its aggregation label (e.g. ``median_frames/median_tracks``).

Bounds (oracles read the references; floors such as the mixture) are
labelled by :func:`bounds`: reports draw them as reference lines and leave
them out of every frontier, ranking of buyable options and recommendation."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.aggregate import aggregate, track_values
from ..metrics.registry import higher_is_better

__all__ = [
    "STANDARD_TARGETS",
    "TARGET_SETS",
    "jobs_view",
    "bounds",
    "delivered",
    "target_order",
    "overall",
    "simulated_latency_table",
    "buyable",
    "primary_metric",
    "leaderboard",
    "per_track",
    "aggregation_of",
    "latency_table",
    "cost_table",
    "failures_table",
    "pareto_frontier",
    "recommend",
    "quality_vs_cost",
    "to_markdown",
    "published_beside",
]

PREFERRED = ("sdr_bsseval_v4", "usdr", "usdr_mdx", "si_sdr")
#: the usual targets, in the order tables show them (a service's extra stems follow)
STANDARD_TARGETS = ("vocals", "drums", "bass", "other", "accompaniment")
#: the target sets an "overall" number may average over — only across providers delivering every target of the set
TARGET_SETS: dict[str, tuple[str, ...]] = {
    "4 stems": ("vocals", "drums", "bass", "other"),
    "2 stems": ("vocals", "accompaniment"),
}
_SIM = ("upload", "queue", "processing", "download", "total")


# ------------------------------------------------------------------ jobs

def _add_clock(j: pd.DataFrame) -> None:
    """Add ``clock`` to ``j`` (in place; a ``[sandbox]`` label of a remote job
    means simulated) and move the sandbox's virtual seconds and ``rtf`` of the
    simulated rows to ``sim_<phase>_s`` / ``sim_rtf``."""
    kind = j["kind"] if "kind" in j else pd.Series([""] * len(j), index=j.index)
    sim = j["provider"].astype(str).str.contains(r"\[sandbox\]", regex=True) & (kind == "remote")
    j["clock"] = np.where(sim, "simulated", "measured")
    for ph in _SIM:
        j[f"sim_{ph}_s"] = np.where(sim, j.get(f"{ph}_s", np.nan), np.nan)
        if ph != "total" and f"{ph}_s" in j:
            j.loc[sim, f"{ph}_s"] = np.nan
    if "wall_s" in j:
        j.loc[sim, "total_s"] = j.loc[sim, "wall_s"]
    if "rtf" in j:
        j["sim_rtf"] = np.where(sim, j["rtf"], np.nan)
        j.loc[sim, "rtf"] = np.nan


def _add_bound(j: pd.DataFrame) -> None:
    """Add ``bound`` to ``j`` (in place) from the provider registry (family, variant)."""
    fam = j["family"] if "family" in j else j["provider"].astype(str).str.split(":").str[0]
    var = j["variant"] if "variant" in j else pd.Series([""] * len(j), index=j.index)
    j["bound"] = [_registry_bound(str(f), v) for f, v in zip(fam, var)]


def _add_bare_money(j: pd.DataFrame) -> None:
    """The money columns of a bare frame (no ``kind``), in place: what it says, nothing derived."""
    j["native_units"] = j["credits"] if "credits" in j else np.nan
    j["native_unit"] = j["credit_unit"] if "credit_unit" in j else ""
    j["cost_usd"] = j["cost_usd"] if "cost_usd" in j else np.nan
    j["usd_per_unit"], j["price_basis"], j["cost_note"] = np.nan, "", ""


def _add_money(j: pd.DataFrame) -> None:
    """The money columns of ``j``, in place, row by row from
    :func:`stemlab.runs.results.money_columns`."""
    from ..runs.results import money_columns

    rows = [money_columns(str(r.get("family", "")), str(r.get("kind", "")), {}, str(r.get("status", "")),
                          _num(r.get("credits")), r.get("credit_unit") or None, _num(r.get("cost_usd")),
                          _num(r.get("compute_seconds")), _num(r.get("audio_seconds")),
                          r.get("remote_id") or None) for r in j.to_dict("records")]
    for k in ("cost_usd", "usd_per_unit", "price_basis", "cost_note", "native_units", "native_unit"):
        j[k] = [r[k] for r in rows]


def jobs_view(jobs: pd.DataFrame) -> pd.DataFrame:
    """``jobs`` with the columns every report reads, also for results
    written before they existed: ``clock`` (``measured``/``simulated``;
    a ``[sandbox]`` label means simulated), the sandbox's virtual seconds in
    ``sim_<phase>_s`` (moved out of ``<phase>_s``), ``bound`` (from the
    provider registry), ``stems`` and the money columns
    (:func:`stemlab.runs.results.money_columns`: USD NaN when the price is
    unknown, never 0)."""
    if jobs is None or jobs.empty:
        return pd.DataFrame() if jobs is None else jobs
    j = jobs.copy()
    if "clock" not in j:
        _add_clock(j)
    if "bound" not in j:
        _add_bound(j)
    j["bound"] = j["bound"].fillna("").astype(str)
    if "stems" not in j:
        j["stems"] = ""
    if "native_unit" not in j and "kind" not in j:  # a bare frame: keep what it says
        _add_bare_money(j)
    if "native_unit" not in j:
        _add_money(j)
    for c in ("cost_note", "price_basis", "native_unit"):
        j[c] = j[c].fillna("").astype(str)
    return j


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _registry_bound(family: str, variant: Any) -> str:
    try:
        from ..providers import get_class

        cls = get_class(family)
    except Exception:
        return ""
    v = variant if isinstance(variant, str) and variant else ""
    return str(getattr(cls, "bound_variants", {}).get(v, getattr(cls, "bound", None)) or "")


def bounds(jobs: pd.DataFrame) -> dict[str, str]:
    """provider → ``"upper"``/``"lower"`` for the bounds among them (oracles,
    floors); options are absent."""
    j = jobs_view(jobs)
    if j.empty:
        return {}
    first = j.drop_duplicates("provider")
    return {str(p): str(b) for p, b in zip(first["provider"], first["bound"]) if b}


def buyable(jobs: pd.DataFrame) -> list[str]:
    """Providers that are options (not bounds), in job order."""
    j = jobs_view(jobs)
    if j.empty:
        return []
    b = bounds(j)
    return [p for p in dict.fromkeys(map(str, j["provider"])) if p not in b]


def target_order(targets: Iterable[Any]) -> list[str]:
    """The standard targets first (vocals, drums, bass, other,
    accompaniment), then the rest alphabetically."""
    have = list(dict.fromkeys(map(str, targets)))
    return [t for t in STANDARD_TARGETS if t in have] + sorted(t for t in have if t not in STANDARD_TARGETS)


def delivered(scores: pd.DataFrame, metric: str, jobs: pd.DataFrame | None = None) -> dict[str, tuple[str, ...]]:
    """provider → the targets it delivers that have references (scored
    rows of ``metric``; with ``jobs``, only stems the provider says it
    returns), in :func:`target_order`."""
    s = scores[scores["metric"] == metric]
    out = {str(p): tuple(target_order(g["target"])) for p, g in s.groupby("provider", sort=False)}
    if jobs is not None and not jobs.empty and "stems" in jobs:
        said: dict[str, set[str]] = {}  # the union over a provider's jobs; an unknown list (""/NaN) says nothing
        for p, x in zip(jobs["provider"], jobs["stems"]):
            if isinstance(x, str) and x.strip():
                said.setdefault(str(p), set()).update(t.strip() for t in x.split(",") if t.strip())
        out = {p: tuple(t for t in ts if p not in said or t in said[p]) for p, ts in out.items()}
    return out


def overall(scores: pd.DataFrame, metric: str, jobs: pd.DataFrame | None = None, *,
            sets: dict[str, tuple[str, ...]] | None = None, stat: str = "median",
            frames: str | None = None) -> pd.DataFrame:
    """Like-for-like overall numbers: for each target set (default
    :data:`TARGET_SETS`), the mean over its targets of each provider's
    per-target :func:`aggregate` value — only for providers that deliver
    every target of the set (a 2-stem service never averages against a
    4-stem one). Columns ``set, targets, provider, value, bound,
    aggregation``; a provider with a NaN target gets NaN."""
    sets = TARGET_SETS if sets is None else sets
    if scores.empty:
        return pd.DataFrame(columns=["set", "targets", "provider", "value", "bound", "aggregation"])
    lb = aggregate(scores, metric, frames=frames, tracks=stat, by=("provider", "target"))
    per = {(str(p), str(t)): float(v) for p, t, v in zip(lb["provider"], lb["target"], lb["value"])}
    label = str(lb["aggregation"].iloc[0]) if len(lb) else ""
    dl = delivered(scores, metric, jobs)
    bd = bounds(jobs) if jobs is not None and not jobs.empty else {}
    rows = []
    for name, targets in sets.items():
        for prov, ts in dl.items():
            if not set(targets) <= set(ts):
                continue
            vals = [per[(prov, t)] for t in targets]
            rows.append({"set": name, "targets": ", ".join(targets), "provider": prov,
                         "value": float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else float("nan"),
                         "bound": bd.get(prov, ""),
                         "aggregation": f"mean over {len(targets)} targets ({', '.join(targets)}) of {label}"})
    out = pd.DataFrame(rows, columns=["set", "targets", "provider", "value", "bound", "aggregation"])
    if len(out):
        sign = -1.0 if higher_is_better(metric) else 1.0
        order = {n: i for i, n in enumerate(sets)}
        out = out.assign(_s=out["set"].map(order), _k=(sign * out["value"]).fillna(math.inf),
                         _b=out["bound"].map({"": 0, "upper": 1, "lower": 2}))
        out = out.sort_values(["_s", "_b", "_k"], kind="stable").drop(columns=["_s", "_k", "_b"]).reset_index(drop=True)
    return out


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
    """Per provider whose time was **measured** here (local providers, live
    services): jobs, median seconds of each phase it has, turnaround
    p50/p95 and the real-time factor. Sandboxed services are not here: their
    seconds are simulated (:func:`simulated_latency_table`)."""
    j = jobs_view(jobs)
    if j.empty:
        return pd.DataFrame()
    done = j[(j["status"] == "done") & (j["clock"] == "measured")]
    rows = []
    for prov, g in done.groupby("provider", sort=False):
        tot = g["total_s"].astype(float).dropna()
        r: dict[str, Any] = {"provider": prov, "kind": g["kind"].iloc[0] if "kind" in g else "", "jobs": len(g)}
        for ph in ("upload", "queue", "processing", "download", "load", "separate"):
            col = f"{ph}_s"
            if col in g and g[col].notna().any():
                r[f"{ph}_s_median"] = float(g[col].astype(float).median())
        r["turnaround_p50_s"] = float(tot.quantile(0.5)) if len(tot) else float("nan")
        r["turnaround_p95_s"] = float(tot.quantile(0.95)) if len(tot) else float("nan")
        rtf = g["rtf"].astype(float).dropna() if "rtf" in g else pd.Series(dtype=float)
        r["rtf_median"] = float(rtf.median()) if len(rtf) else float("nan")
        if "scoring_s" in g and g["scoring_s"].notna().any():
            r["scoring_s_median"] = float(g["scoring_s"].astype(float).median())
        rows.append(r)
    out = pd.DataFrame(rows)
    out.attrs["clock"] = "measured"
    return out


def simulated_latency_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per **sandboxed** service: median *simulated* seconds (the sandbox's
    virtual service clock) of each phase and of the turnaround, p50/p95 —
    an emulation's numbers, never compared with measured ones."""
    j = jobs_view(jobs)
    if j.empty:
        return pd.DataFrame()
    done = j[(j["status"] == "done") & (j["clock"] == "simulated")]
    rows = []
    for prov, g in done.groupby("provider", sort=False):
        tot = g["sim_total_s"].astype(float).dropna()
        r: dict[str, Any] = {"provider": prov, "jobs": len(g)}
        for ph in ("upload", "queue", "processing", "download"):
            col = f"sim_{ph}_s"
            if col in g and g[col].notna().any():
                r[f"sim_{ph}_s_median"] = float(g[col].astype(float).median())
        r["sim_turnaround_p50_s"] = float(tot.quantile(0.5)) if len(tot) else float("nan")
        r["sim_turnaround_p95_s"] = float(tot.quantile(0.95)) if len(tot) else float("nan")
        r["measured_wall_s_median"] = float(g["total_s"].astype(float).median()) if g["total_s"].notna().any() \
            else float("nan")
        rows.append(r)
    out = pd.DataFrame(rows)
    out.attrs["clock"] = "simulated"
    return out


def cost_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per provider: what this run charged, in USD (NaN when any job's price
    is unknown: ``note`` says why and how to set it) and in the service's
    own unit (``units`` + ``unit``: seconds, credits, points, calls; compute
    seconds for local providers), audio minutes, USD per audio minute."""
    j = jobs_view(jobs)
    if j.empty:
        return pd.DataFrame()
    rows = []
    for prov, g in j.groupby("provider", sort=False):
        minutes = float(g["audio_seconds"].fillna(0).sum()) / 60
        usd_v = g["cost_usd"].astype(float)
        usd = float(usd_v.sum()) if usd_v.notna().all() else float("nan")
        units = g["native_units"].astype(float)
        unit = next((u for u in g["native_unit"] if u), "")
        notes = [n for n in dict.fromkeys(g["cost_note"]) if n]
        basis = [b for b in dict.fromkeys(g["price_basis"]) if b]
        rows.append({
            "provider": prov, "kind": g["kind"].iloc[0], "jobs": len(g), "audio_min": minutes,
            "usd": usd, "units": float(units.fillna(0).sum()), "unit": unit,
            "usd_per_audio_min": usd / minutes if minutes and math.isfinite(usd) else float("nan"),
            "note": "; ".join(notes) if notes else "; ".join(basis),
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


def quality_vs_cost(scores: pd.DataFrame, jobs: pd.DataFrame, metric: str, target: str | None = None, *,
                    volume: Any = None, prices: dict[str, float] | None = None, stat: str = "median",
                    frames: str | None = None, ci: float | None = 0.95) -> pd.DataFrame:
    """The quality–cost–latency points of ``target`` (default: vocals when
    scored, else the first target), one row per provider delivering it:

    * ``quality`` (+ ``ci_low``/``ci_high``): its :func:`aggregate` value
      of ``metric`` on that target alone — never a mean over whatever stems
      a provider returns;
    * ``usd_per_audio_min`` and ``usd_per_month``: what the stated
      ``volume`` (:class:`stemlab.reports.pricing.Volume`: songs per month
      and their length) costs at the cheapest plan covering it
      (``plan``), from the dated price tables and ``prices`` (service →
      USD per table unit; else the price the run's jobs were given) — NaN
      with ``price_note`` when the price is unknown; 0 for local providers;
    * ``measured_s`` (median measured turnaround per job) and
      ``simulated_s`` (median *simulated* turnaround of a sandbox) — never
      one column;
    * ``bound`` (``upper``/``lower``: oracles and floors, drawn as reference
      lines, never on a frontier).

    The label (``attrs["aggregation"]``) names metric, target and aggregation."""
    from .pricing import Volume, provider_monthly

    cols = ["provider", "kind", "bound", "target", "quality", "ci_low", "ci_high", "usd_per_audio_min",
            "usd_per_month", "plan", "price_note", "measured_s", "simulated_s", "clock", "aggregation"]
    if scores.empty:
        return pd.DataFrame(columns=cols)
    s = scores[scores["metric"] == metric]
    targets = target_order(s["target"])
    if not targets:
        return pd.DataFrame(columns=cols)
    target = target or ("vocals" if "vocals" in targets else targets[0])
    volume = volume or Volume()
    lb = aggregate(s[s["target"] == target], metric, frames=frames, tracks=stat, by=("provider",), ci=ci)
    if ci is None:
        lb["ci_low"] = lb["ci_high"] = float("nan")
    j = jobs_view(jobs)
    bd = bounds(j)
    label = f"{metric} on {target}: {lb['aggregation'].iloc[0]}" if len(lb) else ""
    rows = []
    for r in lb.itertuples():
        prov = str(r.provider)
        g = j[j["provider"] == prov] if not j.empty else j
        first = g.iloc[0] if len(g) else None
        kind = str(first["kind"]) if first is not None else ""
        done = g[g["status"] == "done"] if len(g) else g
        clock = str(first["clock"]) if first is not None else "measured"
        m = provider_monthly(first, volume, prices) if first is not None else {}
        rows.append({
            "provider": prov, "kind": kind, "bound": bd.get(prov, ""), "target": target,
            "quality": float(r.value), "ci_low": float(r.ci_low), "ci_high": float(r.ci_high),
            "usd_per_audio_min": m.get("usd_per_audio_min", float("nan")),
            "usd_per_month": m.get("usd_per_month", float("nan")), "plan": m.get("plan", ""),
            "price_note": m.get("note", ""),
            "measured_s": float(done["total_s"].astype(float).median()) if clock == "measured" and len(done)
            else float("nan"),
            "simulated_s": float(done["sim_total_s"].astype(float).median()) if clock == "simulated" and len(done)
            else float("nan"),
            "clock": clock, "aggregation": label,
        })
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["aggregation"] = label
    out.attrs["target"] = target
    out.attrs["volume"] = volume
    return out


def pareto_frontier(points: pd.DataFrame, quality: str = "quality", cost: str = "usd_per_audio_min", *,
                    higher_is_better: bool = True) -> pd.DataFrame:
    """The options no other option beats on both quality (higher, or lower
    when not ``higher_is_better``) and cost (lower), sorted by cost. Bounds
    (a ``bound`` column that is set: oracles, floors) and unknown costs
    (NaN) are never on it."""
    pts = points
    if "bound" in pts:
        pts = pts[pts["bound"].fillna("") == ""]
    pts = pts.dropna(subset=[quality, cost]).sort_values([cost, quality], ascending=[True, not higher_is_better])
    sign = 1.0 if higher_is_better else -1.0
    keep = []
    best = -math.inf
    for idx, r in pts.iterrows():
        if sign * r[quality] > best:
            keep.append(idx)
            best = sign * r[quality]
    return pts.loc[keep]


def recommend(points: pd.DataFrame, metric: str, volume: Any) -> dict[str, Any]:
    """The recommendation for one target's :func:`quality_vs_cost` points at
    ``volume`` (:class:`stemlab.reports.pricing.Volume`): ``pick`` — the
    option (never a bound) with the best quality among those with a known
    price within the monthly budget (ties: the cheaper), or None; and the
    options left out: ``unknown`` (price unknown), ``better_unknown`` (of
    those, the ones scoring better than the pick), ``over`` (over the
    budget), ``known`` (every option with a known price)."""
    hib = higher_is_better(metric)
    opts = points[(points["bound"].fillna("") == "") & points["quality"].notna()]
    known = opts[opts["usd_per_month"].notna()]
    unknown = opts[opts["usd_per_month"].isna()]
    within = (
        known if volume.budget_usd_month is None else known[known["usd_per_month"] <= volume.budget_usd_month + 1e-9]
    )
    over = known.drop(within.index)
    pick = None
    if len(within):
        within = within.assign(_q=within["quality"] * (1 if hib else -1))
        pick = within.sort_values(["_q", "usd_per_month"], ascending=[False, True], kind="stable").iloc[0]
    better_unknown = unknown if pick is None else unknown[
        (unknown["quality"] > pick["quality"]) if hib else (unknown["quality"] < pick["quality"])]
    return {"pick": pick, "unknown": unknown, "better_unknown": better_unknown, "over": over, "known": known}


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


def _base_provider(p: str) -> str:
    """``"mvsep:bs_roformer?x=1 [sandbox]"`` → ``"mvsep:bs_roformer"``."""
    return p.split(" [", 1)[0].split("?", 1)[0]


def published_beside(scores: pd.DataFrame, providers: Iterable[str], *, stat: str = "median",
                     published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The published scores of this run's providers (from
    :func:`stemlab.providers.local.zoo.published_frame`: the models' authors,
    audio-separator's ``models-scores.json``, MSST's table, MVSEP's list),
    one row per (provider, target, metric) — with, in *separate* columns, what
    this run measured for the same provider, target and metric
    (``measured``, ``measured_aggregation``, ``measured_tracks``; NaN when the
    run has no such score), over tracks with the publication's statistic
    (mean where it averaged songs — MSST, MVSEP — else ``stat``). The two are never one column: their datasets
    (``dataset``) and often their aggregations differ."""
    if published is None:
        from ..providers.local.zoo import published_frame

        published = published_frame()
    run_ids = pd.DataFrame({"provider": list(dict.fromkeys(str(p) for p in providers))})
    run_ids["base"] = run_ids["provider"].map(_base_provider)
    # every run provider of a published model (live and [sandbox], or with other ?params) gets its rows
    pub = published.rename(columns={"provider": "base"}).merge(run_ids, on="base", how="inner")
    cols = ["provider", "target", "metric", "published", "aggregation", "dataset", "n_tracks", "source", "note",
            "measured", "measured_aggregation", "measured_tracks"]
    if pub.empty:
        return pd.DataFrame(columns=cols)
    pub = pub.rename(columns={"value": "published"})
    # the statistic over tracks the publication used (mean over songs: MSST, MVSEP; else museval's median)
    pub["_tracks"] = ["mean" if re.search(r"mean over (songs|tracks)", str(a)) else stat for a in pub["aggregation"]]
    measured: dict[tuple[str, str, str, str], tuple[float, str, int]] = {}
    have = set(scores["metric"]) if not scores.empty else set()
    for m, tr in sorted({(m, tr) for m, tr in zip(pub["metric"], pub["_tracks"]) if m in have}):
        lb = leaderboard(scores, m, stat=tr, ci=None)
        agg = aggregation_of(lb)
        for p, t, v, n in zip(lb["provider"].astype(str), lb["target"].astype(str), lb["value"], lb["n_tracks"]):
            measured[(p, t, m, tr)] = (float(v), agg, int(n))
    keys = zip(pub["provider"], pub["target"], pub["metric"], pub["_tracks"])
    got = [measured.get(k, (math.nan, "", 0)) for k in keys]
    pub["measured"] = [g[0] for g in got]
    pub["measured_aggregation"] = [g[1] for g in got]
    pub["measured_tracks"] = [g[2] for g in got]
    return pub[cols].reset_index(drop=True)
