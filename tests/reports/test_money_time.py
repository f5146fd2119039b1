"""Money in one currency, time in two clocks, like for like — every number a
reader sees recomputed here from the price documents' figures and with plain
pandas from ``jobs.parquet`` / ``scores.parquet``.

One real run (CLI, off a terminal) of the sandboxed services (AI Stem
Splitter: published packs; MVSEP with the buyer's price per credit; Dango's
free points for songs under 30 s; Suno: no published price) next to local
options and bounds, on four 4-s demo songs."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemlab.reports.pricing import Volume
from tests.reports.test_aggregation import bootstrap

TOL = 1e-9
DATASET = {"name": "demo", "options": {"tracks": 4, "seconds": 4.0}}
MVSEP_PRICE = 0.05  # USD per credit, the buyer's
PROVIDERS = [
    {"provider": "aistemsplitter", "sandbox": True},
    {"provider": "mvsep:demucs4ht", "sandbox": True, "price": {"usd_per_credit": MVSEP_PRICE, "source": "our quote"}},
    {"provider": "dango:vocals", "sandbox": True},
    {"provider": "suno", "sandbox": True},
    "oracle:irm", "baseline:mixture", "baseline:silence", "baseline:centre",
]
AIS = "aistemsplitter:htdemucs_ft [sandbox]"
MVSEP = "mvsep:demucs4ht [sandbox]"
DANGO = "dango:vocals [sandbox]"
SUNO = "suno [sandbox]"
PACKS = [(6.99, 50), (15.00, 150), (39.99, 500)]  # seed 000: "$6.99 / 50 minutes, $15 / 150 minutes, or $39.99 / 500"
METRIC = "sdr_bsseval_v4"


def _cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "stemlab.cli", *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def run(money_run) -> tuple[Path, subprocess.CompletedProcess]:
    return money_run


@pytest.fixture(scope="module")
def jobs(run) -> pd.DataFrame:
    return pd.read_parquet(run[0] / "jobs.parquet")


@pytest.fixture(scope="module")
def scores(run) -> pd.DataFrame:
    return pd.read_parquet(run[0] / "scores.parquet")


def cheapest_usd(minutes: float) -> float:
    """Brute force over whole packs (independent of stemlab's DP)."""
    need = math.ceil(minutes)
    best = math.inf
    for n500 in range(need // 500 + 2):
        for n150 in range(need // 150 + 2):
            rest = need - 500 * n500 - 150 * n150
            n50 = max(0, math.ceil(rest / 50))
            best = min(best, 39.99 * n500 + 15.00 * n150 + 6.99 * n50)
    return best


def per_target(scores: pd.DataFrame, metric: str = METRIC, rows: str = "median_frames") -> pd.Series:
    sel = scores[(scores.metric == metric) & (scores.aggregation == rows)]
    return sel.groupby(["provider", "target"]).value.median()


# ------------------------------------------------------------------ the price tables

def test_price_tables_are_dated_and_never_guess() -> None:
    from stemlab.reports.pricing import PRICING, monthly_cost
    from stemlab.runs.results import NATIVE_UNITS

    for name, sp in PRICING.items():
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", sp.as_of) and sp.source and sp.billing and sp.plans, name
        assert sp.native_unit in NATIVE_UNITS and sp.price_key, name
    ais = PRICING["aistemsplitter"]
    assert [(p.price_usd, p.minutes) for p in ais.packs] == PACKS
    assert ais.quote().usd_per_unit == 6.99 / 50  # the smallest pack: the conservative figure
    assert "no subscription" in ais.billing and "never expire" in ais.billing
    for name, key in (("mvsep", "usd_per_credit"), ("dango", "usd_per_point"), ("suno", "usd_per_call")):
        q = PRICING[name].quote()
        assert q.usd_per_unit is None, name
        assert q.reason.startswith("price unknown: ") and f"providers[i].price.{key}" in q.reason, q.reason
        assert "procurement.ipynb" in q.reason
        assert any(p.price_usd is None for p in PRICING[name].plans)  # "not published", not 0
    # one job's USD: never $0 for an unknown price; the documents' free cases are $0 with their reason
    mv = PRICING["mvsep"]
    usd, _, why = mv.job_usd(3.0, 200.0)
    assert math.isnan(usd) and why.startswith("price unknown")
    assert mv.job_usd(3.0, 200.0, 0.05)[0] == pytest.approx(0.15, abs=TOL)
    assert PRICING["aistemsplitter"].job_usd(214.0, 214.0)[0] == pytest.approx(214 / 60 * 6.99 / 50, abs=TOL)
    usd, basis, _ = PRICING["dango"].job_usd(12.0, 20.0)
    assert usd == 0.0 and basis.startswith("free points")
    assert math.isnan(PRICING["dango"].job_usd(120.0, 200.0)[0])
    # a month: the cheapest whole packs covering the minutes
    for songs, secs in ((1000, 210), (200, 180), (7, 61)):
        m = monthly_cost("aistemsplitter", songs, secs)
        minutes = math.ceil(secs) / 60 * songs
        assert m["usd"] == pytest.approx(cheapest_usd(minutes), abs=1e-9), (songs, secs)
        assert m["usd_per_audio_min"] == pytest.approx(m["usd"] / (songs * secs / 60), abs=1e-12)
    m = monthly_cost("mvsep", 1000, 210)
    assert m["usd"] is None and m["note"].startswith("price unknown") and m["units"] == 1000 * 3


def test_spec_price_is_validated_per_service() -> None:
    from stemlab.errors import ConfigError
    from stemlab.runs.spec import load_spec

    def err(prov: dict) -> str:
        with pytest.raises(ConfigError) as e:
            load_spec({"datasets": ["demo"], "providers": [prov]})
        return str(e.value)

    assert "a price applies to remote services only" in err({"provider": "oracle:irm", "price": {"usd_per_credit": 1}})
    msg = err({"provider": "mvsep", "price": {"usd_per_point": 0.1}})
    assert "usd_per_point" in msg and "not a price of mvsep" in msg and "usd_per_credit" in msg
    assert "unknown pack '999 min'" in err({"provider": "aistemsplitter", "price": {"pack": "999 min"}})
    assert "expected a number" in err({"provider": "suno", "price": {"usd_per_call": "cheap"}}) or \
        "usd_per_call" in err({"provider": "suno", "price": {"usd_per_call": "cheap"}})
    spec = load_spec({"datasets": ["demo"], "providers": [{"provider": "suno", "price": {"usd_per_credit": 0.2}}]})
    assert spec.providers[0].price.given() == {"usd_per_credit": 0.2}


# ------------------------------------------------------------------ the job rows

def test_job_rows_carry_usd_native_units_and_two_clocks(jobs: pd.DataFrame) -> None:
    assert (jobs.status == "done").all(), jobs[["provider", "error"]]
    by = {p: g for p, g in jobs.groupby("provider")}
    ais = by[AIS]
    assert (ais.credits == np.ceil(ais.audio_seconds)).all() and set(ais.native_unit) == {"seconds"}
    assert np.allclose(ais.cost_usd, ais.credits / 60 * 6.99 / 50, atol=TOL, rtol=0)
    mv = by[MVSEP]
    assert set(mv.native_unit) == {"credits"} and (mv.native_units == mv.credits).all()
    assert np.allclose(mv.cost_usd, mv.credits * MVSEP_PRICE, atol=TOL, rtol=0)
    assert (mv.usd_per_unit == MVSEP_PRICE).all() and all(b.startswith("your price") for b in mv.price_basis)
    su = by[SUNO]
    assert su.cost_usd.isna().all() and (su.native_units == 1).all() and set(su.native_unit) == {"calls"}
    assert all("price unknown" in n and "usd_per_call" in n for n in su.cost_note)
    da = by[DANGO]  # 4-s songs: 12 free points each (seed 003), no money
    assert (da.cost_usd == 0).all() and (da.native_units == 12).all() and set(da.native_unit) == {"points"}
    for p in ("oracle:irm", "baseline:mixture", "baseline:silence", "baseline:centre"):
        g = by[p]
        assert (g.cost_usd == 0).all() and set(g.native_unit) == {"compute seconds"}
        assert np.allclose(g.native_units, g.compute_seconds)
    # two clocks, separate columns
    sim = jobs[jobs.provider.str.endswith("[sandbox]")]
    loc = jobs[~jobs.provider.str.endswith("[sandbox]")]
    assert set(sim.clock) == {"simulated"} and set(loc.clock) == {"measured"}
    assert (sim.sim_total_s > 0).all() and (sim.sim_processing_s > 0).all()
    for ph in ("upload_s", "queue_s", "processing_s", "download_s", "rtf"):
        assert sim[ph].isna().all(), ph  # no simulated second in a measured column
    assert np.allclose(sim.total_s, sim.wall_s) and (sim.total_s < sim.sim_total_s).all()
    for ph in ("sim_upload_s", "sim_queue_s", "sim_processing_s", "sim_download_s", "sim_total_s", "sim_rtf"):
        assert loc[ph].isna().all(), ph
    assert (loc.total_s > 0).all()
    assert dict(jobs.drop_duplicates("provider").set_index("provider").bound) == {
        AIS: "", MVSEP: "", DANGO: "", SUNO: "", "oracle:irm": "upper", "baseline:mixture": "lower",
        "baseline:silence": "lower", "baseline:centre": ""}


def test_run_off_a_terminal_logs_progress_and_no_warnings(run, jobs: pd.DataFrame, scores: pd.DataFrame) -> None:
    err = run[1].stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("stemlab: ")]
    assert (
        lines[0] == f"stemlab: {len(jobs)} job(s) of {jobs.provider.nunique()} provider(s) to run; progress every 2 s"
    )
    assert re.fullmatch(rf"stemlab: {len(jobs)}/{len(jobs)} jobs finished \(0 failed\) · \S+ elapsed · finished",
                        lines[-1]), lines[-1]
    assert len(lines) >= 3 and any(re.search(r"ETA ~\S+$", ln) for ln in lines[1:-1])
    assert "Warning" not in err and "warnings.warn" not in err and ".py:" not in err, err[-2000:]
    # the expected numeric problems are recorded where they belong instead
    nan = scores[scores.value.isna()]
    assert len(nan) and (nan.nan_reason.str.len() > 0).all()
    assert (scores[scores.value.notna()].nan_reason == "").all()


def test_cli_summary_says_unknown_and_simulated(run, jobs: pd.DataFrame) -> None:
    for text in (run[1].stdout, _cli("results", "show", str(run[0])).stdout):
        lines = text.splitlines()
        head = next(i for i, ln in enumerate(lines) if ln.startswith("provider "))
        cols = re.split(r"\s{2,}", lines[head])
        assert cols == ["provider", "done", "failed", "USD", "native units", "measured s (median)",
                        "SIMULATED s (median)"]
        starts = [lines[head].index(c) for c in cols]
        rows = {}
        for ln in lines[head + 1: head + 1 + jobs.provider.nunique()]:
            prov = ln[:starts[1]].strip()
            rows[prov] = ln
        for prov, g in jobs.groupby("provider"):
            ln = rows[prov]
            usd = ln[starts[2] + 6: starts[4]].split()[-1]
            if g.cost_usd.isna().any():
                assert usd == "unknown", ln
            else:
                assert usd == f"{g.cost_usd.sum():.4f}", ln
            tail = ln[starts[4]:]
            if prov.endswith("[sandbox]"):
                assert tail.split()[-1] == f"{g.sim_total_s.median():.2f}", ln
                assert f"{g.total_s.median():.2f}" not in ln[starts[5]:starts[6]]
            else:
                assert tail.split()[-1] == f"{g.total_s.median():.2f}", ln
        assert "SIMULATED s: a sandbox's virtual service seconds on a scaled clock" in text
        assert re.search(r"USD unknown for suno \[sandbox\]: price unknown: .*usd_per_call", text)


# ------------------------------------------------------------------ the report

class _Doc(HTMLParser):
    """Tables as lists of rows of (text, attrs) cells; every id'd element's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, dict]]]] = {}
        self.text: dict[str, str] = {}
        self._t: list | None = None
        self._c: list | None = None
        self._ids: list[tuple[str, str, int]] = []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("br", "wbr", "img", "meta", "input"):
            return
        self._depth += 1
        if a.get("id"):
            self._ids.append((a["id"], tag, self._depth))
            self.text.setdefault(a["id"], "")
        if tag == "table" and a.get("id"):
            self._t = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._t is not None:
            self._t.append([])
        elif tag in ("td", "th") and self._t is not None:
            self._c = ["", a]

    def handle_data(self, data):
        for i, _, _ in self._ids:
            self.text[i] += data
        if self._c is not None:
            self._c[0] += data

    def handle_endtag(self, tag):
        if tag in ("br", "wbr", "img", "meta", "input"):
            return
        if self._ids and self._ids[-1][2] == self._depth and self._ids[-1][1] == tag:
            self._ids.pop()
        self._depth -= 1
        if tag in ("td", "th") and self._c is not None and self._t is not None:
            self._t[-1].append((self._c[0].strip(), self._c[1]))
            self._c = None
        elif tag == "table":
            self._t = None


def _parse(doc: str) -> _Doc:
    p = _Doc()
    p.feed(doc)
    return p


def _figures(doc: str) -> list[tuple[str, list[dict], dict]]:
    dec = json.JSONDecoder()
    figs = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"fig\d+",\s*', doc):
        data, end = dec.raw_decode(doc, m.end())
        layout, _ = dec.raw_decode(doc, end + re.match(r",\s*", doc[end:]).end())
        figs.append((layout.get("title", {}).get("text", ""), data, layout))
    return figs


def _arr(x):
    from tests.reports.test_aggregation import _decode

    return np.asarray(_decode(x), dtype=float)


VOLUME = Volume(songs_per_month=200, seconds_per_song=180.0, budget_usd_month=50.0)


@pytest.fixture(scope="module")
def report(run, tmp_path_factory) -> tuple[Path, str]:
    from stemlab.reports import build_report

    out = tmp_path_factory.mktemp("rep") / "money.html"
    build_report(run[0], out, volume=VOLUME)
    return out, out.read_text()


def test_report_leaderboard_cells_and_cis(report, scores) -> None:
    doc = _parse(report[1])
    med = per_target(scores)
    t = doc.tables["leaderboard"]
    head = [c[0] for c in t[0]]
    assert head[0] == "provider" and head[1:] == ["vocals", "drums", "bass", "other", "accompaniment"]
    seen = set()
    bound_seen = False
    for row in t[1:]:
        if len(row) == 1:  # the line between options and bounds
            assert row[0][0].startswith("bounds — not options")
            bound_seen = True
            continue
        prov = row[0][1]["data-provider"]
        assert bound_seen == (prov in ("oracle:irm", "baseline:mixture", "baseline:silence")), prov  # below the line
        seen.add(prov)
        for tgt, (text, a) in zip(head[1:], row[1:]):
            if (prov, tgt) not in med.index:
                assert text == "not delivered", (prov, tgt)
                continue
            want = float(med[(prov, tgt)])
            if math.isnan(want):  # silence: BSSEval undefined — said, with a link to the reason
                assert text.startswith("n/a†") and "data-value" not in a, (prov, tgt, text)
                continue
            assert abs(float(a["data-value"]) - want) <= TOL, (prov, tgt)
            sel = scores[(scores.provider == prov) & (scores.target == tgt) & (scores.metric == METRIC)
                         & (scores.aggregation == "median_frames")].value.to_numpy(float)
            lo, hi = bootstrap(sel)
            assert abs(float(a["data-ci-low"]) - lo) <= TOL and abs(float(a["data-ci-high"]) - hi) <= TOL
            assert text.startswith(f"{want:.2f}") and f"[{lo:.2f}, {hi:.2f}]" in text
    assert seen == set(scores.provider)


def test_report_overall_is_like_for_like(report, scores, jobs) -> None:
    doc = _parse(report[1])
    med = per_target(scores)
    for tid, targets in (("overall-4-stems", ("vocals", "drums", "bass", "other")),
                         ("overall-2-stems", ("vocals", "accompaniment"))):
        rows = {r[0][1]["data-provider"]: float(r[1][1]["data-value"]) if "data-value" in r[1][1] else math.nan
                for r in doc.tables[tid][1:]}
        deliver = {p for p in scores.provider.unique() if all((p, t) in med.index for t in targets)}
        assert set(rows) == deliver, (tid, rows)
        for p, v in rows.items():
            want = float(np.mean([med[(p, t)] for t in targets]))
            assert (math.isnan(v) and math.isnan(want)) or abs(v - want) <= TOL, (tid, p)
    two = {r[0][1]["data-provider"] for r in doc.tables["overall-2-stems"][1:]}
    assert AIS not in two and MVSEP not in two and {DANGO, SUNO, "baseline:centre"} <= two


def test_report_buyer_numbers(report, scores, jobs) -> None:
    from stemlab.providers import create

    html = report[1]
    doc = _parse(html)
    med = per_target(scores)
    minutes = VOLUME.audio_minutes
    ais_month = cheapest_usd(math.ceil(VOLUME.seconds_per_song) / 60 * VOLUME.songs_per_month)
    coef = create("mvsep:demucs4ht").price_coefficient()
    mv_month = max(1, math.floor(VOLUME.seconds_per_song * coef / 60)) * VOLUME.songs_per_month * MVSEP_PRICE
    month = {AIS: ais_month, MVSEP: mv_month, "baseline:centre": 0.0}
    # procurement (vocals): USD per month and per audio minute; unknown prices say so
    proc = {r[0][1]["data-provider"]: r for r in doc.tables["procurement"][1:]}
    assert set(proc) == {AIS, MVSEP, DANGO, SUNO, "baseline:centre"}  # options only, no bounds
    for p, m in month.items():
        assert abs(float(proc[p][2][1]["data-value"]) - m) <= 1e-9, p
        assert abs(float(proc[p][1][1]["data-value"]) - m / minutes) <= 1e-12, p
    for p in (DANGO, SUNO):  # 3-min songs use paid points / calls: no published price
        assert proc[p][2][0] == "price unknown" and "data-value" not in proc[p][2][1]
        assert proc[p][4][0].startswith("price unknown:")
    # the recommendation: best vocals quality among known prices within the budget
    for tgt in ("vocals", "drums", "accompaniment"):
        cands = {p: float(med[(p, tgt)]) for p, m in month.items() if (p, tgt) in med.index and m <= 50.0}
        best = max(cands, key=lambda p: (cands[p], -month[p]))
        row = next(r for r in doc.tables["recommendations"][1:] if r[0][0] == tgt)
        assert row[1][0].startswith(best.replace(" [sandbox]", "")), (tgt, row[1][0])
        assert abs(float(row[2][1]["data-value"]) - cands[best]) <= TOL
        assert abs(float(row[3][1]["data-value"]) - month[best]) <= 1e-9
    rec = doc.text["recommendation"]
    vbest = max((p for p in month if (p, "vocals") in med.index and month[p] <= 50),
                key=lambda p: float(med[(p, "vocals")]))
    assert f"use {vbest}" in rec and f"${month[vbest]:,.2f}/month" in rec
    # the frontier of vocals: options with a known price, each at its vocals quality (not a mean over stems)
    figs = _figures(html)
    (front,) = [d for t, d, _ in figs if t == "vocals: quality vs cost"][:1] or [None]
    names = {tr["name"]: tr for tr in front}
    assert {AIS, MVSEP, "baseline:centre"} <= set(names) and SUNO not in names and DANGO not in names
    for p in (AIS, MVSEP, "baseline:centre"):
        tr = names[p]
        assert abs(_arr(tr["y"])[0] - float(med[(p, "vocals")])) <= TOL
        assert abs(_arr(tr["x"])[0] - month[p] / minutes) <= 1e-12
    assert abs(_arr(names[AIS]["y"])[0] - med[AIS].mean()) > 1e-6  # not the mean over its targets
    up = names["oracle:irm (upper bound)"]
    assert np.allclose(_arr(up["y"]), float(med[("oracle:irm", "vocals")])) and up["mode"] == "lines"
    assert "oracle:irm" not in names  # a bound is a line, never a point
    front_line = names.get("Pareto frontier (buyable, known price)")
    assert front_line is not None and not any("oracle" in str(x) for x in front_line.get("text", []) or [])


def test_report_time_in_two_clocks(report, jobs) -> None:
    doc = _parse(report[1])

    def table(tid):
        t = doc.tables[tid]
        head = [c[0] for c in t[0]]
        return {r[0][0]: {h: c for h, c in zip(head, r)} for r in t[1:]}

    meas, sim = table("latency-measured"), table("latency-simulated")
    assert set(meas) == {"oracle:irm", "baseline:mixture", "baseline:silence", "baseline:centre"}
    assert set(sim) == {AIS, MVSEP, DANGO, SUNO}
    for prov, row in meas.items():
        g = jobs[jobs.provider == prov]
        assert abs(float(row["turnaround p50 [s]"][1]["data-value"]) - g.total_s.quantile(0.5)) <= TOL
    for prov, row in sim.items():
        g = jobs[jobs.provider == prov]
        assert abs(float(row["turnaround p50 [s]"][1]["data-value"]) - g.sim_total_s.quantile(0.5)) <= TOL
        assert abs(float(row["processing [s, median]"][1]["data-value"]) - g.sim_processing_s.median()) <= TOL
    titles = [t for t, _, _ in _figures(report[1])]
    assert any(t.startswith("Measured latency per job") for t in titles)
    assert any(t.startswith("SIMULATED service latency per job") for t in titles)
    # the cost of the run: USD or "price unknown", and native units
    cost = {r[0][1]["data-provider"]: r for r in doc.tables["cost"][1:]}
    for prov, g in jobs.groupby("provider"):
        r = cost[prov]
        if g.cost_usd.isna().any():
            assert r[4][0] == "price unknown"
        else:
            assert abs(float(r[4][1]["data-value"]) - g.cost_usd.sum()) <= TOL
        assert abs(float(r[5][1]["data-value"]) - g.native_units.sum()) <= 1e-12


def test_report_power_sentence(report, scores, jobs) -> None:
    from scipy.stats import norm

    doc = _parse(report[1])
    text = doc.text["power-vocals"]
    sel = scores[(scores.metric == METRIC) & (scores.aggregation == "median_frames") & (scores.target == "vocals")]
    wide = sel.pivot(index="track", columns="provider", values="value")
    options = [p for p in wide.columns if p not in ("oracle:irm", "baseline:mixture", "baseline:silence")]
    dz = []
    for a, b in itertools.combinations(options, 2):
        d = (wide[a] - wide[b]).dropna().to_numpy()
        if len(d) >= 2 and np.std(d, ddof=1) > 0 and d.mean() != 0:
            dz.append(abs(d.mean() / np.std(d, ddof=1)))

    def need(z):
        return max(6, math.ceil(((norm.ppf(0.975) + norm.ppf(0.8)) / z) ** 2 / (3 / math.pi)))

    assert "4 track(s) per pair" in text and "needs at least 6" in text
    assert f"the median pair (|dz| = {np.median(dz):.2f}) would need {need(np.median(dz))} tracks" in text, text
    assert f"|dz| = {min(dz):.2f}) {need(min(dz))} tracks" in text, text
    assert "pairs-vocals" not in doc.tables  # no table of untestable pairs


def test_sidecars_are_named_after_the_report(run, tmp_path) -> None:
    from stemlab.reports import build_report

    build_report(run[0], tmp_path / "a.html", metric="usdr", clips=False)
    build_report(run[0], tmp_path / "b.html", clips=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "a.leaderboard.csv", "a.md", "b.html",
                                                          "b.leaderboard.csv", "b.md"]
    a, b = pd.read_csv(tmp_path / "a.leaderboard.csv"), pd.read_csv(tmp_path / "b.leaderboard.csv")
    assert set(a.metric) == {"usdr"} and set(b.metric) == {METRIC}
    assert list(b.columns[:6]) == ["provider", "target", "value", "ci_low", "ci_high", "n_tracks"] and "bound" in b
    md = (tmp_path / "b.md").read_text()
    assert "## Latency — SIMULATED (sandbox virtual seconds; not a measurement)" in md
    assert "## usdr — track/median_tracks" in (tmp_path / "a.md").read_text()


# ------------------------------------------------------------------ dry run and budgets

def test_dry_run_honours_budgets_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"datasets": [DATASET], "output": str(out), "providers": [
        {"provider": "aistemsplitter", "sandbox": True},
        {"provider": "mvsep:demucs4ht", "sandbox": True, "budget": {"credits": 2}},
        "oracle:irm"]}))
    cap = 0.02
    p = _cli("run", str(spec), "--budget", str(cap), "--dry-run")
    assert list(out.iterdir()) == []  # no ledger, owner file, lock or cache
    import stemlab.datasets as D

    secs = [t.seconds for t in D.load("demo", tracks=4, seconds=4.0)]
    names = D.load("demo", tracks=4, seconds=4.0).track_names()
    spent, refused = 0.0, []
    for name, s in zip(names, secs):  # reserved in plan order, as the run does
        est = math.ceil(s) / 60 * 6.99 / 50
        if spent + est > cap + 1e-9:
            refused.append(name)
        else:
            spent += est
    lines = p.stdout.splitlines()
    head = next(ln for ln in lines if ln.startswith("provider "))
    col = head.index("would be refused")
    i = lines.index(head)
    table = lines[i + 1: lines.index("", i)]
    counts = {ln.split()[0]: int(ln[col:].split()[0]) for ln in table}
    assert counts["aistemsplitter:htdemucs_ft"] == len(refused) == 2
    assert counts["mvsep:demucs4ht"] == 4 - 2  # 1 credit per 4-s job, 2 credits allowed
    assert counts["TOTAL"] == len(refused) + 2
    for name in refused:
        assert f"aistemsplitter:htdemucs_ft [sandbox] on {name}: " in p.stdout
    total = sum(math.ceil(s) / 60 * 6.99 / 50 for s in secs)
    assert (f"budget: ${cap:.4f}; estimated ${total:.4f} (+ jobs of unknown USD price) — "
            f"{len(refused) + 2} job(s) would be refused:") in p.stdout
    assert "USD price unknown (counted against credit caps only" in p.stdout and "mvsep:demucs4ht" in p.stdout
    assert p.stdout.rstrip().endswith("dry run: nothing was written (no output folder, ledger or owner file).")


def test_dry_run_on_an_existing_run_reads_its_ledger_without_touching_it(run) -> None:
    out = run[0]
    before = {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in out.iterdir() if f.is_file()}
    p = _cli("run", str(out.parent / "spec.json"), "--dry-run", "--budget", "0")
    after = {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in out.iterdir() if f.is_file()}
    assert before == after
    lines = p.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("provider "))
    total = next(ln for ln in lines[head:] if ln.startswith("TOTAL"))
    assert total.split()[1:3] == ["0", str(4 * len(PROVIDERS))]  # everything cached, nothing refused
    assert "budget: $0.0000; estimated $0.0000 — within the budget" in p.stdout


# ------------------------------------------------------------------ the CLI around it

def test_providers_list_separates_here_and_live(monkeypatch, capsys) -> None:
    from stemlab.cli import main
    from stemlab.services import SERVICES

    for s in SERVICES.values():
        monkeypatch.delenv(s.env_var, raising=False)
    assert main(["providers", "list", "--kind", "remote", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["kind"] == "remote" and r["here"].startswith("sandbox") and r["ready"] for r in rows)
    assert all(r["live"] == f"no key: set ${SERVICES[r['id'].split(':')[0]].env_var}" for r in rows)
    assert not any("unavailable" in r["here"] for r in rows)
    monkeypatch.setenv("MVSEP_API_TOKEN", "x" * 24)
    assert main(["providers", "list", "--live", "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert live and {r["id"].split(":")[0] for r in live} == {"mvsep"}
    assert main(["providers", "list", "--family", "oracle", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["oracle:irm", "oracle:ibm", "oracle:mwf"]
    assert main(["providers", "list", "--kind", "local", "--ready", "--json"]) == 0
    ready = json.loads(capsys.readouterr().out)
    assert ready and all(r["status"] == "ready" for r in ready)
    assert main(["providers", "list", "--kind", "local", "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["providers", "list", "--kind", "local"]) == 0
    out = capsys.readouterr().out.splitlines()
    n_ready = sum(r["status"] == "ready" for r in local)
    assert f"{len(local)} provider(s): {len(local)} local ({n_ready} ready here)." in out
    assert len(out) == 1 + len(local) + 2 + (1 if n_ready < len(local) else 0)


def test_missing_weights_message_reaches_the_cli(capsys, tmp_path) -> None:
    from stemlab.cli import main
    from stemlab.providers import create
    from stemlab.runs.cli import demo_selection

    st = create("demucs:htdemucs").status()
    if st.ready:
        pytest.skip("demucs weights are present here")
    assert main(["providers", "info", "demucs:htdemucs"]) == 0
    out = capsys.readouterr().out
    for part in ("Searched:", "torch-hub:", "This machine does not download weights", "get_model('htdemucs')"):
        assert part in out, part
    _, skipped = demo_selection()
    dm = next(s for s in skipped if s["id"] == "demucs:htdemucs")
    assert dm["reason"] == st.detail and dm["help"] == st.help and "Searched:" in st.help
    p = _cli("run", "--demo", "--dry-run", "-o", str(tmp_path / "o"))
    assert f"--demo: {len(skipped)} local provider(s) cannot run here and are skipped:" in p.stderr
    assert f"  demucs:htdemucs: {st.detail}" in p.stderr and "This machine does not download weights" in p.stderr
    # a run that asks for it anyway fails that job with the whole message
    from stemlab.runs import run as run_spec

    res = run_spec({"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 2.0}}],
                    "providers": ["demucs:htdemucs"], "metrics": ["usdr"], "output": str(tmp_path / "r")}, quiet=True)
    (err,) = res.jobs.error
    assert err == st.help


def test_progress_log_lines() -> None:
    import io
    import time

    from stemlab.runs.monitor import ProgressLog

    buf = io.StringIO()
    log = ProgressLog(3, 2, every=0.05, file=buf)
    log.done(True)
    log.done(False)
    time.sleep(0.2)
    log.done(True)
    log.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "stemlab: 3 job(s) of 2 provider(s) to run; progress every 0.05 s"
    mid = [ln for ln in lines[1:-1]]
    assert mid and all(re.fullmatch(r"stemlab: 2/3 jobs finished \(1 failed\) · \d+s elapsed · ETA ~\d+s", ln)
                       for ln in mid), mid
    assert re.fullmatch(r"stemlab: 3/3 jobs finished \(1 failed\) · \d+s elapsed · finished", lines[-1])


def test_tracks_needed_formula() -> None:
    from scipy.stats import norm

    from stemlab.reports.stats import tracks_needed

    for dz in (0.1, 0.27, 0.5, 1.0, 4.17):
        want = max(6, math.ceil(((norm.ppf(0.975) + norm.ppf(0.8)) / dz) ** 2 / (3 / math.pi)))
        assert tracks_needed(dz) == tracks_needed(-dz) == want
    assert tracks_needed(0.27) == 113  # ((1.95996 + 0.84162) / 0.27)² · π/3 = 112.6 → 113
