"""Plotly figures of a results directory (interactive in notebooks, inlined
in the HTML report).

Conventions: providers are named by the legend and the hover text, never by
text labels on the plot (those pile up); bounds (oracles, floors) are
reference lines, never points on a frontier; measured and simulated
(sandbox) seconds never share an axis."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics.registry import higher_is_better, unit_of
from . import tables

__all__ = ["leaderboard_bar", "target_bar", "track_heatmap", "distribution", "pareto", "frontier", "quality_latency",
           "latency_breakdown", "framewise", "SIMULATED"]

#: how every simulated number is labelled
SIMULATED = "simulated: sandbox virtual seconds, not a measurement"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_BOUND_STYLE = {"upper": dict(color="#2a9d4b", dash="dash"), "lower": dict(color="#888888", dash="dot")}

_PHASE_COLORS = {
    "upload": "#636efa", "queue": "#ab63fa", "processing": "#ef553b", "download": "#00cc96",
    "separate": "#ffa15a", "scoring": "#19d3f3",
}


def _axis(metric: str) -> str:
    """``metric [unit]``, the unit as the metric registry declares it (none
    for a metric it does not declare)."""
    unit = unit_of(metric)
    return f"{metric} [{unit}]" if unit else metric


def _unit(metric: str) -> str:
    """`` unit`` after a hover value ('' for an undeclared metric)."""
    unit = unit_of(metric)
    return f" {unit}" if unit else ""


def leaderboard_bar(scores: pd.DataFrame, metric: str, stat: str = "median", *, frames: str | None = None,
                    lb: pd.DataFrame | None = None):
    """Bars of :func:`tables.leaderboard` (pass ``lb`` to draw a table
    already computed) with their bootstrap CIs; the title names the
    aggregation."""
    import plotly.graph_objects as go

    lb = tables.leaderboard(scores, metric, stat=stat, frames=frames) if lb is None else lb
    label = str(lb["aggregation"].iloc[0]) if len(lb) else ""
    fig = go.Figure()
    for tgt, g in lb.groupby("target", sort=False):
        err_hi = (g["ci_high"] - g["value"]).to_numpy()
        err_lo = (g["value"] - g["ci_low"]).to_numpy()
        fig.add_bar(
            name=str(tgt), x=g["provider"].astype(str), y=g["value"],
            error_y=dict(type="data", array=np.nan_to_num(err_hi), arrayminus=np.nan_to_num(err_lo), visible=True),
            hovertemplate="%{x}<br>%{y:.2f}" + _unit(metric) + "<extra>" + str(tgt) + "</extra>",
        )
    fig.update_layout(
        barmode="group", title=f"{metric} — {label} (95% bootstrap CI over tracks)",
        yaxis_title=_axis(metric), legend_title="target", height=420, margin=dict(t=60, b=120),
    )
    return fig


def track_heatmap(scores: pd.DataFrame, metric: str, target: str, *, frames: str | None = None):
    """provider × track heatmap of each track's own value (``median_frames``
    for framewise metrics unless ``frames`` says otherwise)."""
    import plotly.graph_objects as go

    m = tables.per_track(scores, metric, target, frames=frames)
    fig = go.Figure(go.Heatmap(z=m.to_numpy(), x=[str(c) for c in m.columns], y=[str(i) for i in m.index],
                               colorscale="Viridis", colorbar=dict(title=unit_of(metric)),
                               hovertemplate="%{y}<br>%{x}<br>%{z:.2f}" + _unit(metric) + "<extra></extra>"))
    fig.update_layout(title=f"{metric} per track ({tables.aggregation_of(m)}) — {target}",
                      height=max(300, 40 * len(m) + 160),
                      margin=dict(l=220, b=140))
    return fig


def distribution(scores: pd.DataFrame, metric: str, *, frames: str | None = None):
    """Box plot over tracks of each track's own value (one row per track:
    ``median_frames`` for framewise metrics unless ``frames`` says otherwise)."""
    import plotly.express as px

    from ..metrics.aggregate import track_values

    df = track_values(scores, metric, frames=frames, by=("provider", "target"))
    label = str(df["aggregation"].iloc[0]) if len(df) else ""
    fig = px.box(df, x="provider", y="value", color="target", points="all", hover_data=["track"],
                 title=f"{metric} ({label}) distribution over tracks")
    fig.update_layout(yaxis_title=_axis(metric), height=420, margin=dict(b=140))
    return fig


def _colors(names) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def _bound_lines(fig, points: pd.DataFrame, x0: float, x1: float, metric: str) -> None:
    """Bounds as horizontal reference lines, named in the legend."""
    for r in points[points["bound"].fillna("") != ""].itertuples():
        if not np.isfinite(r.quality):
            continue
        what = "upper bound: reads the references, cannot be bought" if r.bound == "upper" else "floor"
        fig.add_scatter(
            x=[x0, x1],
            y=[r.quality, r.quality],
            mode="lines",
            line=dict(width=1.5, **_BOUND_STYLE[r.bound]),
            name=f"{r.provider} ({'upper bound' if r.bound == 'upper' else 'floor'})",
            hovertemplate=f"{r.provider}<br>{what}<br>%{{y:.2f}}{_unit(metric)}<extra></extra>",
        )


def frontier(points: pd.DataFrame, metric: str):
    """Quality of one target (:func:`tables.quality_vs_cost` points, CI
    whiskers) against USD per audio minute at the stated volume, one legend
    entry per option; the Pareto frontier of the options with a known price
    as a line; bounds as reference lines; options with an unknown price are
    not drawn (the report says which and how to set their price)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if points.empty:
        return fig
    opts = points[(points["bound"].fillna("") == "") & points["quality"].notna()]
    known = opts[opts["usd_per_audio_min"].notna()]
    xmax = float(known["usd_per_audio_min"].max()) if len(known) else 0.1
    xmax = xmax if xmax > 0 else 0.1
    col = _colors(points["provider"])
    for r in known.itertuples():
        lo = r.quality - r.ci_low if np.isfinite(r.ci_low) else 0.0
        hi = r.ci_high - r.quality if np.isfinite(r.ci_high) else 0.0
        fig.add_scatter(
            x=[r.usd_per_audio_min],
            y=[r.quality],
            mode="markers",
            name=str(r.provider),
            marker=dict(size=12, color=col[r.provider], symbol="circle" if r.kind == "remote" else "square"),
            error_y=dict(type="data", array=[hi], arrayminus=[lo], visible=True),
            customdata=[[r.plan, r.usd_per_month]],
            hovertemplate=(
                f"{r.provider}<br>$%{{x:.4f}} per audio min<br>%{{customdata[0]}}: "
                f"$%{{customdata[1]:,.2f}}/month<br>%{{y:.2f}}{_unit(metric)}<extra></extra>"
            ),
        )
    front = tables.pareto_frontier(known, higher_is_better=higher_is_better(metric))
    if len(front) > 1:
        fig.add_scatter(
            x=front["usd_per_audio_min"],
            y=front["quality"],
            mode="lines",
            line=dict(dash="dash", color="#444"),
            name="Pareto frontier (buyable, known price)",
            hoverinfo="skip",
        )
    _bound_lines(fig, points, -0.04 * xmax, 1.08 * xmax, metric)
    target = str(points["target"].iloc[0])
    fig.update_layout(title=f"{target}: quality vs cost", xaxis_title="USD per audio minute at the stated volume",
                      yaxis_title=_axis(metric), height=480, legend=dict(font=dict(size=11), orientation="h", y=-0.22),
                      xaxis=dict(range=[-0.04 * xmax, 1.08 * xmax]), margin=dict(t=50, r=10))
    return fig


def quality_latency(points: pd.DataFrame, metric: str, clock: str = "measured"):
    """Quality of one target against the median turnaround per job, on one
    clock only: ``measured`` (local providers, live services: wall seconds
    measured here) or ``simulated`` (sandboxes: virtual service seconds).
    Bounds are reference lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if points.empty:
        return fig
    xcol = "measured_s" if clock == "measured" else "simulated_s"
    pts = points[(points["bound"].fillna("") == "") & points[xcol].notna() & points["quality"].notna()]
    col = _colors(points["provider"])
    for r in pts.itertuples():
        x = getattr(r, xcol)
        fig.add_scatter(
            x=[x],
            y=[r.quality],
            mode="markers",
            name=str(r.provider),
            marker=dict(size=12, color=col[r.provider], symbol="circle" if r.kind == "remote" else "square"),
            hovertemplate=(f"{r.provider}<br>%{{x:.3g}} s {clock}<br>%{{y:.2f}}{_unit(metric)}<extra></extra>"),
        )
    xs = pts[xcol].astype(float)
    lo, hi = (float(xs.min()) / 1.5, float(xs.max()) * 1.5) if len(xs) and xs.min() > 0 else (0.01, 10.0)
    _bound_lines(fig, points, lo, hi, metric)
    target = str(points["target"].iloc[0])
    title = (f"{target}: quality vs measured latency" if clock == "measured"
             else f"{target}: quality vs SIMULATED latency<br><sub>{SIMULATED}</sub>")
    fig.update_layout(title=dict(text=title, font=dict(size=13), x=0.01),
                      xaxis_title=("median turnaround per job [s, measured here]" if clock == "measured"
                                   else "median turnaround per job [s, simulated by the sandbox]"),
                      xaxis=dict(type="log", range=[np.log10(lo), np.log10(hi)]),
                      yaxis_title=_axis(metric), height=440, margin=dict(t=70, r=10), legend=dict(font=dict(size=11)))
    return fig


def pareto(points: pd.DataFrame, metric: str):
    """Deprecated name of :func:`frontier`."""
    return frontier(points, metric)


def target_bar(lb: pd.DataFrame, metric: str, target: str, bounds: dict[str, str] | None = None):
    """One target's leaderboard (rows of :func:`tables.leaderboard`) as
    horizontal bars with their bootstrap CIs; bounds in grey/green, named."""
    import plotly.graph_objects as go

    bounds = bounds or {}
    g = lb[lb["target"] == target].dropna(subset=["value"])
    g = g.sort_values("value", ascending=not higher_is_better(metric))
    label = str(g["aggregation"].iloc[0]) if len(g) else ""
    fig = go.Figure()
    names = [f"{p} ({'upper bound' if bounds[p] == 'upper' else 'floor'})" if p in bounds else str(p)
             for p in g["provider"].astype(str)]
    colors = [("#2a9d4b" if bounds.get(p) == "upper" else "#aaaaaa") if p in bounds else "#1f77b4"
              for p in g["provider"].astype(str)]
    err_hi = (g["ci_high"] - g["value"]).to_numpy()
    err_lo = (g["value"] - g["ci_low"]).to_numpy()
    fig.add_bar(y=names, x=g["value"], orientation="h", marker_color=colors, name=target,
                error_x=dict(type="data", array=np.nan_to_num(err_hi), arrayminus=np.nan_to_num(err_lo), visible=True),
                hovertemplate="%{y}<br>%{x:.2f}" + _unit(metric) + "<extra></extra>")
    fig.update_layout(title=dict(text=f"{target}: {metric} — {label}<br><sub>95% bootstrap CI over tracks</sub>",
                                 font=dict(size=13), x=0.01),
                      xaxis_title=_axis(metric), yaxis=dict(autorange="reversed", automargin=True),
                      height=max(260, 28 * len(g) + 130), margin=dict(t=70, r=10), showlegend=False)
    return fig


def latency_breakdown(jobs: pd.DataFrame, clock: str = "measured"):
    """Median seconds per phase, stacked, per provider — on ONE clock:
    ``measured`` (wall seconds measured here) or ``simulated`` (a sandbox's
    virtual service seconds)."""
    import plotly.graph_objects as go

    lat = tables.latency_table(jobs) if clock == "measured" else tables.simulated_latency_table(jobs)
    fig = go.Figure()
    if lat.empty:
        return fig
    pre = "" if clock == "measured" else "sim_"
    for ph, color in _PHASE_COLORS.items():
        col = f"{pre}{ph}_s_median"
        if col in lat and ph != "scoring":
            fig.add_bar(name=ph, y=lat["provider"], x=lat[col].fillna(0), marker_color=color, orientation="h",
                        hovertemplate="%{y}<br>" + ph + ": %{x:.3g} s" + ("" if clock == "measured" else " (simulated)")
                        + "<extra></extra>")
    title = ("Measured latency per job: median seconds per phase (wall clock, this machine)" if clock == "measured"
             else f"SIMULATED service latency per job: median virtual seconds per phase ({SIMULATED})")
    fig.update_layout(barmode="stack", title=dict(text=title, font=dict(size=14)),
                      xaxis_title="seconds" + (" [measured]" if clock == "measured" else " [simulated]"),
                      yaxis=dict(autorange="reversed", automargin=True), height=max(240, 30 * len(lat) + 120),
                      margin=dict(t=50, r=10))
    return fig


def framewise(
    frames: pd.DataFrame, track: str, target: str, metric: str = "SDR", providers: Sequence[str] | None = None
):
    import plotly.graph_objects as go

    df = frames[(frames["track"] == track) & (frames["target"] == target) & (frames["metric"] == metric)]
    fig = go.Figure()
    for prov, g in df.groupby("provider", sort=False):
        if providers and prov not in providers:
            continue
        fig.add_scatter(x=g["time"], y=g["value"], mode="lines+markers", name=str(prov))
    fig.update_layout(title=f"framewise {metric} — {track} / {target}", xaxis_title="time [s]",
                      yaxis_title=_axis(metric), height=380)
    return fig
