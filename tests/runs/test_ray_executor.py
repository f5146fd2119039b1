"""The Ray executor gives the same results as the local one (local Ray
instance started by the test with num_cpus=2)."""

from __future__ import annotations

import pandas as pd
import pytest

from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from tests.fakes import CALLS, fake_score, register_all

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    import os

    # a loaded 2-core CI box can take longer than Ray's default 30 s to
    # register the raylet; give it time instead of failing the test
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.mark.ray
def test_ray_results_equal_local(tmp_path, demo_small, ray_local, monkeypatch):
    register_all()
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
            "providers": ["t_scaled?gain=0.5", "t_scaled?gain=0.9", "t_halves", "t_broken"], "metrics": ["usdr"]}
    local = run({**spec, "output": str(tmp_path / "local")}, quiet=True)
    CALLS.clear()
    remote = run({**spec, "output": str(tmp_path / "ray"), "executor": "ray",
                  "executor_options": {"num_cpus": 0.5, "actors_per_provider": 1}}, quiet=True)
    # separations happened in actors, not in this process
    assert "t_scaled" not in CALLS and "t_halves" not in CALLS
    cols = ["track", "provider", "target", "metric", "value"]
    a = local.scores[cols].sort_values(cols[:4]).reset_index(drop=True)
    b = remote.scores[cols].sort_values(cols[:4]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9)
    assert list(remote.jobs.sort_values("job_key").status) == list(local.jobs.sort_values("job_key").status)
    done = remote.jobs[remote.jobs.status == "done"]
    failed = remote.jobs[remote.jobs.status == "failed"]
    assert len(done) == 6 and len(failed) == 2
    assert failed.error.str.contains("weights missing").all()
    from stemlab.runs.ledger import Ledger

    led = Ledger(tmp_path / "ray" / "ledger.sqlite")
    infos = [r.info for r in led.jobs() if r.state == "done"]
    assert all("ray_pid" in i["provenance"] for i in infos)
    assert len({i["provenance"]["ray_pid"] for i in infos}) == 3  # one actor per provider config, model loaded once
