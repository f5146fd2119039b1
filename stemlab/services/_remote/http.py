"""The remote-provider base: one job lifecycle for every paid service.

:class:`RemoteProvider` implements :meth:`~stemlab.providers.base.Provider.aseparate`
as a job the harness's ledger can drive and resume::

    check_input → key → estimate cost → prepare (free: uploads)
      → journal.submitting(estimate)            # durable BEFORE any paid call
      → create (paid; Idempotency-Key where the service honours it)
      → journal.submitted(remote id, cost)
      → poll (per-service schedule; webhook events cut the waits short)
      → download (streamed, size-checked; expired URLs refreshed)
      → decode → Separation (stems at the service's rate)

Resume rules: ``journal.remote_id`` set → poll it, never resubmit;
``journal.in_doubt`` (a run died between *submitting* and *submitted*) →
:meth:`RemoteProvider.reconcile` through the service's list/history endpoint
(matching the job tag stemlab puts in upload file names, or the idempotency
key) before anything is resent.

A service subclass is small. It sets class attributes (``family``,
``default_base_url``, ``default_poll``, limits) and implements the hooks:

========================  ==================================================
``auth(key)``             where the key goes (default ``Bearer``)
``parse_error(resp)``     ``(code, message)`` of an error answer
``cost_for_seconds(s)``   the cost model (:class:`~stemlab.types.Cost`)
``prepare(job)``          free work before paying: uploads (optional)
``create(job, prepared)`` the paid submit → :class:`Submission`
``fetch_state(job, id)``  one status poll → :class:`JobState`
``list_recent(job)``      recent jobs for reconciliation (None: unsupported)
``resolve_outputs``       stem → URL, if the service needs extra calls
``failed_error(job, s)``  the stemlab error for a failed remote job
========================  ==================================================

Options (never identity): ``base_url``, ``api_key``, ``timeout`` (read),
``connect_timeout``, ``upload_timeout``, ``request_timeout`` (total per API
request attempt), ``download_timeout`` (total per download attempt),
``max_response_bytes`` (decoded API answer cap), ``poll_initial``, ``poll_interval``,
``poll_max_interval``, ``max_wait``, ``max_concurrency`` (running jobs per
service account), ``rate_limit`` (requests/s per account), ``max_attempts``,
``max_download_bytes``, ``clock``, ``webhook_url``, ``webhook_receiver``,
``transport`` (an ``httpx`` transport), ``seed`` (jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Mapping, Sequence

import numpy as np

from ..._secrets import ENV_VARS, Secret, get_secret, redact
from ...errors import (
    ConfigError,
    InDoubt,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StemlabError,
)
from ..._crash import crashpoint
from ...types import Cost, Separation, Track
from ...providers.base import JobJournal, NullJournal, Provider, Status, as_track
from .client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Ambiguous,
    Auth,
    DownloadRefused,
    HttpClient,
    RedirectRefused,
    Response,
    RetryPolicy,
    Timeouts,
)
from .limits import Clock, RealClock, account_key, release_limits, shared_limits
from .output import assemble_stems

__all__ = [
    "RemoteProvider",
    "JobContext",
    "JobState",
    "Submission",
    "RemoteJobInfo",
    "PollSchedule",
    "Auth",
    "Timeouts",
    "RetryPolicy",
    "Response",
    "HttpClient",
    "COMMON_OPTIONS",
    "sequence_of",
]

log = logging.getLogger("stemlab.remote")

#: options every remote provider accepts (subclasses may add their own)
COMMON_OPTIONS: tuple[str, ...] = (
    "base_url", "api_key", "timeout", "connect_timeout", "upload_timeout", "request_timeout", "download_timeout",
    "max_response_bytes", "retry_in_doubt", "poll_initial", "poll_interval",
    "poll_max_interval", "max_wait", "max_concurrency", "rate_limit", "max_attempts", "max_download_bytes",
    "clock", "webhook_url", "webhook_receiver", "transport", "seed",
)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class PollSchedule:
    """When to ask for a job's status (seconds): first after ``initial``,
    then every ``interval`` growing by ``backoff`` up to ``max_interval``;
    give up (:class:`ProviderTimeout`, remote id kept) after ``max_wait``."""

    initial: float = 2.0
    interval: float = 2.0
    max_interval: float = 15.0
    backoff: float = 1.25
    max_wait: float = 1800.0

    def delays(self) -> Iterator[float]:
        d = self.interval
        while True:
            yield d
            d = min(self.max_interval, d * self.backoff)


@dataclass
class JobState:
    """One status answer, in stemlab's terms. ``status`` is one of
    ``queued``, ``running``, ``done``, ``failed``; ``outputs`` maps stem →
    download URL (final jobs); ``cost`` is what the service says it charged."""

    status: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    cost: Cost | None = None
    service_status: str = ""  # the service's own word ("processing", "distributing" …)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Submission:
    """What a paid submit returned."""

    remote_id: str
    cost: Cost
    info: Mapping[str, Any] = field(default_factory=dict)
    state: JobState | None = None


@dataclass(frozen=True)
class RemoteJobInfo:
    """A job listed by the service (reconciliation of in-doubt submits)."""

    remote_id: str
    status: str = ""
    filename: str = ""
    idempotency_key: str | None = None
    created_at: str | None = None
    cost: Cost | None = None


@dataclass
class JobContext:
    """Per-job state handed to every hook: the HTTP client, the journal,
    the track, timings and notes."""

    provider: "RemoteProvider"
    client: HttpClient
    journal: JobJournal
    track: Track
    idempotency_key: str
    clock: Clock
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    remote_id: str | None = None
    #: temporary files of this job (downloads), removed once its stems are decoded
    scratch: list[Path] = field(default_factory=list)

    def keep(self, path: Path) -> Path:
        """Register a temporary file of this job (removed after decoding)."""
        self.scratch.append(path)
        return path

    @property
    def tag(self) -> str:
        """Short job tag derived from the idempotency key. Providers put it in
        upload file names so a job can be recognised in the service's
        history after a crash."""
        return "sl" + hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return self.provider.id

    def phase(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + float(seconds)
        self.journal.phase(name, float(seconds))

    @contextlib.contextmanager
    def timed(self, name: str, *, local: bool = False) -> Iterator[None]:
        """Time a block into phase ``name``: on the provider's clock (service
        time: uploads, queue, downloads), or with ``local=True`` in wall
        seconds of this machine (encoding, decoding) — the two differ only
        under a sandbox's scaled clock."""
        if local:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.phase(name, time.perf_counter() - t0)
            return
        c0 = self.clock.now()
        try:
            yield
        finally:
            self.phase(name, self.clock.now() - c0)

    def note(self, key: str, value: Any) -> None:
        self.notes[key] = value
        self.journal.note(key, value)

    def upload_filename(self, ext: str) -> str:
        """``<tag>_<track name>.<ext>`` with unsafe characters replaced."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.track.name)[:80] or "track"
        return f"{self.tag}_{safe}.{ext.lstrip('.')}"


def _float_opt(options: Mapping[str, Any], name: str, default: float | None, *, minimum: float = 0.0,
               family: str = "") -> float | None:
    v = options.get(name, default)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"provider {family}: option {name} expects a number of seconds, got {v!r}",
                          field=f"{family}.options.{name}") from None
    if not f >= minimum:
        raise ConfigError(f"provider {family}: option {name} expects a number ≥ {minimum}, got {v!r}",
                          field=f"{family}.options.{name}")
    return f


class RemoteProvider(Provider):
    """Base of every paid remote service (see the module docstring)."""

    kind: ClassVar[str] = "remote"
    deterministic: ClassVar[bool] = False
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS
    #: key into :data:`stemlab._secrets.ENV_VARS` (defaults to ``family``)
    service: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    default_poll: ClassVar[PollSchedule] = PollSchedule()
    default_retry: ClassVar[RetryPolicy] = RetryPolicy()
    default_timeouts: ClassVar[Timeouts] = Timeouts()
    default_rate_limit: ClassVar[float | None] = 5.0  # requests/s per account
    default_max_concurrency: ClassVar[int] = 4  # running jobs per account
    default_max_download_bytes: ClassVar[int] = 512 * 1024 * 1024
    #: the service dedups a repeated submit carrying the same Idempotency-Key
    idempotent_submit: ClassVar[bool] = False
    #: how requests carrying the key follow redirects: "same-origin" (never to
    #: another scheme/host/port: the key would go with them) or "none" (the
    #: API never redirects; a redirect is an error). Downloads without the key
    #: (pre-signed storage URLs) follow redirects anywhere.
    redirects: ClassVar[Literal["same-origin", "none"]] = "same-origin"
    #: output stems must cover this fraction of the input's duration
    min_coverage: ClassVar[float] = 0.9
    #: service stem names → stemlab names
    stem_aliases: ClassVar[Mapping[str, str]] = {}

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(variant, params, **options)
        raw_key = self.options.pop("api_key", None)
        if raw_key is not None and not isinstance(raw_key, (str, Secret)):
            raise ConfigError(f"provider {self.family}: option api_key expects a string", field=f"{self.family}.options.api_key")
        try:
            self._key: Secret | None = get_secret(self.service_name, raw_key or None)
        except ConfigError as e:
            # the refusal names the variable or option ("$MVSEP_API_KEY: the key contains …"); as a
            # field that name is no spec path, and the spec layer would strip it from the message
            raise ConfigError(e.message, **({"field": f"{self.family}.options.api_key"} if raw_key else {})) from None
        if raw_key:
            self.options["api_key"] = self._key  # shown as Secret(<redacted …>) anywhere
        fam = self.family
        o = self.options
        base = str(o.get("base_url") or self.default_base_url).rstrip("/")
        if base and not base.startswith(("http://", "https://")):
            raise ConfigError(f"provider {fam}: base_url must start with http:// or https://, got {base!r}",
                              field=f"{fam}.options.base_url")
        self.base_url = base
        d = self.default_timeouts
        self.timeouts = Timeouts(
            connect=_float_opt(o, "connect_timeout", d.connect, minimum=1e-3, family=fam) or d.connect,
            read=_float_opt(o, "timeout", d.read, minimum=1e-3, family=fam) or d.read,
            write=_float_opt(o, "timeout", d.write, minimum=1e-3, family=fam) or d.write,
            pool=d.pool,
            upload=_float_opt(o, "upload_timeout", d.upload, minimum=1e-3, family=fam) or d.upload,
            request=_float_opt(o, "request_timeout", d.request, minimum=1e-3, family=fam) or d.request,
            download=_float_opt(o, "download_timeout", d.download, minimum=1e-3, family=fam) or d.download,
        )
        mrb = o.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
        if not isinstance(mrb, int) or isinstance(mrb, bool) or mrb < 1024:
            raise ConfigError(f"provider {fam}: option max_response_bytes expects an int ≥ 1024, got {mrb!r}",
                              field=f"{fam}.options.max_response_bytes")
        self.max_response_bytes = mrb
        p = self.default_poll
        self.poll = PollSchedule(
            initial=_float_opt(o, "poll_initial", p.initial, family=fam) or 0.0,
            interval=_float_opt(o, "poll_interval", p.interval, minimum=1e-4, family=fam) or p.interval,
            max_interval=_float_opt(o, "poll_max_interval", max(p.max_interval, float(o.get("poll_interval") or 0)),
                                    minimum=1e-4, family=fam) or p.max_interval,
            backoff=p.backoff,
            max_wait=_float_opt(o, "max_wait", p.max_wait, minimum=1e-3, family=fam) or p.max_wait,
        )
        attempts = o.get("max_attempts", self.default_retry.max_attempts)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ConfigError(f"provider {fam}: option max_attempts expects an int ≥ 1, got {attempts!r}",
                              field=f"{fam}.options.max_attempts")
        self.retry = replace(self.default_retry, max_attempts=attempts)
        conc = o.get("max_concurrency", self.default_max_concurrency)
        if not isinstance(conc, int) or isinstance(conc, bool) or conc < 1:
            raise ConfigError(f"provider {fam}: option max_concurrency expects an int ≥ 1, got {conc!r}",
                              field=f"{fam}.options.max_concurrency")
        self.max_concurrency = conc
        self.rate_limit = _float_opt(o, "rate_limit", self.default_rate_limit, minimum=0.0, family=fam)
        mdb = o.get("max_download_bytes", self.default_max_download_bytes)
        if not isinstance(mdb, int) or isinstance(mdb, bool) or mdb < 1:
            raise ConfigError(f"provider {fam}: option max_download_bytes expects an int ≥ 1, got {mdb!r}",
                              field=f"{fam}.options.max_download_bytes")
        self.max_download_bytes = mdb
        self.clock: Clock = o.get("clock") or RealClock()
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, HttpClient]] = {}
        self._limit_keys: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------ identity
    @property
    def service_name(self) -> str:
        return self.service or self.family

    @property
    def env_var(self) -> str:
        return ENV_VARS.get(self.service_name, f"{self.service_name.upper()}_API_KEY")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} at {redact(self.base_url)}>"

    def status(self) -> Status:
        if not self.base_url:
            return Status(False, f"no base_url: {self.service_name} has no public default host; pass the base_url option")
        if not self._key:
            return Status(False, f"no API key: set ${self.env_var} or pass the api_key option")
        return Status(True)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out.update(service=self.service_name, base_url=redact(self.base_url), kind="remote")
        scale = getattr(self.clock, "scale", 1.0)
        if scale != 1.0:
            out["clock_scale"] = scale  # timings are in service seconds of a scaled (sandbox) clock
        return out

    # ---------------------------------------------------------- cost model
    def cost_for_seconds(self, seconds: float) -> Cost:
        """Expected cost of ``seconds`` of input audio. Override."""
        return Cost()

    def estimate_cost(self, track: Track | float) -> Cost:
        seconds = float(track) if isinstance(track, (int, float)) else track.seconds
        return self.cost_for_seconds(seconds)

    # ---------------------------------------------------------- HTTP hooks
    def auth(self, key: str) -> Auth:
        """Where the key goes; default ``Authorization: Bearer <key>``."""
        return Auth(headers={"Authorization": f"Bearer {key}"})

    def parse_error(self, resp: Response) -> tuple[str, str]:
        """``(code, message)`` from an error answer. Override per service."""
        data = resp.json_or_none()
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return str(err.get("code") or ""), str(err.get("message") or "")
            for k in ("message", "detail", "error"):
                if isinstance(data.get(k), str):
                    return "", data[k]
        return "", resp.excerpt(160)

    def error_for(self, resp: Response) -> StemlabError:
        """Map an HTTP error answer onto the stemlab error tree."""
        code, message = self.parse_error(resp)
        desc = f"HTTP {resp.status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        where = resp.what
        s = resp.status
        if s in (401, 403):
            return ProviderUnavailable(
                f"{where}: authentication failed ({desc}); check ${self.env_var} or the api_key option",
                provider=self.id, status=s, code=code,
            )
        if s == 402:
            return ProviderUnavailable(f"{where}: not enough credits on the account ({desc})",
                                       provider=self.id, status=s, code=code)
        if s == 429:
            return ProviderUnavailable(f"{where}: rate limited ({desc})", provider=self.id, status=s, code=code)
        if s in (408, 504):
            return ProviderTimeout(f"{where}: the service timed out ({desc})", provider=self.id, status=s, code=code)
        if s >= 500:
            return ProviderUnavailable(f"{where}: service error ({desc})", provider=self.id, status=s, code=code)
        return ProviderRejected(f"{where}: request refused ({desc})", provider=self.id, status=s, code=code)

    # ------------------------------------------------------ service hooks
    async def prepare(self, job: JobContext) -> Any:
        """Free work before paying (uploads). Time uploads with
        ``job.timed("upload")``. Returns what :meth:`create` needs."""
        return None

    async def create(self, job: JobContext, prepared: Any) -> Submission:
        """Submit the paid job. Use ``retry="all"`` with an
        ``Idempotency-Key`` when the service dedups, else ``retry="safe"``."""
        raise NotImplementedError

    async def fetch_state(self, job: JobContext, remote_id: str) -> JobState:
        """Ask the service for the job's status once."""
        raise NotImplementedError

    async def list_recent(self, job: JobContext) -> list[RemoteJobInfo] | None:
        """Recent jobs of this account, or None when the service has no such
        endpoint."""
        return None

    async def resolve_outputs(self, job: JobContext, state: JobState) -> dict[str, str]:
        """stem → download URL of a finished job (default ``state.outputs``
        mapped through :attr:`stem_aliases`)."""
        out: dict[str, str] = {}
        for name, url in state.outputs.items():
            out[self.stem_aliases.get(name, self.stem_aliases.get(name.lower(), name.lower()))] = url
        return out

    def failed_error(self, job: JobContext, state: JobState) -> ProviderError:
        """The error for a job the service reports as failed."""
        what = f"{self.id}: remote job {job.remote_id} failed"
        detail = ": ".join(x for x in (state.error_code, state.error_message) if x) or "no reason given"
        return ProviderOutputError(f"{what} ({detail}) on track {job.track.name!r}", provider=self.id,
                                   remote_id=job.remote_id, code=state.error_code or "")

    def adopt_cost(self, info: RemoteJobInfo) -> Cost | None:
        """Cost of a job found by reconciliation (None → the estimate)."""
        return info.cost

    # -------------------------------------------------------------- client
    def _require_key(self) -> str:
        if not self.base_url:
            raise ProviderUnavailable(
                f"{self.id}: no base_url: {self.service_name} has no public default host; pass the base_url option",
                provider=self.id,
            )
        if not self._key:
            raise ProviderUnavailable(
                f"{self.id}: no API key: set ${self.env_var} or pass the api_key option", provider=self.id
            )
        return self._key.get()

    def _client(self) -> HttpClient:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        key = self._require_key()
        limits = self._limits()
        c = HttpClient(
            label=self.id,
            base_url=self.base_url,
            auth=self.auth(key),
            timeouts=self.timeouts,
            retry=self.retry,
            limiter=limits.limiter,
            clock=self.clock,
            error_for=self.error_for,
            user_agent=f"stemlab/{_version()} ({self.family})",
            transport=self.options.get("transport"),
            seed=self.options.get("seed"),
            redirects=self.redirects,
            max_response_bytes=self.max_response_bytes,
        )
        # forget clients of closed loops (asyncio.run in separate())
        self._clients = {k: v for k, v in self._clients.items() if not v[0].is_closed()}
        self._clients[id(loop)] = (loop, c)
        return c

    def _limits(self):
        key = account_key(self.service_name, self.base_url, self._key.get() if self._key else None)
        self._limit_keys.add(key)
        return shared_limits(key, rate=self.rate_limit, max_concurrency=self.max_concurrency, owner=id(self))

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(id(loop), None)
        if entry is not None:
            await entry[1].aclose()

    def close(self) -> None:
        self._clients.clear()
        for key in self._limit_keys:
            release_limits(key, id(self))
        self._limit_keys.clear()

    # ------------------------------------------------------------- running
    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        t = as_track(track, sample_rate)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(f"{self.id}: call 'await aseparate(...)' inside a running event loop")

        async def _run() -> Separation:
            try:
                return await self.aseparate(t)
            finally:
                await self.aclose()

        return asyncio.run(_run())

    async def aseparate(self, track: Track, journal: JobJournal | None = None) -> Separation:
        t = as_track(track)
        if journal is None:
            journal = NullJournal()
        key = journal.idempotency_key
        if not key:
            key = "stemlab-" + uuid.uuid4().hex
            if isinstance(journal, NullJournal):
                journal.idempotency_key = key
        self.check_input(t)
        self._require_key()
        client = self._client()
        job = JobContext(self, client, journal, t, key, self.clock)
        limits = self._limits()
        t_start = self.clock.now()
        wall0 = time.perf_counter()
        async with limits.slots:
            job.phase("slot_wait", self.clock.now() - t_start)
            rid = journal.remote_id
            cost: Cost | None = None
            if rid:
                job.note("resumed", True)
                log.info("%s: resuming remote job %s for %r (no resubmit)", self.id, rid, t.name)
            elif journal.in_doubt:
                found = await self.reconcile(job, attempts=self.reconcile_schedule[0])
                if found is not None:
                    rid = found.remote_id
                    cost = self.adopt_cost(found) or self.estimate_cost(t)
                    journal.submitted(rid, cost, {"reconciled": True})
                    job.note("reconciled", rid)
                    log.warning("%s: job for %r was in doubt; found it as %s (not resubmitted)", self.id, t.name, rid)
            if not rid:
                sub = await self._submit(job)
                rid, cost = sub.remote_id, sub.cost
            job.remote_id = rid
            state = await self._wait(job, rid)
            if state.status == FAILED:
                raise self.failed_error(job, state)
            try:
                blobs = await self._download(job, state)
                crashpoint("remote.after_download")
                stems, report, warns = await self._assemble(job, state, blobs)
            finally:  # downloads live in temporary files until decoded
                for f in job.scratch:
                    f.unlink(missing_ok=True)
        job.warnings.extend(warns)
        final_cost = state.cost or cost or self.estimate_cost(t)
        job.timings["total"] = self.clock.now() - t_start
        prov = self.provenance()
        prov.update(output=report.as_dict(), remote_id=rid, wall_seconds=round(time.perf_counter() - wall0, 3))
        prov.update({k: v for k, v in job.notes.items() if k not in prov})
        params = {"variant": self.variant, **self.config} if self.variant else dict(self.config)
        return Separation(
            stems=stems,
            provider=self.id,
            params=params,
            timings=dict(job.timings),
            device="remote",
            warnings=tuple(job.warnings),
            cost=final_cost,
            remote_id=rid,
            provenance=prov,
        )

    async def _assemble(self, job: JobContext, state: JobState, blobs: dict[str, Any]):
        """Decode the stems; a stem that does not decode (garbled in
        transit) is downloaded once more before the job fails."""
        fetched_again: set[str] = set()
        while True:
            try:
                with job.timed("decode", local=True):
                    return await asyncio.to_thread(
                        assemble_stems, blobs, expected=self.stems, label=self.id, input_seconds=job.track.seconds,
                        input_channels=job.track.mixture.shape[0], min_coverage=self.min_coverage,
                    )
            except ProviderOutputError as e:
                stem = e.details.get("stem")
                if "does not decode" not in e.message or stem not in blobs or stem in fetched_again:
                    raise
                fetched_again.add(stem)
                log.warning("%s; downloading stem %r again", e.message, stem)
                job.note("redownloads", len(fetched_again))
                with job.timed("download"):
                    again = await self.download_again(job, stem)
                if again is None:
                    raise
                blobs[stem] = again

    async def download_again(self, job: JobContext, stem: str) -> Any:
        """A fresh download of one stem whose file did not decode (garbled
        in transit, a page served in its place): the path of the new file, or
        None when there is no fresh URL to try. Services that keep downloads
        elsewhere (a cache) override it."""
        assert job.remote_id is not None
        urls = await self.resolve_outputs(job, await self.fetch_state(job, job.remote_id))
        if stem not in urls:
            return None
        return job.keep(await job.client.download(
            urls[stem], max_bytes=self.max_download_bytes,
            what=f"{self.id}: download of stem {stem!r} of job {job.remote_id}",
        ))

    # ----------------------------------------------------------- lifecycle
    #: looks at the job list after an ambiguous submit: (tries, service seconds between them) — a job
    #: created a moment ago may not be listed yet
    reconcile_schedule: ClassVar[tuple[int, float]] = (3, 2.0)

    async def reconcile(self, job: JobContext, *, attempts: int = 1) -> RemoteJobInfo | None:
        """Find the job a previous attempt may have submitted, through the
        service's job list (matching the idempotency key or the job tag in the
        upload's file name). None → it never reached the service (safe to
        submit). Raises :class:`~stemlab.errors.InDoubt` when the service has
        no list to look in (unless the user asked to retry in doubt jobs).
        Extra matches — the service made several jobs of one submit, e.g. it
        ignored the Idempotency-Key — are recorded as orphans with their cost
        (``journal.note("orphans", …)``), which the ledger charges to the
        budget."""
        jobs = await self.list_recent(job)
        if jobs is None:
            if self.options.get("retry_in_doubt"):
                job.note("reconcile", "no job list; resubmitting (retry_in_doubt)")
                return None
            raise InDoubt(
                f"{self.id}: the submit of {job.track.name!r} may have reached the service (its answer was lost) "
                f"and {self.service_name} has no job list to check; the job stays in doubt and is not resubmitted "
                "— check the account, then rerun with --retry-in-doubt to submit it again", provider=self.id,
            )
        for i in range(max(1, attempts)):
            if i:
                await self.clock.sleep(self.reconcile_schedule[1])
                jobs = await self.list_recent(job) or []
            mine = [info for info in jobs
                    if (info.idempotency_key and info.idempotency_key == job.idempotency_key)
                    or (info.filename and job.tag in info.filename)]
            if mine:
                keep = next((m for m in mine if m.status.lower() in ("done", "completed", "succeeded", "success")),
                            mine[0])
                orphans = [m for m in mine if m.remote_id != keep.remote_id]
                if orphans:
                    est = self.estimate_cost(job.track)
                    rec = [{"remote_id": m.remote_id, **((self.adopt_cost(m) or est).as_dict())} for m in orphans]
                    job.note("orphans", rec)
                    log.warning("%s: the service holds %d extra job(s) for %r (%s): recorded and charged to the "
                                "budget", self.id, len(orphans), job.track.name, ", ".join(m.remote_id for m in orphans))
                return keep
        job.note("reconcile", f"not among {len(jobs)} recent jobs: submitting")
        return None

    async def _submit(self, job: JobContext) -> Submission:
        prepared = await self.prepare(job)
        estimate = self.estimate_cost(job.track)
        job.journal.submitting(estimate)  # durable before the paid request
        crashpoint("remote.before_submit")
        with job.timed("submit"):
            sub: Submission | None = None
            last: ProviderError | None = None
            for n in range(self.retry.max_attempts):
                if n:
                    await self.clock.sleep(min(self.retry.maximum, self.retry.initial * 2 ** (n - 1)))
                try:
                    sub = await self.create(job, prepared)
                    break
                except (Ambiguous, ProviderOutputError) as e:
                    # the answer was lost (Ambiguous) or came but cannot be used (too large, a gzip
                    # bomb, garbled, no job id): the service may have made — and charged — the job.
                    # A redirect that was not followed is the one output error that proves the
                    # request was not processed: it fails as it is.
                    if isinstance(e, RedirectRefused):
                        raise
                    # never resend blindly (a service may ignore Idempotency-Key): look first; the
                    # job list is the authority — not listed after a while means not created
                    last = e
                    log.warning("%s: %s; looking for the job before any resend", self.id, e)
                    found = await self._reconcile_submit(job, e)
                    if found is not None:
                        sub = Submission(found.remote_id, self.adopt_cost(found) or estimate, {"reconciled": True})
                        break
            if sub is None:
                assert last is not None
                raise ProviderUnavailable(
                    f"{last.message}; {self.retry.max_attempts} submits got no usable answer and the service's job "
                    "list shows none of them: nothing was created", provider=self.id)
        crashpoint("remote.after_submit")
        job.journal.submitted(sub.remote_id, sub.cost, dict(sub.info) or None)
        job.remote_id = sub.remote_id
        log.info("%s: submitted %r as %s", self.id, job.track.name, sub.remote_id)
        return sub

    async def _reconcile_submit(self, job: JobContext, lost: ProviderError) -> RemoteJobInfo | None:
        """:meth:`reconcile` after a submit whose answer was lost or
        unusable. A job list that cannot be read (refused, garbled, a
        redirect to another origin) settles nothing: the job stays in doubt
        (:class:`~stemlab.errors.InDoubt`) — unless the user asked to retry
        jobs in doubt."""
        try:
            return await self.reconcile(job, attempts=self.reconcile_schedule[0])
        except InDoubt:
            raise
        except ProviderError as e:
            if self.options.get("retry_in_doubt"):
                job.note("reconcile", f"job list unreadable ({e.message}); resubmitting (retry_in_doubt)")
                return None
            raise InDoubt(
                f"{self.id}: the submit of {job.track.name!r} may have reached the service ({lost.message}) and "
                f"its job list could not be read ({e.message}); the job stays in doubt and is not resubmitted — "
                "check the account, then rerun with --retry-in-doubt to submit it again", provider=self.id,
            ) from None

    async def _pause(self, job: JobContext, remote_id: str, seconds: float) -> None:
        rec = self.options.get("webhook_receiver")
        if rec is None:
            await self.clock.sleep(seconds)
        else:
            await rec.wait(remote_id, seconds, self.clock)

    async def _wait(self, job: JobContext, remote_id: str) -> JobState:
        """Poll until final; time ``queue`` (until the job is seen running)
        and ``processing`` (from then until final) — resolution is the poll
        interval."""
        start = self.clock.now()
        deadline = start + self.poll.max_wait
        last_queued = start
        running_at: float | None = None
        delays = self.poll.delays()
        if self.poll.initial > 0:
            await self._pause(job, remote_id, self.poll.initial)
        polls = bad = 0
        while True:
            try:
                state = await self.fetch_state(job, remote_id)
            except ProviderOutputError as e:
                # a garbled status answer (not JSON, a field missing): polling is read-only, so ask again
                # a few times before giving up; the job itself is not affected
                bad += 1
                if bad >= self.retry.max_attempts or self.clock.now() >= deadline:
                    raise
                log.warning("%s: unusable status answer for %s (%s); polling again", self.id, remote_id, e.message)
                job.note("bad_status_answers", job.notes.get("bad_status_answers", 0) + 1)
                await self._pause(job, remote_id, min(next(delays), max(0.0, deadline - self.clock.now())))
                continue
            bad = 0
            crashpoint("remote.poll")
            polls += 1
            now = self.clock.now()
            if state.status == QUEUED:
                last_queued = now
            elif state.status == RUNNING and running_at is None:
                running_at = now
            elif state.status in (DONE, FAILED):
                break
            if now >= deadline:
                raise ProviderTimeout(
                    f"{self.id}: remote job {remote_id} for {job.track.name!r} still "
                    f"{state.service_status or state.status} after {now - start:.0f} s (max_wait "
                    f"{self.poll.max_wait:.0f} s); the id is kept, a resumed run polls it again",
                    provider=self.id, remote_id=remote_id,
                )
            await self._pause(job, remote_id, min(next(delays), max(0.0, deadline - now)))
        split = running_at if running_at is not None else last_queued
        job.phase("queue", split - start)
        job.phase("processing", now - split)
        job.note("polls", polls)
        return state

    async def _download(self, job: JobContext, state: JobState) -> dict[str, Any]:
        """stem → the downloaded file (a temporary path; bytes from services
        that assemble their outputs otherwise)."""
        urls = await self.resolve_outputs(job, state)
        wanted = [s for s in self.stems if s in urls]
        if len(wanted) < len(self.stems):
            missing = [s for s in self.stems if s not in urls]
            raise ProviderOutputError(
                f"{self.id}: finished job {job.remote_id} lists no file for stems {missing} "
                f"(it lists {sorted(urls)})", provider=self.id, remote_id=job.remote_id,
            )
        blobs: dict[str, Any] = {}
        refreshes = 0
        with job.timed("download"):
            for stem in wanted:
                while True:
                    try:
                        blobs[stem] = job.keep(await job.client.download(
                            urls[stem], max_bytes=self.max_download_bytes,
                            what=f"{self.id}: download of stem {stem!r} of job {job.remote_id}",
                        ))
                        break
                    except DownloadRefused as e:
                        if refreshes >= 2:
                            raise ProviderOutputError(
                                f"{e.message}; still refused after refreshing the job's URLs {refreshes} times",
                                provider=self.id, remote_id=job.remote_id, stem=stem,
                            ) from None
                        refreshes += 1
                        log.info("%s: %s; refreshing the job for fresh URLs", self.id, e.message)
                        assert job.remote_id is not None
                        fresh = await self.fetch_state(job, job.remote_id)
                        urls = await self.resolve_outputs(job, fresh)
                        if stem not in urls:
                            raise ProviderOutputError(
                                f"{self.id}: job {job.remote_id} no longer lists stem {stem!r}",
                                provider=self.id, remote_id=job.remote_id,
                            ) from None
        if refreshes:
            job.note("url_refreshes", refreshes)
        return blobs


def _version() -> str:
    from ... import __version__

    return __version__


def sequence_of(data: Any, *keys: str) -> Sequence[Any]:
    """The first list found under ``keys`` (or ``data`` itself if a list)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for k in keys:
            v = data.get(k)
            if isinstance(v, list):
                return v
            if isinstance(v, dict):
                inner = sequence_of(v, *keys)
                if inner:
                    return inner
    return []

