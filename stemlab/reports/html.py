"""One self-contained HTML report (plotly.js inlined once, works offline),
plus Markdown and CSV sidecars for papers, designed for two readers:

* the **first screen** answers both: a researcher's per-target leaderboard
  (value and 95 % bootstrap CI in every cell, the exact metric, unit and
  aggregation in the header; bounds below a line) and a buyer's
  recommendation for the stated volume and budget with its cost, next to
  the quality–cost frontier of the buyable options;
* then per-target tabs (every metric with CIs, bars, per-track heatmap,
  paired tests only where there are enough tracks — otherwise one sentence
  with the tracks a test would need), like-for-like overall numbers per
  target set, quality vs cost and vs latency per target, procurement at the
  stated volume (plan, USD per audio minute and per month; "price unknown"
  with how to set it, never $0), time in two clocks that never share a
  table or an axis (measured here / simulated by a sandbox), the run's
  charges in USD and the services' units, failures, listening (the same
  excerpt of mixture, reference and every estimate, with spectrograms),
  notes on numbers that look odd, and run metadata.

Every number over tracks comes from :func:`stemlab.metrics.aggregate.aggregate`
(through :mod:`.tables`). The page skeleton and stylesheet are the templates
in ``reports/templates`` (:mod:`.templates`)."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..metrics.aggregate import describe
from ..metrics.registry import higher_is_better, unit_of
from ..runs.results import Results, load_results
from . import figures, stats, tables
from .pricing import PRICING, Volume, price_table
from .templates import render_page

__all__ = ["build_report", "sidecar_paths", "default_output"]

_E = html.escape
_BOUND_WORD = {"upper": "upper bound", "lower": "floor"}


def _convention(label: str) -> str:
    named = {"median_frames/median_tracks": "museval/SiSEC 2018 convention",
             "median_frames/mean_tracks": "demucs papers' convention", "track/mean_tracks": "MDX 2021 convention"}
    return f" ({named[label]})" if label in named else ""


def _counts(lb: pd.DataFrame) -> str:
    n = (lb["n_tracks"] + lb["n_nan_tracks"]).astype(int)  # tracks scored, NaN or not
    span = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    nan = int(lb["n_nan_tracks"].sum())
    return f"{span} track(s) per cell" + (f", {nan} NaN track value(s) skipped" if nan else "")


def sidecar_paths(output: str | Path) -> tuple[Path, Path]:
    """The Markdown and CSV written beside a report: named after it
    (``X.html`` → ``X.md``, ``X.leaderboard.csv``), so two reports in one
    folder never overwrite each other's."""
    out = Path(output)
    return out.with_suffix(".md"), out.with_name(f"{out.stem}.leaderboard.csv")


def default_output(run_id: str) -> Path:
    """``reports/<run-id>/report.html`` (relative to the working directory):
    the reports folder's default home of generated reports."""
    return Path("reports") / (run_id or "run") / "report.html"


# ------------------------------------------------------------------ cells and tables

@dataclass
class Cell:
    """A table cell: HTML ``body``, the exact ``value`` (``data-value``), extra attributes and class."""

    body: str
    value: float | None = None
    cls: str = ""
    attrs: dict[str, str] = field(default_factory=dict)

    def td(self, tag: str = "td") -> str:
        a = "".join(f" {k}='{_E(v, quote=True)}'" for k, v in self.attrs.items())
        if self.value is not None and math.isfinite(self.value):
            a += f" data-value='{self.value!r}'"
        c = f" class='{self.cls}'" if self.cls else ""
        return f"<{tag}{c}{a}>{self.body}</{tag}>"


def _fmt(v: Any, fmt: str = "{:.2f}") -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool):
        f = float(v)
        return "–" if not math.isfinite(f) else fmt.format(f)
    return _E(str(v))


def _cell(v: Any, fmt: str = "{:.2f}", cls: str = "") -> Cell:
    if isinstance(v, Cell):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return Cell(str(int(v)), float(v), cls)
    if isinstance(v, (float, np.floating)):
        return Cell(_fmt(v, fmt), float(v), cls)
    return Cell(_E("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)), None, cls or "text")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any] | tuple[str, Sequence[Any]]], *, table_id: str,
           fmt: str = "{:.2f}", cls: str = "") -> str:
    """A table; a row given as ``(tr class, cells)`` gets that class (``sep``
    rows span every column)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for r in rows:
        klass, cells = ("", r) if not (isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], str)
                                       and r[0] in ("sep", "boundrow", "")) else r
        if klass == "sep":
            body.append(f"<tr class='sep'><td colspan='{len(header)}'>{cells[0]}</td></tr>")
            continue
        tds = "".join(_cell(v, fmt).td() for v in cells)
        body.append(f"<tr{f' class={chr(39)}{klass}{chr(39)}' if klass else ''}>{tds}</tr>")
    c = f" class='{cls}'" if cls else ""
    return (f"<table id='{_E(table_id, quote=True)}'{c}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _df_table(df: pd.DataFrame, table_id: str, fmt: str = "{:.2f}", headers: Mapping[str, str] | None = None) -> str:
    if df is None or df.empty:
        return "<p class='muted'>(none)</p>"
    heads = [_E((headers or {}).get(str(c), str(c))) for c in df.columns]
    return _table(heads, [list(r) for r in df.itertuples(index=False)], table_id=table_id, fmt=fmt)


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


def _tabs(group: str, panels: list[tuple[str, str, str]]) -> str:
    """Tabs: ``(id, label, html)`` panels, the first shown."""
    if not panels:
        return ""
    bar = "".join(f"<button type='button' data-tab='{_E(pid)}'{' class=on' if i == 0 else ''}>{_E(label)}</button>"
                  for i, (pid, label, _) in enumerate(panels))
    body = "".join(f"<section class='tabpanel{' on' if i == 0 else ''}' id='{_E(pid)}' data-group='{_E(group)}'>"
                   f"{content}</section>" for i, (pid, _, content) in enumerate(panels))
    return f"<div class='tabs' data-group='{_E(group)}'>{bar}</div>{body}"


def _rows(df: pd.DataFrame) -> Iterable[Any]:
    """``df.itertuples()``, its rows typed loosely (their fields are the
    frame's columns, which the stubs cannot know)."""
    return df.itertuples()


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


# ------------------------------------------------------------------ notes on odd numbers

class _Notes:
    """Explanations of numbers that look odd; cells link to them (†)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (key, html)
        self._ids: dict[str, int] = {}

    def ref(self, key: str, text: str) -> str:
        if key not in self._ids:
            self.items.append((key, text))
            self._ids[key] = len(self.items)
        i = self._ids[key]
        return f"<a href='#note-{i}' title='{_E(re.sub('<[^>]+>', '', text), quote=True)}'>†{i}</a>"

    def html(self) -> str:
        return "".join(f"<p class='note' id='note-{i}'><b>†{i}</b> {t}</p>" for i, (_, t) in enumerate(self.items, 1))


def _odd_value_note(notes: _Notes, provider: str, metric: str, target: str, value: float, bound: str) -> str:
    """A † for a finite value that looks odd (|value| > 100 dB)."""
    if not (math.isfinite(value) and abs(value) > 100 and unit_of(metric) == "dB"):
        return ""
    crit = metric.split("_")[0].upper()
    if provider.startswith("baseline:mixture"):
        text = (f"<b>{_E(provider)}</b>, {crit} {value:.2f} dB ({_E(target)}): this floor returns the mixture itself "
                "as every estimate. The mixture is an exact sum of the references, so BSSEval's projection finds "
                "no component outside their span: the artifact term is zero up to rounding and "
                f"{crit} = 10·log10(target+interference / artifacts) is limited only by floating-point precision. "
                "It measures nothing about quality; read this floor's SDR and SIR.")
        return notes.ref(f"mixture-{crit}", text)
    text = (f"<b>{_E(provider)}</b>, {_E(metric)} {value:.2f} dB on {_E(target)}: above 100 dB a BSSEval "
            "criterion divides by an error term that is zero up to rounding (an estimate inside the span of the "
            "references"
            + (", as a floor's is" if bound == "lower" else "") + "); the number says the term vanished, not that "
            "the separation is that good.")
    return notes.ref(f"big-{provider}-{metric}", text)


def _nan_note(notes: _Notes, scores: pd.DataFrame, provider: str, metric: str, target: str) -> str:
    if "nan_reason" not in scores:
        return ""
    sel = scores[(scores["provider"] == provider) & (scores["metric"] == metric) & (scores["target"] == target)]
    reasons = [r for r in dict.fromkeys(sel["nan_reason"].fillna("").astype(str)) if r]
    if not reasons:
        return ""
    crit = "BSSEval" if metric.endswith("_bsseval_v4") else metric
    short = re.sub(r"estimate '[^']+'", "the estimate", reasons[0])
    return notes.ref(f"nan-{provider}-{crit}", f"<b>{_E(provider)}</b>: {_E(crit)} is NaN — {_E(short)}"
                     + (" (museval refuses such input; stemlab marks the frames NaN and counts them)"
                        if crit == "BSSEval" and "museval" not in short else ""))


# ------------------------------------------------------------------ sections

def _lb_cell(r: Any, metric: str, notes: _Notes, scores: pd.DataFrame, bound: str, best: bool = False) -> Cell:
    v = float(r.value)
    if not math.isfinite(v):
        return Cell("n/a" + _nan_note(notes, scores, str(r.provider), metric, str(r.target)), None, "")
    ci = (f"<span class='ci'>[{r.ci_low:.2f}, {r.ci_high:.2f}]</span>"
          if math.isfinite(float(r.ci_low)) and math.isfinite(float(r.ci_high)) else
          "<span class='ci'>no CI: n &lt; 3</span>")
    odd = _odd_value_note(notes, str(r.provider), metric, str(r.target), v, bound)
    attrs = {}
    if math.isfinite(float(r.ci_low)):
        attrs = {"data-ci-low": repr(float(r.ci_low)), "data-ci-high": repr(float(r.ci_high))}
    return Cell(f"{v:.2f}{odd}{ci}", v, "best" if best else "", attrs)


def _ordered_providers(lb: pd.DataFrame, bounds: dict[str, str], metric: str, key_target: str | None) -> list[str]:
    """Options first (by ``key_target``'s value, best first; those without it
    after, by their best target), then upper bounds, then floors."""
    hib = higher_is_better(metric)
    provs = list(dict.fromkeys(lb["provider"].astype(str)))

    def key(p: str) -> tuple[int, float]:
        g = lb[lb["provider"].astype(str) == p]
        v = g[g["target"] == key_target]["value"] if key_target else pd.Series(dtype=float)
        if len(v) and math.isfinite(float(v.iloc[0])):
            return 0, -float(v.iloc[0]) if hib else float(v.iloc[0])
        fin = g["value"].astype(float).dropna()
        return 1, (-float(fin.max()) if hib else float(fin.min())) if len(fin) else math.inf

    opts = sorted((p for p in provs if p not in bounds), key=key)
    up = sorted((p for p in provs if bounds.get(p) == "upper"), key=key)
    lo = sorted((p for p in provs if bounds.get(p) == "lower"), key=key)
    return opts + up + lo


def _provider_label(p: str, bounds: dict[str, str]) -> str:
    tag = ""
    if p in bounds:
        tag = f" <span class='badge {'upper' if bounds[p] == 'upper' else 'bound'}'>{_BOUND_WORD[bounds[p]]}</span>"
    if "[sandbox]" in p:
        tag += " <span class='badge sim'>sandbox</span>"
    return _E(p.replace(" [sandbox]", "")) + tag


def _leaderboard_section(scores: pd.DataFrame, metric: str, lb: pd.DataFrame, bounds: dict[str, str],
                         notes: _Notes) -> str:
    label = tables.aggregation_of(lb)
    targets = tables.target_order(lb["target"])
    key_t = targets[0] if targets else None
    order = _ordered_providers(lb, bounds, metric, key_t)
    unit = unit_of(metric)
    hib = higher_is_better(metric)
    best: dict[str, float] = {}
    for t in targets:
        v = lb[(lb["target"] == t) & ~lb["provider"].astype(str).isin(list(bounds))]["value"].astype(float).dropna()
        if len(v):
            best[t] = float(v.max() if hib else v.min())
    rows: list[Any] = []
    sep_done = False
    for p in order:
        if p in bounds and not sep_done:
            rows.append(("sep", ["bounds — not options: oracles read the reference stems, floors are what doing "
                                 "nothing scores"]))
            sep_done = True
        g = lb[lb["provider"].astype(str) == p].set_index("target")
        cells: list[Any] = [Cell(_provider_label(p, bounds), None, "text", {"data-provider": p})]
        for t in targets:
            if t in g.index:
                r = g.loc[t]
                rr = type("R", (), {"provider": p, "target": t, "value": r["value"], "ci_low": r["ci_low"],
                                    "ci_high": r["ci_high"]})
                cells.append(_lb_cell(rr, metric, notes, scores, bounds.get(p, ""),
                                      best=p not in bounds and best.get(t) == float(r["value"])))
            else:
                cells.append(Cell("<span class='muted'>not delivered</span>", None, "muted"))
        rows.append(("boundrow" if p in bounds else "", cells))
    u = f" [{unit}]" if unit else ""
    head = ["provider"] + [_E(t) for t in targets]
    return (f"<p class='small'><b>{_E(metric)}{_E(u)}</b>, {'higher' if hib else 'lower'} is better · aggregation "
            f"<code class='aggregation'>{_E(label)}</code>: {_E(describe(label))}{_convention(label)} · "
            f"{_counts(lb)} · brackets: 95 % percentile-bootstrap CI over tracks · rows: options by "
            f"{_E(key_t or '')}, best in bold; bounds below the line.</p>"
            + _table(head, rows, table_id="leaderboard", cls="lb"))


def _overall_section(scores: pd.DataFrame, metric: str, jobs: pd.DataFrame, bounds: dict[str, str],
                     stat: str = "median") -> tuple[str, pd.DataFrame]:
    ov = tables.overall(scores, metric, jobs, stat=stat)
    if ov.empty:
        return "", ov
    u = unit_of(metric)
    parts = []
    for name, g in ov.groupby("set", sort=False):
        rows = [[Cell(_provider_label(str(r.provider), bounds), None, "text", {"data-provider": str(r.provider)}),
                 float(r.value) if math.isfinite(float(r.value)) else Cell("n/a (a target is NaN)")]
                for r in _rows(g)]
        parts.append(f"<h3>{_E(str(name))}: {_E(str(g['targets'].iloc[0]))}</h3>"
                     f"<p class='muted small'>{_E(str(g['aggregation'].iloc[0]))} — only providers that deliver "
                     f"all {len(str(g['targets'].iloc[0]).split(','))} targets.</p>"
                     + _table(["provider", f"{_E(metric)} [{_E(u)}]" if u else _E(metric)], rows,
                              table_id=f"overall-{_slug(str(name))}"))
    return "".join(parts), ov


def _power_sentence(ps: dict[str, Any]) -> str:
    n, t = ps["n"], ps["target"]
    head = (f"No paired tests on <b>{_E(t)}</b>: {n} track(s) per pair, and the Wilcoxon signed-rank test needs at "
            f"least {stats.MIN_PAIRS_TEST} (with n ≤ 5 no two-sided p can reach 0.05).")
    if not ps["pairs"]:
        return head + (" No pair of providers has per-track differences with a spread to estimate from (finite on "
                       "≥ 2 tracks, non-zero): no power estimate.")
    a, b = ps["closest"]
    return (head + f" From the observed spread of per-track differences ({ps['pairs']} pair(s) of providers), "
            f"the median pair (|d<sub>z</sub>| = {ps['median_dz']:.2f}) would need "
            f"<b>{ps['n_needed']} tracks</b> for {ps['power']:.0%} power at α = {ps['alpha']:g}, and the closest pair "
            f"({_E(a)} vs {_E(b)}, |d<sub>z</sub>| = {ps['closest_dz']:.2f}) <b>{ps['closest_n_needed']} tracks</b> "
            "(normal approximation ÷ the Wilcoxon test's efficiency 3/π; no multiplicity correction).")


def _pairs_html(scores: pd.DataFrame, metric: str, target: str, options: list[str]) -> str:
    have = list(dict.fromkeys(scores[(scores["metric"] == metric) & (scores["target"] == target)]["provider"]))
    provs = [p for p in options if p in have]
    if len(provs) < 2:  # bounds only (e.g. a study of oracles): compare what there is
        provs = have
    if len(provs) < 2:
        return "<p class='muted'>Fewer than two providers deliver this target: nothing to compare.</p>"
    ps = stats.power_summary(scores, metric, target, provs)
    if not ps["testable"]:
        return f"<p id='power-{_slug(target)}'>{_power_sentence(ps)}</p>"
    comps = stats.compare(scores, metric, target, provs, n_boot=2000)
    u = unit_of(metric)
    diff = f"mean A−B [{u}]" if u else "mean A−B"
    rows = [[c.a, c.b, c.n, c.mean_diff, c.ci_low, c.ci_high, c.win_rate, c.p_holm, c.rank_biserial, c.verdict]
            for c in comps if c.n >= stats.MIN_PAIRS_TEST]
    few = sum(1 for c in comps if c.n < stats.MIN_PAIRS_TEST)
    sig = sum(1 for c in comps if "better" in c.verdict)
    t = _table(["A", "B", "n", _E(diff), "CI low", "CI high", "A wins", "Holm p", "rank-biserial", "verdict"], rows,
               table_id=f"pairs-{_slug(target)}", fmt="{:.3g}")
    return (f"<details><summary>{len(rows)} pair(s) of options tested on {_E(target)} (Wilcoxon signed-rank, "
            f"Holm-corrected): {sig} significant at α = 0.05"
            + (f"; {few} pair(s) with fewer than {stats.MIN_PAIRS_TEST} shared tracks not tested" if few else "")
            + f"</summary>{t}</details>")


def _target_panel(scores: pd.DataFrame, target: str, metrics: list[str], primary: str, bounds: dict[str, str],
                  options: list[str], fig: _Figures, notes: _Notes, stat: str) -> str:
    lbs = {m: tables.leaderboard(scores[scores["target"] == target], m, stat=stat) for m in metrics
           if ((scores["metric"] == m) & (scores["target"] == target)).any()}
    if primary not in lbs:
        return "<p class='muted'>No scores for this target.</p>"
    order = _ordered_providers(lbs[primary], bounds, primary, target)
    ms = [primary] + [m for m in metrics if m in lbs and m != primary]
    head = ["provider"] + [f"{_E(m)}{f' [{_E(unit_of(m))}]' if unit_of(m) else ''}<br><span class='muted small'>"
                           f"{_E(tables.aggregation_of(lbs[m]))}</span>" for m in ms]
    rows: list[Any] = []
    sep = False
    for p in order:
        if p in bounds and not sep:
            rows.append(("sep", ["bounds — not options"]))
            sep = True
        cells: list[Any] = [Cell(_provider_label(p, bounds), None, "text", {"data-provider": p})]
        for m in ms:
            g = lbs[m][lbs[m]["provider"].astype(str) == p]
            if g.empty:
                cells.append(Cell("–"))
                continue
            r = g.iloc[0]
            rr = type("R", (), {"provider": p, "target": target, "value": r["value"], "ci_low": r["ci_low"],
                                "ci_high": r["ci_high"]})
            cells.append(_lb_cell(rr, m, notes, scores, bounds.get(p, "")))
        rows.append(("boundrow" if p in bounds else "", cells))
    lbp = lbs[primary]
    parts = [f"<p class='muted small'>{_E(target)}: every metric's {_counts(lbp)}; brackets: 95 % bootstrap CI "
             "over tracks; header: unit and aggregation of each column.</p>",
             _table(head, rows, table_id=f"target-{_slug(target)}"),
             "<div class='plots2'>", fig(figures.target_bar(lbp, primary, target, bounds)),
             fig(figures.track_heatmap(scores, primary, target)), "</div>",
             f"<h3>Is A better than B? ({_E(target)}, {_E(primary)})</h3>",
             _pairs_html(scores, primary, target, options)]
    return "".join(parts)


def _secs(v: float) -> str:
    return f"{v:,.0f} s" if v >= 100 else f"{v:.3g} s"


def _latency_text(r: Any) -> str:
    if math.isfinite(float(r["measured_s"])):
        return f"{_secs(float(r['measured_s']))} measured"
    if math.isfinite(float(r["simulated_s"])):
        return f"{_secs(float(r['simulated_s']))} <span class='badge sim'>simulated</span>"
    return "–"


def _buyer_card(points_by_target: dict[str, pd.DataFrame], metric: str, volume: Volume, buyer_target: str,
                fig: _Figures, sandbox: bool) -> tuple[str, pd.DataFrame]:
    u = unit_of(metric)
    rows = []
    recs = []
    for t, pts in points_by_target.items():
        rec = tables.recommend(pts, metric, volume)
        p = rec["pick"]
        if p is None:
            rows.append([Cell(_E(t), None, "text"), Cell("<span class='muted'>no buyable option with a known price"
                                                         + (" within the budget" if volume.budget_usd_month is not None
                                                            else "") + "</span>", None, "text"), "", "", ""])
            continue
        q = (f"{p['quality']:.2f}<span class='ci'>[{p['ci_low']:.2f}, {p['ci_high']:.2f}]</span>"
             if math.isfinite(p["ci_low"]) else f"{p['quality']:.2f}")
        bu = rec["better_unknown"]
        also = (
            (
                "<span class='ci'>higher, price unknown: "
                f"{', '.join(_E(str(x).replace(' [sandbox]', '')) for x in bu['provider'])}"
                "</span>"
            )
            if len(bu)
            else ""
        )
        rows.append([Cell(_E(t), None, "text"), Cell(_provider_label(str(p["provider"]), {}).replace(":", ":<wbr>")
                                                     + also, None, "text"),
                     Cell(q, float(p["quality"])),
                     Cell(f"${p['usd_per_month']:,.2f}<span class='ci'>{_E(str(p['plan']))}</span>",
                          float(p["usd_per_month"])),
                     Cell(_latency_text(p), None, "text")])
        recs.append({"target": t, "provider": p["provider"], "quality": p["quality"], "ci_low": p["ci_low"],
                     "ci_high": p["ci_high"], "usd_per_month": p["usd_per_month"],
                     "usd_per_audio_min": p["usd_per_audio_min"], "plan": p["plan"]})
    buyer_pts = points_by_target.get(buyer_target)
    head = ""
    if buyer_pts is not None:
        rec = tables.recommend(buyer_pts, metric, volume)
        p = rec["pick"]
        if p is not None:
            head = (f"<p class='reco' id='recommendation'>For <b>{_E(buyer_target)}</b>: use "
                    f"<b>{_E(str(p['provider']))}</b> — {_E(metric)} {p['quality']:.2f} {_E(u)}"
                    + (f" [{p['ci_low']:.2f}, {p['ci_high']:.2f}]" if math.isfinite(p["ci_low"]) else "")
                    + f", <b>${p['usd_per_month']:,.2f}/month</b> (${p['usd_per_audio_min']:.4f} per audio minute; "
                    f"{_E(str(p['plan']))}); turnaround {_latency_text(p)}.</p>")
        else:
            head = (
                f"<p class='reco' id='recommendation'>For <b>{_E(buyer_target)}</b>: no buyable option with a known "
                "price" + (" fits the budget" if volume.budget_usd_month is not None else "") + ".</p>"
            )
        extra = []
        if len(rec["better_unknown"]):
            names = ", ".join(_E(str(x)) for x in rec["better_unknown"]["provider"])
            extra.append(f"<span class='badge unknown'>price unknown</span> scores higher but cannot be priced: "
                         f"{names} — set <code>providers[i].price</code> in the spec or pass "
                         "<code>--price SERVICE=USD</code> to <code>stemlab report</code>.")
        elif len(rec["unknown"]):
            names = ", ".join(_E(str(x)) for x in rec["unknown"]["provider"])
            extra.append(f"<span class='badge unknown'>price unknown</span> not ranked: {names}.")
        if len(rec["over"]):
            extra.append("Over the budget: " + ", ".join(
                f"{_E(str(r.provider))} (${r.usd_per_month:,.2f}/month)" for r in rec["over"].itertuples()) + ".")
        head += "".join(f"<p class='small'>{x}</p>" for x in extra)
    note = ("<p class='small'><span class='badge sim'>sandbox</span> services ran against stemlab's offline "
            "emulators: their quality is the emulator's (a degraded reference oracle) and their seconds are "
            "simulated — rerun with <code>--live</code> to measure the real services.</p>") if sandbox else ""
    table = _table(["target", "recommended", f"quality [{_E(u)}]" if u else "quality", "USD/month<br>"
                    "<span class='muted small'>plan</span>", "median turnaround"], rows, table_id="recommendations",
                   cls="reco")
    body = (f"<p class='small'>Volume: {_E(volume.describe())}. Bounds are never recommended; options whose price "
            "is unknown are named, not ranked.</p>" + head + table + note)
    if buyer_pts is not None and len(buyer_pts):  # the frontier of the target the recommendation leads with
        body += fig(figures.frontier(buyer_pts, metric))
    return body, pd.DataFrame(recs)


def _procurement_table(points: pd.DataFrame, volume: Volume) -> str:
    opts = points[points["bound"].fillna("") == ""]
    rows = []
    for r in opts.itertuples():
        usd = (Cell(f"${r.usd_per_month:,.2f}", float(r.usd_per_month)) if math.isfinite(r.usd_per_month)
               else Cell("<span class='badge unknown'>price unknown</span>", None, "text"))
        per = (Cell(f"${r.usd_per_audio_min:.4f}", float(r.usd_per_audio_min)) if math.isfinite(r.usd_per_audio_min)
               else Cell("–"))
        rows.append(
            [
                Cell(_provider_label(str(r.provider), {}), None, "text", {"data-provider": str(r.provider)}),
                per,
                usd,
                Cell(_E(str(r.plan)) if r.plan else "–", None, "text"),
                Cell(_E(str(r.price_note)) if r.price_note else "", None, "text"),
            ]
        )
    return (f"<p class='small'>At {_E(volume.describe())}: the cheapest plan of each service's dated price table "
            "that covers the volume (AI Stem Splitter: whole minute packs), local providers at $0 (compute time "
            "only). A service that publishes no USD price is <b>price unknown</b>, never $0.</p>"
            + _table(["option", "USD per audio min", "USD per month", "plan", "price note"], rows,
                     table_id="procurement"))


def _prices_html(prices: Mapping[str, float]) -> str:
    rows = []
    for r in price_table(prices):
        rows.append([r["service"], r["plan"], r["billing"],
                     Cell(f"${r['price_usd']:,.2f}", float(r["price_usd"])) if r["price_usd"] is not None
                     else Cell("<span class='muted'>not published in the API docs</span>", None, "text"),
                     f"{r['units']:g} {r['unit']}" if r["units"] is not None else "–",
                     Cell(f"${r['usd_per_unit']:.4f}/{r['unit'][:-1]}", float(r["usd_per_unit"]))
                     if r["usd_per_unit"] is not None else
                     (Cell(f"${r['your_usd_per_unit']:g}/{r['unit'][:-1]} (yours)", float(r["your_usd_per_unit"]))
                      if r["your_usd_per_unit"] is not None else Cell("unknown", None, "text")),
                     Cell(_E(r["notes"]), None, "text small"), f"{r['source']}, read {r['as_of']}"])
    return _table(["service", "plan", "billing", "price", "includes", "USD per unit", "notes", "source"], rows,
                  table_id="prices")


def _time_section(jobs: pd.DataFrame, fig: _Figures) -> str:
    meas = tables.latency_table(jobs)
    sim = tables.simulated_latency_table(jobs)
    parts = ["<p class='small'>Two clocks, never mixed: <span class='badge meas'>measured</span> wall seconds on "
             "this machine (local providers; live services: upload, queue, processing, download as the client saw "
             "them) and <span class='badge sim'>simulated</span> seconds of a sandbox's virtual service clock (an "
             "emulation of the service's timing on a scaled clock — not a measurement of the real service).</p>"]
    if not meas.empty:
        hd = {c: c.replace("_s_median", " [s, median]").replace("turnaround_p", "turnaround p").replace("_s", " [s]")
              .replace("rtf_median", "real-time factor (median)") for c in meas.columns}
        parts += ["<h3>Measured <span class='badge meas'>measured</span></h3>",
                  _df_table(meas, "latency-measured", "{:.3g}", hd), fig(figures.latency_breakdown(jobs, "measured"))]
    if not sim.empty:
        hd = {c: c.replace("sim_", "").replace("_s_median", " [s, median]").replace("turnaround_p", "turnaround p")
              .replace("_s", " [s]").replace("measured_wall [s]", "measured wall [s, harness + emulator]")
              for c in sim.columns}
        parts += ["<h3>Simulated <span class='badge sim'>simulated</span></h3>",
                  "<p class='small'>Each sandbox's virtual service seconds (its queue, processing and transfer "
                  "delays on a scaled clock). The last column is what the harness measured here for the same jobs "
                  "(emulator compute + scaled waits) — neither is the real service's latency.</p>",
                  _df_table(sim, "latency-simulated", "{:.4g}", hd), fig(figures.latency_breakdown(jobs, "simulated"))]
    return "".join(parts)


def _cost_section(jobs: pd.DataFrame) -> str:
    ct = tables.cost_table(jobs)
    if ct.empty:
        return "<p class='muted'>(no jobs)</p>"
    rows = []
    for r in _rows(ct):
        usd = (Cell(f"${r.usd:.4f}", float(r.usd)) if math.isfinite(r.usd)
               else Cell("<span class='badge unknown'>price unknown</span>", None, "text"))
        per = Cell(f"${r.usd_per_audio_min:.4f}", float(r.usd_per_audio_min)) if math.isfinite(r.usd_per_audio_min) \
            else Cell("–")
        rows.append(
            [
                Cell(_E(str(r.provider)), None, "text", {"data-provider": str(r.provider)}),
                r.kind,
                r.jobs,
                Cell(f"{r.audio_min:.2f}", r.audio_min),
                usd,
                Cell(f"{r.units:.4g} {_E(str(r.unit))}", float(r.units)),
                per,
                Cell(_E(str(r.note)), None, "text small"),
            ]
        )
    return (
        "<p class='small'>What this run charged, per provider: USD (NaN → <b>price unknown</b>, with how to set "
        "it) and the service's own unit (seconds of input, credits, points, calls; compute seconds for local "
        "providers). Sandbox charges are the emulator's ledger, not money.</p>"
        + _table(
            ["provider", "kind", "jobs", "audio [min]", "USD", "native units", "USD per audio min", "basis / note"],
            rows,
            table_id="cost",
        )
    )


def _published_section(scores: pd.DataFrame, providers: list[str], stat: str) -> str:
    """Published scores of this run's models, each labelled "published" with
    its metric, aggregation and dataset, beside (never in) this run's
    measured values; "" when no provider of the run has one."""
    pub = tables.published_beside(scores, providers, stat=stat)
    if pub.empty:
        return ""
    rows = []
    for r in pub.itertuples():
        n = f", {int(r.n_tracks)} tracks" if isinstance(r.n_tracks, float) and math.isfinite(r.n_tracks) else ""
        rows.append([
            r.provider, r.target, r.metric,
            _cell(r.published, cls="published"),
            f"{r.aggregation}; {r.dataset}{n}",
            _cell(r.measured),
            r.measured_aggregation or "–",
            f"{r.source}" + (f" — {r.note}" if isinstance(r.note, str) and r.note and not r.note.startswith("{")
                             else ""),
        ])
    return ("<p class='small'>Scores the models' authors or public leaderboards report (<b>published</b>, not "
            "measured here) next to what this run measured for the same provider, target and metric. They are "
            "different datasets (and often aggregations): read them as context, not as a check of one against "
            "the other.</p>"
            + _table(["provider", "target", "metric", "published [dB]", "published on (aggregation; dataset)",
                      "measured here [dB]", "measured aggregation (this run's tracks)", "source"],
                     rows, table_id="published"))


def _listen_section(res: Results, targets: list[str], bounds: dict[str, str]) -> str:
    from .listen import listening

    lis = listening(res, targets, bounds=bounds)
    if lis is None:
        return ""
    parts = [f"<p class='small'>Track <b>{_E(lis.track)}</b>, {lis.start_s:.1f}–{lis.start_s + lis.seconds:.1f} s "
             "(its loudest 5 s): the same samples of the mixture, each target's reference and every estimate "
             "(MP3 96 kb/s). Spectrograms: 40 Hz–16 kHz, log frequency, one colour scale for the track (the "
             "mixture's peak is white, 80 dB below it black).</p>"]
    if lis.note:
        parts.append(f"<p class='note'>{_E(lis.note)}</p>")

    def card(c: Any) -> str:
        inner = (f"<img src='{c.image}' alt='spectrogram of {_E(c.label, quote=True)}'>"
                 f"<audio controls preload='none' src='{c.audio}'></audio>") if c.audio else \
            f"<p class='muted'>{_E(c.note)}</p>"
        return f"<div class='clip {c.kind}'><b>{_E(c.label)}</b>{inner}</div>"

    panels = []
    for t, clips in lis.targets.items():
        cs = ([lis.mixture] if lis.mixture is not None else []) + clips
        panels.append((f"listen-{_slug(t)}", t, "<div class='clips'>" + "".join(card(c) for c in cs) + "</div>"))
    parts.append(_tabs("listen", panels))
    return "".join(parts)


# ------------------------------------------------------------------ the report

def build_report(results: str | Path | Results, output: str | Path | None = None, *, clips: bool = True,
                 metric: str | None = None, volume: Volume | None = None, prices: Mapping[str, float] | None = None,
                 buyer_target: str | None = None, stat: str = "median") -> Path:
    """Write the HTML report of a results directory and its sidecars
    (:func:`sidecar_paths`: ``X.md``, ``X.leaderboard.csv``); returns the
    HTML path (default :func:`default_output`: ``reports/<run-id>/report.html``).

    ``volume``: the buyer's songs per month, song length and monthly budget
    (:class:`~stemlab.reports.pricing.Volume`; default 1,000 × 3.5 min, no
    budget); ``prices``: service → USD per unit of its price table (your
    price where none is published); ``buyer_target``: the target the
    recommendation leads with (default vocals)."""
    res = results if isinstance(results, Results) else load_results(results)
    out = Path(output) if output is not None else default_output(res.run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    volume = volume or Volume()
    prices = dict(prices or {})
    bad = sorted(set(prices) - set(PRICING))
    if bad:
        raise InputError(f"report: no price table for {bad}; services: {sorted(PRICING)}", field="prices")
    scores, meta = res.scores, res.meta
    jobs = tables.jobs_view(res.jobs)
    metric = metric or tables.primary_metric(scores)
    if metric is not None and not scores.empty and metric not in set(scores["metric"]):
        raise InputError(
            f"report: no metric {metric!r} in results; have {sorted(set(scores['metric']))}", field="metric"
        )
    fig = _Figures()
    notes = _Notes()
    bounds = tables.bounds(jobs)
    options = tables.buyable(jobs)
    sandbox = bool((jobs.get("clock", pd.Series(dtype=str)) == "simulated").any()) if not jobs.empty else False
    n_tracks = jobs["track"].nunique() if not jobs.empty else 0
    n_prov = jobs["provider"].nunique() if not jobs.empty else 0
    js = meta.get("jobs", {})
    top = [f"<h1>{_E(str(meta.get('name', 'stemlab run')))}</h1>"
           f"<p class='muted'>run {_E(str(meta.get('run_id', '')))} · {_E(str(meta.get('finished_at', '')))}"
           f" · {n_tracks} track(s) × {n_prov} provider(s) · {js.get('done', 0)} done, {js.get('failed', 0)} failed,"
           f" {js.get('budget', 0)} over budget"
           + (" · <span class='badge sim'>sandbox</span> remote services ran against stemlab's offline emulators: "
              "their seconds are <b>simulated</b>" if sandbox else "") + "</p>"]
    sec: list[str] = []
    lb_csv = pd.DataFrame()
    md_extra: list[str] = []
    recs = pd.DataFrame()
    if metric is not None and not scores.empty:
        lb = tables.leaderboard(scores, metric, stat=stat)
        lb_csv = lb.assign(bound=lb["provider"].astype(str).map(lambda p: bounds.get(p, "")))
        targets = tables.target_order(scores[scores["metric"] == metric]["target"])
        buyer_target = buyer_target or ("vocals" if "vocals" in targets else targets[0])
        if buyer_target not in targets:
            raise InputError(f"report: no target {buyer_target!r}; have {targets}", field="target")
        points = {t: tables.quality_vs_cost(scores, jobs, metric, t, volume=volume, prices=prices, stat=stat)
                  for t in targets}
        researcher = _leaderboard_section(scores, metric, lb, bounds, notes)
        overall_html, ov = _overall_section(scores, metric, jobs, bounds, stat)
        buyer, recs = _buyer_card(points, metric, volume, buyer_target, fig, sandbox)
        top.append(
            "<div class='grid2'>"
            f"<section class='card' id='researchers'><h2>For researchers: per-target leaderboard</h2>{researcher}"
            "</section>"
            f"<section class='card' id='buyers'><h2>For buyers: what to use at your volume</h2>{buyer}</section>"
            "</div>"
        )
        sec.append("<h2 id='like-for-like'>Overall, like for like</h2><p class='small'>A single number per provider "
                   "only across providers that deliver the same target set, named; a 2-stem service is never "
                   f"averaged against a 4-stem one.</p>{overall_html}")
        metrics = [m for m in dict.fromkeys([metric] + sorted(set(scores["metric"])))]
        panels = [(f"t-{_slug(t)}", t, _target_panel(scores, t, metrics, metric, bounds, options, fig, notes, stat))
                  for t in targets]
        sec.append("<h2 id='per-target'>Per target: every metric, with CIs</h2>" + _tabs("target", panels))
        qpanels = []
        for t in targets:
            pts = points[t]
            unknown = pts[(pts["bound"] == "") & pts["usd_per_audio_min"].isna()]
            nq = ("<p class='small'><span class='badge unknown'>price unknown</span> not drawn on the cost axis: "
                  + ", ".join(_E(str(p)) for p in unknown["provider"]) + ".</p>") if len(unknown) else ""
            opt = pts[pts["bound"] == ""]
            has_meas = opt["measured_s"].notna().any()
            has_sim = opt["simulated_s"].notna().any()
            lat = [fig(figures.quality_latency(pts, metric, c)) for c, ok in (("measured", has_meas),
                                                                              ("simulated", has_sim)) if ok]
            missing = [w for w, ok in (("measured time (local providers, live services)", has_meas),
                                       ("simulated time (sandboxes)", has_sim)) if not ok]
            body = (fig(figures.frontier(pts, metric)) + nq
                    + (f"<div class='plots2'>{''.join(lat)}</div>" if len(lat) == 2 else "".join(lat))
                    + "".join(f"<p class='muted small'>No option with {w} delivers {_E(t)} in this run.</p>"
                              for w in missing))
            qpanels.append((f"q-{_slug(t)}", t, body))
        sec.append("<h2 id='quality-cost-latency'>Quality, cost and latency per target</h2>"
                   f"<p class='small'>Quality: {_E(metric)} on the target alone ({_E(tables.aggregation_of(lb))}); "
                   f"cost: USD per audio minute at {_E(volume.describe())}; latency: median turnaround per job, "
                   "measured and simulated on separate plots. Bounds are reference lines.</p>"
                   + _tabs("quality", qpanels))
        sec.append(
            "<h2 id='procurement'>Procurement at your volume</h2>"
            + _procurement_table(points[buyer_target], volume)
            + "<h3>Price tables (dated)</h3>"
            + _prices_html(prices)
        )
        md_extra = _markdown_extra(lb, ov, points[buyer_target], recs, metric, volume)
    sec.append("<h2 id='time'>Time</h2>" + _time_section(jobs, fig))
    sec.append("<h2 id='cost'>Cost of this run</h2>" + _cost_section(jobs))
    fails = tables.failures_table(jobs)
    if not fails.empty:
        sec.append(f"<h2 id='failures'>Failures ({int(fails['count'].sum())})</h2>" + _df_table(fails, "failures"))
    if clips and metric is not None and not scores.empty:
        listen = _listen_section(res, tables.target_order(scores[scores["metric"] == metric]["target"]), bounds)
        if listen:
            sec.append("<h2 id='listen'>Listen</h2>" + listen)
    if metric is not None and not scores.empty:
        pub_html = _published_section(scores, list(dict.fromkeys(jobs["provider"].astype(str))), stat)
        if pub_html:
            sec.append("<h2 id='published'>Published scores (not measured here)</h2>" + pub_html)
    if notes.items:
        sec.append("<h2 id='notes'>Notes on numbers that look odd</h2>" + notes.html())
    versions = pd.DataFrame(sorted((meta.get("versions") or {}).items()), columns=["package", "version"])
    sec.append("<h2 id='metadata'>Run metadata</h2>"
               f"<p>git commit {_E(str(meta.get('git_commit')))} · host {_E(str(meta.get('host')))}"
               f" · spec hash {_E(str(meta.get('spec_hash')))}</p>" + _df_table(versions, "versions")
               + f"<details><summary>spec</summary><pre>{_E(json.dumps(meta.get('spec'), indent=1, default=str))}"
               "</pre></details>")
    nav = "<p class='small'>" + " · ".join(f"<a href='#{i}'>{t}</a>" for i, t in (
        ("like-for-like", "overall"), ("per-target", "per target"), ("quality-cost-latency", "quality/cost/latency"),
        ("procurement", "procurement"), ("time", "time"), ("cost", "cost"), ("failures", "failures"),
        ("listen", "listen"), ("published", "published"), ("notes", "notes"), ("metadata", "metadata"))
        if f"id='{i}'" in "".join(sec)) + "</p>"
    doc = render_page(_E(str(meta.get("name", "stemlab"))), "".join(top) + nav + "".join(sec))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    _write_sidecars(out, meta, metric, lb_csv, jobs, fails, md_extra)
    return out


# ------------------------------------------------------------------ sidecars

def _md_cell(v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else f"{v:.2f}"


def _markdown_extra(lb: pd.DataFrame, ov: pd.DataFrame, points: pd.DataFrame, recs: pd.DataFrame, metric: str,
                    volume: Volume) -> list[str]:
    md: list[str] = []
    targets = tables.target_order(lb["target"])
    bd = dict(zip(points["provider"], points["bound"])) if len(points) else {}
    rows = []
    for p in dict.fromkeys(lb["provider"].astype(str)):
        g = lb[lb["provider"].astype(str) == p].set_index("target")
        rows.append({"provider": p + (f" ({_BOUND_WORD[bd[p]]})" if bd.get(p) else ""),
                     **{t: _md_cell(float(g.loc[t, "value"]), float(g.loc[t, "ci_low"]), float(g.loc[t, "ci_high"]))
                        if t in g.index else "–" for t in targets}})
    md += ["### With 95 % bootstrap CIs", "", tables.to_markdown(pd.DataFrame(rows)), ""]
    if len(ov):
        md += ["## Overall, like for like", ""]
        for name, g in ov.groupby("set", sort=False):
            md += [f"**{name}** — {g['aggregation'].iloc[0]}", "",
                   tables.to_markdown(g[["provider", "value", "bound"]].reset_index(drop=True)), ""]
    if len(recs):
        md += ["## Recommendation", "", f"Volume: {volume.describe()}.", "",
               tables.to_markdown(recs.assign(usd_per_audio_min=recs["usd_per_audio_min"].round(4))), ""]
    return md


def _write_sidecars(out: Path, meta: Mapping[str, Any], metric: str | None, lb: pd.DataFrame, jobs: pd.DataFrame,
                    fails: pd.DataFrame, extra: list[str]) -> None:
    md_path, csv_path = sidecar_paths(out)
    md = [f"# {meta.get('name', 'stemlab run')}", "", f"Report: {out.name} · run {meta.get('run_id', '')}", ""]
    if metric is not None and not lb.empty:
        label = tables.aggregation_of(lb) or str(lb["aggregation"].iloc[0])
        wide = lb.pivot(index="provider", columns="target", values="value")
        wide.columns.name = None
        wide = wide.reindex(columns=tables.target_order(wide.columns))
        md += [f"## {metric} — {label}", "", f"{describe(label)} ({_counts(lb)}).", "",
               tables.to_markdown(wide.reset_index()), ""]
        md += extra
        lb.to_csv(csv_path, index=False)
    meas = tables.latency_table(jobs)
    sim = tables.simulated_latency_table(jobs)
    md += ["## Latency — measured (wall seconds on this machine)", "", tables.to_markdown(meas), ""]
    if not sim.empty:
        md += ["## Latency — SIMULATED (sandbox virtual seconds; not a measurement)", "", tables.to_markdown(sim), ""]
    md += ["## Cost of this run (USD; NaN = price unknown) and native units", "",
           tables.to_markdown(tables.cost_table(jobs)), "", "## Failures", "", tables.to_markdown(fails), ""]
    md_path.write_text("\n".join(md), encoding="utf-8")
