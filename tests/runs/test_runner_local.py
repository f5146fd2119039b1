"""Runner mechanics with in-test providers: caching, re-scoring only, force,
failures as rows, dry-run. (Scoring itself is tested in tests/metrics; here a
simple SNR scorer stands in so the runner's bookkeeping is checked alone.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemlab.errors import ConfigError
from stemlab.runs import load_results, load_spec, run
from stemlab.runs import runner as runner_mod
from tests.fakes import CALLS, fake_score, register_all


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    register_all()
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)
    CALLS.clear()


def _spec(out, **kw):
    d = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
         "providers": ["t_scaled?gain=0.5", "t_scaled?gain=0.9", "t_broken", "t_offline"],
         "metrics": ["usdr"], "output": str(out)}
    d.update(kw)
    return d


def test_run_cache_rescore_force(tmp_path, demo_small):
    out = tmp_path / "res"
    r1 = run(_spec(out), quiet=True)
    jobs = r1.jobs
    assert len(jobs) == 8 and set(jobs.status) == {"done", "failed"}
    failed = jobs[jobs.status == "failed"]
    assert len(failed) == 4 and set(failed.error_kind) == {"ProviderUnavailable"}
    assert failed[failed.provider == "t_broken"].error.str.contains("weights missing: expected /nowhere/model.th").all()
    assert (failed[failed.provider == "t_offline"].error == "t_offline: key missing").all()
    s = r1.scores
    # gain g → uSDR = −20·log10(|1−g|): 6.02 dB for 0.5, 20 dB for 0.9
    v05 = s[s.provider == "t_scaled"].value
    v09 = s[s.provider == "t_scaled?gain=0.9"].value
    assert np.allclose(v05, 20 * np.log10(2), atol=1e-3) and np.allclose(v09, 20.0, atol=1e-2)
    assert CALLS == {"t_scaled": 2, "t_scaled?gain=0.9": 2, "score": 4}
    assert (jobs[jobs.status == "done"].total_s > 0).all()
    # re-run: nothing recomputed, same results
    CALLS.clear()
    r2 = run(_spec(out), quiet=True)
    assert CALLS == {}  # broken provider retried (no money at stake) but errors before counting
    pd.testing.assert_frame_equal(r1.scores.reset_index(drop=True), r2.scores.reset_index(drop=True))
    # metric settings changed → only scores recomputed
    CALLS.clear()
    run(_spec(out, metric_options={"win": 2.0}), quiet=True)
    assert CALLS == {"score": 4}
    # force one provider → only it separates again
    CALLS.clear()
    run(_spec(out), quiet=True, force=["t_scaled?gain=0.9"])
    assert CALLS == {"t_scaled?gain=0.9": 2, "score": 2}
    back = load_results(out)
    assert len(back.jobs) == 8 and back.meta["spec_hash"] and back.meta["versions"]["numpy"]
    assert set(back.scores.columns) >= {
        "dataset",
        "track",
        "provider",
        "target",
        "metric",
        "value",
        "aggregation",
        "unit",
    }


def test_dry_run_plans_without_running(tmp_path):
    res = run(_spec(tmp_path / "dry"), dry_run=True, quiet=True)
    assert CALLS == {}
    plan = {r["provider"]: r for r in res.plan}
    assert plan["t_scaled"]["jobs"] == 2 and plan["TOTAL"]["jobs"] == 8
    assert plan["TOTAL"]["audio_min"] == pytest.approx(4 * 2 * 4 / 60, abs=0.01)


def test_spec_errors_are_all_reported_with_paths(tmp_path):
    bad = {
        "datasets": [{"name": "demo", "limit": 0}, {"name": "nope"}],
        "providers": ["t_scaled?gain=5", {"provider": "t_scaled", "max_concurrency": 0}, "zzz", 3],
        "budget": {"usd": "lots"},
        "concurrency": {"local": -1},
        "output": str(tmp_path),
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as ei:
        load_spec(bad)
    msg = str(ei.value)
    for needle in (
        "colour: unknown key",
        "datasets[0].limit: expected int ≥ 1, got 0",
        "datasets[1].name: expected one of ['demo', 'folder', 'musdb18', 'musdb18hq'], got 'nope'",
        "providers[0].params.gain: expected float in [0.0, 2.0], got 5.0",
        "providers[1].max_concurrency: expected int ≥ 1, got 0",
        "providers[2]: unknown provider 'zzz'",
        "providers[3]: expected a provider string or mapping, got int",
        "budget.usd: expected a number ≥ 0, got 'lots'",
        "concurrency.local: expected int ≥ 1, got -1",
    ):
        assert needle in msg, needle
    assert msg.startswith("spec has 9 error(s)")


def test_tracks_without_references_are_separated_not_scored(tmp_path):
    from stemlab import audio

    songs = tmp_path / "songs"
    songs.mkdir()
    x = (np.random.RandomState(0).randn(2, 22050) * 0.1).astype(np.float32)
    audio.encode(songs / "take1.wav", x, 22050)
    res = run({"datasets": [{"name": "folder", "root": str(songs)}], "providers": ["t_halves"], "metrics": ["usdr"],
               "output": str(tmp_path / "o")}, quiet=True)
    assert list(res.jobs.status) == ["done"] and res.scores.empty

