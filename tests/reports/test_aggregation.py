"""Every headline number of a real run (real BSSEval scoring: per track a
``median_frames`` AND a ``mean_frames`` row) recomputed independently:

* with plain pandas from ``scores.parquet`` (filter metric + aggregation,
  median/mean over tracks), and
* with museval's own aggregation (``MethodStore``/``EvalStore``) of the
  museval JSON files the run wrote,

and compared with the run summary (``stemlab run`` / ``stemlab results
show``), ``report.leaderboard.csv``, ``report.md``, the tables and figures of
``report.html``, ``Results.leaderboard``, the compare and track_inspector
notebooks, the paired tests, and ``stemlab score`` on the same estimates.

The bug these guard against: every consumer pooled the median_frames and
mean_frames rows (n_tracks = 2 × tracks, oracle:irm accompaniment SDR of the
demo 20.52 dB instead of museval's 19.39 dB)."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stemlab._slug import slug

PROVIDERS = ["oracle:irm", "baseline:mixture", "baseline:silence"]  # silence: every BSSEval track is NaN
METRIC = "sdr_bsseval_v4"
MUSEVAL = {"SDR": "sdr_bsseval_v4", "ISR": "isr_bsseval_v4", "SIR": "sir_bsseval_v4", "SAR": "sar_bsseval_v4"}
DATASET = {"name": "demo", "options": {"tracks": 4, "seconds": 4.0}}
TOL = 1e-9


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "stemlab.cli", *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("agg")
    out = base / "run"
    spec = base / "spec.json"
    spec.write_text(json.dumps({"name": "aggregation", "datasets": [DATASET], "providers": PROVIDERS,
                                "metrics": ["bsseval_v4", "usdr", "si_sdr"], "output": str(out)}))
    p = _cli("run", str(spec), "--report", str(out / "report.html"))
    return out, p.stdout


@pytest.fixture(scope="module")
def scores(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir[0] / "scores.parquet")


# ------------------------------------------------------------- the oracles

def expected(scores: pd.DataFrame, metric: str, rows: str, stat: str) -> pd.DataFrame:
    """Plain pandas: the ``rows`` per-track values of ``metric``, ``stat`` over
    tracks (NaN skipped), tracks counted."""
    sel = scores[(scores["metric"] == metric) & (scores["aggregation"] == rows)]
    g = sel.groupby(["provider", "target"])["value"]
    return pd.DataFrame({"value": g.median() if stat == "median" else g.mean(), "n": g.count(),
                         "n_nan": g.size() - g.count()})


def museval_scores(run: Path, frames_agg: str, tracks_agg: str, providers: list[str]) -> pd.Series:
    """museval's aggregation of the JSON files the run wrote, indexed by
    (provider, target, stemlab metric name)."""
    museval = pytest.importorskip("museval")
    from museval.aggregate import json2df

    ms = museval.MethodStore(frames_agg=frames_agg, tracks_agg=tracks_agg)
    for prov in providers:
        es = museval.EvalStore(frames_agg=frames_agg, tracks_agg=tracks_agg)
        files = sorted((run / "museval" / slug(prov)).glob("*.json"))
        assert len(files) == 4, (prov, files)
        for f in files:
            df = json2df(json.loads(f.read_text()), f.stem)
            df["score"] = df["score"].astype(float)
            es.add_track(df)
        ms.add_evalstore(es, prov)
    s = ms.agg_frames_tracks_scores()
    s.index = pd.MultiIndex.from_tuples([(p, t, MUSEVAL[m]) for p, t, m in s.index])
    return s


def bootstrap(values: np.ndarray, stat: str = "median", n_boot: int = 4000, seed: int = 0, ci: float = 0.95):
    """A percentile bootstrap written out here (stemlab's convention: numpy
    default_rng(seed), n_boot resamples of the tracks in file order)."""
    v = values[~np.isnan(values)]
    if v.size < 3:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    boots = np.median(v[idx], axis=1) if stat == "median" else v[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def track_series(scores: pd.DataFrame, provider: str, target: str, metric: str = METRIC,
                 rows: str = "median_frames") -> np.ndarray:
    sel = scores[(scores.provider == provider) & (scores.target == target) & (scores.metric == metric)
                 & (scores.aggregation == rows)]
    return sel["value"].to_numpy(dtype=float)


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


def fmt2(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.2f}"


# ------------------------------------------------------------- the oracles agree

@pytest.mark.parametrize("frames", ["median", "mean"])
@pytest.mark.parametrize("tracks", ["median", "mean"])
def test_scores_parquet_and_museval_json_agree(run_dir, scores, frames: str, tracks: str) -> None:
    ref = museval_scores(run_dir[0], frames, tracks, PROVIDERS)
    n = 0
    for metric in MUSEVAL.values():
        exp = expected(scores, metric, f"{frames}_frames", tracks)
        for (prov, tgt), r in exp.iterrows():
            want = float(ref[(prov, tgt, metric)])
            assert close(r.value, want), (prov, tgt, metric, r.value, want)
            n += 1
    assert n == 4 * 3 * 5
    exp = expected(scores, METRIC, "median_frames", "median")
    assert (exp.n + exp.n_nan == 4).all()  # one median_frames row per track — not 8
    assert (exp.loc["baseline:silence"].n_nan == 4).all() and exp.loc["baseline:silence"].value.isna().all()


def test_aggregate_matches_both_oracles(run_dir, scores) -> None:
    from stemlab.metrics.aggregate import aggregate

    for frames in ("median", "mean"):
        for tracks in ("median", "mean"):
            ref = museval_scores(run_dir[0], frames, tracks, PROVIDERS)
            for metric in MUSEVAL.values():
                got = aggregate(scores, metric, frames=frames, tracks=tracks)
                exp = expected(scores, metric, f"{frames}_frames", tracks)
                assert len(got) == len(exp) == 15
                for r in got.itertuples():
                    e = exp.loc[(r.provider, r.target)]
                    assert close(r.value, e.value) and close(r.value, float(ref[(r.provider, r.target, metric)]))
                    assert (r.n_tracks, r.n_nan_tracks) == (e.n, e.n_nan)
                    assert r.aggregation == f"{frames}_frames/{tracks}_tracks"
    for metric in ("usdr", "si_sdr"):
        for tracks in ("median", "mean"):
            got = aggregate(scores, metric, tracks=tracks)
            exp = expected(scores, metric, "track", tracks)
            for r in got.itertuples():
                assert close(r.value, exp.loc[(r.provider, r.target)].value) and r.n_tracks == 4
                assert r.aggregation == f"track/{tracks}_tracks"


# ------------------------------------------------------------- the consumers

def _summary_table(text: str, metric: str = METRIC) -> tuple[str, dict[tuple[str, str], str]]:
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(f"{metric} — aggregation "))
    targets = lines[i + 1].split()
    cells = {}
    for ln in lines[i + 2:]:
        if not ln.strip() or ln.startswith("report:"):
            break
        prov, *vals = ln.split()
        assert len(vals) == len(targets), ln
        cells.update({(prov, t): v for t, v in zip(targets, vals)})
    return lines[i], cells


def test_run_and_results_show_summaries(run_dir, scores) -> None:
    out, run_stdout = run_dir
    exp = expected(scores, METRIC, "median_frames", "median")
    shown = _cli("results", "show", str(out)).stdout
    for text in (run_stdout, shown):
        head, cells = _summary_table(text)
        assert "median_frames/median_tracks" in head and "median over frames per track, then median over tracks" in head
        assert "(4 track(s) per cell, 20 NaN track value(s) skipped)" in head
        assert len(cells) == 15
        for (prov, tgt), r in exp.iterrows():
            assert cells[(prov, tgt)] == ("NaN" if math.isnan(r.value) else f"{r.value:.2f}"), (prov, tgt)
    assert _summary_table(run_stdout)[1] == _summary_table(shown)[1]


def test_leaderboard_csv(run_dir, scores) -> None:
    lb = pd.read_csv(run_dir[0] / "report.leaderboard.csv")  # named after report.html
    assert list(lb.columns[:6]) == ["provider", "target", "value", "ci_low", "ci_high", "n_tracks"]
    exp = expected(scores, METRIC, "median_frames", "median")
    ref = museval_scores(run_dir[0], "median", "median", PROVIDERS)
    assert len(lb) == 15 and set(lb.aggregation) == {"median_frames/median_tracks"} and set(lb.metric) == {METRIC}
    for r in lb.itertuples():
        e = exp.loc[(r.provider, r.target)]
        assert close(r.value, e.value) and close(r.value, float(ref[(r.provider, r.target, METRIC)]))
        assert (r.n_tracks, r.n_nan_tracks) == (e.n, e.n_nan)
        lo, hi = bootstrap(track_series(scores, r.provider, r.target))
        assert close(r.ci_low, lo) and close(r.ci_high, hi), (r.provider, r.target)
    # providers ranked by their mean over targets, best first; the all-NaN provider last
    assert list(dict.fromkeys(lb.provider)) == ["oracle:irm", "baseline:mixture", "baseline:silence"]


def test_report_md(run_dir, scores) -> None:
    md = (run_dir[0] / "report.md").read_text()
    assert f"## {METRIC} — median_frames/median_tracks" in md
    assert "median over frames per track, then median over tracks (4 track(s) per cell, 20 NaN" in md
    lines = md[md.index(f"## {METRIC}"):].splitlines()
    head = next(ln for ln in lines if ln.startswith("| provider |"))
    targets = [c.strip() for c in head.strip("|").split("|")][1:]
    rows = [ln for ln in lines[lines.index(head) + 2:] if ln.startswith("|")][:3]
    exp = expected(scores, METRIC, "median_frames", "median")
    assert len(rows) == 3
    for ln in rows:
        prov, *vals = [c.strip() for c in ln.strip("|").split("|")]
        for t, v in zip(targets, vals):
            assert v == fmt2(exp.loc[(prov, t)].value), (prov, t)


class _Tables(HTMLParser):
    """{table id: [[(text, attributes) per cell] per row]} (a ``<br>`` or
    ``<wbr>`` inside a cell adds nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, dict]]]] = {}
        self.ids: dict[str, str] = {}
        self._cur: list | None = None
        self._cell: list | None = None
        self._id: list | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._cur = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._cur is not None:
            self._cur.append([])
        elif tag in ("td", "th") and self._cur is not None:
            self._cell = ["", a]
        elif tag == "p" and a.get("id"):
            self._id = [a["id"], ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if self._id is not None:
            self._id[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._cur is not None:
            self._cur[-1].append((self._cell[0].strip(), self._cell[1]))
            self._cell = None
        elif tag == "table":
            self._cur = None
        elif tag == "p" and self._id is not None:
            self.ids[self._id[0]] = self._id[1]
            self._id = None


def _html_tables(doc: str) -> _Tables:
    p = _Tables()
    p.feed(doc)
    return p


def _decode(x):
    if isinstance(x, dict) and "bdata" in x:
        a = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        return a.reshape([int(s) for s in x["shape"].split(",")]) if "shape" in x else a
    return np.asarray(x)


def _html_figures(doc: str) -> list[tuple[str, list[dict]]]:
    dec = json.JSONDecoder()
    figs = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"fig\d+",\s*', doc):
        data, end = dec.raw_decode(doc, m.end())
        layout, _ = dec.raw_decode(doc, end + re.match(r",\s*", doc[end:]).end())
        figs.append((layout.get("title", {}).get("text", ""), data))
    return figs


def _cells(rows: list[list[tuple[str, dict]]]) -> tuple[list[str], dict[str, list[tuple[str, dict]]]]:
    """(header texts, provider → its cells) of a report table (the line between options and bounds skipped)."""
    head = [t for t, _ in rows[0]]
    body = {r[0][1]["data-provider"]: r[1:] for r in rows[1:] if len(r) > 1}
    return head, body


def _check_cell(cell: tuple[str, dict], want: float, lo: float, hi: float, where) -> None:
    text, a = cell
    if math.isnan(want):
        assert text.startswith("n/a") and "data-value" not in a, where
        return
    assert abs(float(a["data-value"]) - want) <= TOL, where
    assert text.startswith(fmt2(want)), where
    if not math.isnan(lo):
        assert abs(float(a["data-ci-low"]) - lo) <= TOL and abs(float(a["data-ci-high"]) - hi) <= TOL, where
        assert f"[{lo:.2f}, {hi:.2f}]" in text, where


def test_report_html_tables_and_figures(run_dir, scores) -> None:
    doc = (run_dir[0] / "report.html").read_text()
    assert "<code class='aggregation'>median_frames/median_tracks</code>" in doc
    parsed = _html_tables(doc)
    tabs = parsed.tables
    targets = ("vocals", "drums", "bass", "other", "accompaniment")
    # the first screen's leaderboard: every (provider, target) of the primary metric, its value and its CI
    head, body = _cells(tabs["leaderboard"])
    assert head == ["provider", *targets] and set(body) == set(PROVIDERS)
    exp = expected(scores, METRIC, "median_frames", "median")
    for prov, cells in body.items():
        for tgt, cell in zip(targets, cells):
            lo, hi = bootstrap(track_series(scores, prov, tgt))
            _check_cell(cell, exp.loc[(prov, tgt)].value, lo, hi, ("leaderboard", prov, tgt))
    # all three are bounds (oracle upper, the floors below it), listed below the line, never as options
    assert tabs["leaderboard"][1][0][0].startswith("bounds — not options")
    assert [r[0][1]["data-provider"] for r in tabs["leaderboard"][2:]] == PROVIDERS
    # per target: every metric with its aggregation in the header, value and CI in each cell
    for tgt in targets:
        head, body = _cells(tabs[f"target-{tgt}"])
        assert set(body) == set(PROVIDERS)
        for j, h in enumerate(head[1:]):
            metric = h.split(" [")[0]
            rows = "track" if metric in ("usdr", "si_sdr") else "median_frames"
            assert h.endswith(f"{rows}/median_tracks"), h
            e = expected(scores, metric, rows, "median")
            for prov, cells in body.items():
                lo, hi = bootstrap(track_series(scores, prov, tgt, metric=metric, rows=rows))
                _check_cell(cells[j], e.loc[(prov, tgt)].value, lo, hi, (tgt, metric, prov))
        assert {h.split(" [")[0] for h in head[1:]} == set(MUSEVAL.values()) | {"usdr", "si_sdr"}
    # paired tests: 4 tracks are too few — one sentence per target with the tracks a test would need
    from scipy.stats import norm

    for tgt in targets:
        assert f"pairs-{tgt}" not in tabs
        text = parsed.ids[f"power-{tgt}"]
        assert text.startswith(f"No paired tests on {tgt}: 4 track(s) per pair, and the Wilcoxon signed-rank test "
                               "needs at least 6"), text
        a = track_series(scores, "oracle:irm", tgt)
        b = track_series(scores, "baseline:mixture", tgt)
        d = a - b  # the only pair with finite differences (silence is NaN throughout)
        dz = abs(d.mean() / np.std(d, ddof=1))
        need = max(6, math.ceil(((norm.ppf(0.975) + norm.ppf(0.8)) / dz) ** 2 / (3 / math.pi)))
        assert f"(1 pair(s) of providers), the median pair (|dz| = {dz:.2f}) would need {need} tracks" in text, text
    # like for like: the 4-stem and 2-stem overall numbers, each a mean over its own targets only
    for tid, tset in (("overall-4-stems", targets[:4]), ("overall-2-stems", ("vocals", "accompaniment"))):
        head, body = _cells(tabs[tid])
        assert set(body) == set(PROVIDERS)
        for prov, (cell,) in body.items():
            want = float(np.mean([exp.loc[(prov, t)].value for t in tset]))
            _check_cell(cell, want, math.nan, math.nan, (tid, prov))

    figs = _html_figures(doc)
    titles = [t for t, _ in figs]
    # one bar chart per target: each provider's value and CI whiskers
    for tgt in targets:
        (bar,) = [d for t, d in figs if t.startswith(f"{tgt}: {METRIC} — median_frames/median_tracks")]
        (tr,) = bar
        for label, x, up, down in zip(tr["y"], _decode(tr["x"]), _decode(tr["error_x"]["array"]),
                                      _decode(tr["error_x"]["arrayminus"])):
            prov = label.split(" (")[0]
            e = exp.loc[(prov, tgt)].value
            assert close(float(x), e), (prov, tgt)
            lo, hi = bootstrap(track_series(scores, prov, tgt))
            assert abs(up - (hi - e)) <= TOL and abs(down - (e - lo)) <= TOL
        assert {lab.split(" (")[0] for lab in tr["y"]} == {"oracle:irm", "baseline:mixture"}  # silence: no bar, NaN
    # the heatmaps: each track's median_frames value, one cell per (provider, track)
    heat = [(t, d) for t, d in figs if t.startswith(f"{METRIC} per track (median_frames) — ")]
    assert len(heat) == 5, titles
    for t, (tr,) in heat:
        tgt = t.rsplit("— ", 1)[1]
        z = _decode(tr["z"])
        assert z.shape == (3, 4)
        for i, prov in enumerate(tr["y"]):
            for j, track in enumerate(tr["x"]):
                sel = scores[(scores.provider == prov) & (scores.target == tgt) & (scores.metric == METRIC)
                             & (scores.aggregation == "median_frames") & (scores.track == track)]
                assert len(sel) == 1 and close(float(z[i, j]), float(sel.value.iloc[0])), (prov, tgt, track)
    # the distribution (compare notebook's figure): 4 points per (provider, target), the median_frames values
    from stemlab.reports import figures

    dist = figures.distribution(scores, METRIC).to_plotly_json()["data"]
    for tr in dist:
        y = _decode(tr["y"])
        for prov in PROVIDERS:
            got = np.sort(np.asarray([v for p, v in zip(tr["x"], y) if p == prov], dtype=float))
            want = np.sort(track_series(scores, prov, tr["name"]))
            assert got.shape == (4,) and np.allclose(got, want, atol=TOL, rtol=0, equal_nan=True), (prov, tr["name"])
    # quality vs cost per target: bounds only here, drawn as reference lines at their value on that target
    for tgt in targets:
        pars = [d for t, d in figs if t == f"{tgt}: quality vs cost"]
        assert len(pars) == (2 if tgt == "vocals" else 1)  # vocals: also on the first screen, for the buyer
        for par in pars:
            assert all(tr["mode"] == "lines" for tr in par)  # no option: no point, no frontier
            lines = {tr["name"]: _decode(tr["y"]) for tr in par}
            assert set(lines) == {"oracle:irm (upper bound)", "baseline:mixture (floor)"}
            for name, y in lines.items():
                assert np.allclose(y.astype(float), exp.loc[(name.split(" (")[0], tgt)].value, atol=TOL, rtol=0)


def test_results_leaderboard(run_dir, scores) -> None:
    from stemlab.runs import load_results

    res = load_results(run_dir[0])
    for kw, rows, stat in (({}, "median_frames", "median"), ({"agg": "mean"}, "median_frames", "mean"),
                           ({"frames": "mean"}, "mean_frames", "median"),
                           ({"frames": "mean", "agg": "mean"}, "mean_frames", "mean")):
        lb = res.leaderboard(**kw)
        assert lb.attrs["aggregation"] == f"{rows}/{stat}_tracks"
        exp = expected(scores, METRIC, rows, stat)
        assert lb.shape == (3, 5)
        for prov in lb.index:
            for tgt in lb.columns:
                assert close(float(lb.loc[prov, tgt]), exp.loc[(prov, tgt)].value), (kw, prov, tgt)
    tidy = res.leaderboard("usdr", "mean", tidy=True)
    exp = expected(scores, "usdr", "track", "mean")
    assert set(tidy.aggregation) == {"track/mean_tracks"} and (tidy.n_tracks == 4).all()
    for r in tidy.itertuples():
        assert close(r.value, exp.loc[(r.provider, r.target)].value)
    from stemlab.errors import InputError

    with pytest.raises(InputError, match="whole-track metric"):
        res.leaderboard("usdr", frames="median")


def test_paired_stats_pair_one_aggregation(scores) -> None:
    from stemlab.reports import stats

    for frames, rows in ((None, "median_frames"), ("mean", "mean_frames")):
        for tgt in ("vocals", "accompaniment"):
            (c,) = [c for c in stats.compare(scores, METRIC, tgt, ["oracle:irm", "baseline:mixture"], n_boot=500,
                                             frames=frames)]
            a = track_series(scores, "oracle:irm", tgt, rows=rows)
            b = track_series(scores, "baseline:mixture", tgt, rows=rows)
            assert c.n == 4 and c.aggregation == rows
            assert abs(c.mean_diff - float(np.mean(a - b))) <= TOL
            assert c.win_rate == float(np.mean(a > b))


def test_notebooks_show_the_same_numbers(run_dir, scores, tmp_path) -> None:
    from stemlab.reports.notebooks import run_notebook

    nb_path = run_notebook("compare", {"results": str(run_dir[0])}, output=tmp_path / "compare.ipynb")
    nb = json.loads(nb_path.read_text())
    outs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outs if o.get("output_type") == "error"]
    (js,) = [o["data"]["application/json"] for o in outs if "application/json" in o.get("data", {})]
    assert js["metric"] == METRIC and js["aggregation"] == "median_frames/median_tracks"
    exp = expected(scores, METRIC, "median_frames", "median")
    assert len(js["rows"]) == 15
    for r in js["rows"]:
        e = exp.loc[(r["provider"], r["target"])]
        v = float("nan") if r["value"] is None else r["value"]
        assert close(v, e.value) and (r["n_tracks"], r["n_nan_tracks"]) == (e.n, e.n_nan)
        lo, hi = bootstrap(track_series(scores, r["provider"], r["target"]))
        assert close(float("nan") if r["ci_low"] is None else r["ci_low"], lo)
        assert close(float("nan") if r["ci_high"] is None else r["ci_high"], hi)
    text = json.dumps(outs)
    assert ("aggregation `median_frames/median_tracks`: median over frames per track, then median over tracks; "
            "4 track(s) per cell, 20 NaN track value(s) skipped") in text
    # the track inspector's per-track table: this track's median_frames value
    track = "demo-01-pop"
    nb_path = run_notebook("track_inspector", {"results": str(run_dir[0]), "track": track, "target": "vocals"},
                           output=tmp_path / "ti.ipynb")
    outs = [o for c in json.loads(nb_path.read_text())["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outs if o.get("output_type") == "error"]
    table = next(o["data"]["text/plain"] for o in outs
                 if "sdr_bsseval_v4 (median_frames)" in str(o.get("data", {}).get("text/plain", "")))
    sel = scores[(scores.track == track) & (scores.provider == "oracle:irm") & (scores.target == "vocals")
                 & (scores.metric == METRIC) & (scores.aggregation == "median_frames")]
    assert len(sel) == 1 and f"{sel.value.iloc[0]:.2f}" in "".join(table)


def test_stemlab_score_gives_the_run_numbers(run_dir, scores, tmp_path) -> None:
    """The estimates oracle:irm returned in the run, scored again by
    ``stemlab score``: the same per-track rows, the same museval JSON (same
    file names: one slug function), the same summary numbers."""
    import soundfile as sf

    from stemlab.metrics.aggregate import aggregate
    from stemlab.runs import load_results

    prov = "oracle:irm"
    res = load_results(run_dir[0])
    est = tmp_path / "est"
    tracks = sorted(scores.track.unique())
    for track in tracks:
        stems = res.stems(prov, track)
        d = est / track
        d.mkdir(parents=True)
        for name in stems.names:
            x = stems[name]
            assert x.dtype == np.float32  # written losslessly below
            sf.write(d / f"{name}.wav", x.T, stems.sample_rate, subtype="FLOAT")
    out = tmp_path / "scored"
    p = _cli("score", str(est), "--dataset", "demo", "--dataset-arg", "tracks=4", "--dataset-arg", "seconds=4.0",
             "--metrics", "bsseval_v4,usdr,si_sdr", "-o", str(out))
    sc = pd.read_parquet(out / "scores.parquet")
    mine = scores[scores.provider == prov]
    # the same per-track rows
    key = ["track", "target", "metric", "aggregation"]
    m = mine.merge(sc, on=key, suffixes=("_run", "_score"), validate="one_to_one")
    assert len(m) == len(mine) == len(sc) == 4 * 5 * (4 * 2 + 2)
    assert np.allclose(m.value_run, m.value_score, atol=TOL, rtol=0, equal_nan=True)
    # the same museval JSON, under the same file names
    run_json = sorted(p.name for p in (run_dir[0] / "museval" / slug(prov)).glob("*.json"))
    score_json = sorted(p.name for p in (out / "museval" / "test").glob("*.json"))
    assert run_json == score_json == [f"{slug(t)}.json" for t in tracks]
    for name in run_json:
        a = json.loads((run_dir[0] / "museval" / slug(prov) / name).read_text())["targets"]
        b = json.loads((out / "museval" / "test" / name).read_text())["targets"]
        assert [t["name"] for t in a] == [t["name"] for t in b]
        for ta, tb in zip(a, b):
            va = np.array([[f["metrics"][k] for k in MUSEVAL] for f in ta["frames"]], dtype=float)
            vb = np.array([[f["metrics"][k] for k in MUSEVAL] for f in tb["frames"]], dtype=float)
            assert np.allclose(va, vb, atol=TOL, rtol=0, equal_nan=True)
    # museval's own reader on score's layout ({subset}/{track}.json) gives the run's numbers
    museval = pytest.importorskip("museval")
    ms = museval.MethodStore()
    ms.add_eval_dir(str(out / "museval"))
    ref = ms.agg_frames_tracks_scores()
    exp = expected(scores, METRIC, "median_frames", "median")
    for tgt in ("vocals", "drums", "bass", "other", "accompaniment"):
        assert close(float(ref[("museval", tgt, "SDR")]), exp.loc[(prov, tgt)].value)
    # the summary lines: the same number as the run's for the same (target, metric, aggregation)
    lines = re.findall(r"^\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+\(n=(\d+)\)$", p.stdout, flags=re.M)
    assert len(lines) == 5 * 6, p.stdout
    run_lb = {m: aggregate(scores, m).set_index(["provider", "target"]) for m in set(scores.metric)}
    for tgt, metric, value, label, n in lines:
        rows = "track" if metric in ("usdr", "si_sdr") else "median_frames"
        assert label == f"{rows}/median_tracks" and n == "4"
        e = expected(scores, metric, rows, "median").loc[(prov, tgt)].value
        assert value == f"{e:.3f}" == f"{run_lb[metric].loc[(prov, tgt)].value:.3f}", (tgt, metric)
        got = aggregate(sc, metric, by=("target",)).set_index("target").loc[tgt]
        assert close(got.value, e) and got.aggregation == label
    assert f"{exp.loc[(prov, 'accompaniment')].value:.3f}" in p.stdout
