"""AI Stem Splitter provider end to end against its sandbox (a real HTTP
server on 127.0.0.1) on a 3-s demo excerpt: upload flow and direct_url,
Idempotency-Key (a retried or resumed submit never pays twice — checked on
the sandbox's own ledger), the status sequence, failed jobs, downloads,
list of recent jobs, credits, the SDK's model alias ``6s``, both wire shapes
(SDK envelope and the seed's bare JSON), and the per-pack cost model."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

import stemlab.datasets as D
from stemlab.audio import encode_bytes
from stemlab.errors import ConfigError, ProviderRejected, ProviderUnavailable
from stemlab.providers import create
from stemlab.providers.base import NullJournal
from stemlab.sandbox import AIStemSplitterSandbox
from stemlab.services.aistemsplitter.pricing import PRICING

from ._stemcheck import aligned_sdr, record_statuses, status_order

FOUR = ("vocals", "drums", "bass", "other")


@pytest.fixture(scope="module")
def excerpt():
    """A 3-s demo song with its four reference stems."""
    t = next(iter(D.load("demo", tracks=1, seconds=3.0)))
    assert t.references is not None and set(FOUR) <= set(t.references.names)
    return t


def _sandbox(track, **kw):
    sb = AIStemSplitterSandbox(**kw)
    sb.register_track(track)
    return sb


def _provider(sb, spec="aistemsplitter", **opts):
    # fast polls in service seconds; the sandbox's scaled clock runs them 100× faster
    return create(spec, **{**sb.provider_options(), "poll_initial": 1.0, "poll_interval": 1.0,
                          "poll_max_interval": 2.0, **opts})


def _assert_good_stems(sep, track, names=FOUR, min_db=4.0):
    assert sep.stems.names == names
    assert sep.stems.sample_rate == track.sample_rate
    assert sep.stems.num_channels == 2
    refs = track.references
    for n in FOUR:
        if n in names:
            # degraded oracle at htdemucs_ft quality 0.88: clearly better than the mixture (≈ −5…+3 dB)
            sdr = aligned_sdr(sep.stems[n], refs[n])
            mix_sdr = aligned_sdr(track.mixture, refs[n])
            assert sdr > min_db and sdr > mix_sdr + 3.0, (n, sdr, mix_sdr)


def test_upload_flow_end_to_end(excerpt):
    with _sandbox(excerpt) as sb:
        p = _provider(sb)
        before = p.get_credits()
        assert before == {"balance": sb.initial_credits, "unit": "seconds"}
        seen = record_statuses(p)
        sep = p.separate(excerpt)
        _assert_good_stems(sep, excerpt)
        # wire: reservation → raw upload (no auth) → create → polls → 4 downloads
        eps = [r.endpoint for r in sb.requests if r.endpoint != "credits"]
        assert eps[:3] == ["upload_reserve", "upload", "create"]
        assert eps.count("download") == 4 and eps.count("status") == len(seen) >= 2
        # status sequence: queued → processing → succeeded, in that order, only once each switch
        order = status_order(seen)
        assert order[-1] == "succeeded" and set(order) <= {"queued", "processing", "succeeded"}
        assert order == sorted(order, key=["queued", "processing", "succeeded"].index)
        assert "processing" in order
        # money: 3 s of input → ceil(3) = 3 credits, charged once; the balance shows it
        assert sb.ledger.charged() == 3.0 and sb.ledger.duplicate_charges() == {}
        assert p.get_credits()["balance"] == before["balance"] - 3
        assert sep.cost.credits == 3 and not sep.cost.estimated
        assert sep.cost.usd == pytest.approx(3 / 60 * 6.99 / 50)
        assert sep.provenance["input"] == "uploaded_file" and sep.remote_id.startswith("split_")
        # the upload carried the job tag, so a crashed run can recognise it in the job list
        job = sb.ledger.jobs[sep.remote_id]
        assert job.filename.startswith("sl") and job.filename.endswith(".flac")
        for ph in ("upload", "submit", "queue", "processing", "download"):
            assert sep.timings[ph] >= 0
        assert sep.timings["queue"] + sep.timings["processing"] >= sb.queue_seconds


def test_direct_url_skips_the_upload(excerpt):
    with _sandbox(excerpt) as sb:
        url = sb.host_file(encode_bytes(excerpt.mixture, excerpt.sample_rate, "wav"), "song.wav", "audio/wav")
        p = _provider(sb)
        sep = p.separate(excerpt.replace(metadata={"url": url}))
        _assert_good_stems(sep, excerpt)
        eps = [r.endpoint for r in sb.requests]
        assert "upload_reserve" not in eps and "upload" not in eps
        assert sep.provenance["input"] == "direct_url"
        assert sb.ledger.jobs[sep.remote_id].filename == "song.wav"


def test_seed_bare_json_wire_shape(excerpt):
    """The seed's shapes (no envelope) work too; the sandbox speaks both."""
    with _sandbox(excerpt, envelope=False) as sb:
        r = httpx.get(sb.base_url + "/credits", headers={"Authorization": f"Bearer {sb.api_key}"})
        assert r.json() == {"balance": sb.initial_credits, "unit": "seconds"}  # bare
        bad = httpx.get(sb.base_url + "/credits", headers={"Authorization": "Bearer nope-nope"})
        assert bad.status_code == 401 and bad.json() == {"error": {"code": "UNAUTHORIZED",
                                                                   "message": "Missing or invalid API key"}}
        p = _provider(sb)
        sep = p.separate(excerpt)
        _assert_good_stems(sep, excerpt)
        assert p.get_credits()["balance"] == sb.initial_credits - 3
        # a wrong key: ProviderUnavailable naming the variable, never the key
        wrong = _provider(sb, api_key="ast_test_wrong_key_123456")
        with pytest.raises(ProviderUnavailable) as ei:
            wrong.get_credits()
        assert "AISTEMSPLITTER_API_KEY" in str(ei.value) and "UNAUTHORIZED" in str(ei.value)
        assert "ast_test_wrong_key_123456" not in str(ei.value)
    with _sandbox(excerpt) as sb2:  # the SDK envelope
        r = httpx.get(sb2.base_url + "/credits", headers={"Authorization": f"Bearer {sb2.api_key}"})
        assert r.json() == {"success": True, "data": {"balance": sb2.initial_credits, "unit": "seconds"}}


def test_seed_presigned_put_upload(excerpt):
    """The seed's upload: a pre-signed PUT URL (auth in the URL, empty
    answer, no uploadHeaders) and the returned ``audio_url``."""
    with _sandbox(excerpt, upload_style="seed", envelope=False, model_names="seed") as sb:
        sep = _provider(sb).separate(excerpt)
        _assert_good_stems(sep, excerpt)
        up = [r for r in sb.requests if r.endpoint == "upload"]
        assert [(r.method, r.status) for r in up] == [("PUT", 200)]
        assert [r.endpoint for r in sb.requests][:3] == ["upload_reserve", "upload", "create"]
        assert sb.ledger.charged() == 3.0
        # without the token in the URL the store refuses the PUT
        upl = next(iter(sb.uploads))
        r = httpx.put(f"{sb.root_url}/storage/upload/{upl}", content=b"x")
        assert r.status_code == 403 and r.json()["error"] == "UPLOAD_FORBIDDEN"


def test_lost_create_answer_is_reconciled_without_paying_twice(excerpt):
    """The create ran but its answer was cut (connection dropped): the client
    does not resend blindly (a service may ignore the Idempotency-Key) — it
    finds the job in the account's job list and adopts it."""
    with _sandbox(excerpt, faults="create:drop") as sb:
        p = _provider(sb)
        sep = p.separate(excerpt)
        _assert_good_stems(sep, excerpt)
        assert [k for _, k in sb.ledger.creates] == ["new"]
        assert {j for j, _ in sb.ledger.creates} == {sep.remote_id}
        assert sep.provenance.get("reconcile") is None  # found, not "not among … recent jobs"
        assert len(sb.ledger.jobs) == 1 and sb.ledger.charged() == 3.0 and sb.ledger.duplicate_charges() == {}
        assert sb.faults_fired() == {"create:drop*1": 1}


def test_retry_while_the_first_create_is_still_running_is_replayed(excerpt):
    """The create answer is late (the service is slow decoding): the client's
    read timeout fires and it resends with the same key while the first
    request is still being processed. One job, one charge."""
    import time as _time

    with _sandbox(excerpt) as sb:
        orig = sb._decode_held

        def slow(data):
            _time.sleep(1.2)
            return orig(data)

        sb._decode_held = slow
        sep = _provider(sb, timeout=0.5).separate(excerpt)
        _assert_good_stems(sep, excerpt)
        assert sb.count("create") >= 2
        assert [k for _, k in sb.ledger.creates][0] == "new" and len(sb.ledger.jobs) == 1
        assert sb.ledger.charged() == 3.0 and sb.ledger.duplicate_charges() == {}


@pytest.mark.parametrize("listing,direct", [(True, False), (False, True), (False, False)],
                         ids=["upload-found-in-list", "direct-url-resubmit-same-key", "upload-no-list"])
def test_resumed_in_doubt_submit_never_pays_twice(excerpt, listing, direct):
    """A run died between 'submitting' and 'submitted' (the remote id was
    never recorded). The resumed job finds the split in the job list. With no
    list to look in, the job stays in doubt (InDoubt: nothing resent) until
    the user retries it explicitly (retry_in_doubt): then a resend with the
    same Idempotency-Key and an identical body is deduplicated, and one whose
    body differs (a fresh upload) is refused by the service and fails with
    that reason. One job and one charge in every case."""
    import asyncio

    from stemlab.errors import InDoubt
    from stemlab.services._remote.http import JobContext

    with _sandbox(excerpt, list_supported=listing) as sb:
        track = excerpt
        if direct:
            url = sb.host_file(encode_bytes(excerpt.mixture, excerpt.sample_rate, "wav"), "song.wav", "audio/wav")
            track = excerpt.replace(metadata={"url": url})
        key = "stemlab-resume-test-0001"
        p1 = _provider(sb)

        async def _submit_only():
            try:
                job = JobContext(p1, p1._client(), NullJournal(idempotency_key=key), track, key, p1.clock)
                return await p1._submit(job)
            finally:
                await p1.aclose()

        async def _resume(p2):
            try:
                return await p2.aseparate(track, NullJournal(idempotency_key=key, in_doubt=True))
            finally:
                await p2.aclose()

        sub = asyncio.run(_submit_only())
        if not listing:
            with pytest.raises(InDoubt) as ei:
                asyncio.run(_resume(_provider(sb)))
            assert "no job list to check" in str(ei.value) and "--retry-in-doubt" in str(ei.value)
            assert [k for _, k in sb.ledger.creates] == ["new"]
        if not listing and not direct:
            with pytest.raises(ProviderUnavailable) as ei:
                asyncio.run(_resume(_provider(sb, retry_in_doubt=True)))
            msg = str(ei.value)
            assert "already submitted under Idempotency-Key stemlab-resume-test-0001" in msg
            assert "IDEMPOTENCY_CONFLICT" in msg and "offers no job list" in msg
            assert [k for _, k in sb.ledger.creates] == ["new"] and len(sb.ledger.jobs) == 1
        else:
            sep = asyncio.run(_resume(_provider(sb, retry_in_doubt=not listing)))
            assert sep.remote_id == sub.remote_id
            assert [k for _, k in sb.ledger.creates] == (["new"] if listing else ["new", "replay"])
            assert sep.provenance.get("reconciled") == (sub.remote_id if listing else None)
            _assert_good_stems(sep, excerpt)
        assert sb.ledger.charged() == 3.0 and sb.ledger.duplicate_charges() == {}


def test_failed_job_is_rejected_with_the_reason_and_refunded(excerpt):
    with _sandbox(excerpt, faults="job:fail(code=INVALID_AUDIO,message=Unsupported codec)") as sb:
        p = _provider(sb)
        with pytest.raises(ProviderRejected) as ei:
            p.separate(excerpt)
        msg = str(ei.value)
        assert "failed (INVALID_AUDIO: Unsupported codec)" in msg and repr(excerpt.name) in msg
        assert ei.value.details["remote_id"].startswith("split_")
        # charged at create, refunded on failure: nothing owed, one charge row
        assert sb.ledger.charges_per_job() == {ei.value.details["remote_id"]: 1} and sb.ledger.charged() == 0.0
    with _sandbox(excerpt, faults="job:fail(code=GPU_OOM)") as sb:
        from stemlab.errors import ProviderOutputError

        with pytest.raises(ProviderOutputError) as ei2:
            _provider(sb).separate(excerpt)
        assert not isinstance(ei2.value, ProviderRejected) and "GPU_OOM" in str(ei2.value)


def test_model_alias_6s_and_six_stems(excerpt):
    # a service that knows only the SDK's short names: htdemucs_6s is refused, then resent as "6s"
    with _sandbox(excerpt, model_names="sdk") as sb:
        p = _provider(sb, "aistemsplitter:htdemucs_6s")
        sep = p.separate(excerpt)
        six = ("vocals", "drums", "bass", "other", "guitar", "piano")
        assert sep.stems.names == six
        assert sep.provenance["stem_model_sent"] == "6s"
        assert "htdemucs_6s refused" in sep.provenance["stem_model_fallback"]
        assert sb.ledger.jobs[sep.remote_id].extra["model"] == "6s"
        assert len(sb.ledger.jobs) == 1 and sb.ledger.charged() == 3.0  # the refused create cost nothing
        # the demo song has no guitar/piano: those stems are (near) silent
        assert float(np.abs(sep.stems["piano"]).max()) < 1e-3
        # htdemucs has no short alias: refused with the service's reason
        with pytest.raises(ProviderRejected, match="stemModel must be one of"):
            _provider(sb, "aistemsplitter:htdemucs").separate(excerpt)
    # model_names="sdk" sends the alias straight away
    with _sandbox(excerpt) as sb:
        sep = _provider(sb, "aistemsplitter:htdemucs_6s", model_names="sdk").separate(excerpt)
        assert sb.ledger.jobs[sep.remote_id].extra["model"] == "6s" and len(sep.stems.names) == 6


def test_list_recent_jobs_and_credits(excerpt):
    with _sandbox(excerpt) as sb:
        p = _provider(sb)
        assert p.list_splits() == []
        a = p.separate(excerpt)
        b = p.separate(excerpt)
        jobs = p.list_splits(limit=10)
        assert [j.remote_id for j in jobs] == [b.remote_id, a.remote_id]  # newest first
        assert all(j.status == "succeeded" and j.cost.credits == 3 for j in jobs)
        assert [j.remote_id for j in p.list_splits(limit=1)] == [b.remote_id]
        assert p.get_credits()["balance"] == sb.initial_credits - 6 == sb.initial_credits - sb.ledger.charged()
    with _sandbox(excerpt, list_supported=False) as sb:
        assert _provider(sb).list_splits() is None


def test_cost_estimate_per_track_from_the_packs():
    p = create("aistemsplitter", api_key="ast_test_cost_only_0001", base_url="http://127.0.0.1:9")
    # 150 s of input = 150 credits = 2.5 min; default: the dearest pack (safe for budget caps)
    c = p.estimate_cost(150.0)
    assert c.credits == 150 and c.credit_unit == "seconds" and c.estimated
    assert c.usd == pytest.approx(2.5 * 6.99 / 50)
    assert p.estimate_cost(0.2).credits == 1 and p.estimate_cost(60.01).credits == 61  # whole seconds, rounded up
    per_pack = {}
    for name, usd, minutes in PRICING.packs:
        q = create("aistemsplitter", api_key="ast_test_cost_only_0001", base_url="http://127.0.0.1:9", pack=name)
        per_pack[name] = q.estimate_cost(60.0).usd
        assert per_pack[name] == pytest.approx(usd / minutes)
    # the seeds' "$0.08–$0.14 per minute"
    assert 0.079 < min(per_pack.values()) < 0.081 and 0.139 < max(per_pack.values()) < 0.141
    assert PRICING.free_minutes == 10
    u = create("aistemsplitter", api_key="ast_test_cost_only_0001", base_url="http://127.0.0.1:9", usd_per_minute=0.1)
    assert u.estimate_cost(90.0).usd == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="option pack expects one of"):
        create("aistemsplitter", api_key="x" * 8, pack="1000 min")
    assert math.isclose(p.estimate_cost(0.0).usd, 0.0)
