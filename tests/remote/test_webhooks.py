"""Webhook signatures (``aistemsplitter-signature: t=…,v1=…``, HMAC-SHA256
of ``"<t>.<body>"``): constant-time comparison, absent/malformed/bad
signatures and replays outside the tolerance refused, duplicate deliveries
idempotent — unit level and end to end (sandbox → receiver → provider)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

import stemlab.datasets as D
from stemlab.errors import ConfigError
from stemlab.providers import create
from stemlab.sandbox import AIStemSplitterSandbox
from stemlab.services._remote import webhooks as W
from stemlab.services._remote.webhooks import SIGNATURE_HEADER, InvalidWebhook, WebhookReceiver, WebhookVerifier, sign

SECRET = "whsec_test_0123456789abcdef"
NOW = 1_800_000_000.0


def _event(i: int = 1) -> bytes:
    return json.dumps({"id": f"evt_{i:04d}", "type": "split.succeeded", "data": {"id": f"split_{i}"}}).encode()


def _verifier(**kw) -> WebhookVerifier:
    return WebhookVerifier(SECRET, now=lambda: NOW, **kw)


def test_sign_matches_the_documented_scheme():
    body = _event()
    value = sign(SECRET, body, timestamp=int(NOW))
    mac = hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + body, hashlib.sha256).hexdigest()
    assert value == f"t={int(NOW)},v1={mac}"
    ev = _verifier().verify({"AIStemSplitter-Signature": value}, body)  # header name is case-insensitive
    assert ev["id"] == "evt_0001"


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(W.hmac, "compare_digest", spy)
    body = _event()
    good = sign(SECRET, body, timestamp=int(NOW))
    _verifier().verify({SIGNATURE_HEADER: good}, body)
    assert len(calls) == 1
    with pytest.raises(InvalidWebhook):
        _verifier().verify({SIGNATURE_HEADER: f"t={int(NOW)},v1={'0' * 64}"}, body)
    assert len(calls) == 2  # the wrong signature was compared with compare_digest too, not ==


@pytest.mark.parametrize("headers,reason", [
    ({}, "absent"),
    ({SIGNATURE_HEADER: ""}, "absent"),
    ({SIGNATURE_HEADER: "v1=abc"}, "malformed"),
    ({SIGNATURE_HEADER: "t=notanumber,v1=abc"}, "malformed"),
    ({SIGNATURE_HEADER: "sha256=deadbeef"}, "malformed"),
])
def test_absent_or_malformed_signatures_are_refused(headers, reason):
    with pytest.raises(InvalidWebhook) as ei:
        _verifier().verify(headers, _event())
    assert ei.value.reason == reason


def test_bad_signatures_are_refused():
    body = _event()
    v = _verifier()
    wrong_secret = sign("whsec_someone_else_000", body, timestamp=int(NOW))
    tampered = body.replace(b"succeeded", b"failed")
    moved_t = sign(SECRET, body, timestamp=int(NOW) - 1).replace(f"t={int(NOW) - 1}", f"t={int(NOW)}")
    cases = {"wrong secret": (wrong_secret, body),
             "tampered body": (sign(SECRET, body, timestamp=int(NOW)), tampered),
             "timestamp changed": (moved_t, body)}
    for name, (hdr, b) in cases.items():
        with pytest.raises(InvalidWebhook) as ei:
            v.verify({SIGNATURE_HEADER: hdr}, b)
        assert ei.value.reason == "mismatch", name
    # secret rotation: any matching v1 entry passes
    good = sign(SECRET, body, timestamp=int(NOW)).split("v1=")[1]
    assert v.verify({SIGNATURE_HEADER: f"t={int(NOW)},v1={'f' * 64},v1={good}"}, body)["id"] == "evt_0001"


@pytest.mark.parametrize("offset,ok", [(-301, False), (-299, True), (299, True), (301, False), (-86400, False)])
def test_replays_outside_the_tolerance_are_refused(offset, ok):
    body = _event()
    hdr = sign(SECRET, body, timestamp=int(NOW + offset))
    v = _verifier(tolerance=300)
    if ok:
        assert v.verify({SIGNATURE_HEADER: hdr}, body)["id"] == "evt_0001"
    else:
        with pytest.raises(InvalidWebhook) as ei:
            v.verify({SIGNATURE_HEADER: hdr}, body)
        assert ei.value.reason == "stale" and "tolerance 300 s" in str(ei.value)


def test_duplicates_are_idempotent():
    rec = WebhookReceiver(_verifier())
    body = _event(7)
    hdr = {SIGNATURE_HEADER: sign(SECRET, body, timestamp=int(NOW))}
    rec.handle(hdr, body)
    with pytest.raises(InvalidWebhook) as ei:  # the same delivery again (service retry or attacker replay)
        rec.handle(hdr, body)
    assert ei.value.reason == "replay"
    # re-signed later with a fresh timestamp: same event id → still a duplicate
    with pytest.raises(InvalidWebhook):
        rec.handle({SIGNATURE_HEADER: sign(SECRET, body, timestamp=int(NOW) + 5)}, body)
    assert len(rec.events) == 1 and rec.rejected == ["replay", "replay"]
    rec.handle({SIGNATURE_HEADER: sign(SECRET, _event(8), timestamp=int(NOW))}, _event(8))
    assert [e["id"] for e in rec.events] == ["evt_0007", "evt_0008"]


def test_secret_from_env_and_missing_secret(monkeypatch):
    monkeypatch.delenv("AISTEMSPLITTER_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError) as ei:
        WebhookVerifier()
    assert "AISTEMSPLITTER_WEBHOOK_SECRET" in str(ei.value)
    monkeypatch.setenv("AISTEMSPLITTER_WEBHOOK_SECRET", "whsec_from_env_987654321")
    v = WebhookVerifier(now=lambda: NOW)
    body = _event()
    assert v.verify({SIGNATURE_HEADER: sign("whsec_from_env_987654321", body, timestamp=int(NOW))}, body)
    assert "whsec_from_env_987654321" not in repr(v)


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def excerpt():
    return next(iter(D.load("demo", tracks=1, seconds=3.0)))


@pytest.mark.parametrize("fault,statuses,rejected", [
    (None, [200], []),
    ("webhook:webhook_duplicate", [200, 400], ["replay"]),
    ("webhook:webhook_bad_signature", [400], ["mismatch"]),
    ("webhook:webhook_missing", [], []),
])
def test_sandbox_webhooks_end_to_end(excerpt, fault, statuses, rejected):
    """The sandbox POSTs signed events to a local receiver; the provider's
    polls are cut short by a good event; duplicates and forgeries are
    refused; a missing webhook is covered by polling. Never a second charge."""
    with AIStemSplitterSandbox(faults=fault) as sb, \
            WebhookReceiver(WebhookVerifier(sb.webhook_secret)) as rec:
        sb.register_track(excerpt)
        p = create("aistemsplitter", **sb.provider_options(), webhook_receiver=rec,
                   poll_initial=30.0, poll_interval=30.0, poll_max_interval=30.0)
        sep = p.separate(excerpt)
        assert sep.stems.names == ("vocals", "drums", "bass", "other")
        # the sandbox posted after the job finished; wait (bounded) for the deliveries to land
        import time

        deadline = time.monotonic() + 10
        while len(sb.deliveries) < max(1, len(statuses)) and time.monotonic() < deadline:
            time.sleep(0.02)
        got = [st for _, _, st in sb.deliveries]
        assert got == (statuses or [-1])
        assert rec.rejected == rejected
        good = [e for e in rec.events if e["data"]["id"] == sep.remote_id]
        assert len(good) == (1 if 200 in statuses else 0)
        if good:
            assert good[0]["type"] == "split.succeeded" and set(good[0]["data"]["stems"]) == set(sep.stems.names)
        assert sb.ledger.charged() == 3.0 and sb.ledger.duplicate_charges() == {}
        # the receiver refuses unsigned posts over HTTP as well
        r = httpx.post(rec.url, content=b'{"id":"evt_x"}')
        assert r.status_code == 400 and r.json() == {"ok": False, "error": "absent"}
