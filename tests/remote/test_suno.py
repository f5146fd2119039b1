"""Suno stems gateway (seed 004) against its sandbox: ``GET
/suno/act/stems/{clip_id}`` with Bearer auth, tracks carrying a Suno clip id
(others refused with the reason before anything is sent), polling until the
Vocals/Instrumental clips are complete, MP3 download, one charge.

Also the regression for the harness timeout ("job exceeded max_wait 900
virtual seconds"): the sandbox's real DSP time was multiplied by 1/scale on
the virtual clock, so on a loaded machine a few real seconds of separation
became >900 service seconds; the clock is now held at real rate while the
emulator computes (:meth:`ScaledClock.hold`)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import stemlab.datasets as D
from stemlab.errors import ProviderOutputError, ProviderRejected, ProviderUnavailable
from stemlab.providers import create
from stemlab.sandbox import ScaledClock, SunoSandbox

from ._stemcheck import aligned_score, aligned_sdr, best_lag, record_statuses, status_order


@pytest.fixture(scope="module")
def excerpt():
    return next(iter(D.load("demo", tracks=1, seconds=3.0)))


def _accompaniment(track):
    refs = track.references
    return sum(refs[n] for n in refs.names if n != "vocals")


def test_clip_is_separated_polled_and_downloaded(excerpt):
    with SunoSandbox() as sb:
        cid = sb.register_clip(excerpt.mixture, excerpt.sample_rate, dict(excerpt.references.items()),
                               title="City Lights")
        p = create("suno", base_url=sb.base_url, api_key=sb.api_key, clock=sb.clock, poll_initial=2.0,
                   poll_interval=2.0, poll_max_interval=4.0)
        seen = record_statuses(p)
        sep = p.separate(excerpt.replace(suno_clip_id=cid))
        assert sep.stems.names == ("vocals", "accompaniment") and sep.stems.sample_rate == excerpt.sample_rate
        assert sep.remote_id == cid
        # lossy MP3 with the encoder delay of an untagged MP3 (1105 samples), as the sandbox promises
        assert sep.provenance["output"]["format"] == "mp3"
        assert best_lag(sep.stems["vocals"], excerpt.references["vocals"]) == pytest.approx(1105, abs=2)
        for name, ref in (("vocals", excerpt.references["vocals"]), ("accompaniment", _accompaniment(excerpt))):
            sdr, mix = aligned_sdr(sep.stems[name], ref), aligned_sdr(excerpt.mixture, ref)
            assert sdr > mix + 3.0, (name, sdr, mix)
        # the wire: one endpoint, Bearer auth, asked again for status; one job, one charge
        assert {r.endpoint for r in sb.requests} == {"stems", "download"}
        assert sum(r.endpoint == "download" for r in sb.requests) == 2
        assert sb.ledger.creates == [(sb.stem_jobs[(next(iter(sb.ledger.jobs.values())).account, cid)], "new")]
        assert sb.ledger.charged() == 1.0 and sep.cost.credits == 1 and sep.cost.credit_unit == "calls"
        order = status_order(seen)
        assert order[-1] == "complete" and set(order) <= {"queued", "streaming", "complete"} and len(seen) >= 2
        assert sep.provenance["stem_clip_ids"]["vocals"] != sep.provenance["stem_clip_ids"]["accompaniment"]


def test_tracks_without_a_clip_id_are_refused_before_any_request(excerpt):
    with SunoSandbox() as sb:
        p = create("suno", base_url=sb.base_url, api_key=sb.api_key, clock=sb.clock)
        with pytest.raises(ProviderRejected) as ei:
            p.separate(excerpt)
        msg = str(ei.value)
        assert "has no Suno clip id" in msg and repr(excerpt.name) in msg and "suno_clip_id" in msg
        assert ei.value.details["reason"] == "no_suno_clip_id"
        assert sb.requests == [] and sb.ledger.charges == []
        # the clip_ids option (name → id) is the other way to give one
        cid = sb.register_clip(excerpt.mixture, excerpt.sample_rate)
        q = create("suno", base_url=sb.base_url, api_key=sb.api_key, clock=sb.clock, poll_initial=2.0,
                   clip_ids={excerpt.name: cid})
        assert q.separate(excerpt).remote_id == cid


def test_auth_unknown_clip_and_failed_job(excerpt):
    with SunoSandbox(faults="job:fail(code=STEMS_FAILED,message=clip is not stemmable)") as sb:
        good = sb.register_clip(excerpt.mixture, excerpt.sample_rate)
        t = excerpt.replace(suno_clip_id=good)
        wrong = create("suno", base_url=sb.base_url, api_key="sk-suno-wrong-key-9999", clock=sb.clock)
        with pytest.raises(ProviderUnavailable) as ei:
            wrong.separate(t)
        assert "SUNO_API_KEY" in str(ei.value) and "sk-suno-wrong-key-9999" not in str(ei.value)
        assert sb.ledger.charges == []  # an unauthenticated request starts nothing
        p = create("suno", base_url=sb.base_url, api_key=sb.api_key, clock=sb.clock, poll_initial=2.0)
        with pytest.raises(ProviderRejected) as ei:
            p.separate(excerpt.replace(suno_clip_id="00000000-0000-0000-0000-000000000000"))
        assert "HTTP 404" in str(ei.value) and "not found" in str(ei.value)
        with pytest.raises(ProviderOutputError) as ei:
            p.separate(t)
        assert "STEMS_FAILED: clip is not stemmable" in str(ei.value)
        assert sb.ledger.charged() == 1.0


def test_missing_key_names_the_variable(monkeypatch, excerpt):
    monkeypatch.delenv("SUNO_API_KEY", raising=False)
    p = create("suno", base_url="http://127.0.0.1:9")
    assert not p.status().ready and "$SUNO_API_KEY" in p.status().detail
    with pytest.raises(ProviderUnavailable, match=r"set \$SUNO_API_KEY"):
        p.separate(excerpt.replace(suno_clip_id="x"))


# ------------------------------------------------------------------ the timeout bug
def test_scaled_clock_is_held_while_the_emulator_computes():
    c = ScaledClock(0.001)

    async def main():
        v0 = c.now()
        with c.hold():
            time.sleep(0.2)  # 0.2 real s of "DSP"
        held = c.now() - v0
        v1 = c.now()
        await c.sleep(100)  # 100 virtual s unheld = 0.1 real s
        return held, c.now() - v1

    t0 = time.monotonic()
    held, slept = asyncio.run(main())
    assert 0.19 < held < 1.0  # real rate (≈0.2 s), not 200 s
    assert 100 <= slept < 200 and time.monotonic() - t0 < 2.0


def _slow_separator(seconds):
    def sep(audio, sr):
        time.sleep(seconds)  # a loaded 2-core machine: real DSP seconds
        return {"vocals": audio * 0.5, "accompaniment": audio * 0.5}
    return sep


@pytest.mark.parametrize("hold_clock", [True, False])
def test_harness_run_through_the_suno_sandbox_finishes(tmp_path, monkeypatch, hold_clock):
    """Demo tracks (no suno_clip_id of their own) go through the harness with
    the sandbox's clip resolver. Separation takes 1.5 real s per job at scale
    0.001: before the fix that was 1500 service seconds, past Suno's 900-s
    max_wait, and every job failed with 'still streaming after … s'.
    Fixed twice: the sandbox gives its clients a max_wait of enough *real*
    seconds (default), and optionally holds its clock while computing
    (``hold_clock``: realistic per-job service timings)."""
    from stemlab.runs import run
    from stemlab.runs import runner as runner_mod
    from stemlab.sandbox import SandboxPool

    monkeypatch.setattr(runner_mod, "score_stems", aligned_score)
    pool = SandboxPool(scale=0.001, options={"suno": {"separator": _slow_separator(1.5), "hold_clock": hold_clock}})
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 3.0}}],
            "providers": ["suno"], "metrics": ["usdr"], "output": str(tmp_path / "out")}
    with pool:
        res = run(spec, quiet=True, sandboxes=pool)
        sb = pool.running["suno"]
        jobs = res.jobs
        assert list(jobs.status) == ["done", "done"], jobs.error.tolist()
        if hold_clock:  # the emulator's 1.5 real s count as 1.5 service s, not 1500
            assert (jobs.sim_processing_s < 900).all() and (jobs.sim_processing_s >= 1.0).all()
        else:  # past Suno's own 900-s max_wait in service seconds, still waited for
            assert (jobs.sim_processing_s > 900).all()
        assert sb.ledger.charged() == 2 and sb.ledger.duplicate_charges() == {}
        # the resolver registered each demo track as its own clip
        assert len(sb.clips) == 2
        s = res.scores  # demo references are vocals/drums/bass/other: only vocals has a counterpart
        assert len(s) == 2 and set(s.target) == {"vocals"} and np.isfinite(s.value).all()


def test_live_mode_refuses_demo_tracks_without_clip_ids(tmp_path, monkeypatch):
    from stemlab.runs import run
    from stemlab.runs import runner as runner_mod

    monkeypatch.setattr(runner_mod, "score_stems", aligned_score)
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 3.0}}],
            "providers": [{"provider": "suno", "sandbox": False,
                           "options": {"base_url": "http://127.0.0.1:9", "api_key": "sk-suno-live-test-0001"}}],
            "metrics": ["usdr"], "output": str(tmp_path / "live")}
    res = run(spec, quiet=True)
    row = res.jobs.iloc[0]
    assert row.status == "failed" and row.error_kind == "ProviderRejected"
    assert "has no Suno clip id" in row.error
