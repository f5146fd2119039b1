"""Published scores beside measured ones: the report's table and its numbers,
recomputed here with plain pandas from the score rows and the published frame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from stemlab.providers.local.zoo import published_frame
from stemlab.reports import tables


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for prov in ("spleeter:2stems", "mvsep:bs_roformer [sandbox]", "oracle:irm"):
        for i in range(5):
            for target in ("vocals", "accompaniment"):
                for agg, shift in (("median_frames", 0.0), ("mean_frames", -3.0)):
                    rows.append({"provider": prov, "track": f"t{i}", "target": target, "metric": "sdr_bsseval_v4",
                                 "aggregation": agg, "value": float(rng.normal(5, 2)) + shift, "dataset": "d"})
                rows.append({"provider": prov, "track": f"t{i}", "target": target, "metric": "usdr",
                             "aggregation": "track", "value": float(rng.normal(4, 2)), "dataset": "d"})
    return pd.DataFrame(rows)


def test_published_beside_measured_recomputed() -> None:
    scores = _scores()
    providers = list(dict.fromkeys(scores["provider"]))
    pub = tables.published_beside(scores, providers)
    ref = published_frame()
    # only this run's providers; the sandbox label and params do not hide a model's published figure
    assert set(pub["provider"]) == {"spleeter:2stems", "mvsep:bs_roformer [sandbox]"}
    sp = pub[pub["provider"] == "spleeter:2stems"]
    exp = ref[ref["provider"] == "spleeter:2stems"]
    assert len(sp) == len(exp) and sp["published"].tolist() == exp["value"].tolist()
    r = sp[sp["target"] == "vocals"].iloc[0]
    assert math.isclose(r["published"], 6.86) and r["metric"] == "sdr_bsseval_v4"
    # measured: museval's convention (median over frames, median over tracks), never the mean_frames rows
    s = scores[(scores.provider == "spleeter:2stems") & (scores.target == "vocals")
               & (scores.metric == "sdr_bsseval_v4") & (scores.aggregation == "median_frames")]
    assert math.isclose(r["measured"], s["value"].median(), abs_tol=1e-12)
    assert r["measured_aggregation"] == "median_frames/median_tracks" and r["measured_tracks"] == 5
    # MVSEP publishes uSDR averaged over songs: measured over tracks with the mean, like for like
    mv = pub[pub["provider"] == "mvsep:bs_roformer [sandbox]"]
    exp = ref[ref["provider"] == "mvsep:bs_roformer"]
    assert len(mv) == len(exp) > 0 and set(mv["metric"]) == {"usdr"}
    for row in mv.itertuples():
        u = scores[(scores.provider == row.provider) & (scores.target == row.target) & (scores.metric == "usdr")]
        if u.empty:
            assert math.isnan(row.measured)
        else:
            assert math.isclose(row.measured, u["value"].mean(), abs_tol=1e-12)
            assert row.measured_aggregation == "track/mean_tracks"
    # published values stay in their own column: none of them replaced a measured one
    assert not np.isin(pub["published"].to_numpy(), scores["value"].to_numpy()).any()


def test_no_published_scores_gives_an_empty_table() -> None:
    scores = _scores()
    out = tables.published_beside(scores[scores.provider == "oracle:irm"], ["oracle:irm"])
    assert out.empty and "published" in out.columns


def test_a_model_run_live_and_in_its_sandbox_gets_its_published_rows_twice() -> None:
    scores = _scores()
    extra = scores[scores.provider == "mvsep:bs_roformer [sandbox]"].assign(provider="mvsep:bs_roformer")
    both = pd.concat([scores, extra], ignore_index=True)
    pub = tables.published_beside(both, list(dict.fromkeys(both["provider"])))
    n = len(published_frame().query("provider == 'mvsep:bs_roformer'"))
    counts = pub["provider"].value_counts()
    assert counts["mvsep:bs_roformer"] == n == counts["mvsep:bs_roformer [sandbox]"]
