"""Official SDK conformance: ``aistemsplitter==0.1.1`` (the live wire format)
runs its documented flows against our sandbox *unmodified* — only
``base_url`` changes: credits, upload (reservation → raw POST to the
storage URL → ``uploaded_file`` input), create (with Idempotency-Key),
wait, list, download, and its error shapes. A sandbox only stemlab's own
client understands would prove nothing.

SDK 0.1.1 has no list method; the list flow goes through the SDK's own
request/envelope machinery (``client._request``), as a user dropping to
"raw HTTP" with the SDK's auth would."""

from __future__ import annotations

import io

import numpy as np
import pytest

import stemlab.datasets as D
from stemlab.audio import decode_bytes, encode_bytes
from stemlab.sandbox import AIStemSplitterSandbox

from ._stemcheck import aligned_sdr

sdk = pytest.importorskip("aistemsplitter", reason="official SDK (dev extra: aistemsplitter==0.1.1) not installed")
requests = pytest.importorskip("requests")

FOUR = ("vocals", "drums", "bass", "other")


def test_sdk_version_is_the_pinned_one():
    from importlib.metadata import version

    assert version("aistemsplitter") == "0.1.1"


@pytest.fixture(scope="module")
def excerpt():
    return next(iter(D.load("demo", tracks=1, seconds=3.0)))


@pytest.fixture()
def sandbox(excerpt):
    with AIStemSplitterSandbox() as sb:
        sb.register_track(excerpt)
        yield sb


def _client(sb, key=None):
    return sdk.AIStemSplitter(key or sb.api_key, base_url=sb.base_url)


def _download_like_the_readme(url: str) -> bytes:
    """The seed's hello world: ``requests.get(url, stream=True)`` + iter_content."""
    buf = io.BytesIO()
    with requests.get(url, stream=True) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=8192):
            buf.write(chunk)
    return buf.getvalue()


def test_credits_upload_create_wait_list_download(sandbox, excerpt):
    sb = sandbox
    client = _client(sb)
    credits = client.get_credits()
    assert credits == {"balance": sb.initial_credits, "unit": "seconds"}

    # README "Uploading local audio"
    wav = encode_bytes(excerpt.mixture, excerpt.sample_rate, "wav")
    upload = client.upload_audio(wav, filename="song.wav", content_type="audio/wav")
    assert upload["uploadId"].startswith("upl_") and upload["fileUrl"] and upload["storageKey"].endswith("/song.wav")
    assert upload["input"] == {"type": "uploaded_file", "uploadId": upload["uploadId"],
                               "fileUrl": upload["fileUrl"], "storageKey": upload["storageKey"]}
    assert upload["expiresAt"].endswith("Z")

    split = client.create_split({"input": upload["input"], "stemModel": "6s"}, idempotency_key="sdk-flow-0001")
    assert split["id"].startswith("split_") and split["status"] == "queued" and split["creditsUsed"] == 3
    again = client.create_split({"input": upload["input"], "stemModel": "6s"}, idempotency_key="sdk-flow-0001")
    assert again["id"] == split["id"]  # replayed, not charged again

    result = client.wait_for_split(split["id"], timeout=120)
    assert result["status"] == "succeeded" and result["error"] is None
    assert set(result["stems"]) == {"vocals", "drums", "bass", "other", "guitar", "piano"}
    assert result["stemModel"] == "6s" and result["durationSeconds"] == pytest.approx(3.0, abs=0.01)
    for k in ("id", "filename", "creditsUsed", "createdAt", "updatedAt"):
        assert k in result

    # download each stem the way the seed's hello world does; they are real separations
    refs = excerpt.references
    for name in FOUR:
        audio, sr = decode_bytes(_download_like_the_readme(result["stems"][name]))
        assert sr == excerpt.sample_rate and audio.shape == excerpt.mixture.shape
        assert aligned_sdr(audio, refs[name]) > 3.0

    listed = client._request("GET", "/audio/splits?limit=5")
    assert [s["id"] for s in listed["items"]] == [split["id"]]
    assert client.get_credits()["balance"] == sb.initial_credits - 3
    assert sb.ledger.charged() == 3 and sb.ledger.duplicate_charges() == {}


def test_direct_url_and_seed_model_names(sandbox, excerpt):
    sb = sandbox
    client = _client(sb)
    url = sb.host_file(encode_bytes(excerpt.mixture, excerpt.sample_rate, "wav"), "song.wav", "audio/wav")
    split = client.create_split({"input": {"type": "direct_url", "url": url}, "stemModel": "htdemucs_ft"})
    result = client.wait_for_split(split["id"], timeout=120)
    assert result["status"] == "succeeded" and set(result["stems"]) == set(FOUR)
    assert result["filename"] == "song.wav"


def test_failed_job_and_error_shapes(excerpt):
    with AIStemSplitterSandbox(faults="job:fail(code=INVALID_AUDIO,message=Unsupported codec)",
                               initial_credits=2) as sb:
        sb.register_track(excerpt)
        client = _client(sb)
        # wrong key → the SDK's error object with the service's code
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            _client(sb, "ast_test_not_a_key").get_credits()
        assert (ei.value.status_code, ei.value.code) == (401, "UNAUTHORIZED")
        # validation error
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            client.create_split({"input": {"type": "ftp", "url": "x"}})
        assert (ei.value.status_code, ei.value.code) == (422, "VALIDATION_ERROR")
        # not enough credits (balance 2, input 3 s)
        wav = encode_bytes(excerpt.mixture, excerpt.sample_rate, "wav")
        up = client.upload_audio(wav, filename="song.wav", content_type="audio/wav")
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            client.create_split({"input": up["input"], "stemModel": "6s"})
        assert (ei.value.status_code, ei.value.code) == (402, "INSUFFICIENT_CREDITS")
        # a job that fails: wait returns it with {code, message}
        short = encode_bytes(excerpt.mixture[:, : excerpt.sample_rate], excerpt.sample_rate, "wav")
        up = client.upload_audio(short, filename="one.wav", content_type="audio/wav")
        split = client.create_split({"input": up["input"], "stemModel": "6s"})
        res = client.wait_for_split(split["id"], timeout=120)
        assert res["status"] == "failed" and res["error"] == {"code": "INVALID_AUDIO", "message": "Unsupported codec"}
        assert res["stems"] == {}
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            client.get_split("split_does_not_exist")
        assert (ei.value.status_code, ei.value.code) == (404, "NOT_FOUND")


def test_upload_worker_errors_use_the_flat_shape(excerpt):
    """The storage worker answers errors flat (``{"success": false, "error":
    CODE, "message"}``); the SDK reads the code from there — also for
    injected faults."""
    with AIStemSplitterSandbox(faults="upload:http_503") as sb:
        client = _client(sb)
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            client.upload_audio(b"RIFF0000WAVE", filename="x.wav", content_type="audio/wav")
        assert (ei.value.status_code, ei.value.code) == (503, "SERVICE_UNAVAILABLE")
        # and the API endpoints keep the nested envelope for the same fault
        sb.faults.add("credits:http_503")
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            client.get_credits()
        assert (ei.value.status_code, ei.value.code) == (503, "SERVICE_UNAVAILABLE")


def test_stemlab_client_passes_the_same_flows(sandbox, excerpt):
    """stemlab's provider against the same sandbox instance: same credits,
    same job list, comparable stems."""
    from stemlab.providers import create

    sb = sandbox
    p = create("aistemsplitter:htdemucs_6s", **sb.provider_options(), model_names="sdk")
    sep = p.separate(excerpt)
    sdk_view = _client(sb).get_split(sep.remote_id)
    assert sdk_view["status"] == "succeeded" and sdk_view["stemModel"] == "6s"
    assert p.get_credits() == _client(sb).get_credits()
    assert [j.remote_id for j in p.list_splits()] == [
        s["id"] for s in _client(sb)._request("GET", "/audio/splits")["items"]
    ]
    # the SDK-downloaded and the stemlab-decoded vocals are the same audio
    audio, _ = decode_bytes(_download_like_the_readme(sdk_view["stems"]["vocals"]))
    assert np.allclose(audio, sep.stems["vocals"], atol=1e-6)


def test_the_sdk_needs_the_envelope():
    """Why the sandbox defaults to the envelope: SDK 0.1.1 rejects the seed's
    bare JSON (a 200 without ``success``/``data`` is an HTTP_ERROR), while
    stemlab's client reads both (tests/remote/test_aistemsplitter.py)."""
    with AIStemSplitterSandbox(envelope=False) as sb:
        with pytest.raises(sdk.AIStemSplitterError) as ei:
            _client(sb).get_credits()
        assert (ei.value.status_code, ei.value.code) == (200, "HTTP_ERROR")
        assert ei.value.details == {"balance": sb.initial_credits, "unit": "seconds"}
