"""What differs between local and remote providers, decided in one place
(stemlab.runs.kinds), and the one result type of a results folder."""

from __future__ import annotations

import hashlib

import pytest

import stemlab.providers as P
from stemlab.errors import ConfigError
from stemlab.runs import Results, load_results, load_spec, run
from stemlab.runs import runner as runner_mod
from stemlab.runs.kinds import KINDS, LocalKind, RemoteKind, kind_of
from stemlab.runs.ledger import JobRow
from stemlab.runs.planning import job_key
from stemlab.types import Cost
from tests.fakes import fake_score


def _spec(**kw):
    d = {"datasets": ["demo"], "output": "unused",
         "providers": [{"provider": "aistemsplitter", "sandbox": True},
                       {"provider": "aistemsplitter", "sandbox": False, "options": {"base_url": "http://svc"}},
                       {"provider": "aistemsplitter", "sandbox": False},
                       "oracle:irm"],
         "concurrency": {"local": 3, "remote": 5}}
    d.update(kw)
    return load_spec(d)


def _row(kind: str, **kw) -> JobRow:
    base: dict[str, object] = {"job_key": "k", "run_id": "r", "dataset": "demo", "track": "t", "mixture_hash": "h",
                               "provider": "p", "family": "f", "kind": kind, "params_hash": "ph", "params_json": "{}",
                               "state": "failed", "idempotency_key": "i"}
    base.update(kw)
    return JobRow(**base)  # type: ignore[arg-type]


def test_kind_of_providers_and_names():
    assert kind_of(P.create("oracle:irm")) is KINDS["local"] and isinstance(KINDS["local"], LocalKind)
    assert kind_of(P.create("aistemsplitter")) is KINDS["remote"] and isinstance(KINDS["remote"], RemoteKind)
    assert kind_of("remote") is KINDS["remote"]
    with pytest.raises(ConfigError, match="provider kind must be one of \\['local', 'remote'\\], got 'cloud'"):
        kind_of("cloud")


def test_job_keys_are_those_of_earlier_runs():
    """The "where" part of a key: nothing for local providers, the sandbox or
    the live base URL for remote ones — keys unchanged, so earlier results
    directories resume."""
    spec = _spec()
    sb, live, default, oracle = spec.providers
    remote, remote_live = P.create(sb.ref), P.create(live.ref)
    local = P.create(oracle.ref)
    assert [kind_of(remote).where(remote, sb), kind_of(remote_live).where(remote_live, live),
            kind_of(remote).where(remote, default), kind_of(local).where(local, oracle)] == \
        ["sandbox", "live:http://svc", "live:default", ""]

    def old(blob: str) -> str:
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    assert job_key("mh", remote, sb) == old(f"mh|aistemsplitter|{remote.params_hash}|sandbox")
    assert job_key("mh", remote_live, live) == old(f"mh|aistemsplitter|{remote_live.params_hash}|live:http://svc")
    assert job_key("mh", local, oracle, "refs1") == old(f"mh|oracle|{local.params_hash}||refs:refs1")


def test_concurrency_slots_per_kind():
    spec = _spec()
    assert (KINDS["local"].slots(spec), KINDS["local"].provider_slots(spec)) == (3, 1)
    assert (KINDS["remote"].slots(spec), KINDS["remote"].provider_slots(spec)) == (5, 5)
    assert KINDS["local"].uses_executor and not KINDS["remote"].uses_executor


def test_recorded_cost_and_whether_it_replaces_the_charge():
    import numpy as np

    from stemlab.types import Separation, Stems

    paid = Cost(usd=0.2, credits=3.0, credit_unit="min", compute_seconds=0.0, estimated=True)
    sep = Separation(stems=Stems({"vocals": np.zeros((1, 8), np.float32)}, 8000), provider="p", cost=paid)
    local, remote = KINDS["local"], KINDS["remote"]
    c = local.recorded_cost(sep, {"separate": 1.5, "wall": 2.0})
    assert (c.usd, c.compute_seconds, c.estimated) == (0.0, 1.5, False)
    assert local.recorded_cost(sep, {"wall": 2.0}).compute_seconds == 2.0
    assert local.records_charge(c, _row("local", remote_id="x"))
    assert remote.recorded_cost(sep, {"wall": 2.0}) is paid
    assert remote.records_charge(paid, _row("remote"))  # no submission recorded yet
    assert not remote.records_charge(paid, _row("remote", remote_id="x"))  # the submission's charge stays
    assert remote.records_charge(Cost(usd=0.1, estimated=False), _row("remote", remote_id="x"))  # final cost


def test_a_failed_job_that_may_have_been_paid_for():
    assert not KINDS["local"].may_have_paid(_row("local", remote_id="x"))
    assert not KINDS["remote"].may_have_paid(_row("remote"))
    assert KINDS["remote"].may_have_paid(_row("remote", remote_id="x"))


def test_remote_outputs_are_always_aligned():
    spec = _spec()
    assert KINDS["local"].score_alignment(spec.alignment) == {"enabled": True}
    assert KINDS["remote"].score_alignment(spec.alignment) == {"enabled": True, "force": True}
    off = _spec(alignment={"force": False}).alignment
    assert KINDS["remote"].score_alignment(off) == {"enabled": True, "force": False}


def test_run_and_load_results_return_one_type(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 1.0}}],
            "providers": ["baseline:mixture"], "metrics": ["usdr"], "output": str(tmp_path / "o")}
    res = run(spec, quiet=True)
    assert type(res) is Results and res.path == tmp_path / "o" and res.run_id and res.failed == 0
    assert [r["provider"] for r in res.plan] == ["baseline:mixture", "TOTAL"]
    back = load_results(res.path)
    assert type(back) is Results
    assert (back.path, back.run_id, back.plan, back.failed) == (res.path, res.run_id, res.plan, 0)
    assert list(back.jobs.job_key) == list(res.jobs.job_key) and len(back.scores) == len(res.scores)
    dry = run(spec, output=tmp_path / "dry", dry_run=True, quiet=True)
    assert type(dry) is Results and dry.jobs.empty and dry.failed == 0 and dry.plan[0]["jobs"] == 1
