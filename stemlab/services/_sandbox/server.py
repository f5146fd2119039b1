"""The sandbox framework: a real HTTP server per emulated service.

:class:`Sandbox` runs a Starlette app under uvicorn in a background thread
on ``127.0.0.1`` at an ephemeral port (``with Sandbox() as sb: sb.base_url``)
and gives every emulator the same machinery:

* endpoints wrapped by :class:`FaultyEndpoint`, which applies the
  response-level faults of the :class:`~stemlab.services._sandbox.faults.FaultPlan`
  (429 with Retry-After, 5xx, dropped connections after the handler ran,
  late answers, truncated/corrupt bodies, expired download URLs) and the
  hostile ones (gzip bombs, huge bodies streamed lazily, answers dripped a
  byte at a time, redirects to another origin);
* a scaled clock for queue/processing delays;
* its own ledger of jobs and charges (:class:`SandboxLedger`), so tests can
  assert that no job was submitted or charged twice;
* a file store with pre-signed, expiring download URLs (``/files/…``) and
  public test files (``/public/…``);
* lossy output encoding (MP3/M4A via :func:`stemlab.audio.encode_bytes`)
  with a configurable encoder delay, and the output faults (wrong rate,
  channels, length, an HTML page instead of audio);
* ``honor_idempotency=False``: an emulator whose service dedups creates by
  ``Idempotency-Key`` treats every create as new and charges it again (a
  careless service; combine with ``create:drop``).
* the pluggable separator (see :mod:`stemlab.services._sandbox.separators`).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import hmac
import json
import logging
import secrets
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...audio import encode_bytes, resample, to_channels
from .._remote.serve import BackgroundServer
from .clock import ScaledClock
from .faults import JOB_KINDS, OUTPUT_KINDS, RESPONSE_KINDS, Fault, FaultPlan
from .separators import DegradedOracle, ReferenceLibrary, Separator, derive_stems

__all__ = ["Sandbox", "SandboxJob", "SandboxLedger", "Charge", "RequestRecord", "FaultyEndpoint", "BackgroundServer",
           "gzip_bomb", "non_audio_page"]

log = logging.getLogger("stemlab.sandbox")

Handler = Callable[[Request], Awaitable[Response]]

#: LAME's encoder (576) + decoder (529) delay: what an MP3 without a gapless
#: (LAME/Xing) tag shifts audio by
MP3_DELAY_SAMPLES = 1105


@dataclass
class Charge:
    job_id: str
    account: str
    amount: float
    unit: str
    at: float  # virtual seconds
    refunded: bool = False


@dataclass
class RequestRecord:
    endpoint: str
    method: str
    path: str
    status: int
    fault: str | None = None


@dataclass
class SandboxJob:
    """One job in a sandbox. Times are virtual seconds of the sandbox clock."""

    id: str
    account: str
    created_at: float
    duration: float  # seconds of input audio
    stems: tuple[str, ...]
    output_format: str
    queue_seconds: float
    processing_seconds: float
    filename: str = ""
    idempotency_key: str | None = None
    request_hash: str = ""
    webhook_url: str | None = None
    fail: tuple[str, str] | None = None  # (code, message)
    stuck: bool = False
    outputs: dict[str, str] | None = None  # stem → file token, when produced
    error: tuple[str, str] | None = None  # set when producing outputs failed
    extra: dict[str, Any] = field(default_factory=dict)

    def status(self, now: float) -> str:
        """``queued`` | ``processing`` | ``succeeded`` | ``failed``."""
        t = now - self.created_at
        if t < self.queue_seconds:
            return "queued"
        if self.error is not None or (
            self.fail is not None and t >= self.queue_seconds + min(1.0, self.processing_seconds)
        ):
            return "failed"
        if self.stuck or t < self.queue_seconds + self.processing_seconds or self.outputs is None:
            return "processing"
        return "succeeded"

    @property
    def finishes_at(self) -> float:
        return self.created_at + self.queue_seconds + self.processing_seconds


class SandboxLedger:
    """Every job created and every charge made (and refunded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[str, SandboxJob] = {}
        self.charges: list[Charge] = []
        self.creates: list[tuple[str, str]] = []  # (job id, "new" | "replay") per create request

    def add_job(self, job: SandboxJob) -> None:
        with self._lock:
            self.jobs[job.id] = job

    def charge(self, job_id: str, account: str, amount: float, unit: str, at: float) -> Charge:
        c = Charge(job_id, account, amount, unit, at)
        with self._lock:
            self.charges.append(c)
        return c

    def refund(self, job_id: str) -> None:
        with self._lock:
            for c in self.charges:
                if c.job_id == job_id:
                    c.refunded = True

    def charged(self, account: str | None = None) -> float:
        with self._lock:
            return sum(c.amount for c in self.charges if not c.refunded and (account is None or c.account == account))

    def charges_per_job(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for c in self.charges:
                out[c.job_id] = out.get(c.job_id, 0) + 1
        return out

    def duplicate_charges(self) -> dict[str, int]:
        """Jobs charged more than once (must always be empty)."""
        return {k: v for k, v in self.charges_per_job().items() if v > 1}


class _File:
    """A file the sandbox serves (an upload, a separated stem). Its bytes live
    in the sandbox's spool directory, not in memory: an emulator that keeps
    every job's results (as a service does) stays flat in RSS however many
    jobs it served."""

    __slots__ = ("path", "content_type", "filename")

    def __init__(self, data: bytes, content_type: str, filename: str, spool: Path) -> None:
        self.path = spool / uuid.uuid4().hex
        self.content_type = content_type
        self.filename = filename
        self.data = data

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @data.setter
    def data(self, value: bytes) -> None:
        self.path.write_bytes(bytes(value))

    def __len__(self) -> int:
        return self.path.stat().st_size


#: a dripped answer stops after this many bytes or seconds, whichever first (bounded even if the
#: client never hangs up)
DRIP_MAX_BYTES = 1024
DRIP_MAX_SECONDS = 60.0
_CHUNK = 64 * 1024


_BOMB_LOCK = threading.Lock()


def gzip_bomb(mb: float) -> bytes:
    """A gzip stream of ``mb`` MB of zeros (≈ 1/1000 of that compressed),
    built a megabyte at a time, once (cached; sandboxes in threads share it)."""
    with _BOMB_LOCK:
        return _gzip_bomb(float(mb))


@functools.lru_cache(maxsize=4)
def _gzip_bomb(mb: float) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    total = int(mb * 2**20)
    block = bytes(2**20)
    out = []
    while total > 0:
        n = min(total, len(block))
        out.append(z.compress(block[:n]))
        total -= n
    out.append(z.flush())
    return b"".join(out)


def non_audio_page(name: str) -> bytes:
    """What a CDN, a login wall or an error page serves with HTTP 200 where a
    stem file should be."""
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Just a moment...</title></head>"
            f"<body><h1>Checking your browser before accessing {name}</h1>"
            "<p>This process is automatic. Your browser will redirect to your requested content shortly.</p>"
            "</body></html>\n").encode()


class _Disconnect:
    """Watches an ASGI ``receive`` for the client hanging up (the request
    body, if the handler left any, is drained on the way)."""

    def __init__(self, receive: Callable) -> None:
        self.gone = asyncio.Event()
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Callable) -> None:
        try:
            while True:
                msg = await receive()
                if msg.get("type") == "http.disconnect":
                    self.gone.set()
                    return
        except Exception:  # noqa: BLE001 - the connection is gone either way
            self.gone.set()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the client hung up meanwhile."""
        try:
            await asyncio.wait_for(self.gone.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._task.cancel()


def _headers_without(raw: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in raw if k.lower() not in names]


def _retry_after(fault: Fault, status: int) -> dict[str, str]:
    """The Retry-After header of an ``http_429``/``http_503`` fault (seconds, or an HTTP date with
    ``retry_after=date``); none for other statuses or ``retry_after=None``."""
    if status not in (429, 503):
        return {}
    ra = fault.args.get("retry_after", 1 if status == 429 else None)
    if ra == "date":
        secs = float(fault.args.get("seconds", 2))
        return {"Retry-After": email.utils.formatdate(time.time() + secs, usegmt=True)}
    if ra is not None:
        return {"Retry-After": str(ra)}
    return {}


async def _send_truncated(fault: Fault, resp: Response, send: Callable) -> None:
    """The head and the first ``fraction`` of the body of ``resp``, the body left unfinished."""
    body = bytes(resp.body)
    cut = int(len(body) * float(fault.args.get("fraction", 0.5)))
    await send({"type": "http.response.start", "status": resp.status_code, "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": body[:cut], "more_body": True})


async def _send_gzip_bomb(fault: Fault, resp: Response, send: Callable, record: RequestRecord) -> None:
    """A 200 with ``resp``'s headers and, gzip-encoded, ``mb`` MB of zeros instead of its body."""
    body = gzip_bomb(float(fault.args.get("mb", 200)))
    raw = _headers_without(resp.raw_headers, b"content-length", b"content-encoding")
    raw += [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())]
    record.status = 200
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class FaultyEndpoint:
    """An ASGI endpoint that applies response-level faults around a handler."""

    def __init__(self, sandbox: Sandbox, name: str, handler: Handler) -> None:
        self.sandbox = sandbox
        self.name = name
        self.handler = handler

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        sb = self.sandbox
        request = Request(scope, receive)
        fault = sb.faults.take(self.name, RESPONSE_KINDS)
        path = scope.get("path", "")
        record = RequestRecord(self.name, scope.get("method", "GET"), path, 0, fault.describe() if fault else None)
        sb.requests.append(record)
        early = self._instead_of_handler(fault, scope, record) if fault is not None else None
        if early is not None:
            await early(scope, receive, send)
            return
        try:
            resp = await self.handler(request)
        except _HTTPError as e:
            resp = sb.endpoint_error_response(self.name, e.status, e.code, e.message)
        record.status = resp.status_code
        if fault is None:
            await resp(scope, receive, send)
            return
        await self._faulty_answer(fault, resp, scope, receive, send, record)

    def _instead_of_handler(self, fault: Fault, scope: dict, record: RequestRecord) -> Response | None:
        """The answer of a fault that replaces the handler's (an HTTP error, an expired link, a redirect),
        its status recorded; None for the other faults."""
        sb = self.sandbox
        if fault.kind.startswith("http_"):
            status = int(fault.kind[5:])
            resp = sb.endpoint_error_response(self.name, status, *sb.fault_error(status))
            resp.headers.update(_retry_after(fault, status))
            record.status = status
            return resp
        if fault.kind == "expire":
            record.status = 403
            return sb.expired_response()
        if fault.kind == "redirect":  # a proxy's answer: the handler does not run
            status = int(fault.args.get("status", 307))
            loc = self._redirect_location(fault, scope)
            record.status = status
            return Response(b"", status_code=status, headers={"Location": loc})
        return None

    def _redirect_location(self, fault: Fault, scope: dict) -> str:
        """Where a ``redirect`` fault points: ``to`` (else the sandbox root), plus this request's path and
        query unless ``keep`` is false."""
        loc = str(fault.args["to"]).rstrip("/") if "to" in fault.args else self.sandbox.root_url
        if fault.args.get("keep", True):
            qs = scope.get("query_string", b"").decode("latin-1")
            loc += scope.get("raw_path", scope.get("path", "").encode()).decode("latin-1") + (f"?{qs}" if qs else "")
        return loc

    async def _faulty_answer(self, fault: Fault, resp: Response, scope: dict, receive: Callable, send: Callable,
                             record: RequestRecord) -> None:
        """Send the handler's answer ``resp`` as the fault spoils it (delayed, cut, corrupted, replaced…)."""
        if fault.kind == "delay":
            await asyncio.sleep(float(fault.args.get("seconds", 2.0)))
            await resp(scope, receive, send)
        elif fault.kind in ("drop", "truncate"):
            await _send_truncated(fault, resp, send)
            # returning without finishing the body makes uvicorn close the connection mid-answer
            record.status = -1
        elif fault.kind == "corrupt":
            rng = np.random.default_rng(self.sandbox.faults.seed + fault.fired)
            resp.body = rng.integers(0, 256, len(resp.body), dtype=np.uint8).tobytes()
            await resp(scope, receive, send)
        elif fault.kind == "gzip_bomb":
            await _send_gzip_bomb(fault, resp, send, record)
        elif fault.kind == "huge":
            record.status = 200
            await self._huge(fault, resp, receive, send)
        elif fault.kind == "drip":
            await self._drip(fault, resp, receive, send, record)
        else:  # pragma: no cover - kinds are validated
            await resp(scope, receive, send)

    async def _huge(self, fault: Fault, resp: Response, receive: Callable, send: Callable) -> None:
        """``mb`` MB streamed 64 KiB at a time (never held), a JSON-looking
        body for a JSON answer, zeros otherwise; stops when the client hangs up."""
        total = int(float(fault.args.get("mb", 300)) * 2**20)
        headers = _headers_without(resp.raw_headers, b"content-length", b"content-encoding")
        if fault.args.get("length", False):
            headers.append((b"content-length", str(total).encode()))
        ctype = dict(resp.raw_headers).get(b"content-type", b"")
        head = b'{"data": {"padding": "' if b"json" in ctype else b""
        chunk = (b"x" if head else b"\0") * _CHUNK
        watch = _Disconnect(receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            sent = 0
            while sent < total and not watch.gone.is_set():
                piece = (head + chunk)[: min(_CHUNK, total - sent)] if sent == 0 else chunk[: min(_CHUNK, total - sent)]
                sent += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": sent < total})
                await asyncio.sleep(0)  # let the disconnect watcher and other requests run
        finally:
            watch.close()

    async def _drip(self, fault: Fault, resp: Response, receive: Callable, send: Callable,
                    record: RequestRecord) -> None:
        """The handler's real answer (its true Content-Length) one byte every
        ``seconds``; stops after :data:`DRIP_MAX_BYTES` bytes or
        :data:`DRIP_MAX_SECONDS`, or when the client hangs up — the
        connection is then closed mid-answer."""
        seconds = float(fault.args.get("seconds", 1.0))
        body = bytes(resp.body)
        watch = _Disconnect(receive)
        t_end = time.monotonic() + DRIP_MAX_SECONDS
        try:
            await send({"type": "http.response.start", "status": resp.status_code, "headers": resp.raw_headers})
            for i in range(min(len(body), DRIP_MAX_BYTES)):
                last = i == len(body) - 1
                await send({"type": "http.response.body", "body": body[i:i + 1], "more_body": not last})
                if last:
                    return
                if await watch.sleep(seconds) or time.monotonic() > t_end:
                    break
            record.status = -1  # cut short: returning unfinished closes the connection
        finally:
            watch.close()


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Sandbox:
    """Base of every service emulator (see the module docstring).

    Subclasses set ``service``, ``path_prefix``, ``default_stems`` and
    implement :meth:`routes` (list of ``(method, path, endpoint name,
    handler)``) plus :meth:`error_body`."""

    service: ClassVar[str] = ""
    path_prefix: ClassVar[str] = ""
    default_quality: ClassVar[float] = 0.85
    default_output_format: ClassVar[str] = "wav"

    #: real seconds a client pointed here waits before giving up on a job
    #: (see :meth:`provider_options`); tests of stuck jobs lower it
    real_max_wait: float = 300.0

    def __init__(
        self,
        *,
        api_keys: Sequence[str] | None = None,
        faults: FaultPlan | str | Sequence[Any] | None = None,
        seed: int = 0,
        scale: float = 0.01,
        clock: ScaledClock | None = None,
        separator: Separator | None = None,
        quality: float | None = None,
        queue_seconds: float = 3.0,
        processing_seconds: float = 10.0,
        processing_rtf: float = 0.25,
        url_ttl: float = 3600.0,
        lossy_delay: int | None = None,
        port: int = 0,
        hold_clock: bool = False,
        honor_idempotency: bool = True,
    ) -> None:
        self.api_keys: list[str] = list(api_keys) if api_keys else [f"sandbox-{self.service}-key-0001"]
        #: False: a create carrying an Idempotency-Key is treated as new and charged again (emulators
        #: of services that dedup by that key read it; the others dedup nothing anyway)
        self.honor_idempotency = bool(honor_idempotency)
        self.faults = FaultPlan.parse(faults, seed=seed)
        # hold_clock: virtual time runs at real rate while the emulator computes
        # (realistic per-job timings, but concurrent jobs then crawl: see clock.py)
        self.clock = clock or ScaledClock(scale, busy_scale=1.0 if hold_clock else None)
        self.references = ReferenceLibrary()
        self._custom_separator = separator is not None
        self.quality = quality
        self.separator: Separator = separator or DegradedOracle(
            self.references, quality=self.default_quality if quality is None else quality
        )
        self._oracles: dict[float, DegradedOracle] = {}
        self.queue_seconds = queue_seconds
        self.processing_seconds = processing_seconds  # floor, virtual seconds
        self.processing_rtf = processing_rtf  # processing seconds per second of audio
        self.url_ttl = url_ttl
        self.lossy_delay = lossy_delay  # None: MP3_DELAY_SAMPLES for mp3, 0 otherwise
        self.ledger = SandboxLedger()
        self.requests: list[RequestRecord] = []
        self.files: dict[str, _File] = {}
        self._spool = tempfile.TemporaryDirectory(prefix=f"stemlab-sandbox-{self.service}-")
        self._url_secret = secrets.token_bytes(16)
        self._port = port
        self._server: BackgroundServer | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    # ----------------------------------------------------------- lifecycle
    def start(self) -> Sandbox:
        if self._server is None:
            app = Starlette(routes=[
                Route(path, FaultyEndpoint(self, name, handler), methods=[method])
                for method, path, name, handler in self._all_routes()
            ])
            self._server = BackgroundServer(app, port=self._port)
            self._server.start()
            log.info("%s sandbox on %s", self.service, self.root_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.service} sandbox is not running; use 'with sandbox:' or .start()")
        return self._server.url

    @property
    def base_url(self) -> str:
        """What a client uses as its base URL (root + the API prefix)."""
        return self.root_url + self.path_prefix

    @property
    def api_key(self) -> str:
        return self.api_keys[0]

    def provider_options(self) -> dict[str, Any]:
        """Options that point a stemlab provider at this sandbox.

        ``max_wait`` is raised so that a client waits at least
        :attr:`real_max_wait` real seconds: the sandbox separates in real
        time, which a strongly scaled clock would otherwise count as hours
        of virtual service time."""
        scale = getattr(self.clock, "scale", 1.0)
        return {"base_url": self.base_url, "api_key": self.api_key, "clock": self.clock,
                "max_wait": max(1800.0, self.real_max_wait / scale)}

    def __repr__(self) -> str:
        where = self._server.url if self._server else "stopped"
        return f"<{type(self).__name__} {where} {self.faults!r}>"

    # ---------------------------------------------------------- references
    def register_references(self, mixture: np.ndarray | None, stems: Mapping[str, np.ndarray], sample_rate: int,
                            name: str = "") -> None:
        """Teach the default separator a song (see :class:`DegradedOracle`)."""
        self.references.register(mixture, stems, sample_rate, name)

    def register_track(self, track: Any) -> None:
        """Register a :class:`~stemlab.types.Track` that has references; its
        stems are decoded again only when an upload matches it."""
        if track.has_references:
            # the loader decodes afresh each time (not track.references, which
            # would stay cached on the caller's Track for good)
            load = track.load_references
            self.references.register_lazy(track.mixture, track.sample_rate, lambda: dict(load()),
                                          str(track.name))

    # ------------------------------------------------------------ routing
    def routes(self) -> list[tuple[str, str, str, Handler]]:
        raise NotImplementedError

    def _all_routes(self) -> list[tuple[str, str, str, Handler]]:
        return self.routes() + [
            ("GET", "/files/{token}/{name}", "download", self._download),
            ("GET", "/public/{token}/{name}", "public", self._public),
        ]

    # -------------------------------------------------------------- errors
    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": {"code": code, "message": message}}

    def error_response(self, status: int, code: str, message: str) -> Response:
        return JSONResponse(self.error_body(status, code, message), status_code=status)

    def endpoint_error_response(self, endpoint: str, status: int, code: str, message: str) -> Response:
        """The error answer of one endpoint (override where an endpoint —
        e.g. a storage worker — words errors differently from the API)."""
        return self.error_response(status, code, message)

    def fault_error(self, status: int) -> tuple[str, str]:
        return {
            429: ("RATE_LIMITED", "Too many requests"),
            500: ("SERVER_ERROR", "Internal server error"),
            502: ("BAD_GATEWAY", "Bad gateway"),
            503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
            504: ("GATEWAY_TIMEOUT", "Gateway timeout"),
        }.get(status, ("ERROR", f"HTTP {status}"))

    def expired_response(self) -> Response:
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>")
        return Response(body, status_code=403, media_type="application/xml")

    def fail(self, status: int, code: str, message: str) -> _HTTPError:
        return _HTTPError(status, code, message)

    def account(self, request: Request, token: str | None = None) -> str:
        """The account of a request (its key), or a 401."""
        if token is None:
            h = request.headers.get("authorization", "")
            token = h[7:].strip() if h.lower().startswith("bearer ") else ""
        if token not in self.api_keys:
            raise self.fail(401, "UNAUTHORIZED", "Missing or invalid API key")
        return "acct_" + hashlib.sha256(token.encode()).hexdigest()[:10]

    # --------------------------------------------------------------- files
    def store(self, data: bytes, content_type: str, filename: str) -> str:
        token = uuid.uuid4().hex
        self.files[token] = _File(data, content_type, filename, Path(self._spool.name))
        return token

    def signed_url(self, token: str) -> str:
        f = self.files[token]
        expires = int(self.clock.now() + self.url_ttl)
        sig = hmac.new(self._url_secret, f"{token}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.root_url}/files/{token}/{f.filename}?expires={expires}&sig={sig}"

    def host_file(self, data: bytes, filename: str, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at a public URL (for ``direct_url`` inputs)."""
        token = self.store(data, content_type, filename)
        return f"{self.root_url}/public/{token}/{filename}"

    def read_local_url(self, url: str) -> bytes | None:
        """Bytes behind a URL this sandbox serves (None if not ours)."""
        root = self.root_url
        if not url.startswith(root):
            return None
        rest = url[len(root):].split("?", 1)[0].strip("/").split("/")
        if len(rest) >= 2 and rest[0] in ("public", "files", "storage") and rest[1] in self.files:
            return self.files[rest[1]].data
        return None

    async def _download(self, request: Request) -> Response:
        token = request.path_params["token"]
        f = self.files.get(token)
        try:
            expires = int(request.query_params.get("expires", "0"))
        except ValueError:
            expires = 0
        sig = request.query_params.get("sig", "")
        good = hmac.new(self._url_secret, f"{token}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        if f is None or not hmac.compare_digest(sig, good):
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml")
        if self.clock.now() > expires:
            return self.expired_response()
        return Response(f.data, media_type=f.content_type)

    async def _public(self, request: Request) -> Response:
        f = self.files.get(request.path_params["token"])
        if f is None:
            return Response("not found", status_code=404)
        return Response(f.data, media_type=f.content_type)

    # ---------------------------------------------------------------- jobs
    def new_job(self, *, account: str, duration: float, stems: Sequence[str], output_format: str, filename: str = "",
                idempotency_key: str | None = None, request_hash: str = "", webhook_url: str | None = None,
                id_prefix: str = "job_") -> SandboxJob:
        """Create a job, applying job-level faults (fail, stuck)."""
        now = self.clock.now()
        job = SandboxJob(
            id=id_prefix + uuid.uuid4().hex[:20], account=account, created_at=now, duration=duration,
            stems=tuple(stems), output_format=output_format,
            queue_seconds=self.queue_seconds,
            processing_seconds=max(self.processing_seconds, self.processing_rtf * duration),
            filename=filename, idempotency_key=idempotency_key, request_hash=request_hash, webhook_url=webhook_url,
        )
        f = self.faults.take("job", JOB_KINDS)
        if f is not None and f.kind == "fail":
            job.fail = (str(f.args.get("code", "PROCESSING_FAILED")), str(f.args.get("message", "Separation failed")))
        elif f is not None and f.kind == "stuck":
            job.stuck = True
        self.ledger.add_job(job)
        return job

    def start_separation(self, job: SandboxJob, audio: np.ndarray | Callable[[], np.ndarray] | None, sr: int) -> None:
        """Separate in a worker thread of the server loop; stores the files.
        ``audio``: the decoded input, or a loader called in the worker."""
        if audio is None:
            return

        def run() -> dict[str, str]:
            # real DSP time must not count 1/scale times on the virtual clock
            with self.clock.hold():
                a = np.asarray(audio() if callable(audio) else audio, dtype=np.float32)
                return self._separate_files(job, a, sr)

        async def work() -> None:
            try:
                files = await asyncio.to_thread(run)
                job.outputs = files
            except Exception as e:  # pragma: no cover - separator bug → failed job
                log.exception("sandbox separation failed")
                job.error = ("PROCESSING_FAILED", f"{type(e).__name__}: {e}")

        self.spawn(work())

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def quality_for(self, job: SandboxJob) -> float:
        """Quality of the default separator for ``job`` (emulators vary it by
        model so that variants score differently)."""
        return self.default_quality

    def separator_for(self, job: SandboxJob) -> Separator:
        """A custom separator if one was given, else the degraded oracle at
        ``quality`` (constructor) or :meth:`quality_for`."""
        if self._custom_separator:
            return self.separator
        q = self.quality if self.quality is not None else self.quality_for(job)
        if q not in self._oracles:
            self._oracles[q] = DegradedOracle(self.references, quality=q)
        return self._oracles[q]

    def _separate_files(self, job: SandboxJob, audio: np.ndarray, sr: int) -> dict[str, str]:
        result = self.separator_for(job)(audio, sr)
        stems = derive_stems(result, job.stems, audio)
        out_sr, fault = sr, self.faults.take("output", OUTPUT_KINDS)
        if fault is not None:
            stems, out_sr = self._apply_output_fault(fault, stems, sr)
        files: dict[str, str] = {}
        for name, arr in stems.items():
            data, ctype, ext = self.encode_output(arr, out_sr, job.output_format)
            if fault is not None and fault.kind == "non_audio":  # the file's name, an HTML page's bytes
                data, ctype = non_audio_page(f"{name}.{ext}"), "text/html; charset=utf-8"
            files[name] = self.store(data, ctype, f"{name}.{ext}")
        return files

    def _apply_output_fault(
        self, fault: Fault, stems: dict[str, np.ndarray], sr: int
    ) -> tuple[dict[str, np.ndarray], int]:
        if fault.kind == "non_audio":  # the audio is fine; the files served are not (see _separate_files)
            return stems, sr
        if fault.kind == "wrong_rate":
            rate = int(fault.args.get("rate", 22050))
            return {k: resample(v, sr, rate) for k, v in stems.items()}, rate
        if fault.kind == "wrong_channels":
            return {k: to_channels(v, 1) for k, v in stems.items()}, sr
        factor = float(fault.args.get("factor", 0.5))
        only = fault.args.get("stem")
        out = {}
        for k, v in stems.items():
            if only is not None and k != only:
                out[k] = v
                continue
            n = int(v.shape[1] * factor)
            out[k] = v[:, :n] if n <= v.shape[1] else np.pad(v, ((0, 0), (0, n - v.shape[1])))
        return out, sr

    def encode_output(self, audio: np.ndarray, sr: int, fmt: str) -> tuple[bytes, str, str]:
        """(bytes, content type, extension) of one output stem."""
        fmt = fmt.lower()
        delay = self.lossy_delay if self.lossy_delay is not None else (MP3_DELAY_SAMPLES if fmt == "mp3" else 0)
        a = np.asarray(audio, dtype=np.float32)
        if fmt in ("mp3", "m4a") and delay:
            a = np.pad(a, ((0, 0), (int(delay), 0)))
        if fmt == "mp3":
            return encode_bytes(a, sr, "mp3", bitrate=320_000), "audio/mpeg", "mp3"
        if fmt == "m4a":
            return encode_bytes(a, sr, "m4a", bitrate=256_000), "audio/mp4", "m4a"
        if fmt == "flac":
            return encode_bytes(a, sr, "flac", subtype="PCM_24"), "audio/flac", "flac"
        return encode_bytes(a, sr, "wav", subtype="FLOAT"), "audio/wav", "wav"

    # ------------------------------------------------------------- helpers
    @staticmethod
    def body_hash(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

    def count(self, endpoint: str, method: str | None = None) -> int:
        """How many requests reached ``endpoint``."""
        return sum(1 for r in self.requests if r.endpoint == endpoint and (method is None or r.method == method))

    def faults_fired(self) -> dict[str, int]:
        return self.faults.fired()


def iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds (``2026-05-03T10:20:30.000Z``)."""
    t = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def localhost_url(url: str) -> bool:
    from urllib.parse import urlparse

    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        return False
    return host in ("127.0.0.1", "localhost", "::1")

