"""The budget is a hard cap on paid submissions, and --dry-run prices the
plan without submitting anything (both against a sandboxed service)."""

from __future__ import annotations

from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from stemlab.sandbox import SandboxPool
from tests.fakes import fake_score


def _spec(out, usd):
    return {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}}],
            "providers": [{"provider": "aistemsplitter:htdemucs", "sandbox": True, "max_concurrency": 1}],
            "metrics": ["usdr"], "budget": {"usd": usd}, "output": str(out)}


def test_budget_caps_paid_submissions_and_dry_run_submits_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)
    with SandboxPool() as pool:
        plan = run(_spec(tmp_path / "dry", 1.0), quiet=True, dry_run=True, sandboxes=pool)
        row = [r for r in plan.plan if "aistemsplitter" in str(r.get("provider", ""))][0]
        assert row["jobs"] == 2 and row["usd"] > 0  # priced per track before anything is sent
        sb = pool.get("aistemsplitter")
        assert len(sb.ledger.jobs) == 0 and sb.ledger.charged() == 0
        one_job = row["usd"] / 2
        # room for one job only: the second is not submitted and becomes a 'budget' row
        res = run(_spec(tmp_path / "run", one_job * 1.5), quiet=True, sandboxes=pool)
        st = sorted(res.jobs.status)
        assert st == ["budget", "done"], res.jobs[["status", "error"]]
        assert "budget" in res.jobs[res.jobs.status == "budget"].error.iloc[0]
        assert len(sb.ledger.jobs) == 1
