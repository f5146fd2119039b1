"""Ledger state machine, durability across connections, budget caps and the
stem/score cache."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from stemlab import Cost, Stems
from stemlab.errors import BudgetExceeded, RunError
from stemlab.runs.cache import ScoreCache, StemCache
from stemlab.runs.cost import Budget
from stemlab.runs.ledger import Ledger


def _plan(led: Ledger, key: str, provider: str = "svc", usd: float = 0.5, credits: float = 30.0):
    return led.plan(job_key=key, run_id="r1", dataset="demo", track=f"t-{key}", mixture_hash="h" + key,
                    provider=provider, family="svc", kind="remote", params_hash="p", params={"a": 1},
                    estimate=Cost(usd=usd, credits=credits, credit_unit="seconds"))


def test_state_machine_and_journal(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.sqlite")
    row = _plan(led, "k1")
    assert row.state == "planned" and row.idempotency_key.startswith("stemlab-") and not row.in_doubt
    again = _plan(led, "k1", usd=99)  # resume: the existing row is kept, same idempotency key
    assert again.idempotency_key == row.idempotency_key and again.est_usd == 0.5
    j = led.journal("k1")
    j.submitting(Cost(usd=0.5, credits=30, credit_unit="seconds"))
    # a second connection (another process after a crash) sees the durable state
    other = Ledger(tmp_path / "ledger.sqlite")
    r = other.get("k1")
    assert r.state == "submitting" and r.in_doubt and r.attempts == 1
    j.submitted("split_42", Cost(usd=0.4, credits=28, credit_unit="seconds", estimated=False), {"x": 1})
    r = other.get("k1")
    assert r.state == "submitted" and r.remote_id == "split_42" and not r.in_doubt
    assert r.cost_usd == 0.4 and r.info == {"x": 1}
    j.phase("upload", 1.5)
    j.phase("upload", 0.5)
    assert other.get("k1").phases == {"upload": 2.0}
    events = sqlite3.connect(tmp_path / "ledger.sqlite").execute(
        "SELECT state FROM events WHERE job_key='k1' ORDER BY id").fetchall()
    assert [e[0] for e in events] == ["planned", "submitting", "submitted"]
    led.update("k1", state="done")
    assert other.get("k1").terminal


def test_charged_counts_in_doubt_jobs_at_their_estimate(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    _plan(led, "a", usd=1.0)
    _plan(led, "b", usd=2.0)
    _plan(led, "c", usd=4.0)
    led.journal("a").submitting(Cost(usd=1.0))                      # in doubt → 1.0
    led.journal("b").submitting(Cost(usd=2.0))
    led.journal("b").submitted("r", Cost(usd=1.5, estimated=False))  # charged 1.5
    assert led.charged() == (pytest.approx(2.5), pytest.approx(0.0))
    assert led.charged("svc")[0] == pytest.approx(2.5)


def test_budget_cap_refuses_before_paying(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    for k in "abc":
        _plan(led, k, usd=0.4)
    b = Budget(led, usd=1.0, per_provider={"svc": (None, 70.0)})
    b.reserve("a", "svc", Cost(usd=0.4, credits=30))
    b.reserve("b", "svc", Cost(usd=0.4, credits=30))
    with pytest.raises(
        BudgetExceeded, match=r"would exceed the budget \(\$0.0000 charged \+ \$0.8000 reserved of \$1.0000\)"
    ):
        b.reserve("c", "svc", Cost(usd=0.4, credits=30))
    b.release("b")
    with pytest.raises(BudgetExceeded, match="30 credits would exceed its budget"):
        b2 = Budget(led, per_provider={"svc": (None, 50.0)})
        b2.reserve("x", "svc", Cost(credits=30))
        b2.reserve("y", "svc", Cost(credits=30))
    b.reserve("c", "svc", Cost(usd=0.4, credits=30))  # fits after the release
    assert Budget(led, usd=0.0).reserve("free", "local", Cost(compute_seconds=5)) is None  # free jobs always pass
    with pytest.raises(BudgetExceeded):
        Budget(led, usd=0.0).reserve("paid", "svc", Cost(usd=0.01))


def test_stem_cache_roundtrip_and_corruption(tmp_path: Path) -> None:
    rng = np.random.RandomState(0)
    loud = (rng.randn(2, 5000) * 0.8).astype(np.float32)  # peaks above 1.0
    stems = Stems({"vocals": loud, "drums": loud * 0.01}, 44100)
    c = StemCache(tmp_path)
    c.put("k", stems, {"provider": "x"})
    back = c.get("k")
    assert back is not None and back.names == ("vocals", "drums") and back.sample_rate == 44100
    assert float(np.abs(loud).max()) > 1.0
    for n in stems.names:  # 24-bit FLAC with gain: error far below any metric's resolution
        err = np.abs(back[n] - stems[n]).max() / np.abs(stems[n]).max()
        assert err < 2e-6
    assert c.meta("k") == {"provider": "x"}
    # corrupt a file → entry discarded, recomputation forced
    f = next((tmp_path / "stems" / "k").glob("vocals.flac"))
    f.write_bytes(f.read_bytes()[:-100] + b"\0" * 100)
    assert c.get("k") is None and not c.has("k")


def test_score_cache_keys_by_metric_settings(tmp_path: Path) -> None:
    s = ScoreCache(tmp_path)
    row = {"target": "vocals", "metric": "usdr", "aggregation": "track", "value": float("nan")}
    s.put("k", "m1", {"rows": [row]})
    assert s.get("k", "m2") is None
    assert np.isnan(s.get("k", "m1")["rows"][0]["value"])


def test_full_disk_gives_clear_error(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os as _os

    c = StemCache(tmp_path)
    real = _os.replace

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("stemlab.runs.cache.os.replace", boom)
    with pytest.raises(RunError, match="is full"):
        c.put("k", Stems({"a": np.zeros((1, 10), np.float32)}, 8000))
    monkeypatch.setattr("stemlab.runs.cache.os.replace", real)
    assert not c.has("k") and not list((tmp_path / "stems").glob(".*tmp"))


def _hold_lock(path: str, ready, release) -> None:
    from stemlab.runs.output import output_lock

    with output_lock(Path(path)):
        ready.set()
        release.wait(10)


def test_second_runner_on_same_output_refuses(tmp_path: Path) -> None:
    from stemlab.runs.output import output_lock

    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunError, match=r"in use by another stemlab run \(pid \d+"):
            with output_lock(tmp_path):
                pass
    finally:
        release.set()
        p.join(10)
    with output_lock(tmp_path):  # free again
        pass
