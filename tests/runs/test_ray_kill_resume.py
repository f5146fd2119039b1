"""Kill/resume with the Ray executor: the driver (which alone writes the
ledger and caches) is SIGKILLed mid-run, resumed, and the results equal the
thread executor's. Runs `stemlab run` in subprocesses (a fresh Ray each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stemlab.runs import load_results, run

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]


def _spec(out: Path, executor: str) -> dict:
    d = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 3.0}}],
         "providers": ["oracle:irm", "baseline:mixture", "baseline:centre"], "metrics": ["usdr"],
         "output": str(out), "executor": executor}
    if executor == "ray":
        d["executor_options"] = {"num_cpus": 0.5, "actors_per_provider": 1}
    return d


def _cli(spec: dict, path: Path, crash: str = "") -> int:
    path.write_text(json.dumps(spec))
    env = {**os.environ, "STEMLAB_CRASH_AT": crash, "RAY_raylet_start_wait_time_s": "180",
           "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "stemlab.cli", "run", str(path), "-q"], env=env,
                       capture_output=True, text=True, timeout=600)
    if p.returncode not in (0, -9):
        raise AssertionError(p.stderr[-3000:])
    return p.returncode


def _scores(out: Path) -> pd.DataFrame:
    s = load_results(out).scores
    cols = ["track", "provider", "target", "metric", "aggregation"]
    return s[cols + ["value"]].sort_values(cols).reset_index(drop=True)


@pytest.mark.ray
def test_ray_driver_killed_then_resumed_equals_threads(tmp_path):
    ref = tmp_path / "threads"
    run(_spec(ref, "local"), quiet=True)
    out = tmp_path / "ray"
    # the third stem-cache write: some jobs done, one half-written entry
    assert _cli(_spec(out, "ray"), tmp_path / "spec.json", crash="cache.write:3") == -9
    done_before = load_results(out).jobs if (out / "jobs.parquet").exists() else None
    assert done_before is None  # killed before results were written: only the ledger/caches hold progress
    assert _cli(_spec(out, "ray"), tmp_path / "spec.json") == 0
    got = load_results(out)
    assert set(got.jobs.status) == {"done"}
    pd.testing.assert_frame_equal(_scores(out), _scores(ref), check_exact=False, atol=1e-9)
