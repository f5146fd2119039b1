"""A really full disk under the cache: a tiny tmpfs mounted on
``<output>/cache``. Jobs whose stems cannot be cached fail with a clear
reason, the ledger stays consistent (no job left half-way), and once space
is back a re-run completes. Needs permission to
mount (root in CI); skipped otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from stemlab.runs.ledger import Ledger
from tests.fakes import CALLS, fake_score, register_all


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return p.returncode == 0


def test_full_cache_disk_fails_cleanly_and_recovers(tmp_path, demo_small, monkeypatch):
    register_all()
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)
    out = tmp_path / "res"
    cache = out / "cache"
    if not _mount_tmpfs(cache, "300k"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        spec = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
                "providers": ["t_scaled?gain=0.5"], "metrics": ["usdr"], "output": str(out)}
        CALLS.clear()
        r1 = run(spec, quiet=True)
        failed = r1.jobs[r1.jobs.status == "failed"]
        # 4-s stereo × 4 stems of FLAC do not fit in 300 kB: at least one job fails, with the reason
        assert len(failed) >= 1
        assert failed.error.str.contains("full").all(), failed.error.tolist()
        assert set(failed.error_kind) == {"RunError"}
        led = Ledger(out / "ledger.sqlite")
        try:
            states = {row.track: row.state for row in led.jobs()}
        finally:
            led.close()
        assert set(states.values()) <= {"done", "failed"}, states
        assert not list(cache.rglob("*.tmp")) and not list(cache.rglob(".*tmp"))  # no half-written entries
        done_before = set(r1.jobs[r1.jobs.status == "done"].track)
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
    # space is back: the failed jobs (local, nothing paid) run again; the rest is not recomputed
    CALLS.clear()
    r2 = run(spec, quiet=True)
    assert set(r2.jobs.status) == {"done"}
    assert CALLS.get("t_scaled", 0) == 2  # both re-separated: the tmpfs took the cached stems with it
    assert done_before <= set(r2.jobs.track)
