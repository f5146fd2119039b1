"""Dango vocal remover: stemlab's provider against the offline emulator
(real HTTP on 127.0.0.1, scaled clock), and the emulator's own rules."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httpx
import numpy as np
import pytest

from stemlab.errors import (
    ConfigError,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderUnavailable,
)
from stemlab.providers import NullJournal, create
from stemlab.providers.base import check_output_stems
from stemlab.services.dango.catalog import STYLES
from stemlab.services.dango.pricing import points_for_seconds
from stemlab.services.dango.provider import Dango
from stemlab.services.dango.sandbox import MSG_NO_DOWNLOADS, MSG_TOO_LONG, DangoSandbox
from stemlab.types import Track

SCALE = 0.005  # 200 virtual seconds per real second


@pytest.fixture(scope="module")
def demo_track() -> Track:
    """A 3-s excerpt of a demo song, with references."""
    import scipy.signal  # noqa: F401 - imported here, not in the sandbox's worker mid-test (seconds)

    import stemlab.datasets as D

    return list(D.load("demo", tracks=1, seconds=3.0))[0]


def _synthetic(name: str, seconds: float, sr: int = 16000, seed: int = 0) -> Track:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    vocals = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))[None].repeat(2, 0)
    acc = 0.2 * rng.standard_normal((2, t.size))
    return Track.from_arrays(
        name, None, sr, {"vocals": vocals.astype(np.float32), "accompaniment": acc.astype(np.float32)}
    )


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    r, e = ref[..., :n], est[..., :n]
    return float(10 * np.log10(np.sum(r ** 2) / max(np.sum((r - e) ** 2), 1e-12)))


def _sandbox(track: Track | None = None, **kw) -> DangoSandbox:
    kw.setdefault("scale", SCALE)
    sb = DangoSandbox(**kw).start()
    if track is not None:
        sb.register_track(track)
    return sb


def test_end_to_end_demo_excerpt(demo_track: Track, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sb = _sandbox(demo_track, scale=0.02)  # coarser clock: real latencies distort the poll timings less
    try:
        p = create("dango:vocals", **sb.provider_options())
        assert p.style.code == 9 and p.id == "dango:vocals"
        sep = p.separate(demo_track)
    finally:
        sb.stop()
    # stems: FLAC (lossless upload → lossless download), sample-exact length
    check_output_stems(sep, p.stems, demo_track.num_samples, p.id)  # the provider contract's output check
    assert sep.stems.names == ("vocals", "accompaniment")
    assert sep.stems.sample_rate == demo_track.sample_rate
    assert sep.stems.num_samples == demo_track.num_samples
    assert sep.provenance["output"]["format"] == "flac"
    refs = demo_track.references
    acc_ref = refs.sum([n for n in refs.names if n != "vocals"])
    mix = demo_track.mixture
    # really separated: far better than returning the mixture
    assert _sdr(refs["vocals"], sep.stems["vocals"]) > _sdr(refs["vocals"], mix) + 5
    assert _sdr(acc_ref, sep.stems["accompaniment"]) > _sdr(acc_ref, mix) + 3
    # the emulator's ledger: one upload, one job, 12 free points, 2 of 7 downloads
    (mid,) = sb.ledger.jobs
    assert sep.remote_id == mid and sb.channels[next(iter(sb.channels))].style == 9
    assert [s for _, _, s in sb.upload_log] == [204] and len(sb.objects) == 1
    assert sb.points_charged("free") == 12 and sb.points_charged("paid") == 0
    assert (sep.cost.credits, sep.cost.usd, sep.cost.credit_unit) == (12, 0, "dango_points") and not sep.cost.estimated
    assert sb.downloads_used(mid) == 2 and sep.provenance["downloads_left"] == 5
    # polling schedule and QPS as the docs ask
    first = sb.status_log[0][1] - sb.ledger.jobs[mid].created_at
    assert 40.0 <= first <= 60.0, first
    ((_, batcher),) = p._batchers.values()
    sent = [t for t, _ in batcher.sent]  # the client's own view: every status request ≥ 5 s apart
    assert len(sent) == len(sb.status_log) >= 2 and np.diff(sent).min() >= 5.0
    assert sb.early_polls == [] and sb.qps_violations == []  # the server's view (1-s tolerance)
    assert {"upload", "processing", "download"} <= set(sep.timings)
    # the key never shows
    assert "stemlab.remote" in {r.name for r in caplog.records}
    assert sb.api_key not in caplog.text and sb.api_key not in repr(p) and sb.api_key not in str(p.options)


def test_four_stems_mp3_zip_with_encoder_delay(demo_track: Track) -> None:
    sb = _sandbox(demo_track)
    try:
        p = create("dango:4stems?format=mp3", **sb.provider_options())
        sep = p.separate(demo_track)
    finally:
        sb.stop()
    assert sep.stems.names == ("vocals", "drums", "bass", "other")
    assert sep.provenance["output"]["format"] == "mp3"
    assert next(iter(sb.channels.values())).style == 12
    (mid,) = sb.ledger.jobs
    assert [(e, i) for m, e, i, _, new in sb.download_log if new] == [("mp3", "4stems")]
    assert sb.downloads_used(mid) == 1
    # MP3 encoder delay: the stems start late; the best lag is ~1105 samples
    ref, est = demo_track.references["drums"].mean(0), sep.stems["drums"].mean(0)
    lags = range(0, 2400, 5)
    best = max(lags, key=lambda k: float(np.dot(ref[: ref.size - 2400], est[k: k + ref.size - 2400])))
    assert 1000 <= best <= 2300, best
    assert sep.stems.num_samples >= demo_track.num_samples


def test_refuses_over_12_minutes_before_uploading() -> None:
    def boom() -> np.ndarray:
        raise AssertionError("the mixture must not even be decoded")

    long = Track(name="long", sample_rate=44100, duration=12 * 60 + 1.0, load_mixture=boom)
    sb = _sandbox()
    try:
        p = create("dango", **sb.provider_options())
        with pytest.raises(ProviderRejected, match=r"721\.0 s, above the limit of 720 s"):
            p.separate(long)
        assert p.estimate_cost(12 * 60.0).credits == 120
    finally:
        sb.stop()
    assert sb.count("channel") == 0 and sb.count("upload") == 0 and sb.count("result") == 0
    assert sb.objects == {} and sb.ledger.jobs == {} and sb.ledger.charges == []


def _oss_form(ch: dict) -> dict:
    """The OSS PostObject form fields for an upload channel, as the client sends them."""
    return {"x-oss-forbid-overwrite": "true", "key": ch["key"], "OSSAccessKeyId": ch["OSSAccessKeyId"],
            "policy": ch["policy"], "Signature": ch["sign"]}


def test_sandbox_refuses_long_upload_and_keeps_channel_single_use() -> None:
    """The emulator enforces the 12-minute rule itself (for clients that do not)."""
    from stemlab.audio import encode_bytes

    sr = 4000
    audio = np.zeros((1, int(721 * sr)), dtype=np.float32)
    audio[0, ::97] = 0.1
    data = encode_bytes(audio, sr, "flac")
    with _sandbox() as sb:
        h = {"Authorization": f"Bearer {sb.api_key}"}
        with httpx.Client(base_url=sb.base_url, headers=h) as c:
            ch = c.post("/vocal-remover/upload/channel", json={"filename": "long.flac", "style": 9}).json()["data"]
            form = _oss_form(ch)
            assert c.post(ch["url"], data=form, files={"file": ("long.flac", data)}).status_code == 204
            r1 = c.post(f"/vocal-remover/upload/{ch['channel']}/result").json()
            r2 = c.post(f"/vocal-remover/upload/{ch['channel']}/result").json()
    assert r1["code"] == -1 and r1["message"] == MSG_TOO_LONG
    assert r2["code"] == -100  # a channel is used once, even when refused
    assert sb.ledger.jobs == {} and sb.ledger.charges == []


def test_object_store_checks_the_form_like_oss() -> None:
    with _sandbox() as sb:
        h = {"Authorization": f"Bearer {sb.api_key}"}
        with httpx.Client(base_url=sb.base_url, headers=h) as c:
            ch = c.post("/vocal-remover/upload/channel", json={"filename": "a.mp3", "style": 5}).json()["data"]
            good = _oss_form(ch)
            f = {"file": ("a.mp3", b"\xff\xfb" + bytes(500))}

            def post(form: dict, files=f) -> httpx.Response:
                return httpx.post(ch["url"], data=form, files=files)  # no auth: OSS uses the policy

            no_forbid = {k: v for k, v in good.items() if k != "x-oss-forbid-overwrite"}
            r = post(no_forbid)
            assert r.status_code == 403 and b"x-oss-forbid-overwrite" in r.content
            assert post({**good, "Signature": base64.b64encode(b"x" * 20).decode()}).status_code == 403
            assert b"SignatureDoesNotMatch" in post({**good, "Signature": "AAAA"}).content
            assert b"InvalidAccessKeyId" in post({**good, "OSSAccessKeyId": "LTAIwrong"}).content
            assert post({**good, "key": "in/other"}).status_code == 403  # policy pins the key
            missing = {k: v for k, v in good.items() if k != "policy"}
            assert post(missing).status_code == 400
            # "file" must be the last form field
            body = b"".join(
                [
                    b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\nxx\r\n",
                    *[
                        f"--B\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                        for k, v in good.items()
                    ],
                    b"--B--\r\n",
                ]
            )
            r = httpx.post(ch["url"], content=body, headers={"Content-Type": "multipart/form-data; boundary=B"})
            assert r.status_code == 400 and b"last" in r.content
            # the size limit of the policy
            policy = json.loads(base64.b64decode(ch["policy"]))
            assert ["content-length-range", 0, 104857600] in policy["conditions"]
            assert post(good).status_code == 204
            r = post(good)  # never overwritten
            assert r.status_code == 409 and b"FileAlreadyExists" in r.content
    assert list(sb.objects) == [ch["key"]] and sb.objects[ch["key"]] == b"\xff\xfb" + bytes(500)


def test_download_cap_and_url_expiry_in_the_sandbox(demo_track: Track) -> None:
    sb = _sandbox(demo_track, scale=0.01)
    try:
        p = create("dango", **sb.provider_options(), download_cache=False)
        sep = p.separate(demo_track)
        mid = sep.remote_id
        sb.url_ttl = 5.0  # virtual seconds (50 ms): URLs issued from now on expire quickly
        h = {"Authorization": f"Bearer {sb.api_key}"}
        with httpx.Client(base_url=sb.base_url, headers=h) as c:
            def ask() -> dict:
                return c.post(f"/vocal-remover/{mid}/download/default/mp3/vocals").json()

            a, b = ask(), ask()  # again within the URL's lifetime: same URL, no download used
            assert a["data"]["url"] == b["data"]["url"] and a["data"]["download"] == b["data"]["download"] == 4
            time.sleep(0.08)  # 8 virtual seconds: the URL expired
            r = httpx.get(a["data"]["url"])
            assert r.status_code == 403 and b"expired" in r.content
            left = [ask()["data"]["download"]]  # a new URL: one more download used
            while left[-1] > 0:
                time.sleep(0.08)
                left.append(ask()["data"]["download"])
            time.sleep(0.08)
            last = ask()
        assert left == [3, 2, 1, 0]
        assert last["code"] == -1 and last["message"] == MSG_NO_DOWNLOADS
        assert sb.downloads_used(mid) == 7
    finally:
        sb.stop()


def _separate_through_faults(track: Track, faults: str, **options):
    """One separation through a sandbox with ``faults``; returns the (stopped)
    sandbox, for its logs and ledger, and the separation."""
    sb = _sandbox(track, faults=faults)
    try:
        return sb, create("dango", **sb.provider_options(), **options).separate(track)
    finally:
        sb.stop()


def test_expired_url_is_refreshed_via_status(demo_track: Track) -> None:
    sb, sep = _separate_through_faults(demo_track, "download:expire")
    mid = sep.remote_id
    assert sb.faults_fired() == {"download:expire*1": 1}
    assert sep.provenance["url_refreshes"] == 1
    # the URL was asked for again after a status check; within 20 minutes that is free
    urls = [(i, new) for m, e, i, t, new in sb.download_log]
    assert urls == [("vocals", True), ("vocals", False), ("instrumental", True)]
    first_url_t = sb.download_log[0][3]
    assert any(t > first_url_t for _, t in sb.status_log)
    assert sb.downloads_used(mid) == 2 and sep.stems.num_samples == demo_track.num_samples


def test_downloads_once_then_cache_never_downloads_again(demo_track: Track, tmp_path) -> None:
    sb = _sandbox(demo_track)
    try:
        p = create("dango", **sb.provider_options(), download_cache=str(tmp_path))
        first = p.separate(demo_track)
        mid = first.remote_id
        n_urls, n_files = len(sb.download_log), sb.count("download")
        assert (n_urls, n_files) == (2, 2)
        # a resumed job (remote id known) neither polls nor downloads: all from the cache
        n_status = len(sb.status_log)
        again = asyncio.run(_resume(p, demo_track, mid))
        assert len(sb.download_log) == n_urls and sb.count("download") == n_files
        assert len(sb.status_log) == n_status and again.provenance["status_from_download_cache"] is True
        assert again.provenance["download_cache_hits"] == 2
        assert np.array_equal(again.stems["vocals"], first.stems["vocals"])
        assert again.cost.credit_unit == "dango_points" and not again.cost.estimated
        assert sb.downloads_used(mid) == 2 and len(sb.ledger.jobs) == 1 and sb.ledger.duplicate_charges() == {}
        assert sorted(x.name for x in (tmp_path / mid).iterdir()) == [
            "flac_instrumental.flac", "flac_vocals.flac", "status.json"]
        # without the cache and with no downloads left: refused before asking for a URL
        sb.ledger.jobs[mid].extra["downloads_left"] = 0
        nocache = create("dango", **sb.provider_options(), download_cache=False)
        with pytest.raises(ProviderOutputError, match="no downloads left"):
            asyncio.run(_resume(nocache, demo_track, mid))
        assert len(sb.download_log) == n_urls
        # past the 30-day retention the service forgets the song; the cache still has it
        sb.retention = 0.0
        with pytest.raises(ProviderOutputError, match=r"expired \(kept 30 days\)"):
            asyncio.run(_resume(nocache, demo_track, mid))
        assert np.array_equal(asyncio.run(_resume(p, demo_track, mid)).stems["vocals"], first.stems["vocals"])
    finally:
        sb.stop()


async def _resume(p: Dango, track: Track, mid: str):
    try:
        return await p.aseparate(track, NullJournal(idempotency_key="k-resume", remote_id=mid))
    finally:
        await p.aclose()


def test_failed_job_raises_with_reason_and_is_refunded(demo_track: Track, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sb = _sandbox(demo_track, faults="job:fail")
    try:
        p = create("dango", **sb.provider_options())
        with pytest.raises(ProviderError) as ei:
            p.separate(demo_track)
    finally:
        sb.stop()
    (mid,) = sb.ledger.jobs
    msg = str(ei.value)
    assert isinstance(ei.value, ProviderRejected)
    assert mid in msg and "processing failed" in msg and "refunded" in msg and demo_track.name in msg
    assert sb.ledger.charges[0].refunded and sb.points_charged("free") == 0
    assert sb.api_key not in msg and sb.api_key not in caplog.text


def test_points_estimate_and_charge() -> None:
    assert points_for_seconds(29.9) == (12.0, 0.0)
    assert points_for_seconds(30.0) == (0.0, 120.0)
    p = Dango(api_key="dango-test-key-123456", usd_per_point=0.01)
    assert (p.estimate_cost(20.0).credits, p.estimate_cost(20.0).usd) == (12.0, 0.0)  # free points
    c = p.estimate_cost(200.0)
    assert (c.credits, round(c.usd, 6), c.credit_unit, c.estimated) == (120.0, 1.2, "dango_points", True)
    assert Dango(api_key="dango-test-key-123456", points_per_song=60).estimate_cost(45.0).credits == 60.0
    # a 40-s song: the sandbox charges its 60-point tier; stemlab reports the service's figure
    track = _synthetic("forty", 40.0, sr=8000)
    sb = _sandbox(track)
    try:
        p = create("dango", **sb.provider_options(), usd_per_point=0.01)
        est = p.estimate_cost(track)
        sep = p.separate(track)
    finally:
        sb.stop()
    assert sb.points_charged("paid") == 60 and sb.points_charged("free") == 0
    assert sb.balance(next(iter(sb.balances)))["paid"] == 100_000 - 60
    assert est.credits == 120 >= sep.cost.credits == 60
    assert not sep.cost.estimated and round(sep.cost.usd, 6) == 0.6
    assert _sdr(track.references["vocals"], sep.stems["vocals"]) > _sdr(track.references["vocals"], track.mixture) + 5


def test_concurrent_jobs_share_batch_status_requests() -> None:
    tracks = [_synthetic(f"song{i}", 4.0, seed=i) for i in range(3)]
    sb = _sandbox(scale=0.02)  # coarser clock: server-side latency distorts poll gaps less
    for t in tracks:
        sb.register_track(t)

    async def run_all(p: Dango):
        try:
            return await asyncio.gather(*(p.aseparate(t) for t in tracks))
        finally:
            await p.aclose()

    try:
        p = create("dango", **sb.provider_options())
        seps = asyncio.run(run_all(p))
    finally:
        sb.stop()
    assert len({s.remote_id for s in seps}) == 3
    sizes = [len(ids) for ids, _ in sb.status_log]
    polls = sum(s.provenance["polls"] for s in seps)
    assert max(sizes) == 3, sizes  # one request asked for all three songs
    assert len(sizes) < polls  # fewer status requests than the jobs' polls
    ((_, batcher),) = p._batchers.values()
    sent = batcher.sent
    assert len(sent) == len(sizes) and np.diff([t for t, _ in sent]).min() >= 5.0  # ≤ 1 request per interval
    assert sb.early_polls == [] and sb.qps_violations == []
    for t, s in zip(tracks, seps):
        assert _sdr(t.references["vocals"], s.stems["vocals"]) > 5


def test_sandbox_enforces_five_qps() -> None:
    with _sandbox(scale=0.05) as sb:
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=sb.base_url,
                                         headers={"Authorization": f"Bearer {sb.api_key}"}) as c:
                return await asyncio.gather(*(c.post("/vocal-remover/" + "0" * 32) for _ in range(9)))

        rs = asyncio.run(burst())
    limited = [r for r in rs if r.status_code == 429]
    assert len(limited) >= 3 and all(r.headers["retry-after"] == "1" for r in limited)
    assert all(r.json()["code"] == -1 for r in rs if r.status_code == 200)  # no such song
    assert len(sb.qps_violations) == len(limited)


def test_client_stays_under_five_qps() -> None:
    """A burst of 12 requests: stemlab's limiter spaces them (no 429);
    without it the sandbox refuses some, and the client waits out
    Retry-After and still gets every answer. (The burst runs at 3/s so that
    scheduling stalls of a loaded test machine cannot bunch requests; the
    default is 4.5/s.)"""
    assert Dango(api_key="dango-test-key-123456").rate_limit == 4.5

    async def burst(p: Dango) -> tuple[float, list[int]]:
        c = p._client()
        try:
            await c.request("POST", "/vocal-remover/" + "0" * 32)  # opens the connection (slow once)
            await p.clock.sleep(1.5)
            t0 = p.clock.now()
            rs = await asyncio.gather(*(c.request("POST", "/vocal-remover/" + "0" * 32) for _ in range(12)))
            return p.clock.now() - t0, [r.json()["code"] for r in rs]
        finally:
            await p.aclose()

    out = {}
    for rate in (3.0, 0):
        with _sandbox(scale=0.5) as sb:  # near real time: connection-setup jitter (~20 ms) stays small
            p = create("dango", **sb.provider_options(), rate_limit=rate)
            out[rate] = (*asyncio.run(burst(p)), len(sb.qps_violations), sb.count("status"))
    took, codes, violations, seen = out[3.0]
    assert codes == [-1] * 12 and violations == 0 and seen == 13 and took >= 11 / 3.0 - 0.1
    took, codes, violations, seen = out[0]
    assert codes == [-1] * 12 and violations >= 1 and seen == 13 + violations


def test_survives_rate_limits_and_lost_paid_answer(demo_track: Track) -> None:
    """429s with Retry-After are waited out; a dropped answer to the paid
    'result' call is reconciled through the status of the channel's id, never
    resent (no second charge)."""
    sb, sep = _separate_through_faults(demo_track, "channel:http_429(retry_after=3)*2;result:drop;status:http_503")
    assert all(n >= 1 for n in sb.faults_fired().values()), sb.faults_fired()
    assert sb.count("result") == 1 and len(sb.ledger.jobs) == 1 and len(sb.ledger.charges) == 1
    assert sep.remote_id in sb.ledger.jobs and sep.stems.names == ("vocals", "accompaniment")


def test_upload_answer_lost_then_overwrite_refused_counts_as_uploaded(demo_track: Track) -> None:
    """The object store stored the file but answered too late; the retried
    upload meets x-oss-forbid-overwrite (409), which after a retry means our
    first attempt landed."""
    sb, sep = _separate_through_faults(demo_track, "upload:delay(seconds=1.5)", timeout=0.5)  # read timeout, real s
    assert [s for _, _, s in sb.upload_log] == [204, 409] and len(sb.objects) == 1
    assert sep.provenance["upload_overwrite_refused_after_retry"] is True
    assert len(sb.ledger.jobs) == 1 and sep.stems.num_samples == demo_track.num_samples


def test_not_enough_points(demo_track: Track) -> None:
    # channel: the service predicts the balance cannot pay any song
    with _sandbox(demo_track, free_points=0, paid_points=0) as sb:
        with pytest.raises(ProviderUnavailable, match=r"not enough points .*code -10"):
            create("dango", **sb.provider_options()).separate(demo_track)
        assert sb.count("upload") == 0 and sb.ledger.jobs == {}
    # result: paid points left, but a 3-s song needs 12 free points
    with _sandbox(demo_track, free_points=0, paid_points=100) as sb:
        with pytest.raises(ProviderUnavailable, match=r"start processing.*not enough points"):
            create("dango", **sb.provider_options()).separate(demo_track)
        assert sb.count("upload") == 1 and sb.ledger.jobs == {} and sb.ledger.charges == []


def test_styles_by_name_and_config_errors() -> None:
    k = {"api_key": "dango-test-key-123456"}
    assert create("dango:vocals?style=v5_harmony", **k).style.code == 11
    assert create("dango:vocals?style=v5_harmony", **k).id == "dango:vocals?style=v5_harmony"
    assert create("dango:vocals?style=9", **k).id == "dango:vocals"  # the default, by number
    assert create("dango:vocals?style=10", **k).config["style"] == "v5_better_vocals"
    assert create("dango:4stems", **k).style.code == 12 and create("dango:4stems?style=0", **k).style.deprecated
    assert {s.code for s in STYLES.values()} == {0, 5, 6, 7, 8, 9, 10, 11, 12}
    with pytest.raises(ConfigError) as ei:
        create("dango:vocals?style=v6", **k)
    assert "v6" in str(ei.value) and "v5_better_vocals (10)" in str(ei.value) and "multitrack_v3 (12)" in str(ei.value)
    with pytest.raises(ConfigError, match="4stems needs a multitrack style"):
        create("dango:4stems?style=v5", **k)
    with pytest.raises(ConfigError, match="format"):
        create("dango?format=wav", **k)
    with pytest.raises(ConfigError, match="unknown variant"):
        create("dango:karaoke", **k)


def test_missing_and_wrong_key(demo_track: Track, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("DANGO_API_KEY", raising=False)
    with pytest.raises(ProviderUnavailable, match=r"\$DANGO_API_KEY"):
        create("dango", base_url="http://127.0.0.1:9").separate(demo_track)
    wrong = "dango-wrong-key-7f3a9c"
    sb = _sandbox()
    try:
        p = create("dango", base_url=sb.base_url, api_key=wrong, clock=sb.clock)
        with pytest.raises(ProviderUnavailable) as ei:
            p.separate(demo_track)
    finally:
        sb.stop()
    assert "authentication failed" in str(ei.value) and "401" in str(ei.value)
    assert wrong not in str(ei.value) and wrong not in repr(ei.value.details) and wrong not in caplog.text
    assert sb.count("channel") == 1 and sb.count("upload") == 0


def test_registered_in_sandbox_pool_and_cli() -> None:
    from stemlab.providers import families
    from stemlab.sandbox import SANDBOXES, SandboxPool, get_sandbox_class

    assert "dango" in families() and "dango" in SANDBOXES
    assert get_sandbox_class("dango") is DangoSandbox
    with SandboxPool(scale=SCALE) as pool:
        opts = pool.options_for("dango")
        assert opts["base_url"].startswith("http://127.0.0.1:") and opts["api_key"] == "dango-sandbox-key-0001"
        assert create("dango", **opts).status().ready
