"""stemlab.metrics.aggregate against museval's own aggregation and plain
pandas, on synthetic per-frame values with NaN frames and NaN tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemlab.errors import InputError
from stemlab.metrics.aggregate import PRESETS, aggregate, describe, is_framewise, track_values

MUSEVAL_NAMES = {"SDR": "sdr_bsseval_v4", "ISR": "isr_bsseval_v4", "SIR": "sir_bsseval_v4", "SAR": "sar_bsseval_v4"}


def _synthetic(seed: int = 7):
    """(museval-schema JSON per (method, track), stemlab-style scores rows).

    The per-track rows are computed here, by hand, the way evaluate() stores
    them: nanmedian / nanmean of the 5-decimal frame values."""
    rng = np.random.RandomState(seed)
    docs: dict[tuple[str, str], dict] = {}
    rows = []
    for method, shift in (("alpha", 0.0), ("beta", 2.5)):
        for ti in range(7):
            track = f"song {ti:02d}"
            targets = []
            for target in ("vocals", "accompaniment"):
                n = 5 + ti
                frames = []
                vals = {m: np.round(rng.normal(6 + shift, 4, n), 5) for m in MUSEVAL_NAMES}
                if ti == 2:  # some silent frames
                    for m in vals:
                        vals[m][[0, 3]] = np.nan
                if ti == 4 and target == "vocals" and method == "beta":  # a track with no finite frame
                    for m in vals:
                        vals[m][:] = np.nan
                for i in range(n):
                    frames.append({"time": float(i), "duration": 1.0,
                                   "metrics": {m: (None if np.isnan(vals[m][i]) else float(vals[m][i]))
                                               for m in MUSEVAL_NAMES}})
                targets.append({"name": target, "frames": frames})
                for m, a in vals.items():
                    ok = a[~np.isnan(a)]
                    med = float(np.median(ok)) if ok.size else float("nan")
                    mean = float(np.mean(ok)) if ok.size else float("nan")
                    for agg, v in (("median_frames", med), ("mean_frames", mean)):
                        rows.append({"dataset": "synth", "track": track, "provider": method, "target": target,
                                     "metric": MUSEVAL_NAMES[m], "aggregation": agg, "value": v})
                rows.append({"dataset": "synth", "track": track, "provider": method, "target": target,
                             "metric": "usdr", "aggregation": "track", "value": float(rng.normal(5 + shift, 3))})
            docs[(method, track)] = {"targets": targets}
    return docs, pd.DataFrame(rows)


def _museval(docs, frames_agg: str, tracks_agg: str) -> pd.Series:
    museval = pytest.importorskip("museval")
    from museval.aggregate import json2df

    ms = museval.MethodStore(frames_agg=frames_agg, tracks_agg=tracks_agg)
    for method in sorted({m for m, _ in docs}):
        es = museval.EvalStore(frames_agg=frames_agg, tracks_agg=tracks_agg)
        for (m, track), doc in docs.items():
            if m == method:
                # museval reads None (JSON null) as NaN, as simplejson does for NaN
                df = json2df(doc, track)
                df["score"] = df["score"].astype(float)
                es.add_track(df)
        ms.add_evalstore(es, method)
    return ms.agg_frames_tracks_scores()


@pytest.mark.parametrize("frames", ["median", "mean"])
@pytest.mark.parametrize("tracks", ["median", "mean"])
def test_aggregate_equals_museval_with_nan_frames_and_tracks(frames: str, tracks: str) -> None:
    docs, scores = _synthetic()
    ref = _museval(docs, frames, tracks)
    for mname, metric in MUSEVAL_NAMES.items():
        out = aggregate(scores, metric, frames=frames, tracks=tracks)
        assert len(out) == 4
        for r in out.itertuples():
            assert r.value == pytest.approx(ref[(r.provider, r.target, mname)], abs=1e-9, nan_ok=True)
            assert r.aggregation == f"{frames}_frames/{tracks}_tracks"
            nan_track = (r.provider, r.target) == ("beta", "vocals")
            assert (r.n_tracks, r.n_nan_tracks) == ((6, 1) if nan_track else (7, 0))


def test_aggregate_equals_plain_pandas_and_never_pools_rows() -> None:
    _, scores = _synthetic()
    for agg in ("median_frames", "mean_frames"):
        sel = scores[(scores.metric == "sdr_bsseval_v4") & (scores.aggregation == agg)]
        for stat in ("median", "mean"):
            want = sel.groupby(["provider", "target"]).value.agg(stat)
            got = aggregate(scores, "sdr_bsseval_v4", frames=agg.split("_")[0], tracks=stat)
            for r in got.itertuples():
                assert r.value == pytest.approx(want[(r.provider, r.target)], abs=1e-9)
    pooled = scores[scores.metric == "sdr_bsseval_v4"].groupby(["provider", "target"]).value.median()
    got = aggregate(scores, "sdr_bsseval_v4").set_index(["provider", "target"]).value
    assert (got - pooled).abs().max() > 1e-3  # the pooled number is a different (wrong) number
    u = scores[scores.metric == "usdr"].groupby(["provider", "target"]).value.mean()
    got = aggregate(scores, how="mdx")
    assert set(got.aggregation) == {"track/mean_tracks"} and set(got.metric) == {"usdr"}
    for r in got.itertuples():
        assert r.value == pytest.approx(u[(r.provider, r.target)], abs=1e-9)


def test_presets_labels_and_track_values() -> None:
    _, scores = _synthetic()
    assert aggregate(scores).aggregation.iloc[0] == "median_frames/median_tracks"  # museval's default
    assert aggregate(scores, how="demucs").aggregation.iloc[0] == "median_frames/mean_tracks"
    a = aggregate(scores, "sdr_bsseval_v4", aggregation="mean_frames/median_tracks")
    b = aggregate(scores, "sdr_bsseval_v4", frames="mean", tracks="median")
    pd.testing.assert_frame_equal(a, b)
    assert PRESETS["museval"] == {"metric": "sdr_bsseval_v4", "frames": "median", "tracks": "median"}
    assert describe("median_frames/mean_tracks") == "median over frames per track, then mean over tracks"
    tv = track_values(scores, "sdr_bsseval_v4", frames="mean")
    assert len(tv) == 2 * 7 * 2 and set(tv.aggregation) == {"mean_frames"}
    want = scores[(scores.metric == "sdr_bsseval_v4") & (scores.aggregation == "mean_frames")].value.to_numpy()
    np.testing.assert_array_equal(tv.value.to_numpy(), want)
    assert is_framewise(scores, "sar_bsseval_v4") and not is_framewise(scores, "usdr")
    # a preset's frame choice is only a default: usdr under "museval" is its track rows
    assert aggregate(scores, "usdr", how="museval").aggregation.iloc[0] == "track/median_tracks"


def test_bootstrap_ci_matches_a_hand_written_percentile_bootstrap() -> None:
    _, scores = _synthetic()
    out = aggregate(scores, "sdr_bsseval_v4", ci=0.9, n_boot=3000, seed=5)
    sel = scores[(scores.metric == "sdr_bsseval_v4") & (scores.aggregation == "median_frames")]
    for r in out.itertuples():
        v = sel[(sel.provider == r.provider) & (sel.target == r.target)].value.to_numpy()
        v = v[~np.isnan(v)]
        idx = np.random.default_rng(5).integers(0, v.size, size=(3000, v.size))
        lo, hi = np.quantile(np.median(v[idx], axis=1), [0.05, 0.95])
        assert (r.ci_low, r.ci_high) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_errors_are_clear() -> None:
    _, scores = _synthetic()
    with pytest.raises(InputError, match="'usdr' is a whole-track metric.*no frames"):
        aggregate(scores, "usdr", frames="median")
    with pytest.raises(InputError, match="'usdr' is a whole-track metric"):
        aggregate(scores, "usdr", aggregation="median_frames/median_tracks")
    with pytest.raises(InputError, match="framewise.*frames='median'"):
        aggregate(scores, "sdr_bsseval_v4", aggregation="track/mean_tracks")
    with pytest.raises(InputError, match="several rows for one track"):
        aggregate(scores, "sdr_bsseval_v4", by=("target",))  # two providers per track
    with pytest.raises(InputError, match="no scores for metric 'sdr'"):
        aggregate(scores, "sdr")
    with pytest.raises(InputError, match="tracks must be one of"):
        aggregate(scores, "usdr", tracks="max")
    with pytest.raises(InputError, match="frames must be one of"):
        aggregate(scores, "sdr_bsseval_v4", frames="p90")
    with pytest.raises(InputError, match="<rows>/<stat>_tracks"):
        aggregate(scores, "sdr_bsseval_v4", aggregation="median")
    with pytest.raises(InputError, match="not both"):
        aggregate(scores, "sdr_bsseval_v4", aggregation="median_frames/median_tracks", tracks="mean")
    with pytest.raises(InputError, match="how must be one of"):
        aggregate(scores, how="sisec")
    mixed = pd.concat([scores, scores[scores.metric == "usdr"].assign(metric="sdr_bsseval_v4")])
    with pytest.raises(InputError, match="not a mix"):
        aggregate(mixed, "sdr_bsseval_v4")
    only_mean = scores[~((scores.metric == "sdr_bsseval_v4") & (scores.aggregation == "median_frames"))]
    with pytest.raises(InputError, match="not 'median_frames'"):
        aggregate(only_mean, "sdr_bsseval_v4")


def test_rows_without_aggregation_column_are_track_values() -> None:
    rows = [{"track": f"t{i}", "provider": "p", "target": "vocals", "metric": "sdr", "value": v}
            for i, v in enumerate([1.0, 4.0, float("nan"), 10.0])]
    (r,) = aggregate(rows, "sdr").to_dict("records")
    assert r["value"] == 4.0 and r["aggregation"] == "track/median_tracks"
    assert (r["n_tracks"], r["n_nan_tracks"]) == (3, 1)
    (r,) = aggregate(rows, "sdr", tracks="mean").to_dict("records")
    assert r["value"] == pytest.approx(5.0, abs=1e-12)
