"""One self-contained HTML report (plotly.js inlined once, works offline),
plus Markdown and CSV tables for papers.

Sections: run summary, leaderboard (table + bar chart with CIs), per-track
heatmap, distributions, pairwise tests, quality-vs-cost Pareto plot, latency
breakdown and percentiles, cost table, failures (provider, reason, count),
embedded short audio clips and run metadata."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..metrics.aggregate import describe
from ..metrics.registry import unit_of
from ..runs.results import Results, load_results
from . import figures, stats, tables

__all__ = ["build_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:24px;color:#222}
h1{font-size:1.6em;margin-bottom:0} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.muted{color:#777;font-size:0.9em} .badge{background:#fde68a;border-radius:4px;padding:1px 6px;font-size:0.8em}
.fail{color:#b91c1c} .clip{display:inline-block;margin:4px 16px 4px 0;font-size:13px}
"""

_ERROR_HOOK = """<div id="js-errors" style="display:none"></div>
<script>window.__stemlabErrors=[];window.addEventListener('error',function(e){
window.__stemlabErrors.push(String(e.message));var d=document.getElementById('js-errors');
d.style.display='block';d.className='fail';d.textContent='JavaScript errors: '+window.__stemlabErrors.join('; ');});</script>"""


def _wide(lb: pd.DataFrame) -> pd.DataFrame:
    """provider × target values of a leaderboard (one value per cell: no
    aggregation happens here)."""
    w = lb.pivot(index="provider", columns="target", values="value")
    w.columns.name = None
    return w


def _convention(label: str) -> str:
    named = {"median_frames/median_tracks": "museval/SiSEC 2018 convention",
             "median_frames/mean_tracks": "demucs papers' convention", "track/mean_tracks": "MDX 2021 convention"}
    return f" ({named[label]})" if label in named else ""


def _counts(lb: pd.DataFrame) -> str:
    n = (lb["n_tracks"] + lb["n_nan_tracks"]).astype(int)  # tracks scored, NaN or not
    span = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    nan = int(lb["n_nan_tracks"].sum())
    return f"{span} track(s) per cell" + (f", {nan} NaN track value(s) skipped" if nan else "")


def _df_html(df: pd.DataFrame, floatfmt: str = "{:.2f}", table_id: str | None = None) -> str:
    if df is None or df.empty:
        return "<p class='muted'>(none)</p>"

    def f(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if not math.isfinite(float(v)) else floatfmt.format(float(v))
        return html.escape(str(v))

    def cell(v: Any) -> str:
        # exact value alongside the rounded text, for readers and tests
        if isinstance(v, (float, np.floating)) and math.isfinite(float(v)):
            return f"<td data-value='{float(v)!r}'>{f(v)}</td>"
        return f"<td>{f(v)}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    tid = f" id='{html.escape(table_id, quote=True)}'" if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Figures:
    """Inline plotly.js with the first figure only."""

    def __init__(self) -> None:
        self.first = True
        self.count = 0

    def __call__(self, fig) -> str:
        self.count += 1
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, div_id=f"fig{self.count}",
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        return f"<div class='plot'>{out}</div>"


def _audio_clips(res: Results, seconds: float = 5.0, max_providers: int = 12) -> str:
    """Short MP3 clips of one track's separated stems, from the stem cache."""
    from .. import audio
    from ..runs.cache import StemCache

    jobs = res.jobs
    if jobs.empty or "job_key" not in jobs:
        return "<p class='muted'>(no clips)</p>"
    done = jobs[jobs["status"] == "done"]
    if done.empty:
        return "<p class='muted'>(no clips)</p>"
    track = sorted(done["track"].unique())[0]
    cache = StemCache(res.path / "cache")
    parts = [f"<p>Track <b>{html.escape(track)}</b>, first {seconds:.0f} s (MP3 128 kb/s).</p>"]
    for _, r in done[done["track"] == track].head(max_providers).iterrows():
        stems = cache.get(r["job_key"])
        if stems is None:
            continue
        n = int(seconds * stems.sample_rate)
        items = []
        for name in stems.names:
            clip = np.clip(stems[name][:, :n], -1, 1)
            if not np.any(clip):
                continue
            data = audio.encode_bytes(clip, stems.sample_rate, "mp3", bitrate=128_000)
            b64 = base64.b64encode(data).decode()
            items.append(f"<span class='clip'>{html.escape(name)}<br><audio controls preload='none' "
                         f"src='data:audio/mpeg;base64,{b64}'></audio></span>")
        parts.append(f"<h4>{html.escape(str(r['provider']))}</h4>" + "".join(items))
    return "".join(parts)


def build_report(results: str | Path | Results, output: str | Path | None = None, *, clips: bool = True,
                 metric: str | None = None) -> Path:
    """Write ``report.html`` (+ ``report.md``, ``leaderboard.csv``) for a
    results directory; returns the HTML path."""
    res = results if isinstance(results, Results) else load_results(results)
    out = Path(output) if output is not None else res.path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    scores, jobs, meta = res.scores, res.jobs, res.meta
    metric = metric or tables.primary_metric(scores)
    if metric is not None and not scores.empty and metric not in set(scores["metric"]):
        raise InputError(f"report: no metric {metric!r} in results; have {sorted(set(scores['metric']))}", field="metric")
    fig = _Figures()
    sec: list[str] = []
    sandbox = any("[sandbox]" in str(p) for p in jobs.get("provider", []))
    n_tracks = jobs["track"].nunique() if not jobs.empty else 0
    n_prov = jobs["provider"].nunique() if not jobs.empty else 0
    js = meta.get("jobs", {})
    sec.append(
        f"<h1>{html.escape(str(meta.get('name', 'stemlab run')))}</h1>"
        f"<p class='muted'>run {html.escape(str(meta.get('run_id', '')))} · {html.escape(str(meta.get('finished_at', '')))}"
        f" · {n_tracks} track(s) × {n_prov} provider(s) · {js.get('done', 0)} done, {js.get('failed', 0)} failed,"
        f" {js.get('budget', 0)} over budget</p>"
        + ("<p><span class='badge'>sandbox</span> Remote services marked [sandbox] ran against stemlab's offline "
           "emulators, not the real services: their scores, latency and cost show the harness, not the vendor.</p>"
           if sandbox else "")
    )
    lb_csv = pd.DataFrame()
    if metric is not None:
        lb = tables.leaderboard(scores, metric)
        lb_csv = lb
        label = tables.aggregation_of(lb)
        sec.append(f"<h2>Leaderboard — {html.escape(metric)}</h2>"
                   f"<p class='muted'>aggregation <code class='aggregation'>{html.escape(label)}</code>: "
                   f"{html.escape(describe(label))}{_convention(label)}; "
                   f"{_counts(lb)}; 95% bootstrap CIs over tracks in the chart and leaderboard.csv.</p>")
        sec.append(_df_html(_wide(lb).reset_index(), table_id="leaderboard"))
        other = sorted(set(scores["metric"]) - {metric})
        for m in other:
            lbm = tables.leaderboard(scores, m, ci=None)
            lab = tables.aggregation_of(lbm)
            sec.append(f"<h3>{html.escape(m)} <span class='muted'>(<code class='aggregation'>{html.escape(lab)}"
                       f"</code>)</span></h3>" + _df_html(_wide(lbm).reset_index(), table_id=f"leaderboard-{m}"))
        sec.append(fig(figures.leaderboard_bar(scores, metric, lb=lb)))
        targets = sorted(set(scores[scores["metric"] == metric]["target"]))
        for tgt in targets[:6]:
            sec.append(fig(figures.track_heatmap(scores, metric, tgt)))
        sec.append(fig(figures.distribution(scores, metric)))
        # pairwise tests per target
        rows = []
        diff = f"mean A−B [{unit_of(metric)}]" if unit_of(metric) else "mean A−B"
        for tgt in targets:
            try:
                for c in stats.compare(scores, metric, tgt, n_boot=2000):
                    rows.append({"target": tgt, "A": c.a, "B": c.b, "n": c.n, diff: c.mean_diff,
                                 "CI low": c.ci_low, "CI high": c.ci_high, "A wins": c.win_rate,
                                 "Holm p": c.p_holm, "rank-biserial": c.rank_biserial, "verdict": c.verdict})
            except InputError:
                continue
        row_agg = label.split("/")[0]
        sec.append("<h2>Is A better than B?</h2><p class='muted'>Wilcoxon signed-rank over tracks, Holm-corrected per "
                   f"target, pairing each track's <code>{html.escape(row_agg)}</code> values; pairs with fewer than "
                   f"{stats.MIN_PAIRS_TEST} tracks are not tested.</p>")
        sec.append(_df_html(pd.DataFrame(rows), "{:.3g}", table_id="pairs"))
        pts = tables.quality_vs_cost(scores, jobs, metric)
        sec.append("<h2>Quality vs cost</h2>"
                   f"<p class='muted'>quality: {html.escape(tables.aggregation_of(pts))}.</p>")
        sec.append(fig(figures.pareto(pts, metric)))
        sec.append(_df_html(pts, table_id="quality-vs-cost"))
    sec.append("<h2>Latency</h2>")
    sec.append(fig(figures.latency_breakdown(jobs)))
    sec.append(_df_html(tables.latency_table(jobs)))
    sec.append("<h2>Cost</h2>" + _df_html(tables.cost_table(jobs), "{:.4g}"))
    fails = tables.failures_table(jobs)
    sec.append(f"<h2>Failures ({int(fails['count'].sum()) if not fails.empty else 0})</h2>" + _df_html(fails))
    if clips:
        sec.append("<h2>Listen</h2>" + _audio_clips(res))
    versions = pd.DataFrame(sorted((meta.get("versions") or {}).items()), columns=["package", "version"])
    sec.append("<h2>Run metadata</h2>"
               f"<p>git commit {html.escape(str(meta.get('git_commit')))} · host {html.escape(str(meta.get('host')))}"
               f" · spec hash {html.escape(str(meta.get('spec_hash')))}</p>" + _df_html(versions)
               + f"<details><summary>spec</summary><pre>{html.escape(json.dumps(meta.get('spec'), indent=1, default=str))}</pre></details>")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(meta.get('name', 'stemlab')))}</title>"
           f"<style>{_CSS}</style></head><body>{_ERROR_HOOK}{''.join(sec)}</body></html>")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    # paper tables
    md = [f"# {meta.get('name', 'stemlab run')}", ""]
    if metric is not None and not lb_csv.empty:
        label = tables.aggregation_of(lb_csv)
        md += [f"## {metric} — {label}", "", f"{describe(label)} ({_counts(lb_csv)}).", "",
               tables.to_markdown(_wide(lb_csv).reset_index()), ""]
        lb_csv.to_csv(out.with_name("leaderboard.csv"), index=False)
    md += ["## Latency", "", tables.to_markdown(tables.latency_table(jobs)), "",
           "## Failures", "", tables.to_markdown(fails), ""]
    out.with_name("report.md").write_text("\n".join(md), encoding="utf-8")
    return out
