"""The metric registry: every declared metric end to end, and everything that
reads the declarations (available_metrics, evaluate, units, DEFAULT_METRICS,
the score-cache version in a run's metrics_hash, aggregation validity,
report labels and directions).

A metric added to :data:`stemlab.metrics.registry.DECLARED` is checked here
without a line of test code: its rows, units, aggregations, direction and
use of the references, on a small synthetic song."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import stemlab.metrics as M
from stemlab.errors import InputError
from stemlab.metrics import bsseval as B
from stemlab.metrics import evaluate
from stemlab.metrics import registry as R
from stemlab.metrics.evaluation import BSSEVAL_METRICS

SR = 8000
T = 3 * SR + 200
FILTERS = 64  # short BSSEval filters keep the joint 4-source projection fast
NAMES = ("vocals", "drums", "bass", "other")


def _song(seed: int = 0) -> dict[str, np.ndarray]:
    """Four distinct stereo stems: harmonic voice, gated noise drums, bass
    tones, a chirp — each with a little independent noise (full rank)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / SR
    sig = {
        "vocals": sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
        * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)),
        "drums": rng.standard_normal(T) * (np.sin(2 * np.pi * 2 * t) > 0.6),
        "bass": np.sin(2 * np.pi * 55 * t) + 0.3 * np.sin(2 * np.pi * 110 * t),
        "other": np.sin(2 * np.pi * (300 + 400 * t) * t),
    }
    out = {}
    for n in NAMES:
        x = 0.2 * sig[n] / np.max(np.abs(sig[n]))
        out[n] = np.stack([x + 0.02 * rng.standard_normal(T), 0.8 * x + 0.02 * rng.standard_normal(T)]).astype(
            np.float32
        )
    return out


def _estimates(refs: dict[str, np.ndarray], bleed: float, scale: float, seed: int) -> dict[str, np.ndarray]:
    """``scale``·reference + ``bleed``·(the other stems) + noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, r in refs.items():
        others = sum(refs[m] for m in refs if m != n)
        out[n] = (scale * r + bleed * others + 0.2 * bleed * rng.standard_normal(r.shape)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def song():
    refs = _song()
    good = _estimates(refs, 0.01, 1.0, seed=1)  # reference + a little bleed and noise
    bad = _estimates(refs, 0.3, 0.7, seed=2)  # quieter, much more bleed and noise
    other = {n: (0.8 * r + 0.2 * a).astype(np.float32) for (n, r), a in zip(refs.items(), _song(seed=5).values())}
    return refs, good, bad, other  # other: the references, changed


def _eval(refs, ests, metric: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return evaluate(refs, ests, SR, metrics=[metric], filters_len=FILTERS)


def _values(ev) -> dict[tuple[str, str, str], float]:
    return {(r["target"], r["metric"], r["aggregation"]): r["value"] for r in ev.rows}


def _declared_params():
    return [pytest.param(m, id=m.name, marks=() if m.name in R.METRICS else
                         pytest.mark.skip(reason=f"{m.name}: needs {m.requires}")) for m in R.DECLARED]


# ------------------------------------------------------ every declared metric

def _check_rows(spec: R.Metric, ev) -> set[tuple[str, str, str]]:
    """Rows: exactly the declared names × aggregations, in the declared unit."""
    want = {(t, row, agg) for t in NAMES for row in spec.rows for agg in spec.aggregations}
    assert set(_values(ev)) == want
    assert len(ev.rows) == len(want)
    assert {r["unit"] for r in ev.rows} == {spec.unit}
    for r in ev.rows:
        assert R.metric_of_row(r["metric"]) is not None and R.unit_of(r["metric"]) == spec.unit
        assert R.higher_is_better(r["metric"]) == spec.higher_is_better
    return want


def _check_direction(spec: R.Metric, ev_good, ev_bad) -> None:
    """The better estimate scores better on every row."""
    g, b = _values(ev_good), _values(ev_bad)
    for key in g:
        assert np.isfinite(g[key]) and np.isfinite(b[key]), key
        assert (g[key] > b[key]) == spec.higher_is_better and g[key] != b[key], (key, g[key], b[key])


def _check_references(spec: R.Metric, song) -> None:
    """needs_references: against other references every value changes;
    without: none does (and the function is called without them)."""
    refs, good, _, other = song
    g, s = _values(_eval(refs, good, spec.name)), _values(_eval(other, good, spec.name))
    changed = [abs(s[k] - g[k]) > 1e-6 for k in g]
    assert all(changed) if spec.needs_references else not any(changed)


@pytest.mark.parametrize("spec", _declared_params())
def test_declared_metric_end_to_end(song, spec: R.Metric) -> None:
    refs, good, bad, _ = song
    ev_good = _eval(refs, good, spec.name)
    _check_rows(spec, ev_good)
    _check_direction(spec, ev_good, _eval(refs, bad, spec.name))
    _check_references(spec, song)


@pytest.mark.parametrize("spec", _declared_params())
def test_declared_function_is_what_evaluate_computes(song, spec: R.Metric) -> None:
    refs, good, _, _ = song
    got = _values(_eval(refs, good, spec.name))
    if spec.kind == "track":
        mix = np.sum([refs[n].astype(np.float64) for n in NAMES], axis=0)
        for t in NAMES:
            args = (refs[t][None], good[t][None], SR) if spec.needs_references else (good[t][None], SR)
            kw = {"mixture": mix} if spec.needs_mixture else {}
            (want,) = spec.function(*args, **kw)
            assert got[(t, spec.name, R.TRACK_AGGREGATION)] == pytest.approx(want, abs=1e-9), t
        return
    # framewise: the four targets are one group (no accompaniment), as the function sees them
    kw = {"filters_len": FILTERS} if "filters_len" in inspect.signature(spec.function).parameters else {}
    res = spec.function(np.stack([refs[n] for n in NAMES]), np.stack([good[n] for n in NAMES]), SR, SR, **kw)
    frames = res.metrics()
    for j, t in enumerate(NAMES):
        for row, crit in zip(spec.rows, spec.criteria):
            stored = np.array([B.museval_round(float(x)) for x in frames[crit][j]])
            assert got[(t, row, "median_frames")] == pytest.approx(float(np.nanmedian(stored)), abs=1e-9)
            assert got[(t, row, "mean_frames")] == pytest.approx(float(np.nanmean(stored)), abs=1e-9)


def test_declarations_are_consistent() -> None:
    names = [m.name for m in R.DECLARED]
    assert len(names) == len(set(names))
    assert M.available_metrics() == [m.name for m in R.DECLARED if m.name in R.METRICS]
    assert list(R.METRICS) == M.available_metrics()
    by_row: dict[str, R.Metric] = {}
    for m in R.DECLARED:
        assert m.unit in R.UNITS and m.kind in R.KINDS and m.version >= 1 and m.description
        assert m.aggregations == (R.FRAME_AGGREGATIONS if m.kind == "framewise" else (R.TRACK_AGGREGATION,))
        assert m.rows and len(set(m.rows)) == len(m.rows)
        if m.kind == "framewise":
            assert set(m.criteria) <= set(BSSEVAL_METRICS)  # museval's per-frame names
        for row in m.rows:  # a row two metrics produce means the same thing in both
            if row in by_row:
                assert (by_row[row].unit, by_row[row].higher_is_better) == (m.unit, m.higher_is_better)
            by_row.setdefault(row, m)
    assert "SDR" not in names and "sdr" not in names  # never a bare SDR
    assert set(R.DEFAULT_METRICS) <= set(R.METRICS)


def test_streaming_metrics_are_what_stream_metrics_computes(song) -> None:
    from stemlab.metrics import simple as S

    refs, good, _, _ = song
    stream = [m.name for m in R.METRICS.values() if m.streaming]
    assert set(stream) == set(R.STREAMING_METRICS) and stream
    R_ = [refs[n] for n in NAMES]
    E_ = [good[n] for n in NAMES]
    out = S.stream_metrics(stream, R_, E_, SR)
    for m in stream:
        np.testing.assert_allclose(out[m], R.METRICS[m].function(np.stack(R_), np.stack(E_), SR), rtol=0, atol=1e-9)
    with pytest.raises(InputError, match="not computed block by block"):
        S.stream_metrics(["l1_freq"], R_, E_, SR)
    assert R.SIMPLE_METRICS == {m.name: m.function for m in R.METRICS.values() if m.kind == "track"}


# ------------------------------------------------- metrics added by a test

def _mse_db(references, estimates, sample_rate):
    r, e = np.asarray(references, np.float64), np.asarray(estimates, np.float64)
    return 10 * np.log10(np.mean((e - r) ** 2, axis=(1, 2)))


def _rms_db(estimates, sample_rate):
    e = np.asarray(estimates, dtype=np.float64)
    return 10 * np.log10(np.mean(e**2, axis=(1, 2)))


@pytest.fixture
def added(monkeypatch):
    """Two metrics declared the way a contributor would — one Metric each,
    nothing else: an error level (lower is better) and a no-reference one."""
    new = (R.Metric("mse_db", "dB", False, "track", _mse_db, "error level (test only)"),
           R.Metric("rms_db", "dB", True, "track", _rms_db, "estimate level (test only)", needs_references=False))
    monkeypatch.setattr(R, "DECLARED", R.DECLARED + new)
    for m in new:
        monkeypatch.setitem(R.METRICS, m.name, m)
    return new


def test_new_declarations_are_picked_up_everywhere(song, added) -> None:
    mse, rms = added
    assert M.available_metrics()[-2:] == ["mse_db", "rms_db"]
    # the contract above, unchanged
    test_declared_metric_end_to_end(song, mse)
    test_declared_function_is_what_evaluate_computes(song, mse)
    refs, good, bad, _ = song
    _check_rows(rms, _eval(refs, good, "rms_db"))
    _check_references(rms, song)  # _rms_db takes no references: evaluate passes none
    test_declared_function_is_what_evaluate_computes(song, rms)
    assert R.scores_version(["mse_db", "rms_db"]) == 2
    # lower is better: reports rank the lower value first
    from stemlab.reports import figures, tables

    rows = []
    for prov, ests in (("bad", bad), ("good", good)):
        for r in _eval(refs, ests, "mse_db").rows:
            rows.append({**r, "provider": prov, "track": "song", "dataset": "synth"})
    lb = tables.leaderboard(pd.DataFrame(rows), "mse_db", ci=None)
    assert list(lb["provider"].cat.categories) == ["good", "bad"]
    as_higher = [{**r, "metric": "usdr"} for r in rows]  # the same values as a higher-is-better metric
    assert list(tables.leaderboard(pd.DataFrame(as_higher), "usdr", ci=None)["provider"].cat.categories) == [
        "bad", "good"]
    pts = pd.DataFrame({"provider": ["a", "b", "c"], "quality": [1.0, 2.0, 0.5], "usd_per_audio_min": [0.1, 0.2, 0.3]})
    assert list(tables.pareto_frontier(pts, higher_is_better=False)["provider"]) == ["a", "c"]
    assert list(tables.pareto_frontier(pts)["provider"]) == ["a", "b"]
    assert figures._axis("mse_db") == "mse_db [dB]"


def test_report_labels_and_directions_come_from_the_registry() -> None:
    from stemlab.reports import figures, stats

    assert figures._axis("sdr_bsseval_v4") == "sdr_bsseval_v4 [dB]"
    assert figures._axis("bleedless") == "bleedless [score]"
    assert figures._axis("SDR") == "SDR [dB]"  # per-frame criterion
    assert figures._axis("somebody_elses") == "somebody_elses"
    assert inspect.signature(stats.compare).parameters["higher_is_better"].default is None


# ---------------------------------------------------------------- validation

def test_unknown_and_optional_metrics_are_explained(monkeypatch) -> None:
    refs = _song()
    with pytest.raises(InputError, match=r"evaluate: unknown metric\(s\) \['sdr9'\]; valid: \["):
        evaluate(refs, refs, SR, metrics=["usdr", "sdr9"])
    with pytest.raises(InputError, match="no metrics requested"):
        evaluate(refs, refs, SR, metrics=[])
    # an optional metric whose package is missing: named, with what to install
    spec = next(m for m in R.DECLARED if m.name == "log_wmse")
    monkeypatch.delitem(R.METRICS, "log_wmse", raising=False)
    assert "log_wmse" not in M.available_metrics()
    with pytest.raises(InputError, match=r"metric 'log_wmse' needs the optional package torch_log_wmse < 1\.0") as e:
        evaluate(refs, refs, SR, metrics="usdr,log_wmse")
    assert e.value.details["field"] == "metrics" and spec.requires and "pip install" in str(e.value)
    with pytest.raises(InputError, match="torch_log_wmse"):
        R.get("log_wmse")
    assert R.unavailable_reason("log_wmse") == f"metric 'log_wmse' needs {spec.requires}"
    assert R.unavailable_reason("usdr") is None and R.unavailable_reason("nope") is None
    with pytest.raises(InputError, match="unknown metric 'nope'"):
        R.get("nope")


def test_aggregate_checks_rows_against_the_declaration() -> None:
    from stemlab.metrics.aggregate import aggregate

    rows = [{"track": f"t{i}", "provider": "p", "target": "vocals", "metric": "usdr", "aggregation": agg, "value": 1.0}
            for i in range(3) for agg in ("median_frames", "mean_frames")]
    with pytest.raises(InputError, match="'usdr' is declared track"):
        aggregate(rows, "usdr")
    ok = [{**r, "metric": "someone_elses"} for r in rows]  # undeclared: the rows decide
    assert aggregate(ok, "someone_elses").aggregation.iloc[0] == "median_frames/median_tracks"


# ------------------------------------------------ DEFAULT_METRICS, versions

def test_default_metrics_defined_once() -> None:
    from stemlab.metrics import evaluation, score_dir, scoring
    from stemlab.runs import spec

    assert M.DEFAULT_METRICS is R.DEFAULT_METRICS is evaluation.DEFAULT_METRICS is scoring.DEFAULT_METRICS
    for fn in (evaluation.evaluate, scoring.score_stems, scoring.evaluate_track, score_dir.score):
        assert inspect.signature(fn).parameters["metrics"].default is R.DEFAULT_METRICS
    assert spec.DEFAULT_METRICS is R.DEFAULT_METRICS  # runs/spec.py imports it


#: metrics_hash of these specs before per-metric versions (commit 26180d3):
#: existing score caches must stay valid
PINNED = [
    ({}, "baddaad830dfd621"),
    ({"metrics": ["bsseval_v4"]}, "ea6551c6e41818ba"),
    ({"metrics": ["usdr", "bleedless", "fullness"]}, "340a813abe9e117d"),
    ({"metrics": ["sdr_bsseval_v4", "usdr_mdx", "si_sdr", "sdr_gain", "l1_freq"]}, "f92fa1bdad29423a"),
    ({"metrics": "usdr", "targets": ["vocals", "accompaniment"], "metric_options": {"win": 2.0}}, "25d148ee9e8fa1d6"),
]


def _hash(extra: dict) -> str:
    from stemlab.runs import load_spec

    return load_spec({"datasets": ["demo"], "providers": ["oracle:irm"], **extra}).metrics_hash


@pytest.mark.parametrize("extra,want", PINNED, ids=[str(i) for i in range(len(PINNED))])
def test_metrics_hash_unchanged_for_todays_metrics(extra: dict, want: str) -> None:
    assert _hash(extra) == want


def test_scores_version_follows_the_declared_versions(monkeypatch) -> None:
    assert M.SCORES_VERSION == R.scores_version() == R.SCORES_EPOCH == 2
    assert all(R.scores_version([m.name]) == 2 for m in R.DECLARED)
    before = {str(e): _hash(e) for e, _ in PINNED}
    bumped = tuple(replace(m, version=m.version + 1) if m.name == "bleedless" else m for m in R.DECLARED)
    monkeypatch.setattr(R, "DECLARED", bumped)
    assert M.SCORES_VERSION == 3
    assert R.scores_version(["usdr"]) == 2 and R.scores_version(["usdr", "bleedless"]) == 3
    assert all(_hash(e) != before[str(e)] for e, _ in PINNED)  # the global version: every cache recomputed
    # a second bump of another metric changes it again (never back to an old value)
    bumped2 = tuple(replace(m, version=m.version + 1) if m.name == "usdr" else m for m in bumped)
    monkeypatch.setattr(R, "DECLARED", bumped2)
    assert M.SCORES_VERSION == 4 and R.scores_version(["usdr", "bleedless"]) == 4


def test_declaration_checks() -> None:
    with pytest.raises(ValueError, match="unit"):
        R.Metric("x", "dBFS", True, "track", _rms_db, "x")
    with pytest.raises(ValueError, match="kind"):
        R.Metric("x", "dB", True, "frames", _rms_db, "x")
    with pytest.raises(ValueError, match="aggregations"):
        R.Metric("x", "dB", True, "track", _rms_db, "x", aggregations=("median_frames",))
    with pytest.raises(ValueError, match="version"):
        R.Metric("x", "dB", True, "track", _rms_db, "x", version=0)
    m = R.Metric("x", "dB", True, "framewise", _rms_db, "x", rows=("sdr_x",))
    assert m.aggregations == R.FRAME_AGGREGATIONS and m.criteria == ("SDR",)
