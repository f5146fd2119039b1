"""The async HTTP client every remote provider shares.

One :class:`HttpClient` per provider instance and event loop wraps an
``httpx.AsyncClient`` and adds what every service needs:

* auth (bearer header, query parameter or form field — :class:`Auth`),
* timeouts per phase (:class:`Timeouts`),
* retries with exponential backoff + jitter on 429/5xx/connect/read errors,
  honouring ``Retry-After`` in seconds or as an HTTP-date (:class:`RetryPolicy`,
  implemented with tenacity),
* the per-account rate limiter (requests/s),
* bounded answers: every body is read as a stream and decoded here (gzip /
  deflate with a bounded output per step, so a compression bomb never
  inflates in memory), refused beyond ``max_response_bytes`` (JSON replies,
  default 8 MiB) or ``max_bytes`` (downloads) of *decoded* bytes; each
  attempt has a total deadline besides the per-read timeout (a reply that
  drips a byte at a time ends);
* downloads streamed to a temporary file (never held in memory), with size
  checks (``Content-Length`` vs bytes received);
* redirects followed by hand: a request carrying credentials (header, query
  parameter or form field) follows a redirect only within its origin
  (scheme, host, port) — or not at all, per service (``redirects``); a
  download without credentials follows pre-signed storage redirects;
* DEBUG request dumps with keys redacted.

Errors leave as the stemlab tree: transport failures after the last retry
become :class:`ProviderUnavailable` (unreachable, dropped) or
:class:`ProviderTimeout` (no answer in time); HTTP error answers are mapped
by the provider's ``error_for`` (auth → unavailable, 4xx → rejected …).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json as _json
import logging
import os
import random
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

from ..._secrets import REDACTED, install_log_filter, redact
from ...errors import ProviderOutputError, ProviderTimeout, ProviderUnavailable, StemlabError
from .limits import Clock, RateLimiter, RealClock

__all__ = [
    "Auth",
    "Timeouts",
    "RetryPolicy",
    "Response",
    "HttpClient",
    "Ambiguous",
    "DownloadRefused",
    "RedirectRefused",
    "TooLarge",
    "parse_retry_after",
]

log = logging.getLogger("stemlab.remote.http")
install_log_filter(["stemlab.remote.http", "stemlab.remote", "httpx", "httpcore"])

RetryMode = Literal["all", "safe", "none"]

#: the largest decoded API answer read (JSON replies are small; 8 MiB is generous)
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20
#: at most this many redirects are followed
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: decoded bytes produced per decompression step (bounds a bomb's footprint)
_INFLATE_STEP = 1 << 20

#: statuses after which the request certainly did not change server state
_SAFE_STATUSES = frozenset({429, 503})
_SENSITIVE_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "cookie", "x-upload-token", "proxy-authorization"}
)


@dataclass(frozen=True)
class Auth:
    """Where the key goes. ``headers``/``params``/``form`` are merged into
    authenticated requests (values are the raw secret — never logged)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Auth(headers={sorted(self.headers)}, params={sorted(self.params)}, form={sorted(self.form)})"


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``read`` bounds the wait for each chunk of an answer;
    ``upload`` replaces ``write`` for request bodies (large uploads);
    ``request`` bounds one whole API request attempt (answer read in full)
    and ``download`` one whole download attempt — total deadlines, so an
    answer that drips a byte at a time (never idle for ``read`` seconds) still
    ends."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0
    upload: float = 600.0
    request: float = 120.0
    download: float = 900.0

    def httpx(self, *, upload: bool = False) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect, read=self.read, write=self.upload if upload else self.write, pool=self.pool
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one HTTP request.

    Backoff before attempt *n+1* is ``min(maximum, initial·2^(n-1)) +
    uniform(0, jitter)`` seconds, unless the answer carried ``Retry-After``,
    which is honoured (capped at ``max_retry_after``)."""

    max_attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 300.0
    statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds
    (``"120"``) or an HTTP-date (``"Wed, 21 Oct 2026 07:28:00 GMT"``).
    Returns None when absent or unparseable; never negative."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ref = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, dt.timestamp() - ref)


@dataclass
class Response:
    """A finished HTTP answer (body fully read)."""

    status: int
    headers: httpx.Headers
    content: bytes
    url: str  # redacted
    what: str  # "aistemsplitter: POST /audio/splits" (for messages)
    elapsed: float = 0.0
    attempts: int = 1
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def excerpt(self, n: int = 200) -> str:
        text = self.content[:n].decode("utf-8", "replace").replace("\n", " ").strip()
        return redact(text + ("…" if len(self.content) > n else ""))

    def json_or_none(self) -> Any:
        if not self._parsed:
            self._parsed = True
            try:
                self._json = _json.loads(self.content.decode("utf-8")) if self.content else None
            except (UnicodeDecodeError, ValueError):
                self._json = None
        return self._json

    def json(self) -> Any:
        """The parsed JSON body; :class:`ProviderOutputError` if it is not JSON."""
        data = self.json_or_none()
        if data is None:
            ctype = self.headers.get("content-type", "?")
            raise ProviderOutputError(
                f"{self.what}: expected a JSON answer, got HTTP {self.status} {ctype} "
                f"({len(self.content)} bytes: {self.excerpt(120)!r})",
                status=self.status,
            )
        return data


class _Transient(Exception):
    """A failure worth retrying (internal; never leaves the client)."""

    def __init__(self, reason: str, *, kind: str, response: Response | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "status" | "connect" | "timeout" | "network" | "truncated"
        self.response = response
        self.retry_after = retry_after


class Ambiguous(ProviderUnavailable):
    """A non-idempotent request may or may not have reached the service (the
    answer was lost: read timeout, dropped connection, 5xx). The caller must
    reconcile before resending."""


class DownloadRefused(ProviderOutputError):
    """A download URL answered 401/403/404/410 — usually an expired
    pre-signed URL; the caller refreshes the job and tries fresh URLs."""


class _WaitRetryAfter(wait_base):
    """Retry-After when the answer had one, else exponential backoff + jitter."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: Any) -> float:
        p = self.policy
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None:
            return float(min(max(ra, 0.0), p.max_retry_after))
        n = max(1, retry_state.attempt_number)
        return float(min(p.maximum, p.initial * 2 ** (n - 1)) + self.rng.uniform(0, p.jitter))


def _redact_headers(h: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in _SENSITIVE_HEADERS else redact(v)) for k, v in h.items()}


def _classify(exc: httpx.HTTPError) -> tuple[str, bool]:
    """(kind, safe): ``safe`` means the request certainly never reached the
    server, so even a non-idempotent call may be resent."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return "connect", True
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", False
    return "network", False


class _Inflater:
    """Decodes a ``Content-Encoding`` (identity, gzip, deflate) a bounded step
    at a time: however compressed the input, each step yields at most
    :data:`_INFLATE_STEP` bytes, so the caller can stop at its size cap
    before a bomb is inflated."""

    def __init__(self, encoding: str, what: str, label: str) -> None:
        enc = [e.strip().lower() for e in (encoding or "").split(",") if e.strip()]
        enc = [e for e in enc if e != "identity"]
        if not enc:
            self._z: Any = None
        elif enc == ["gzip"] or enc == ["x-gzip"]:
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == ["deflate"]:
            self._z = zlib.decompressobj()
        else:
            raise ProviderOutputError(f"{what}: answer uses Content-Encoding {encoding!r}, which was not "
                                      "asked for (stemlab accepts gzip, deflate)", provider=label)
        self._what, self._label = what, label

    def steps(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in pieces of at most
        :data:`_INFLATE_STEP` (stop early at a cap)."""
        if self._z is None:
            if data:
                yield data
            return
        buf = data
        try:
            while buf:
                piece = self._z.decompress(buf, _INFLATE_STEP)
                if piece:
                    yield piece
                buf = self._z.unconsumed_tail
                if not piece and not buf:
                    return
        except zlib.error as e:
            raise ProviderOutputError(f"{self._what}: the answer's compressed body is corrupt ({e})",
                                      provider=self._label) from None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


class TooLarge(ProviderOutputError):
    """An answer larger than its cap (decoded bytes)."""


class RedirectRefused(ProviderOutputError):
    """A redirect that was not followed (to another origin with credentials,
    when the service never redirects, too many, to a bad URL): the request
    was not processed where it was sent."""


class HttpClient:
    """Async HTTP with auth, retries, rate limit and checked downloads.

    ``error_for(response)`` turns a final HTTP error answer into a stemlab
    error (the provider supplies it: services word their errors differently)."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        auth: Auth,
        timeouts: Timeouts,
        retry: RetryPolicy,
        limiter: RateLimiter,
        clock: Clock | None = None,
        error_for: Callable[[Response], StemlabError],
        user_agent: str = "stemlab",
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        redirects: Literal["same-origin", "none"] = "same-origin",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.label = label
        self.redirects = redirects
        self.max_response_bytes = int(max_response_bytes)
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeouts = timeouts
        self.retry = retry
        self.limiter = limiter
        self.clock = clock or RealClock()
        self.error_for = error_for
        self.requests_sent = 0
        self.retries = 0
        self._rng = random.Random(seed)
        self._client = httpx.AsyncClient(
            timeout=timeouts.httpx(),
            headers={"User-Agent": user_agent, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,  # by hand: credentials never follow a redirect to another origin
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<HttpClient {self.label} {redact(self.base_url)}>"

    async def aclose(self) -> None:
        await self._client.aclose()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------ exchange
    def _credentialed(self, headers: Mapping[str, str], params: Mapping[str, Any], form: Any) -> bool:
        """Whether a request carries the key — wherever the caller put it: a
        request sent with ``auth=False`` that adds the key itself (MVSEP's
        account GETs put ``api_token`` in the query) is credentialed too."""
        names = {k.lower() for k in self.auth.headers}
        keys = set(self.auth.params) | set(self.auth.form)
        secrets = {str(v) for m in (self.auth.headers, self.auth.params, self.auth.form) for v in m.values() if v}
        values = [*headers.values(), *params.values(), *((form or {}).values() if isinstance(form, Mapping) else ())]
        return (any(k.lower() in names for k in headers) or any(k in params for k in keys)
                or bool(isinstance(form, Mapping) and any(k in form for k in keys))
                or any(isinstance(v, str) and v in secrets for v in values))

    def _next_hop(self, r: httpx.Response, credentialed: bool, what: str, hop: int) -> httpx.URL:
        """The URL a redirect answer points to, if it may be followed."""
        if hop >= MAX_REDIRECTS:
            raise RedirectRefused(f"{what}: more than {MAX_REDIRECTS} redirects", provider=self.label)
        loc = r.headers.get("location", "")
        try:
            nxt = r.url.join(loc)
        except httpx.InvalidURL:
            raise RedirectRefused(f"{what}: redirect to an invalid URL", provider=self.label) from None
        if nxt.scheme not in ("http", "https"):
            raise RedirectRefused(f"{what}: redirect to a non-HTTP URL ({nxt.scheme}:)", provider=self.label)
        if credentialed:
            if self.redirects == "none":
                raise RedirectRefused(
                    f"{what}: the service answered HTTP {r.status_code} (a redirect); {self.label} requests carry "
                    "credentials and are never redirected", provider=self.label, status=r.status_code)
            if _origin(nxt) != _origin(r.url):
                raise RedirectRefused(
                    f"{what}: the service redirected to another origin ({nxt.scheme}://{nxt.host}); credentials "
                    "are never sent to another origin, so the redirect was not followed",
                    provider=self.label, status=r.status_code)
        return nxt

    async def _exchange(self, method: str, url: str, *, params: Mapping[str, Any], what: str,
                        credentialed: bool, timeout: httpx.Timeout, sink: Callable[[bytes], object] | None = None,
                        cap: int, **body: Any) -> tuple[httpx.Response, bytes, int]:
        """One HTTP exchange, redirects followed by hand (same origin only
        when ``credentialed``). The final answer's body is decoded here a
        bounded step at a time and refused beyond ``cap`` decoded bytes;
        it is returned, or handed to ``sink`` piece by piece (downloads).
        Returns (response, body or b"", decoded size)."""
        target = httpx.URL(url)
        q: Mapping[str, Any] | None = params or None
        for hop in range(MAX_REDIRECTS + 1):
            async with self._client.stream(method, target, params=q, timeout=timeout, **body) as r:
                if r.status_code in _REDIRECTS and "location" in r.headers:
                    await r.aclose()
                    nxt = self._next_hop(r, credentialed, what, hop)
                    if r.status_code == 303 or (r.status_code in (301, 302) and method == "POST"):
                        method, body = "GET", {"headers": body.get("headers")}
                    # the query was part of the old URL; a same-origin hop keeps the auth parameters
                    q = ({k: v for k, v in (params or {}).items() if k in self.auth.params}
                         if credentialed and _origin(nxt) == _origin(target) else None) or None
                    target = nxt
                    continue
                cl = r.headers.get("content-length", "")
                plain = r.headers.get("content-encoding", "").strip().lower() in ("", "identity")
                if plain and cl.isdigit() and int(cl) > cap:
                    raise TooLarge(f"{what}: answer is {int(cl)} bytes, above the limit of {cap} bytes; refused",
                                   provider=self.label, limit=cap)
                out = bytearray()
                n = 0
                inflate = _Inflater(r.headers.get("content-encoding", ""), what, self.label)
                async for raw in r.aiter_raw():
                    for piece in inflate.steps(raw):
                        n += len(piece)
                        if n > cap:
                            raise TooLarge(f"{what}: answer larger than {cap} bytes decoded; refused",
                                           provider=self.label, limit=cap)
                        if sink is None:
                            out += piece
                        else:
                            sink(piece)
                return r, bytes(out), n
        raise AssertionError("unreachable")  # pragma: no cover

    async def _deadline(self, coro: Any, seconds: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(coro, seconds)
        except asyncio.TimeoutError:
            raise _Transient(f"no complete answer within {seconds:g} s (total deadline)", kind="timeout") from None

    # ------------------------------------------------------------ retrying
    def _retrying(self, mode: RetryMode) -> AsyncRetrying:
        attempts = 1 if mode == "none" else self.retry.max_attempts

        async def _sleep(seconds: float) -> None:
            self.retries += 1
            await self.clock.sleep(seconds)

        def _before_sleep(rs: Any) -> None:
            exc = rs.outcome.exception() if rs.outcome else None
            wait = rs.next_action.sleep if rs.next_action else 0.0
            log.info("%s: %s; retry %d/%d in %.2f s", self.label, redact(getattr(exc, "reason", exc)),
                     rs.attempt_number, attempts - 1, wait)

        return AsyncRetrying(
            stop=stop_after_attempt(max(1, attempts)),
            wait=_WaitRetryAfter(self.retry, self._rng),
            retry=retry_if_exception_type(_Transient),
            sleep=_sleep,
            before_sleep=_before_sleep,
            reraise=True,
        )

    def _final(self, exc: _Transient, what: str, attempts: int, mode: RetryMode) -> StemlabError:
        """The stemlab error for a transient failure that outlived its retries."""
        tail = f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
        if exc.response is not None:
            err = self.error_for(exc.response)
            err.message = redact(err.message + tail)
            err.args = (err.message,)
            return err
        if exc.kind == "connect":
            return ProviderUnavailable(f"{what}: cannot reach the service: {exc.reason}{tail}", provider=self.label)
        if exc.kind == "timeout":
            return ProviderTimeout(f"{what}: no answer in time: {exc.reason}{tail}", provider=self.label)
        if exc.kind == "truncated":
            return ProviderOutputError(f"{what}: {exc.reason}{tail}", provider=self.label)
        return ProviderUnavailable(f"{what}: connection failed: {exc.reason}{tail}", provider=self.label)

    def _request_parts(
        self, headers: Mapping[str, str] | None, params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None, auth: bool,
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, Any] | None]:
        """The request's ``(headers, query parameters, form)``, with the
        credentials (headers, parameters, form fields) added when ``auth``."""
        hdrs = dict(headers or {})
        q = dict(params or {})
        form = dict(data) if data is not None else None
        if auth:
            hdrs.update(self.auth.headers)
            q.update(self.auth.params)
            if self.auth.form:
                form = {**(form or {}), **self.auth.form}
        return hdrs, q, form

    def _transport_failure(self, e: httpx.HTTPError, what: str, retry: RetryMode) -> Exception:
        """What an attempt that got no answer raises: :class:`_Transient`, or
        :class:`Ambiguous` when ``retry`` is ``"safe"`` and the server may have acted."""
        kind, safe = _classify(e)
        reason = f"{type(e).__name__}: {redact(e) or 'no detail'}"
        if retry == "safe" and not safe:
            return Ambiguous(
                f"{what}: the answer was lost ({reason}); the request may have been processed",
                provider=self.label,
            )
        return _Transient(reason, kind=kind)

    def _status_failure(self, resp: Response, what: str, retry: RetryMode) -> Exception:
        """What an answer with a retryable status raises: :class:`_Transient`
        (with its Retry-After), or :class:`Ambiguous` when ``retry`` is
        ``"safe"`` and the status does not prove the server never acted."""
        ra = parse_retry_after(resp.headers.get("retry-after"))
        reason = f"HTTP {resp.status} {resp.excerpt(80)}"
        if retry == "safe" and resp.status not in _SAFE_STATUSES:
            return Ambiguous(
                f"{what}: HTTP {resp.status} — the request may have been processed ({resp.excerpt(80)})",
                provider=self.label, status=resp.status,
            )
        return _Transient(reason, kind="status", response=resp, retry_after=ra)

    # ------------------------------------------------------------- request
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        retry: RetryMode = "all",
        upload: bool = False,
        what: str | None = None,
        accept_status: frozenset[int] = frozenset(),
    ) -> Response:
        """Send one request (with retries per ``retry``):

        * ``"all"`` — idempotent requests (GET, or a POST the server dedups by
          ``Idempotency-Key``): every transient failure is retried.
        * ``"safe"`` — non-idempotent, paid requests: only failures that
          prove the server never acted (connect errors, 429, 503) are
          retried; an ambiguous one raises :class:`Ambiguous`.
        * ``"none"`` — one attempt.

        HTTP ≥ 400 that is not retried (or not in ``accept_status``) raises
        ``error_for(response)``."""
        url = self.url(path)
        what = what or f"{self.label}: {method} {_path_of(url)}"
        hdrs, q, form = self._request_parts(headers, params, data, auth)
        attempts = 0

        async def once() -> Response:
            nonlocal attempts
            attempts += 1
            await self.limiter.acquire(self.clock)
            self.requests_sent += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("→ %s %s attempt %d headers=%s", method, redact(url), attempts, _redact_headers(hdrs))
            t0 = time.perf_counter()
            try:
                r, body, _ = await self._deadline(self._exchange(
                    method, url, params=q, what=what, credentialed=self._credentialed(hdrs, q, form),
                    timeout=self.timeouts.httpx(upload=upload), cap=self.max_response_bytes,
                    json=json, data=form, files=files, content=content, headers=hdrs,
                ), self.timeouts.upload if upload else self.timeouts.request, what)
            except httpx.HTTPError as e:
                raise self._transport_failure(e, what, retry) from None
            except _Transient as e:
                if retry == "safe":
                    raise Ambiguous(f"{what}: {e.reason}; the request may have been processed",
                                    provider=self.label) from None
                raise
            resp = Response(r.status_code, r.headers, body, redact(str(r.url)), what, time.perf_counter() - t0,
                            attempts)
            log.debug("← %s %s in %.3f s (%d bytes)", resp.status, redact(url), resp.elapsed, len(resp.content))
            if resp.status in self.retry.statuses and resp.status not in accept_status:
                raise self._status_failure(resp, what, retry)
            return resp

        try:
            resp: Response = await self._retrying(retry)(once)
        except _Transient as e:
            raise self._final(e, what, attempts, retry) from None
        resp.attempts = attempts
        if resp.status >= 400 and resp.status not in accept_status:
            raise self.error_for(resp)
        return resp

    # ------------------------------------------------------------ download
    async def download(
        self,
        url: str,
        *,
        max_bytes: int,
        what: str,
        auth: bool = False,
        headers: Mapping[str, str] | None = None,
        dest: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Stream ``url`` to a file (``dest``, else a temporary file the
        caller removes) and return its path. Refuses a declared size, or a
        *decoded* size, above ``max_bytes`` (:class:`ProviderOutputError`),
        retries a body shorter than its ``Content-Length`` (truncated) and an
        attempt that outlives ``timeouts.download`` seconds in total; a
        redirect is followed across origins only without credentials."""
        hdrs = {"Accept": "*/*", **(headers or {})}
        q: dict[str, str] = {}
        if auth:
            hdrs.update(self.auth.headers)
            q.update(self.auth.params)
        target = Path(dest) if dest is not None else None
        attempts = 0

        async def once() -> Path:
            nonlocal attempts
            attempts += 1
            await self.limiter.acquire(self.clock)
            self.requests_sent += 1
            log.debug("→ GET %s (download, attempt %d)", redact(url), attempts)
            fd, tmp = tempfile.mkstemp(prefix="stemlab-download-", suffix=".part",
                                       dir=str(target.parent) if target is not None else None)
            ok = False
            try:
                with os.fdopen(fd, "wb") as fh:
                    r, body, n = await self._deadline(self._exchange(
                        "GET", url, params=q, what=what, credentialed=self._credentialed(hdrs, q, None),
                        timeout=self.timeouts.httpx(), sink=fh.write, cap=max_bytes, headers=hdrs,
                    ), self.timeouts.download, what)
                if r.status_code >= 400:
                    resp = Response(r.status_code, r.headers, Path(tmp).read_bytes()[:4096], redact(url), what)
                    if r.status_code in self.retry.statuses:
                        raise _Transient(f"HTTP {r.status_code}", kind="status", response=resp,
                                         retry_after=parse_retry_after(r.headers.get("retry-after")))
                    if r.status_code in (401, 403, 404, 410):
                        raise DownloadRefused(
                            f"{what}: HTTP {r.status_code} from the download URL ({resp.excerpt(120)})",
                            provider=self.label, status=r.status_code,
                        )
                    raise self.error_for(resp)
                declared = r.headers.get("content-length")
                n_declared = int(declared) if declared and declared.isdigit() else None
                if n_declared is not None and r.num_bytes_downloaded != n_declared:
                    raise _Transient(f"truncated download: received {r.num_bytes_downloaded} of {n_declared} bytes",
                                     kind="truncated")
                final = target if target is not None else Path(tmp).with_suffix("")
                os.replace(tmp, final)
                ok = True
                log.debug("← %d bytes from %s", n, redact(url))
                return final
            except TooLarge as e:
                raise TooLarge(f"{e.message} (option max_download_bytes)", provider=self.label,
                               limit=max_bytes) from None
            except httpx.HTTPError as e:
                kind, _ = _classify(e)
                if isinstance(e, httpx.RemoteProtocolError):
                    kind = "truncated"
                raise _Transient(f"{type(e).__name__}: {redact(e) or 'no detail'}", kind=kind) from None
            finally:
                if not ok:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)

        try:
            return await self._retrying("all")(once)
        except _Transient as e:
            raise self._final(e, what, attempts, "all") from None


def _path_of(url: str) -> str:
    try:
        return httpx.URL(redact(url)).path
    except Exception:  # pragma: no cover - malformed URL
        return redact(url)

