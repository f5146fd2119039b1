"""Plotly figures of a results directory (interactive in notebooks, inlined
in the HTML report)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..metrics.registry import higher_is_better, unit_of
from . import tables

__all__ = ["leaderboard_bar", "track_heatmap", "distribution", "pareto", "latency_breakdown", "framewise"]

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


def pareto(points: pd.DataFrame, metric: str):
    """Quality vs USD per audio minute; the frontier as a line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if points.empty:
        return fig
    fig.add_scatter(
        x=points["usd_per_min"], y=points["quality"], mode="markers+text", text=points["provider"],
        textposition="top center", marker=dict(size=11, color=np.where(points.get("kind", "") == "remote", "#ef553b", "#636efa")),
        name="providers", hovertemplate="%{text}<br>$%{x:.3f}/min<br>%{y:.2f}" + _unit(metric) + "<extra></extra>",
    )
    front = tables.pareto_frontier(points, higher_is_better=higher_is_better(metric))
    fig.add_scatter(x=front["usd_per_min"], y=front["quality"], mode="lines", line=dict(dash="dash", color="#444"),
                    name="Pareto frontier")
    label = str(points["aggregation"].iloc[0]) if "aggregation" in points and len(points) else "mean over targets"
    fig.update_layout(title=f"Quality vs cost ({metric}, {label})",
                      xaxis_title="USD per minute of audio", yaxis_title=_axis(metric), height=460)
    return fig


def latency_breakdown(jobs: pd.DataFrame):
    import plotly.graph_objects as go

    lat = tables.latency_table(jobs)
    fig = go.Figure()
    if lat.empty:
        return fig
    for ph, color in _PHASE_COLORS.items():
        col = f"{ph}_s_median"
        if col in lat:
            fig.add_bar(name=ph, x=lat["provider"], y=lat[col].fillna(0), marker_color=color)
    fig.update_layout(barmode="stack", title="Latency per job: median seconds per phase",
                      yaxis_title="seconds", height=420, margin=dict(b=140))
    return fig


def framewise(frames: pd.DataFrame, track: str, target: str, metric: str = "SDR", providers: Sequence[str] | None = None):
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
