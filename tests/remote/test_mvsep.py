"""MVSEP provider + sandbox + Quality Checker, end to end over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import logging
import math

import httpx
import numpy as np
import pytest

import stemlab.providers as P
from stemlab.audio import encode_bytes
from stemlab.errors import ConfigError, ProviderError, ProviderOutputError, ProviderRejected, ProviderUnavailable
from stemlab.providers.base import NullJournal
from stemlab.services._remote.limits import _reset_registry
from stemlab.services.mvsep import catalog, pricing
from stemlab.services.mvsep import provider as M
from stemlab.services.mvsep.quality_checker import QualityChecker, build_zip, dataset_type
from stemlab.services.mvsep.sandbox import MVSepSandbox

SCALE = 0.005  # 200 virtual seconds per real second


@pytest.fixture(scope="module")
def track():
    """A 3-s excerpt of the first demo song, with its reference stems."""
    import stemlab.datasets as D

    return list(D.load("demo", tracks=1, seconds=3.0))[0]


@pytest.fixture(autouse=True)
def _fresh_limits():
    _reset_registry()
    M._ALGO_CACHE.clear()
    yield
    _reset_registry()


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    r, e = ref[..., :n].astype(np.float64), est[..., :n].astype(np.float64)
    return 10 * math.log10(np.sum(r**2) / max(np.sum((r - e) ** 2), 1e-12))


def make(spec: str, sb: MVSepSandbox, **kw):
    return P.create(
        spec, **{**sb.provider_options(), "poll_interval": 10.0, "poll_initial": 5.0, "max_wait": 36000.0, **kw}
    )


# ---------------------------------------------------------------- end to end
def test_separate_demo_excerpt_end_to_end(track):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        p = make("mvsep:demucs4ht?model=htdemucs_ft", sb)
        sep = p.separate(track)
        assert sorted(sep.stems) == ["bass", "drums", "other", "vocals"]
        refs = track.references
        n = track.mixture.shape[1]
        for stem in ("vocals", "drums", "bass"):
            est = sep.stems[stem]
            assert est.shape[0] == 2 and abs(est.shape[1] - n) <= 4
            # the degraded oracle (quality 0.86 for Demucs4 HT) beats the mixture as an estimate by far
            assert sdr(refs[stem], est) > sdr(refs[stem], track.mixture) + 3.0
        # what went over the wire: sep_type 20, add_opt1 0 (htdemucs_ft), output_format 1 (wav)
        (job,) = sb.ledger.jobs.values()
        assert job.extra["sep_type"] == 20 and job.extra["add_opts"] == {"add_opt1": "0"}
        assert job.output_format == "wav16" and job.filename.endswith(f"_{track.name}.flac")
        # 3 s × 1.0 / 60 → floor 0 → 1 credit, charged once
        assert [c.amount for c in sb.ledger.charges] == [1.0]
        assert sep.cost.credits == 1.0 and sep.cost.credit_unit == "mvsep_credits" and not sep.cost.estimated
        assert sep.remote_id == job.id and sep.provenance["sep_type"] == 20
        assert p.credits() == sb.initial_credits - 1
        assert {"queue", "processing", "download", "submit"} <= set(sep.timings)
        assert sb.count("redirect") == 4 and sb.count("download") == 4  # /dl → 302 → signed file


def test_mp3_output_carries_encoder_delay_and_two_stem_model(track):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        p = make("mvsep:bs_roformer?output_format=mp3", sb)
        sep = p.separate(track)
        assert sorted(sep.stems) == ["accompaniment", "vocals"]
        out = sep.provenance["output"]
        assert out["format"] == "mp3"
        # LAME-style delay (1105 samples) makes the decoded stems longer than the input
        assert out["samples"]["vocals"] >= track.mixture.shape[1] + 1105
        (job,) = sb.ledger.jobs.values()
        assert job.extra["sep_type"] == 40 and job.extra["add_opts"] == {} and job.output_format == "mp3"


# --------------------------------------------------------------- statuses
@pytest.mark.parametrize("body, status, extra", [
    ({"success": True, "status": "waiting", "data": {"queue_count": 7, "current_order": 3}}, "queued",
     {"queue_count": 7, "current_order": 3}),
    ({"success": True, "status": "processing", "data": {"message": "Processing"}}, "running", {}),
    ({"success": True, "status": "distributing", "data": {"finished_chunks": 2, "all_chunks": 5}}, "running",
     {"finished_chunks": 2, "all_chunks": 5}),
    ({"success": True, "status": "merging", "data": {"finished_chunks": 5, "all_chunks": 5}}, "running",
     {"all_chunks": 5}),
    ({"success": True, "status": "done", "data": {"files": [
        {"url": "https:\\/\\/x.example\\/a_vocals.wav", "download": "a_vocals.wav"},
        {"url": "https://x.example/a_instrum.wav", "download": "a_instrum.wav"}]}}, "done", {}),
    ({"success": True, "status": "failed", "data": {"message": "GPU out of memory"}}, "failed", {}),
    ({"success": True, "status": "error", "data": {"message": "boom"}}, "failed", {}),
    ({"success": False, "status": "not_found", "data": {"message": "Not found"}}, "failed", {}),
    ({"success": False, "data": {}}, "failed", {}),
    ({"success": True, "status": "some_new_state", "data": {}}, "running", {}),
])
def test_every_status_is_mapped(body, status, extra):
    p = P.create("mvsep:bs_roformer", api_key="tok_unit_test_123")
    st = p.state_from(body)
    assert st.status == status
    for k, v in extra.items():
        assert st.info[k] == v
    if status == "done":
        assert st.outputs == {"vocals": "https://x.example/a_vocals.wav",
                              "accompaniment": "https://x.example/a_instrum.wav"}
    if body.get("status") == "failed":
        assert st.error_message == "GPU out of memory"
    if body.get("success") is False:
        assert st.error_code == "not_found"
        assert st.error_message == (body["data"].get("message") or "the job is unknown, deleted or expired")


def test_result_files_are_matched_to_stems_by_name():
    p = P.create("mvsep:ensemble_all_in", api_key="tok_unit_test_123")
    files = [{"url": f"https://h.example/r/{n}", "download": n} for n in (
        "My Song - Take 2_vocals_(BS Roformer ver 2025.07).wav", "My Song - Take 2_lead_vocals.wav",
        "My Song - Take 2_back_vocals.wav", "My Song - Take 2_drums_scnet_xl.wav", "My Song_bass.wav",
        "My Song_instrum.wav", "readme.txt")]
    files.append({"url": "https://h.example/r/opaque-1", "name": "Piano"})
    out = p.state_from({"success": True, "status": "done", "data": {"files": files}}).outputs
    assert {k: v.rsplit("/", 1)[-1] for k, v in out.items()} == {
        "vocals": "My Song - Take 2_vocals_(BS Roformer ver 2025.07).wav",
        "lead_vocals": "My Song - Take 2_lead_vocals.wav", "back_vocals": "My Song - Take 2_back_vocals.wav",
        "drums": "My Song - Take 2_drums_scnet_xl.wav", "bass": "My Song_bass.wav",
        "accompaniment": "My Song_instrum.wav", "piano": "opaque-1"}


def test_sandbox_status_sequence_with_distributed_chunks(track):
    """A job longer than chunk_seconds goes waiting → distributing → merging → done."""
    with MVSepSandbox(scale=0.01, chunk_seconds=1.0, queue_seconds=200.0, processing_seconds=100.0) as sb:
        sb.register_track(track)
        p = make("mvsep:demucs4ht", sb)

        async def run():
            try:
                seen: list[str] = []
                chunks = set()
                job = await asyncio.to_thread(_create_raw, sb, track, 20)
                for _ in range(2000):
                    st = await p.astatus(job)
                    if not seen or seen[-1] != st.service_status:
                        seen.append(st.service_status)
                    if "all_chunks" in st.info:
                        chunks.add((st.info.get("finished_chunks"), st.info["all_chunks"]))
                    if st.status in ("done", "failed"):
                        return seen, chunks, st
                    await asyncio.sleep(0.005)
                raise AssertionError(seen)
            finally:
                await p.aclose()

        seen, chunks, final = asyncio.run(run())
        assert seen == ["waiting", "distributing", "merging", "done"]
        assert all(t == 3 and 0 <= f <= 3 for f, t in chunks)  # ceil(3 s / 1 s) chunks
        assert (3, 3) in chunks  # merging reports every chunk finished
        assert sorted(final.outputs) == ["bass", "drums", "other", "vocals"]


def _create_raw(sb: MVSepSandbox, track, sep_type: int, token: str | None = None, **fields) -> str:
    data = encode_bytes(track.mixture, track.sample_rate, "wav")
    form = {"api_token": token or sb.api_key, "sep_type": str(sep_type), "output_format": "1", **fields}
    r = httpx.post(sb.base_url + "/separation/create", data=form, files={"audiofile": ("x.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    return r.json()["data"]["hash"]


def test_failed_job_is_a_provider_error_with_the_reason_and_is_refunded(track):
    with MVSepSandbox(scale=SCALE, faults="job:fail(message=Model crashed on chunk 2)") as sb:
        p = make("mvsep:bs_roformer", sb)
        with pytest.raises(ProviderError) as ei:
            p.separate(track)
        assert "Model crashed on chunk 2" in str(ei.value)
        assert ei.value.details["remote_id"] in sb.ledger.jobs
        assert sb.ledger.charged() == 0.0 and len(sb.ledger.charges) == 1  # charged, then refunded


def test_unknown_hash_is_not_found(track):
    with MVSepSandbox(scale=SCALE) as sb:
        p = make("mvsep:bs_roformer", sb)
        with pytest.raises(ProviderOutputError, match="not found"):
            asyncio.run(p.aseparate(track, NullJournal(idempotency_key="k", remote_id="20260101000000-abc-x.flac")))
        assert sb.count("create") == 0  # a known remote id is polled, never resubmitted


# ------------------------------------------------------------------ credits
@pytest.mark.parametrize("seconds, coef, credits", [
    (0.0, 1.0, 1), (3.0, 1.0, 1), (59.9, 1.0, 1), (119.9, 1.0, 1), (120.0, 1.0, 2), (180.0, 1.5, 4),
    (200.0, 3.0, 10), (241.0, 0.5, 2), (3600.0, 4.0, 240),
])
def test_credits_formula(seconds, coef, credits):
    assert pricing.credits_for(seconds, coef) == credits


def test_cost_estimate_uses_price_coefficient_and_usd_per_credit():
    ens = P.create("mvsep:ensemble", api_key="tok_unit_test_123", usd_per_credit=0.05)
    # snapshot: Ensemble (vocals, instrum, bass, drums, other) has price_coefficient 4.0
    c = ens.estimate_cost(200.0)
    assert (c.credits, c.credit_unit, round(c.usd, 6)) == (13.0, "mvsep_credits", 0.65)
    mirrored = P.create("mvsep:bs_roformer", api_key="tok_unit_test_123", download_mirror=True)
    assert mirrored.estimate_cost(200.0).credits == 3 + 1  # mirror=1 costs one more credit


def test_live_price_coefficient_drives_estimate_and_sandbox_charge(track):
    with MVSepSandbox(scale=SCALE) as sb:
        raw = copy.deepcopy(sb.algorithm_list)
        for a in raw:
            if a["render_id"] == 40:
                a["price_coefficient"] = 40.0  # 3 s × 40 / 60 = 2 credits
        sb.set_algorithms(raw)
        sb.register_track(track)
        p = make("mvsep:bs_roformer", sb)
        assert p.estimate_cost(track).credits == 1  # offline: the snapshot's 1.0
        sep = p.separate(track)
        assert sep.cost.credits == 2.0 and [c.amount for c in sb.ledger.charges] == [2.0]
        assert p.estimate_cost(track).credits == 2  # the cached live list now


# ------------------------------------------------------------ model names
@pytest.mark.parametrize("spec, sep_type, opts, stems", [
    ("mvsep:demucs4ht?model=htdemucs_ft", 20, {"add_opt1": "0"}, ("vocals", "drums", "bass", "other")),
    ("mvsep:demucs4ht", 20, {}, ("vocals", "drums", "bass", "other")),
    ("mvsep:demucs4ht?model=htdemucs_6s", 20, {"add_opt1": "2"},
     ("vocals", "drums", "bass", "other", "guitar", "piano")),
    ("mvsep:bs_roformer", 40, {}, ("vocals", "accompaniment")),
    ("mvsep:bs_roformer?model=viperx_edition", 40, {"add_opt1": "4"}, ("vocals", "accompaniment")),
    ("mvsep:mel_roformer?model=ver_2024_10", 48, {"add_opt1": "4"}, ("vocals", "accompaniment")),
    ("mvsep:mel_roformer?model=Kimberley Jensen edition", 48, {"add_opt1": "0"}, ("vocals", "accompaniment")),
    ("mvsep:ensemble?model=v_2025_06_30", 28, {"add_opt2": "11"},
     ("vocals", "accompaniment", "bass", "drums", "other")),
    ("mvsep:ensemble_vocals?model=sdr_vocals_11_93&add_opt1=1", 26, {"add_opt1": "1", "add_opt2": "7"},
     ("vocals", "accompaniment")),
    ("mvsep:spleeter?model=4_stems", 0, {"add_opt1": "1"}, ("vocals", "drums", "bass", "other")),
    ("mvsep:mvsep_piano", 29, {}, ("piano", "other")),
    ("mvsep:mdx23c?model=8k_fft_7", 25, {"add_opt1": "7"}, ("vocals", "accompaniment")),
    ("mvsep:bs_roformer?model=81", 40, {"add_opt1": "81"}, ("vocals", "accompaniment")),
])
def test_model_names_map_to_wire_numbers(spec, sep_type, opts, stems):
    p = P.create(spec, api_key="tok_unit_test_123")
    assert p.choice.sep_type == sep_type
    assert dict(p.choice.add_opts) == opts
    assert p.stems == stems


@pytest.mark.parametrize("spec, needle", [
    ("mvsep:demucs4ht?model=htdemucs_9000", "htdemucs_ft"),
    ("mvsep:no_such_algo", "bs_roformer"),
    ("mvsep:bs_roformer?add_opt1=999", "'81'"),
    ("mvsep:bs_roformer_sw?model=x", "no model choice"),
    ("mvsep:demucs4ht?model=htdemucs&add_opt1=0", "contradicts"),
    ("mvsep:bs_roformer?output_format=ogg", "flac24"),
])
def test_unknown_names_are_config_errors_listing_valid_ones(spec, needle):
    with pytest.raises(ConfigError) as ei:
        P.create(spec, api_key="tok_unit_test_123")
    assert needle in str(ei.value)


def test_snapshot_is_packaged_and_complete():
    algos = catalog.load_snapshot()
    assert len(algos) == 57
    assert {20, 26, 28, 30, 40, 48, 63} <= set(algos)
    assert algos[20].model_field.options == {"0": "htdemucs_ft (High Quality, Slow)",
                                             "1": "htdemucs (Good Quality, Fast)",
                                             "2": "htdemucs_6s (6 stems, additional piano and guitar)"}
    assert algos[20].model_field.default_key == "1" and algos[40].model_field.default_key == "81"


# --------------------------------------------------------- hosts, mirrors
def test_mirror_hosts_and_paid_download_mirror(track):
    assert P.create("mvsep", api_key="tok_unit_test_123").base_url == "https://mvsep.com/api"
    assert P.create("mvsep", api_key="tok_unit_test_123", mirror="mirror").base_url == "https://mirror.mvsep.com/api"
    with pytest.raises(ConfigError, match="main"):
        P.create("mvsep", api_key="tok_unit_test_123", mirror="mars")
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        p = make("mvsep:bs_roformer", sb, download_mirror=True)
        sep = p.separate(track)
        assert sep.cost.credits == 2.0  # 1 for the job + 1 for mirror=1
        assert sb.ledger.charged() == 2.0
        assert all(r.path.startswith("/mirror/dl/") for r in sb.requests if r.endpoint == "redirect")


# ------------------------------------------------------------- concurrency
def test_plan_sets_parallel_jobs_and_free_accounts_run_one_at_a_time(track):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        prem = make("mvsep:bs_roformer", sb)
        asyncio.run(prem._ensure_plan())
        assert prem.max_concurrency == 10
        free = make("mvsep:bs_roformer", sb, api_key=sb.free_keys[0])

        async def two():
            try:
                return await asyncio.gather(free.aseparate(track), free.aseparate(track.replace(name="second")))
            finally:
                await free.aclose()

        a, b = asyncio.run(two())
        assert free.max_concurrency == 1 and free._limits().slots.peak == 1
        assert sb.count("create") == 2 and all(r.status == 200 for r in sb.requests if r.endpoint == "create")
        assert sb.ledger.charged() == 0.0  # free accounts pay nothing …
        assert a.cost.credits == b.cost.credits == 0.0 and free.premium is False  # … and stemlab knows it
        assert sb.count("user") == 2  # one plan lookup per provider, shared by concurrent jobs
        # the sandbox itself refuses a second parallel job of a free account
        with MVSepSandbox(scale=SCALE, queue_seconds=1e6) as sb2:
            _create_raw(sb2, track, 40, token=sb2.free_keys[0])
            r = httpx.post(sb2.base_url + "/separation/create",
                           data={"api_token": sb2.free_keys[0], "sep_type": "40", "url": "http://127.0.0.1:1/x.wav"})
            assert r.status_code == 400 and "at most 1" in r.json()["data"]["message"]


# ------------------------------------------------------ faults, reconcile
def test_faults_are_survived(track):
    faults = ("status:http_429(retry_after=date,seconds=1)*1; status:http_503*1+2; algorithms:http_500*1; "
              "download:expire*1; download:truncate*1+1; output:wrong_rate(rate=22050)")
    # a job long enough (in service seconds) for ≥ 4 status polls, so that the
    # 503 planned for the third status request always fires, however fast the machine
    with MVSepSandbox(scale=SCALE, faults=faults, queue_seconds=30.0, processing_seconds=60.0) as sb:
        sb.register_track(track)
        p = make("mvsep:bs_roformer", sb)
        sep = p.separate(track)
        assert sorted(sep.stems) == ["accompaniment", "vocals"]
        assert all(n == 1 for n in sb.faults_fired().values()), sb.faults_fired()
        assert sep.provenance.get("url_refreshes") == 1
        # stems at the wrong rate are delivered as they are (the metrics layer resamples), and say so
        assert sep.provenance["output"]["sample_rate"] == 22050
        assert abs(sep.stems["vocals"].shape[1] - round(track.seconds * 22050)) <= 2
        assert len(sb.ledger.charges) == 1


def test_lost_create_answer_is_reconciled_through_history(track):
    with MVSepSandbox(scale=SCALE, faults="create:drop") as sb:
        sb.register_track(track)
        p = make("mvsep:bs_roformer", sb)
        j = NullJournal(idempotency_key="stemlab-reconcile-1")
        sep = asyncio.run(p.aseparate(track, j))
        assert sb.count("create") == 1 and len(sb.ledger.jobs) == 1 and len(sb.ledger.charges) == 1
        assert sb.count("history") == 1 and sep.remote_id == next(iter(sb.ledger.jobs))
        assert j.notes.get("reconciled") is True
        # a later run whose journal is in doubt finds it again, without a new create
        p2 = make("mvsep:bs_roformer", sb)
        sep2 = asyncio.run(p2.aseparate(track, NullJournal(idempotency_key="stemlab-reconcile-1", in_doubt=True)))
        assert sep2.remote_id == sep.remote_id and sb.count("create") == 1


# ------------------------------------------------------- account endpoints
def test_cancel_queue_user_history(track):
    with MVSepSandbox(scale=SCALE, queue_seconds=1e6) as sb:
        p = make("mvsep:bs_roformer", sb)
        h = _create_raw(sb, track, 40)
        assert sb.ledger.charged() == 1.0
        q = p.queue()
        assert q["queue"]["premium"] == 1 and q["plan"] == {"plan": "premium", "queue": 1}
        user = p.user()
        assert user["premium_enabled"] == 1 and user["current_queue"] == 1 and "api_token" not in user
        assert [x["hash"] for x in p.history()] == [h]
        assert p.cancel(h) is True
        assert sb.ledger.charged() == 0.0 and p.credits() == sb.initial_credits
        st = p.state_from(httpx.get(sb.base_url + "/separation/get", params={"hash": h}).json())
        assert st.status == "failed" and "cancelled" in st.error_message
        assert p.cancel(h) is False


def test_missing_token_names_the_variable(monkeypatch, track):
    monkeypatch.delenv("MVSEP_API_TOKEN", raising=False)
    p = P.create("mvsep:bs_roformer")
    assert "MVSEP_API_TOKEN" in str(p.status())
    with pytest.raises(ProviderUnavailable, match="MVSEP_API_TOKEN"):
        p.separate(track)


# ------------------------------------------------------------------ secrets
def test_token_never_in_logs_or_exceptions(track, caplog):
    good, bad = "mvsep-SECRET-good-token-4711", "mvsep-SECRET-bad-token-0815"
    caplog.set_level(logging.DEBUG)
    with MVSepSandbox(scale=SCALE, api_keys=[good]) as sb:
        sb.register_track(track)
        p = make("mvsep:bs_roformer", sb, api_key=good, download_mirror=True)
        assert good not in repr(p) and good not in str(p.provenance())
        p.separate(track)  # GETs with api_token in the query (user, history, mirror=1)
        assert sb.count("user") == 1
        p.history()
        wrong = make("mvsep:bs_roformer", sb, api_key=bad, plan="premium")
        with pytest.raises(ProviderUnavailable) as ei:
            wrong.separate(track)
        with pytest.raises(ProviderUnavailable, match="MVSEP_API_TOKEN") as ei2:
            wrong.user()  # app/* answer a bad token with HTTP 400
    text = caplog.text + str(ei.value) + repr(ei.value) + str(ei2.value) + str(ei.value.details)
    assert "401" in str(ei.value) and "api_key" in str(ei.value)
    assert "api_token=" in caplog.text  # the query parameter was logged …
    assert good not in text and bad not in text  # … but never its value


# ---------------------------------------------------------- quality checker
def test_quality_checker_round_trip():
    with MVSepSandbox(scale=0.001, qc_seconds=600.0) as sb:
        p = make("mvsep", sb)
        qc = QualityChecker(p)
        songs = sb.qc_dataset(0)
        perfect = build_zip({s: {k: v[k] for k in ("vocals", "instrum")} for s, v in songs.items()}, 44100)
        lazy = build_zip({s: {"vocals": v["mixture"], "instrum": v["mixture"]} for s, v in songs.items()}, 44100)
        e1 = qc.add(perfect, algo_name="stemlab oracle", main_text="references (upper bound)", password="pw-one-123",
                    dataset="synth")
        assert qc.entry(e1["id"])["proc"] == 0  # queued until qc_seconds pass
        e2 = qc.add(lazy, algo_name="stemlab mixture", main_text="mixture as every stem", password="pw-two-456")
        assert e2["id"] == e1["id"] + 1 and str(e1["id"]) in e1["link"]
        s1 = qc.wait_scored(e1["id"], interval=60.0)
        s2 = qc.wait_scored(e2["id"], interval=60.0)
        assert s1["msg"] == "OK" and s1["dataset_name"] == "Synth"
        assert s1["sdr_vocals"] > 60.0  # 16-bit copies of the references
        # mixture as vocals: SDR = 10·log10(|v|²/|instrum|²), computed here independently
        want = np.mean([sdr(v["vocals"], v["mixture"]) for v in songs.values()])
        assert s2["sdr_vocals"] == pytest.approx(want, abs=0.05)
        board = qc.leaderboard("synth", sort="sdr_vocals")
        assert [r["id"] for r in board["data"]] == [e1["id"], e2["id"]]
        assert board["sortables"] == ["sdr_vocals", "sdr_instrum"]
        assert [r["id"] for r in qc.leaderboard(0, algo_name_filter="MIXTURE")["data"]] == [e2["id"]]
        assert {e["id"] for e in qc.queue()} == {e1["id"], e2["id"]}
        with pytest.raises(ProviderRejected, match="Wrong password") as ei:
            qc.delete(e1["id"], password="pw-two-456")
        assert "pw-two-456" not in str(ei.value)
        assert qc.delete(e1["id"], password="pw-one-123") is True
        with pytest.raises(ProviderRejected):
            qc.entry(e1["id"])
        assert [r["id"] for r in qc.leaderboard("synth")["data"]] == [e2["id"]]


def test_quality_checker_refusals():
    with MVSepSandbox(scale=0.001) as sb:
        qc = QualityChecker(make("mvsep", sb))
        with pytest.raises(ConfigError, match="password"):
            qc.add(b"PK\x03\x04", algo_name="a", main_text="b", password="")
        with pytest.raises(ConfigError, match="not a zip"):
            qc.add(b"RIFF....", algo_name="a", main_text="b", password="pw-xyz-789")
        bad = QualityChecker(make("mvsep", sb, api_key="not-a-valid-token-999"))
        with pytest.raises(ProviderUnavailable, match="401"):
            bad.add(build_zip({"song_000": {"vocals": np.zeros((2, 10))}}, 44100), algo_name="a", main_text="b",
                    password="pw-xyz-789")
        e = qc.add(build_zip({"song_000": {"vocals": np.zeros((2, 100))}}, 44100), algo_name="partial",
                   main_text="missing stems", password="pw-xyz-789", dataset=0)
        scored = qc.wait_scored(e["id"], interval=30.0)
        assert scored["proc"] == 1 and scored["msg"].startswith("Missing file")
        assert qc.leaderboard(0)["data"] == []  # failed entries are not ranked
    assert dataset_type("multi") == 1 and dataset_type("11") == 11
    with pytest.raises(ConfigError, match="synth"):
        dataset_type("karaoke")


def test_public_url_input_is_sent_as_url_not_uploaded(track):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        url = sb.host_file(encode_bytes(track.mixture, track.sample_rate, "wav"), "public_song.wav", "audio/wav")
        p = make("mvsep:bs_roformer", sb)
        sep = p.separate(track.replace(metadata={"url": url}))
        (job,) = sb.ledger.jobs.values()
        assert job.filename == "public_song.wav" and sep.provenance["input"] == "url"
        assert "upload_bytes" not in sep.provenance
        assert sdr(track.references["vocals"], sep.stems["vocals"]) > sdr(track.references["vocals"], track.mixture)
        # get-remote (documented for url jobs) points at the finished separation
        r = httpx.get(sb.base_url + "/separation/get-remote", params={"hash": job.id}).json()
        assert r["status"] == "done" and r["data"]["hash"] == job.id and job.id in r["data"]["link"]


def test_algorithm_list_outage_falls_back_to_the_snapshot(track, caplog):
    with MVSepSandbox(scale=SCALE, faults="algorithms:http_503*9") as sb:
        sb.register_track(track)
        p = make("mvsep:demucs4ht?model=htdemucs_ft", sb, max_attempts=2)
        sep = p.separate(track)
        assert sorted(sep.stems) == ["bass", "drums", "other", "vocals"]
        assert sb.count("algorithms") == 2  # one request + one retry, then the snapshot
        assert "shipped snapshot" in caplog.text
        assert sb.ledger.jobs[sep.remote_id].extra["add_opts"] == {"add_opt1": "0"}
        p.separate(track)
        assert sb.count("algorithms") == 2  # the fallback is remembered, not re-asked per job
