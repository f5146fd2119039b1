"""Webhook signatures and a small receiver (AI Stem Splitter scheme).

Header ``aistemsplitter-signature: t=<unix seconds>,v1=<hex>`` where ``v1``
is HMAC-SHA256 over ``"<t>.<raw body>"`` keyed with the webhook signing
secret (``$AISTEMSPLITTER_WEBHOOK_SECRET``). Several ``v1=`` entries are
allowed (secret rotation). :class:`WebhookVerifier` checks, in order:

1. the header is present and well formed (``absent`` / ``malformed``);
2. the timestamp is within ``tolerance`` seconds of now (``stale``) — a
   captured request cannot be replayed later;
3. some ``v1`` equals the expected HMAC, compared in constant time with
   :func:`hmac.compare_digest` (``mismatch``);
4. the event (its ``id``, else the signature) was not seen before
   (``replay``) — duplicates delivered by the service are dropped too;
5. the body is a JSON object (``body``).

:class:`WebhookReceiver` serves ``POST /webhooks/aistemsplitter`` on
127.0.0.1 (400 for rejected events, 200 otherwise) and wakes the providers
polling that job: pass it as the provider option ``webhook_receiver`` and
polls are cut short when the event arrives (polling stays on as the safety
net for missing webhooks).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ..._secrets import Secret, get_secret
from ...errors import ConfigError, StemlabError
from .limits import Clock

__all__ = ["SIGNATURE_HEADER", "sign", "parse_signature", "InvalidWebhook", "WebhookVerifier", "WebhookReceiver"]

log = logging.getLogger("stemlab.remote.webhooks")

SIGNATURE_HEADER = "aistemsplitter-signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed at ``timestamp`` (unix seconds)."""
    t = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse_signature(value: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])``; :class:`InvalidWebhook` if malformed."""
    t: int | None = None
    sigs: list[str] = []
    for part in value.split(","):
        k, eq, v = part.strip().partition("=")
        if not eq:
            continue
        if k == "t":
            try:
                t = int(v)
            except ValueError:
                raise InvalidWebhook("malformed", "timestamp t= is not an integer") from None
        elif k == "v1" and v:
            sigs.append(v.strip())
    if t is None or not sigs:
        raise InvalidWebhook("malformed", "expected 't=<unix>,v1=<hex>'")
    return t, sigs


class InvalidWebhook(StemlabError):
    """A webhook request that must be refused. ``reason``: absent,
    malformed, stale, mismatch, replay or body."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"webhook rejected ({reason})" + (f": {detail}" if detail else ""), reason=reason)
        self.reason = reason


class WebhookVerifier:
    """Verifies signed webhook requests and remembers what it accepted.

    ``secret``: the signing secret (str/Secret), default
    ``$AISTEMSPLITTER_WEBHOOK_SECRET``. ``tolerance``: seconds a timestamp
    may differ from now. ``now``: the time source (unix seconds)."""

    def __init__(
        self,
        secret: str | Secret | None = None,
        *,
        tolerance: float = 300.0,
        now: Callable[[], float] = time.time,
        max_remembered: int = 100_000,
    ) -> None:
        s = get_secret("aistemsplitter_webhook", secret)
        if not s:
            raise ConfigError(
                "webhook verifier: no signing secret: set $AISTEMSPLITTER_WEBHOOK_SECRET or pass secret=",
                field="webhook_secret",
            )
        self._secret = s
        self.tolerance = float(tolerance)
        self._now = now
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_remembered
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookVerifier(secret={self._secret!r}, tolerance={self.tolerance:g})"

    def verify(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The event as a dict, or :class:`InvalidWebhook`."""
        value = None
        for k, v in headers.items():
            if k.lower() == SIGNATURE_HEADER:
                value = v
                break
        if not value:
            raise InvalidWebhook("absent", f"no {SIGNATURE_HEADER} header")
        t, sigs = parse_signature(value)
        now = self._now()
        if abs(now - t) > self.tolerance:
            raise InvalidWebhook(
                "stale", f"timestamp {t} is {now - t:+.0f} s from now (tolerance {self.tolerance:g} s)"
            )
        expected = hmac.new(self._secret.get().encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in sigs):
            raise InvalidWebhook("mismatch", "signature does not match the body")
        try:
            event = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InvalidWebhook("body", "body is not JSON") from None
        if not isinstance(event, dict):
            raise InvalidWebhook("body", "body is not a JSON object")
        key = str(event.get("id") or sigs[0])
        with self._lock:
            # forget entries older than the tolerance window: a replay of them is stale anyway
            while self._seen and (
                len(self._seen) > self._max or next(iter(self._seen.values())) < now - 2 * self.tolerance
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                raise InvalidWebhook("replay", f"event {key} was already received")
            self._seen[key] = now
        return event


class WebhookReceiver:
    """A local HTTP endpoint for webhook events (see the module docstring).

    ``with WebhookReceiver(verifier) as rec: provider = create(…,
    webhook_receiver=rec)``; ``rec.url`` is what the service is told."""

    def __init__(self, verifier: WebhookVerifier, *, host: str = "127.0.0.1", port: int = 0,
                 path: str = "/webhooks/aistemsplitter", public_url: str | None = None) -> None:
        self.verifier = verifier
        self.host = host
        self.port = port
        self.path = path
        self.public_url = public_url
        self.events: list[dict[str, Any]] = []
        self.rejected: list[str] = []  # reasons
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._pending: dict[str, int] = {}
        self._server: Any = None

    # ----------------------------------------------------------- lifecycle
    def start(self) -> WebhookReceiver:
        if self._server is None:
            from starlette.applications import Starlette
            from starlette.routing import Route

            from .serve import BackgroundServer

            app = Starlette(routes=[Route(self.path, self._endpoint, methods=["POST"])])
            self._server = BackgroundServer(app, host=self.host, port=self.port)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url
        if self._server is None:
            raise RuntimeError("webhook receiver is not running")
        return self._server.url + self.path

    # ---------------------------------------------------------- receiving
    def handle(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Verify and dispatch one request (also usable from your own web app)."""
        try:
            event = self.verifier.verify(headers, body)
        except InvalidWebhook as e:
            with self._lock:
                self.rejected.append(e.reason)
            log.warning("%s", e)
            raise
        raw_data = event.get("data")
        data = raw_data if isinstance(raw_data, dict) else {}
        rid = str(data.get("id") or event.get("splitId") or "")
        with self._lock:
            self.events.append(event)
            waiters = self._waiters.get(rid, [])
            if waiters:
                for loop, ev in waiters:
                    loop.call_soon_threadsafe(ev.set)
            elif rid:
                self._pending[rid] = self._pending.get(rid, 0) + 1
        log.info("webhook %s for %s", event.get("type"), rid or "?")
        return event

    async def _endpoint(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        body = await request.body()
        try:
            self.handle(dict(request.headers), body)
        except InvalidWebhook as e:
            return JSONResponse({"ok": False, "error": e.reason}, status_code=400)
        return JSONResponse({"ok": True})

    async def wait(self, remote_id: str, seconds: float, clock: Clock) -> bool:
        """Sleep ``seconds`` on ``clock``, returning early (True) when an
        event for ``remote_id`` arrives."""
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        entry = (loop, ev)
        with self._lock:
            if self._pending.pop(remote_id, 0):
                return True
            self._waiters.setdefault(remote_id, []).append(entry)
        sleeper = asyncio.ensure_future(clock.sleep(seconds))
        waiter = asyncio.ensure_future(ev.wait())
        try:
            done, _ = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            return waiter in done
        finally:
            for t in (sleeper, waiter):
                t.cancel()
            with self._lock:
                lst = self._waiters.get(remote_id, [])
                if entry in lst:
                    lst.remove(entry)
                if not lst:
                    self._waiters.pop(remote_id, None)
