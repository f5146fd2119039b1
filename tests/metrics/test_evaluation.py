"""evaluate(): named rows, frame rows, museval JSON, grouping, NaN policy,
aggregations over tracks and input checks."""

from __future__ import annotations

import json
import math
import warnings
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest

from stemlab import Stems
from stemlab.errors import InputError
from stemlab.metrics import aggregate_tracks, available_metrics, evaluate
from stemlab.metrics.evaluation import evaluation_groups

SR = 8000  # low rate + 1-s frames keeps museval (the oracle) fast


def _snr(s: np.ndarray, e: np.ndarray) -> float:
    return 10 * math.log10(np.sum(s**2) / np.sum((e - s) ** 2))


def _song(rng, T=2 * SR + 300, C=2, names=("vocals", "drums", "bass", "other")):
    t = np.arange(T) / SR
    refs = {}
    for i, n in enumerate(names):
        x = np.sin(2 * np.pi * 110 * (i + 1) * t) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t)) + 0.2 * rng.randn(T)
        refs[n] = np.stack([x * (1.0 - 0.2 * c) + 0.05 * rng.randn(T) for c in range(C)])
    ests = {n: r + 0.3 * rng.randn(*r.shape) for n, r in refs.items()}
    return refs, ests


def test_available_metrics_names():
    names = available_metrics()
    for m in ("bsseval_v4", "sdr_bsseval_v4", "usdr", "si_sdr"):
        assert m in names
    assert "SDR" not in names and "sdr" not in names  # never a bare SDR


def test_rows_frames_and_sdr_is_the_frame_snr():
    rng = np.random.RandomState(0)
    refs, ests = _song(rng)
    ev = evaluate(refs, ests, SR, metrics=("bsseval_v4", "sdr_bsseval_v4"))
    # 2 full 1-s frames (the 300-sample tail is dropped, as museval)
    frames = [f for f in ev.frames if f["target"] == "bass" and f["metric"] == "SDR"]
    assert [f["frame"] for f in frames] == [0, 1] and [f["time"] for f in frames] == [0.0, 1.0]
    assert all(f["duration"] == 1.0 for f in frames)
    for f in frames:
        sl = slice(f["frame"] * SR, (f["frame"] + 1) * SR)
        assert f["value"] == pytest.approx(_snr(refs["bass"][:, sl], ests["bass"][:, sl]), abs=1e-9)
    # rows: 4 BSSEval metrics × (median, mean) per target; nothing named plain "SDR"
    bss = [r for r in ev.rows if r["target"] == "bass"]
    assert {(r["metric"], r["aggregation"]) for r in bss} == {
        (f"{m}_bsseval_v4", a) for m in ("sdr", "isr", "sir", "sar") for a in ("median_frames", "mean_frames")}
    assert all(r["unit"] == "dB" and r["frames_used"] == 2 and r["frames_dropped"] == 0 for r in bss)
    vals = [f["value"] for f in frames]
    assert ev.value("bass", "sdr_bsseval_v4", "median_frames") == pytest.approx(np.median(vals), abs=1e-5)
    assert ev.value("bass", "sdr_bsseval_v4", "mean_frames") == pytest.approx(np.mean(vals), abs=1e-5)


def test_sdr_only_path_matches_full_sdr():
    rng = np.random.RandomState(1)
    refs, ests = _song(rng, C=1)
    full = evaluate(refs, ests, SR, metrics=("bsseval_v4",))
    fast = evaluate(refs, ests, SR, metrics=("sdr_bsseval_v4",))
    assert {r["metric"] for r in fast.rows} == {"sdr_bsseval_v4"}
    for r in fast.rows:
        assert r["value"] == full.value(r["target"], "sdr_bsseval_v4", r["aggregation"])
    assert fast.museval_json() is None  # museval's schema needs all four


def test_simple_metrics_rows():
    pytest.importorskip("stemlab.metrics.simple")
    rng = np.random.RandomState(2)
    refs, ests = _song(rng)
    ev = evaluate(refs, ests, SR, metrics=("usdr", "si_sdr"))
    for n in refs:
        assert ev.value(n, "usdr", "track") == pytest.approx(_snr(refs[n], ests[n]), abs=1e-6)
    assert {r["aggregation"] for r in ev.rows} == {"track"}


def test_museval_json_schema_and_inf_as_nan():
    jsonschema = pytest.importorskip("jsonschema")
    museval = pytest.importorskip("museval")
    from pathlib import Path

    schema = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
    rng = np.random.RandomState(3)
    refs, ests = _song(rng, names=("vocals", "drums"))
    ests["drums"] = refs["drums"].copy()  # exact: SDR = +inf → NaN in the JSON, dropped in the rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(refs, ests, SR, metrics=("bsseval_v4",))
    doc = json.loads(json.dumps(ev.museval_json()))
    jsonschema.validate(doc, schema)
    f0 = doc["targets"][1]["frames"][0]
    assert set(f0) == {"time", "duration", "metrics"} and list(f0["metrics"]) == ["SDR", "SIR", "SAR", "ISR"]
    assert doc["targets"][1]["name"] == "drums" and math.isnan(f0["metrics"]["SDR"])
    row = [r for r in ev.rows if r["target"] == "drums" and r["metric"] == "sdr_bsseval_v4"][0]
    assert row["frames_dropped"] == 2 and row["frames_used"] == 0 and math.isnan(row["value"])
    assert np.isposinf(ev.framewise["drums"]["SDR"]).all()  # the unrounded values keep +inf


@pytest.mark.museval
def test_grouping_and_json_equal_museval_eval_mus_track():
    """4 references + estimates for vocals, drums, bass, other *and*
    accompaniment: museval evaluates {vocals, drums, bass, other} jointly but
    takes vocals from the {vocals, accompaniment} run — same JSON here."""
    museval = pytest.importorskip("museval")
    rng = np.random.RandomState(4)
    T = 2 * SR + 123
    refs, ests = _song(rng, T=T, C=1, names=("vocals", "drums", "bass"))
    refs_acc = refs["drums"] + refs["bass"]
    ests["accompaniment"] = ests["drums"] + ests["bass"] + 0.1 * rng.randn(1, T)
    targets = OrderedDict((k, SimpleNamespace(audio=v.T)) for k, v in refs.items())
    targets["accompaniment"] = SimpleNamespace(audio=refs_acc.T)
    track = SimpleNamespace(name="fake", rate=SR, targets=targets, subset="test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = json.loads(museval.eval_mus_track(track, {k: v.T for k, v in ests.items()}).json)
    ev = evaluate(refs, ests, SR, metrics=("bsseval_v4",))  # reference accompaniment derived: drums + bass
    got = json.loads(json.dumps(ev.museval_json()))
    assert [t["name"] for t in got["targets"]] == [t["name"] for t in want["targets"]] == [
        "drums", "bass", "vocals", "accompaniment"]
    for g, w in zip(got["targets"], want["targets"]):
        for gf, wf in zip(g["frames"], w["frames"]):
            assert (gf["time"], gf["duration"]) == (wf["time"], wf["duration"])
            for m in ("SDR", "SIR", "SAR", "ISR"):
                assert gf["metrics"][m] == pytest.approx(wf["metrics"][m], abs=2e-5), (g["name"], m)


def test_evaluation_groups():
    assert evaluation_groups(["vocals", "drums", "bass", "other"]) == (
        [("vocals", "drums", "bass", "other")], {t: 0 for t in ("vocals", "drums", "bass", "other")})
    g, src = evaluation_groups(["vocals", "accompaniment"])
    assert g == [("vocals", "accompaniment")] and src == {"vocals": 0, "accompaniment": 0}
    g, src = evaluation_groups(["vocals", "drums", "bass", "accompaniment"])
    assert g == [("vocals", "drums", "bass"), ("vocals", "accompaniment")] and src["vocals"] == 1


def test_two_stem_estimate_against_four_stem_references_derives_accompaniment():
    rng = np.random.RandomState(5)
    refs, ests4 = _song(rng)
    ests = {"vocals": ests4["vocals"], "accompaniment": ests4["drums"] + ests4["bass"] + ests4["other"]}
    ev = evaluate(Stems(refs, SR), Stems(ests, SR), metrics=("sdr_bsseval_v4",))
    acc = refs["drums"] + refs["bass"] + refs["other"]
    f = [x for x in ev.frames if x["target"] == "accompaniment"][0]
    assert f["value"] == pytest.approx(_snr(acc[:, :SR], ests["accompaniment"][:, :SR]), abs=1e-4)
    assert any("accompaniment" in n for n in ev.notes)


def test_nan_policies_count_dropped_frames():
    rng = np.random.RandomState(6)
    refs, ests = _song(rng, T=3 * SR, C=1, names=("vocals", "drums", "bass"))
    refs["vocals"][:, SR : 2 * SR] = 0.0  # vocals silent in frame 1
    mus = evaluate(refs, ests, SR, metrics=("sdr_bsseval_v4",), nan_policy="museval")
    tgt = evaluate(refs, ests, SR, metrics=("sdr_bsseval_v4",), nan_policy="target")
    for t in ("vocals", "drums", "bass"):
        r = [x for x in mus.rows if x["target"] == t][0]
        assert (r["frames_used"], r["frames_dropped"]) == (2, 1)  # museval: every target loses frame 1
    r = {x["target"]: x for x in tgt.rows if x["aggregation"] == "median_frames"}
    assert r["vocals"]["frames_dropped"] == 1 and r["drums"]["frames_dropped"] == 0
    drums = [f["value"] for f in tgt.frames if f["target"] == "drums"]
    assert r["drums"]["value"] == pytest.approx(np.median(drums), abs=1e-5)


def test_short_silent_and_ragged_inputs_have_defined_behaviour():
    rng = np.random.RandomState(7)
    # shorter than one window: one frame over the whole signal
    refs = rng.randn(2, 1, 3000)
    ests = refs + 0.1 * rng.randn(2, 1, 3000)
    with pytest.warns(RuntimeWarning, match="shorter than one window"):
        ev = evaluate(refs, ests, SR, metrics=("bsseval_v4",))
    f = [x for x in ev.frames if x["metric"] == "SDR" and x["target"] == "source0"]
    assert len(f) == 1 and f[0]["duration"] == pytest.approx(3000 / SR)
    assert f[0]["value"] == pytest.approx(_snr(refs[0], ests[0]), abs=1e-9)
    # fewer samples than filter coefficients: SDR kept, the rest NaN (museval returns noise)
    with pytest.warns(RuntimeWarning, match="filter coefficients"):
        ev = evaluate(refs[:, :, :600], ests[:, :, :600], SR, metrics=("bsseval_v4",))
    assert np.isfinite(ev.value("source0", "sdr_bsseval_v4", "median_frames"))
    assert math.isnan(ev.value("source0", "isr_bsseval_v4", "median_frames"))
    # an all-zero reference (museval raises): NaN for its group under museval's rule
    refs2 = rng.randn(3, 1, 2 * SR)
    ests2 = refs2 + 0.1 * rng.randn(3, 1, 2 * SR)
    refs2[1] = 0
    with pytest.warns(RuntimeWarning, match="silent over the whole track"):
        ev = evaluate(refs2, ests2, SR, metrics=("sdr_bsseval_v4",))
    assert all(math.isnan(r["value"]) and r["frames_dropped"] == 2 for r in ev.rows)
    with pytest.warns(RuntimeWarning):
        ev = evaluate(refs2, ests2, SR, metrics=("sdr_bsseval_v4",), nan_policy="target")
    assert np.isfinite(ev.value("source0", "sdr_bsseval_v4", "median_frames"))
    # ragged estimates: padded/truncated to the references, said so
    ests3 = {"a": ests2[0][:, : SR + 10], "b": np.concatenate([ests2[2], ests2[2][:, :50]], axis=1)}
    with pytest.warns(RuntimeWarning, match="zero-padded|truncated"):
        ev = evaluate({"a": refs2[0], "b": refs2[2]}, ests3, SR, metrics=("sdr_bsseval_v4",))
    assert len([f for f in ev.frames if f["target"] == "a"]) == 2


@pytest.mark.parametrize(
    "refs,ests,kw,field",
    [
        (np.zeros((2, 1, 0)), np.zeros((2, 1, 0)), {}, "references['source0']"),
        (np.ones((2, 1, 100)), np.full((2, 1, 100), np.nan), {}, "estimates['source0']"),
        (np.ones((2, 1, 100)), np.ones((2, 1, 100)), {"sample_rate": None}, "sample_rate"),
        (np.ones((2, 1, 100)), np.ones((2, 2, 100)), {}, "estimates['source0']"),
        ({"a": np.ones((1, 100)), "b": np.ones((1, 90))}, {"a": np.ones((1, 100))}, {}, "references"),
        (np.ones((2, 1, 100)), np.ones((2, 1, 100)), {"metrics": ("SDR",)}, "metrics"),
        (np.ones((2, 1, 100)), np.ones((2, 1, 100)), {"nan_policy": "drop"}, "nan_policy"),
        ({"vocals": np.ones((1, 10))}, {"drums": np.ones((1, 10))}, {}, "estimates"),
    ],
)
def test_bad_inputs_name_the_field(refs, ests, kw, field):
    kw = {"sample_rate": SR, "metrics": ("sdr_bsseval_v4",), **kw}
    sr = kw.pop("sample_rate")
    with pytest.raises(InputError) as ei:
        evaluate(refs, ests, sr, **kw)
    assert ei.value.details.get("field") == field or field in str(ei.value)


def test_rate_mismatch_between_stems():
    a = Stems({"vocals": np.ones((1, 100), np.float32)}, 44100)
    b = Stems({"vocals": np.ones((1, 100), np.float32)}, 48000)
    with pytest.raises(InputError, match="48000 Hz"):
        evaluate(a, b, metrics=("sdr_bsseval_v4",))


def test_aggregations_over_tracks():
    rows = []
    # per-track medians (computed by hand): track values for target "vocals"
    per_track = {"t1": [1.0, 2.0, 9.0], "t2": [4.0, 5.0, 6.0], "t3": [0.0, 10.0, np.nan]}
    usdr = {"t1": 3.0, "t2": 6.0, "t3": 12.0}
    for t, frames in per_track.items():
        med = float(np.nanmedian(frames))
        rows.append({"track": t, "target": "vocals", "metric": "sdr_bsseval_v4", "aggregation": "median_frames",
                     "value": med})
        rows.append({"track": t, "target": "vocals", "metric": "sdr_bsseval_v4", "aggregation": "mean_frames",
                     "value": 100.0})  # must be ignored
        rows.append({"track": t, "target": "vocals", "metric": "usdr", "aggregation": "track", "value": usdr[t]})
    rows.append({"track": "t4", "target": "vocals", "metric": "sdr_bsseval_v4", "aggregation": "median_frames",
                 "value": float("nan")})
    (m,) = aggregate_tracks(rows, "museval")
    assert m["value"] == 5.0 and m["aggregation"] == "median_frames/median_tracks"  # median(2, 5, 5)
    assert (m["n_tracks"], m["n_nan_tracks"]) == (3, 1)
    (d,) = aggregate_tracks(rows, "demucs")
    assert d["value"] == pytest.approx(4.0) and d["aggregation"] == "median_frames/mean_tracks"
    (x,) = aggregate_tracks(rows, "mdx")
    assert x["value"] == pytest.approx(7.0) and x["aggregation"] == "track/mean_tracks"
    with pytest.raises(InputError):
        aggregate_tracks(rows, "sisec")


def test_rank_deficient_references_are_flagged():
    """Band-limited float references + full-band estimate noise: the filter
    coefficients in the empty band are set by rounding (museval's too); 16-bit
    references (what musdb hands museval) fill that band and are not flagged."""

    rng = np.random.RandomState(8)
    X = np.fft.rfft(0.3 * rng.randn(2, 1, 2 * SR), axis=-1)
    X[..., SR // 2:] = 0  # nothing above 2 kHz
    refs = np.fft.irfft(X, n=2 * SR, axis=-1)
    ests = refs + 0.05 * rng.randn(*refs.shape)
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        ev = evaluate(refs, ests, SR, metrics=("bsseval_v4",))
    assert ev.info["bsseval_filter_gain"][0] > 1e5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev16 = evaluate(refs, ests, SR, metrics=("bsseval_v4",), reference_bits=16)
    assert ev16.info["bsseval_filter_gain"][0] < 5e3
    assert any("16-bit" in n for n in ev16.notes)
    # SDR does not depend on it
    assert ev16.value("source0", "sdr_bsseval_v4", "median_frames") == pytest.approx(
        ev.value("source0", "sdr_bsseval_v4", "median_frames"), abs=1e-3)
