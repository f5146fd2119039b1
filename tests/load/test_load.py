"""Load: many short jobs across every sandboxed service with concurrency caps,
in bounded time, with flat memory.

Each size runs in a fresh Python process (so ``ru_maxrss`` is that run's
peak): N synthetic 1-s songs × every remote family that has a sandbox (Suno
separates clips, not uploads: it sees only tracks with a clip id, so it is
left out here). CI runs 6 vs 24 songs per family; the full figure (50 vs 500 jobs) is
``pytest -m slow tests/load``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys, time, logging

    def vmhwm_kib():
        # this process's own peak RSS (ru_maxrss would include pytest's size at fork)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    logging.disable(logging.WARNING)
    sys.path.insert(0, {repo!r})
    from stemlab.testing import synthetic_folder_dataset
    from stemlab.runs import runner as runner_mod
    from tests.fakes import fake_score
    runner_mod.score_stems = fake_score
    from stemlab.providers import families, get_class
    from stemlab.sandbox import get_sandbox_class

    def remote_with_sandbox(f):
        try:
            return get_class(f).kind == "remote" and get_sandbox_class(f) is not None
        except Exception:
            return False

    fams = [f for f in families() if f != "suno" and remote_with_sandbox(f)]
    n_songs = {n_songs}
    root = synthetic_folder_dataset({root!r}, n_songs, seconds=1.0)
    spec = {{
        "datasets": [{{"name": "folder", "root": str(root)}}],
        "providers": [{{"provider": f, "sandbox": True, "max_concurrency": 4}} for f in fams],
        "metrics": ["usdr"],
        "concurrency": {{"remote": 8}},
        "output": {out!r},
    }}
    t0 = time.perf_counter()
    r = runner_mod.Runner(spec, quiet=True).run()
    wall = time.perf_counter() - t0
    print(json.dumps({{"families": fams, "jobs": len(r.jobs), "wall": wall,
                      "status": r.jobs.status.value_counts().to_dict(),
                      "errors": r.jobs[r.jobs.status != "done"].error.astype(str).head(3).tolist(),
                      "maxrss_mb": vmhwm_kib() / 1024}}))
    """
)


def _run(tmp: Path, n_songs: int, timeout: float) -> dict:
    code = CHILD.format(
        repo=str(REPO), n_songs=n_songs, root=str(tmp / f"songs{n_songs}"), out=str(tmp / f"out{n_songs}")
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _check(tmp_path: Path, small: int, large: int, timeout: float) -> None:
    a = _run(tmp_path, small, timeout)
    b = _run(tmp_path, large, timeout)
    for res in (a, b):
        assert res["status"] == {"done": res["jobs"]}, res
    ratio = b["maxrss_mb"] / a["maxrss_mb"]
    print(f"\nload: {a['jobs']} jobs over {a['families']}: {a['wall']:.1f} s, peak RSS {a['maxrss_mb']:.0f} MB; "
          f"{b['jobs']} jobs: {b['wall']:.1f} s, peak RSS {b['maxrss_mb']:.0f} MB (ratio {ratio:.2f})")
    assert b["jobs"] >= 3 * a["jobs"]
    # memory stays flat: 4-5× the jobs may not cost more than +25 % peak RSS
    assert ratio < 1.25, (a, b)


def test_load_bounded(tmp_path):
    _check(tmp_path, 6, 24, timeout=400)


@pytest.mark.slow
def test_load_full(tmp_path):
    """50 vs 500 jobs per remote family."""
    _check(tmp_path, 50 // 3 + 1, 500 // 3 + 1, timeout=3600)
