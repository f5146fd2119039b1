"""Dango vocal remover (团子 伴奏人声提取, api.dango.ai): vocals/accompaniment or
four stems, billed in points.

Wire format from the vendor's docs (seed 003, last updated 2022-02-09); see
:class:`Dango` for the flow and for every assumption where the docs are
silent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from ..._paths import cache_dir
from ...audio import encode_bytes
from ...errors import (
    ConfigError,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderUnavailable,
)
from ...providers.base import Param
from ...types import Cost
from .. import SERVICES
from .._remote.client import DownloadRefused
from .._remote.http import (
    COMMON_OPTIONS,
    DONE,
    FAILED,
    RUNNING,
    JobContext,
    JobState,
    PollSchedule,
    RemoteJobInfo,
    RemoteProvider,
    Response,
    Submission,
)
from . import pricing
from .api import MAX_BATCH, MAX_SECONDS, ZIP_NAMES, english
from .catalog import DEFAULT_STYLE, STYLE_BY_CODE, STYLES

__all__ = ["Dango"]

log = logging.getLogger("stemlab.remote")


class _StatusBatcher:
    """One status request for every Dango job this event loop is waiting on.

    Each answer is kept for ``max_age`` seconds (the poll interval): a poll
    finding a fresh answer returns it without a request; otherwise it joins
    the next batch, which starts ``max_age`` after the previous one (at once
    if that is past) and asks for every active song whose answer is at least
    ``max_age`` old. So however many jobs run, the account sees one status
    request per interval, each song is asked at most once per interval, and
    a song is first asked only when its own job first polls (after the
    initial 40–60 s)."""

    def __init__(self, provider: Dango, max_age: float) -> None:
        self.provider = provider
        self.max_age = max_age
        self.active: dict[str, float] = {}  # musicId → when its job last polled
        self.cache: dict[str, tuple[float, dict[str, Any]]] = {}  # musicId → (asked at, item)
        self.waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self.flush: asyncio.Future[None] | None = None
        self.last: float | None = None  # when the last batch was sent
        self.inflight: dict[str, asyncio.Future[Any]] = {}  # musicId → its batch's answer, while asked
        self.sent: list[tuple[float, int]] = []  # (clock time, ids) of every batch request

    async def get(self, job: JobContext, music_id: str) -> dict[str, Any]:
        now = job.clock.now()
        self.active[music_id] = now
        hit = self.cache.get(music_id)
        if hit is not None and now - hit[0] < self.max_age:
            return hit[1]
        batch = self.inflight.get(music_id)
        if batch is not None:  # being asked right now: share that answer
            found = await asyncio.shield(batch)
            if music_id in found:
                return found[music_id]
            raise _AskAlone()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(music_id, []).append(fut)
        if self.flush is None:
            due = now if self.last is None else max(now, self.last + self.max_age)
            self.flush = asyncio.ensure_future(self._flush(job, due - now))
        return await fut

    def _forget_idle(self, now: float) -> None:
        """Drop the songs whose job stopped polling (ended elsewhere) from ``active`` and ``cache``."""
        for m in [m for m, t in self.active.items() if now - t > 4 * self.max_age + 60.0]:
            self.active.pop(m, None)  # its job stopped polling (ended elsewhere)
            self.cache.pop(m, None)

    def _to_ask(self, waiters: Mapping[str, list[asyncio.Future[Any]]], now: float) -> list[str]:
        """The songs of the next batch: those waited on, then every other
        active song not being asked whose answer is at least ``max_age`` old."""
        return list(waiters) + [m for m in self.active if m not in waiters and m not in self.inflight and
                                (m not in self.cache or now - self.cache[m][0] >= self.max_age)]

    async def _ask(self, job: JobContext, chunk: list[str], waiters: Mapping[str, list[asyncio.Future[Any]]]
                   ) -> dict[str, dict[str, Any]] | None:
        """One status request for ``chunk``, shared while in flight with the
        jobs that poll one of its songs: its answer, or None when it failed
        (the chunk's waiters then have the error)."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        for m in chunk:
            self.inflight[m] = answer
        self.sent.append((job.clock.now(), len(chunk)))
        try:
            found = await self.provider._query_status(job, chunk)
        except Exception as e:  # noqa: BLE001 - handed to every waiter of this chunk
            answer.set_exception(e)
            answer.exception()  # retrieved: no "never retrieved" warning when nobody shares it
            _settle(waiters, chunk, error=e)
            return None
        else:
            answer.set_result(found)
        finally:
            for m in chunk:
                self.inflight.pop(m, None)
            if not answer.done():  # cancelled: sharers ask alone
                answer.set_exception(_AskAlone())
                answer.exception()
        return found

    def _keep(self, chunk: list[str], found: Mapping[str, dict[str, Any]], now: float) -> None:
        """Cache the batch's answers (asked at ``now``); stop asking for a song that is final or unknown."""
        for m in chunk:
            item = found.get(m)
            if item is None or str(item.get("status")) in ("1", "2"):
                self.active.pop(m, None)  # final (or unknown): nothing more to ask
            if item is not None:
                self.cache[m] = (now, item)

    async def _flush(self, job: JobContext, delay: float) -> None:
        waiters: dict[str, list[asyncio.Future[Any]]] | None = None
        try:
            if delay > 0:
                await job.clock.sleep(delay)
            waiters, self.waiters, self.flush = self.waiters, {}, None
            now = job.clock.now()
            self.last = now
            self._forget_idle(now)
            ids = self._to_ask(waiters, now)
            for i in range(0, len(ids), MAX_BATCH):
                chunk = ids[i:i + MAX_BATCH]
                found = await self._ask(job, chunk, waiters)
                if found is None:
                    continue
                self._keep(chunk, found, now)
                _settle(waiters, chunk, found=found)
        finally:  # cancelled mid-way: nobody may wait forever
            if waiters is None:
                waiters, self.waiters, self.flush = self.waiters, {}, None
            _settle(waiters, list(waiters), error=_AskAlone())


def _settle(waiters: Mapping[str, list[asyncio.Future[Any]]], ids: list[str], *,
            found: Mapping[str, Any] | None = None, error: BaseException | None = None) -> None:
    for mid in ids:
        for f in waiters.get(mid, ()):
            if f.done():
                continue
            if found is not None and mid in found:
                f.set_result(found[mid])
            else:  # error, or not in the batch answer: ask alone (yields the service's own error)
                f.set_exception(error if error is not None else _AskAlone())


class _AskAlone(Exception):
    pass


class Dango(RemoteProvider):
    """Dango vocal remover: ``vocals`` (stems ``vocals`` + ``accompaniment``)
    or ``4stems`` (``vocals``, ``drums``, ``bass``, ``other``).

    Spec: ``dango:vocals?style=v5&format=flac``. ``style`` names the
    algorithm (numbers are accepted too): ``v5`` (9, default for
    ``vocals``), ``v5_better_vocals`` (10), ``v5_harmony`` (11), ``v4`` (5),
    ``multitrack_v3`` (12; default for ``4stems``, which needs a multitrack
    style: this or ``multitrack_v2`` = 0), and the deprecated ``v4_better_vocals`` (6),
    ``v4_harmony`` (7), ``v4_aggressive`` (8), ``multitrack_v2`` (0) — a
    warning on every result. ``format``: ``flac`` (default; stemlab uploads
    lossless FLAC, which the service requires for FLAC output) or ``mp3``.

    Flow::

        POST /vocal-remover/upload/channel {filename, style}     free, one-use channel
        POST <url> multipart: x-oss-forbid-overwrite=true, key, OSSAccessKeyId,
             policy, Signature (= "sign"), file (last)            object store, no auth
        POST /vocal-remover/upload/{channel}/result → musicId     PAID from here
        POST /vocal-remover/{id}[,{id}…]                          status 0/1/2 (batched)
        POST /vocal-remover/{id}/download/default/{mp3|flac}/{vocals|instrumental|4stems}
             → {url (valid 20 min), download (left of 7)}

    Limits honoured before paying: tracks over 12 minutes are refused
    (:class:`~stemlab.errors.ProviderRejected`, nothing uploaded); an upload
    above the policy's ``content-length-range`` is refused before sending.
    At most 4.5 requests/s per account (rate limiter; the docs' cap is 5,
    the margin absorbs network jitter); first status poll 45 s after
    the submit, then every 5 s. Concurrent jobs share one batch status
    request per poll interval (``POST /vocal-remover/{id1},{id2},…``; an
    answer is reused for ``batch_max_age`` seconds, option, default the poll
    interval; 0 asks per job).

    Downloads: each call of the download endpoint uses one of the song's 7
    downloads (asking again within 20 minutes returns the same URL for
    free), and songs are deleted after 30 days, so the files are cached on
    disk per musicId with its final status (``$STEMLAB_CACHE/remote/dango/
    <musicId>/``; option ``download_cache``: a directory, or False): a
    resumed or repeated job neither polls nor downloads again, even after
    the service deleted the song. A URL refused as expired is replaced after the
    job's status is checked again (at most twice; each replacement may use
    one download).

    Cost: points used, free or paid, as ``credits`` (``credit_unit=
    "dango_points"``); USD for the paid ones only. Under 30 s: 12 free
    points (USD 0); otherwise 60–120 paid points — the estimate is
    ``points_per_song`` (option, default 120, the upper bound), the final
    cost the ``cost`` the status reports. USD: ``usd_per_point`` (option,
    default 0: the docs publish no price). Failed jobs are refunded by the
    service.

    Assumptions where seed 003 is silent:

    1. Auth: the docs show none; stemlab sends ``Authorization: Bearer
       <key>`` (``$DANGO_API_KEY``).
    2. Errors come as ``{"code": ≠0, "message"}`` (HTTP 200 or an error
       status); ``code`` ≠ 0 is an error whatever the HTTP status.
    3. Batch status answers: a mapping ``{musicId: {…}}``, a list of objects
       with ``musicId``/``id``, or (one id) the object itself are all read;
       an id absent from a batch answer is asked alone.
    4. ``musicId`` equals the channel's ``key`` without ``in/`` (the docs'
       example); an answer lost after the paid ``result`` call is reconciled
       by asking for that id before anything is resent.
    5. The 4-stem zip's members are told apart by name (English or Chinese
       stem words).
    6. Status 0 covers queue and processing: the ``queue`` phase is the wait
       until the first poll (≈ 45 s), ``processing`` the rest.
    """

    family: ClassVar[str] = "dango"
    #: the key is a header; neither the API nor its object store (seed 003) redirect: same origin only
    #: (uploads go to the store's own origin with its signed policy, never the key)
    redirects: ClassVar[Literal["same-origin", "none"]] = "same-origin"
    description: ClassVar[str] = SERVICES["dango"].description
    variants: ClassVar[tuple[str, ...]] = ("vocals", "4stems")
    default_variant: ClassVar[str | None] = "vocals"
    params_schema: ClassVar[tuple[Param, ...]] = (
        Param("style", str, "auto", help="algorithm by name: " + ", ".join(
            f"{s.name} ({s.code}{', deprecated' if s.deprecated else ''})" for s in STYLES.values())
            + "; auto = v5 (vocals) / multitrack_v3 (4stems)"),
        Param("format", str, "flac", help="format of the downloaded stems", choices=("flac", "mp3")),
    )
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS + (
        "points_per_song", "usd_per_point", "batch_max_age", "download_cache")
    default_base_url: ClassVar[str] = "https://api.dango.ai"
    default_poll: ClassVar[PollSchedule] = PollSchedule(initial=45.0, interval=5.0, max_interval=5.0, backoff=1.0,
                                                        max_wait=1800.0)
    #: the docs cap every endpoint at 5 QPS ("最大QPS: 5"); 4.5 leaves room for network jitter
    default_rate_limit: ClassVar[float | None] = 4.5
    default_max_concurrency: ClassVar[int] = 4
    max_duration: ClassVar[float | None] = MAX_SECONDS

    # ------------------------------------------------------------ config
    def validate(self) -> None:
        fam = self.family
        raw = str(self.config["style"]).strip().lower()
        if raw in ("", "auto"):
            style = STYLES[DEFAULT_STYLE[self.variant or "vocals"]]
        elif raw.lstrip("-").isdigit() and int(raw) in STYLE_BY_CODE:
            style = STYLE_BY_CODE[int(raw)]
        elif raw in STYLES:
            style = STYLES[raw]
        else:
            valid = ", ".join(f"{s.name} ({s.code})" for s in STYLES.values())
            raise ConfigError(f"provider {fam}: unknown style {self.config['style']!r}; valid: {valid}",
                              field=f"{fam}.params.style")
        if self.variant == "4stems" and not style.multitrack:
            multi = [s.name for s in STYLES.values() if s.multitrack]
            raise ConfigError(f"provider {fam}: variant 4stems needs a multitrack style ({', '.join(multi)}), "
                              f"got {style.name!r}", field=f"{fam}.params.style")
        # canonical identity: the variant's default style is "auto"
        self.config["style"] = "auto" if style.name == DEFAULT_STYLE[self.variant or "vocals"] else style.name
        self.style = style
        for name in ("points_per_song", "usd_per_point", "batch_max_age"):
            v = self.options.get(name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"provider {fam}: option {name} expects a number ≥ 0, got {v!r}",
                                  field=f"{fam}.options.{name}")
        dc = self.options.get("download_cache")
        if dc is not None and dc is not False and not isinstance(dc, (str, os.PathLike)):
            raise ConfigError(f"provider {fam}: option download_cache expects a directory or False, got {dc!r}",
                              field=f"{fam}.options.download_cache")
        self._batchers: dict[int, tuple[asyncio.AbstractEventLoop, _StatusBatcher]] = {}
        self._done_items: dict[str, dict[str, Any]] = {}  # musicId → its final status item (until cached)

    @property
    def stems(self) -> tuple[str, ...]:
        return ("vocals", "drums", "bass", "other") if self.variant == "4stems" else ("vocals", "accompaniment")

    @property
    def items(self) -> dict[str, str]:
        """Download item → the stems it holds."""
        if self.variant == "4stems":
            return {"4stems": "vocals drums bass other"}
        return {"vocals": "vocals", "instrumental": "accompaniment"}

    # --------------------------------------------------------------- cost
    def cost_for_seconds(self, seconds: float) -> Cost:
        per = self.options.get("points_per_song")
        free, paid = pricing.points_for_seconds(seconds, pricing.PAID_POINTS[1] if per is None else float(per))
        return self._points_cost(free, paid, estimated=True)

    def _points_cost(self, free: float, paid: float, *, estimated: bool) -> Cost:
        """Points used (free + paid) as credits; USD for the paid ones."""
        return Cost(usd=paid * float(self.options.get("usd_per_point") or 0.0), credits=free + paid,
                    credit_unit="dango_points", estimated=estimated)

    def _cost_from(self, item: Mapping[str, Any]) -> Cost | None:
        length, cost = item.get("length"), item.get("cost")
        if not isinstance(length, (int, float)) or isinstance(length, bool):
            return None
        paid_cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
        if length < pricing.SHORT_SECONDS or (length <= pricing.SHORT_SECONDS and not paid_cost):
            return self._points_cost(pricing.FREE_POINTS, 0.0, estimated=False)  # "cost" is meaningless then
        if paid_cost is None:
            return None
        return self._points_cost(0.0, paid_cost, estimated=False)

    # --------------------------------------------------------------- wire
    def parse_error(self, resp: Response) -> tuple[str, str]:
        data = resp.json_or_none()
        if isinstance(data, dict) and ("code" in data or "message" in data):
            return str(data.get("code", "")), english(str(data.get("message") or ""))
        return super().parse_error(resp)

    def _payload(self, resp: Response, stage: str) -> Any:
        """``data`` of ``{"code": 0, "message", "data"}``; a non-zero code
        raises (see :meth:`_code_error`)."""
        body = resp.json()
        if not isinstance(body, dict) or "code" not in body:
            raise ProviderOutputError(f"{resp.what}: expected {{code, message, data}}, got {resp.excerpt(120)!r}",
                                      provider=self.id)
        code = body.get("code")
        if code in (0, "0"):
            return body.get("data")
        raise self._code_error(code, str(body.get("message") or ""), stage, resp.what)

    def _code_error(self, code: Any, message: str, stage: str, where: str) -> ProviderError:
        desc = f"code {code}: {english(message) or 'no message'}"
        try:
            c = int(code)
        except (TypeError, ValueError):
            c = 0
        kw = {"provider": self.id, "code": str(code)}
        if c == -10 and stage in ("channel", "result"):
            return ProviderUnavailable(f"{where}: not enough points on the account ({desc})", **kw)
        if stage in ("channel", "result", "upload"):
            return ProviderRejected(f"{where}: refused ({desc})", **kw)
        return ProviderOutputError(f"{where}: {desc}", **kw)

    # ------------------------------------------------------------ prepare
    async def prepare(self, job: JobContext) -> dict[str, Any]:
        with job.timed("encode", local=True):
            data = await asyncio.to_thread(encode_bytes, job.track.mixture, job.track.sample_rate, "flac")
        filename = job.upload_filename("flac")
        c = job.client
        ch = self._payload(await c.request(
            "POST", "/vocal-remover/upload/channel", json={"filename": filename, "style": self.style.code},
            what=f"{self.id}: create upload channel"), "channel")
        need = ("channel", "key", "OSSAccessKeyId", "policy", "sign", "url")
        if not isinstance(ch, dict) or any(not ch.get(k) for k in need):
            raise ProviderOutputError(f"{self.id}: upload channel answer lacks "
                                      f"{[k for k in need if not isinstance(ch, dict) or not ch.get(k)]}",
                                      provider=self.id)
        limit = _policy_max_bytes(str(ch["policy"]))
        if limit is not None and len(data) > limit:
            raise ProviderRejected(f"{self.id}: track {job.track.name!r} encodes to {len(data)} bytes of FLAC, above "
                                   f"the upload limit of {limit} bytes", provider=self.id, track=job.track.name)
        job.note("channel", ch["channel"])
        job.note("upload_key", ch["key"])
        form = {"x-oss-forbid-overwrite": "true", "key": str(ch["key"]), "OSSAccessKeyId": str(ch["OSSAccessKeyId"]),
                "policy": str(ch["policy"]), "Signature": str(ch["sign"])}
        with job.timed("upload"):
            # httpx puts form fields before files: "file" is the last part, as OSS requires
            resp = await c.request("POST", str(ch["url"]), data=form, files={"file": (filename, data, "audio/flac")},
                                   auth=False, upload=True, accept_status=frozenset({409}),
                                   what=f"{self.id}: upload of {len(data)} bytes to object storage")
        if resp.status == 409:
            # x-oss-forbid-overwrite: the object exists. After a retried upload that
            # means our first attempt landed; on a first attempt it is someone else's.
            if resp.attempts <= 1:
                raise ProviderRejected(f"{self.id}: object storage refused the upload: key {ch['key']} already "
                                       f"exists ({resp.excerpt(120)})", provider=self.id)
            job.note("upload_overwrite_refused_after_retry", True)
        job.note("upload_bytes", len(data))
        return {"channel": str(ch["channel"]), "key": str(ch["key"])}

    # ------------------------------------------------------------- submit
    async def create(self, job: JobContext, prepared: Any) -> Submission:
        channel = prepared["channel"]
        resp = await job.client.request("POST", f"/vocal-remover/upload/{quote(channel, safe='')}/result",
                                        retry="safe", what=f"{self.id}: start processing (upload result)")
        mid = self._payload(resp, "result")
        if isinstance(mid, dict):
            mid = mid.get("musicId") or mid.get("id")
        if not isinstance(mid, str) or not mid:
            raise ProviderOutputError(f"{self.id}: upload result answered without a musicId ({resp.excerpt(120)!r})",
                                      provider=self.id)
        return Submission(mid, self.estimate_cost(job.track), {"channel": channel, "style": self.style.code})

    async def reconcile(self, job: JobContext, *, attempts: int = 1) -> RemoteJobInfo | None:
        """After a lost ``result`` answer: the musicId is the channel key's id
        (assumption 4); if the service knows it (asked ``attempts`` times, a
        moment apart), the job was started."""
        key = job.notes.get("upload_key")
        if not key:
            return await super().reconcile(job, attempts=attempts)
        mid = str(key).split("/")[-1]
        for i in range(max(1, attempts)):
            if i:
                await self.clock.sleep(self.reconcile_schedule[1])
            try:
                found = await self._query_status(job, [mid])
            except ProviderOutputError:
                continue
            item = found.get(mid)
            if item is not None:
                return RemoteJobInfo(remote_id=mid, status=str(item.get("status")),
                                     filename=str(item.get("name") or ""), cost=self._cost_from(item))
        return None

    # --------------------------------------------------------------- poll
    async def _query_status(self, job: JobContext, ids: list[str]) -> dict[str, dict[str, Any]]:
        """One status request for ``ids`` → {musicId: item}."""
        path = "/vocal-remover/" + ",".join(quote(i, safe="") for i in ids)
        resp = await job.client.request("POST", path, what=f"{self.id}: status of {len(ids)} song(s)"
                                        if len(ids) > 1 else f"{self.id}: status of {ids[0]}")
        data = self._payload(resp, "status")
        out: dict[str, dict[str, Any]] = {}
        if isinstance(data, dict) and "status" in data and len(ids) == 1:
            out[ids[0]] = data
        elif isinstance(data, dict):
            out = {str(k): v for k, v in data.items() if isinstance(v, dict)}
        elif isinstance(data, list):
            for i, it in enumerate(data):
                if not isinstance(it, dict):
                    continue
                mid = it.get("musicId") or it.get("id") or (ids[i] if len(data) == len(ids) else None)
                if mid:
                    out[str(mid)] = it
        else:
            raise ProviderOutputError(f"{resp.what}: unexpected status answer {resp.excerpt(120)!r}", provider=self.id)
        return out

    def _batcher(self) -> _StatusBatcher:
        loop = asyncio.get_running_loop()
        entry = self._batchers.get(id(loop))
        if entry is None or entry[0] is not loop:
            self._batchers = {k: v for k, v in self._batchers.items() if not v[0].is_closed()}
            age = self.options.get("batch_max_age")
            entry = (loop, _StatusBatcher(self, self.poll.interval if age is None else float(age)))
            self._batchers[id(loop)] = entry
        return entry[1]

    async def _status_item(self, job: JobContext, music_id: str) -> dict[str, Any]:
        b = self._batcher()
        if b.max_age > 0:
            try:
                return await b.get(job, music_id)
            except _AskAlone:
                pass
        found = await self._query_status(job, [music_id])
        if music_id not in found:
            raise ProviderOutputError(f"{self.id}: status answer does not mention song {music_id}", provider=self.id)
        return found[music_id]

    async def fetch_state(self, job: JobContext, remote_id: str) -> JobState:
        cached = self._cached_state(job, remote_id)
        if cached is not None:  # finished and downloaded before: no request at all
            return cached
        item = await self._status_item(job, remote_id)
        raw = item.get("status")
        info: dict[str, Any] = {k: item[k] for k in ("length", "name", "loseless", "download", "cost") if k in item}
        if "download" in item:
            job.notes["downloads_left"] = item["download"]
        if raw in (2, "2"):
            self._done_items[remote_id] = dict(item)
            return JobState(DONE, cost=self._cost_from(item), service_status="2", info=info)
        if raw in (1, "1"):
            return JobState(FAILED, error_code="1", service_status="1", info=info, cost=Cost(
                credit_unit="dango_points", estimated=False),
                error_message="processing failed (status 1: usually an unreadable audio format; points refunded)")
        if raw in (0, "0"):
            return JobState(RUNNING, service_status="0", info=info)
        raise ProviderOutputError(f"{self.id}: song {remote_id} has unknown status {raw!r}", provider=self.id)

    # ----------------------------------------------------------- download
    def _cache_dir(self, music_id: str) -> Path | None:
        opt = self.options.get("download_cache")
        if opt is False:
            return None
        base = Path(opt) if opt else cache_dir("remote", "dango")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in music_id)
        return base / safe

    def _cache_file(self, where: Path, item: str) -> Path:
        fmt = self.config["format"]
        return where / f"{fmt}_{item}.{'zip' if item == '4stems' else fmt}"

    def _cached_state(self, job: JobContext, music_id: str) -> JobState | None:
        """The final state of a song whose files are all in the download
        cache (from its ``status.json``), else None."""
        where = self._cache_dir(music_id)
        if where is None or not (where / "status.json").is_file():
            return None
        if not all(self._cache_file(where, it).is_file() for it in self.items):
            return None
        try:
            item = json.loads((where / "status.json").read_text())
        except (OSError, ValueError):
            return None
        job.note("status_from_download_cache", True)
        info: dict[str, Any] = {k: item[k] for k in ("length", "name", "loseless", "download", "cost") if k in item}
        return JobState(DONE, cost=self._cost_from(item), service_status="2 (stemlab download cache)", info=info)

    async def _download_url(self, job: JobContext, item: str) -> str:
        assert job.remote_id is not None
        fmt = self.config["format"]
        resp = await job.client.request(
            "POST", f"/vocal-remover/{quote(job.remote_id, safe='')}/download/default/{fmt}/{item}",
            what=f"{self.id}: download URL of {item} ({fmt})")
        data = self._payload(resp, "download")
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProviderOutputError(f"{self.id}: download answer for {item} has no URL ({resp.excerpt(120)!r})",
                                      provider=self.id)
        if isinstance(data.get("download"), int):
            job.notes["downloads_left"] = data["download"]
        job.notes["download_urls_requested"] = job.notes.get("download_urls_requested", 0) + 1
        return url

    async def _fetch_item(self, job: JobContext, item: str) -> Path:
        url = await self._download_url(job, item)
        refreshes = 0
        while True:
            try:
                return await job.client.download(url, max_bytes=self.max_download_bytes,
                                                 what=f"{self.id}: download of {item} of song {job.remote_id}")
            except DownloadRefused as e:
                if refreshes >= 2:
                    raise ProviderOutputError(f"{e.message}; still refused after {refreshes} fresh URLs",
                                              provider=self.id, remote_id=job.remote_id) from None
                refreshes += 1
                log.info("%s: %s; checking the song and asking for a fresh URL", self.id, e.message)
                assert job.remote_id is not None
                state = await self.fetch_state(job, job.remote_id)
                if state.status != DONE:
                    raise ProviderOutputError(f"{self.id}: song {job.remote_id} is no longer downloadable (status "
                                              f"{state.service_status})", provider=self.id) from None
                url = await self._download_url(job, item)
                job.note("url_refreshes", job.notes.get("url_refreshes", 0) + 1)

    async def _download(self, job: JobContext, state: JobState) -> dict[str, Any]:
        assert job.remote_id is not None
        where = self._cache_dir(job.remote_id)
        files: dict[str, Path] = {}
        with job.timed("download"):
            for item in self.items:
                path = self._cache_file(where, item) if where else None
                if path is not None and path.is_file():
                    files[item] = path
                    job.note("download_cache_hits", job.notes.get("download_cache_hits", 0) + 1)
                    continue
                left = job.notes.get("downloads_left", state.info.get("download"))
                if isinstance(left, int) and left <= 0:
                    raise ProviderOutputError(
                        f"{self.id}: song {job.remote_id} has no downloads left (7 per song, all used) and "
                        f"{item} is not in stemlab's download cache", provider=self.id, remote_id=job.remote_id)
                got = await self._fetch_item(job, item)
                if path is not None:  # kept: each of the 7 downloads per song is used once
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(got), str(path))
                    got = path
                else:
                    job.keep(got)
                files[item] = got
            done = self._done_items.pop(job.remote_id, None)
            if where is not None and done is not None and not (where / "status.json").is_file():
                (where / "status.json").write_text(json.dumps(done, ensure_ascii=False))
        if self.style.deprecated:
            job.warnings.append(f"style {self.style.name} ({self.style.code}) is deprecated by Dango")
        if self.variant == "4stems":
            return {stem: job.keep(f) for stem, f in
                    _unzip_stems(files["4stems"], self.stems, self.id, self.max_download_bytes).items()}
        return {self.items[item]: data for item, data in files.items()}

    def _drop_cached(self, job: JobContext, stem: str) -> str | None:
        """Remove a stem's file from the download cache (it did not decode:
        kept, it would fail every later run of the song); its item name."""
        item = next((i for i, s in self.items.items() if s == stem), None)
        if self.variant == "4stems":
            item = "4stems"
        where = self._cache_dir(job.remote_id) if job.remote_id else None
        if item is not None and where is not None:
            self._cache_file(where, item).unlink(missing_ok=True)
        return item

    async def _assemble(self, job: JobContext, state: JobState, blobs: dict[str, Any]):
        try:
            return await super()._assemble(job, state, blobs)
        except ProviderOutputError as e:
            if "does not decode" in e.message and e.details.get("stem"):
                self._drop_cached(job, str(e.details["stem"]))
            raise

    async def download_again(self, job: JobContext, stem: str) -> Any:
        """A stem that did not decode is dropped from the download cache and
        fetched once more (the same URL within its 20 minutes costs none of
        the song's 7 downloads). The 4-stem zip is not fetched again."""
        item = self._drop_cached(job, stem)
        if item is None or item == "4stems":
            return None
        got = await self._fetch_item(job, item)
        where = self._cache_dir(job.remote_id) if job.remote_id else None
        if where is None:
            return job.keep(got)
        path = self._cache_file(where, item)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(got), str(path))
        return path

    # ------------------------------------------------------------ helpers
    def failed_error(self, job: JobContext, state: JobState) -> ProviderError:
        err = super().failed_error(job, state)
        return ProviderRejected(err.message, **err.details)  # status 1: the audio, not the service


def _policy_max_bytes(policy: str) -> int | None:
    """Upper bound of ``content-length-range`` in an OSS POST policy."""
    try:
        doc = json.loads(base64.b64decode(policy + "=" * (-len(policy) % 4)))
    except (ValueError, TypeError):
        return None
    for cond in doc.get("conditions", []) if isinstance(doc, dict) else []:
        if isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
            try:
                return int(cond[2])
            except (TypeError, ValueError):
                return None
    return None


def _unzip_stems(zip_path: Path, stems: tuple[str, ...], label: str, max_bytes: int) -> dict[str, Path]:
    """Each stem of the 4-stem zip, extracted to a temporary file. A member
    declaring (or inflating to) more than ``max_bytes`` is refused — a zip
    bomb is never inflated in memory."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        size = zip_path.stat().st_size if zip_path.exists() else 0
        raise ProviderOutputError(f"{label}: the 4-stem download is not a zip file ({size} bytes)",
                                  provider=label) from None
    out: dict[str, Path] = {}
    with zf:
        infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
        names = [i.filename for i in infos]
        try:
            for info in infos:
                low = info.filename.rsplit("/", 1)[-1].lower()
                for frag, stem in ZIP_NAMES:
                    if frag in low and stem not in out:
                        out[stem] = _extract(zf, info, max_bytes, label)
                        break
        except BaseException:
            for f in out.values():
                f.unlink(missing_ok=True)
            raise
    missing = [s for s in stems if s not in out]
    if missing:
        for f in out.values():
            f.unlink(missing_ok=True)
        raise ProviderOutputError(f"{label}: the 4-stem zip lacks {missing} (members {names})", provider=label)
    return out


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int, label: str) -> Path:
    if info.file_size > max_bytes:
        raise ProviderOutputError(f"{label}: zip member {info.filename!r} declares {info.file_size} bytes, above "
                                  f"the limit of {max_bytes} (option max_download_bytes)", provider=label)
    fd, tmp = tempfile.mkstemp(prefix="stemlab-unzip-", suffix="-" + info.filename.rsplit("/", 1)[-1][-40:])
    n = 0
    try:
        with os.fdopen(fd, "wb") as dst, zf.open(info) as src:
            while chunk := src.read(1 << 20):
                n += len(chunk)
                if n > max_bytes:
                    raise ProviderOutputError(f"{label}: zip member {info.filename!r} inflates beyond {max_bytes} "
                                              "bytes (option max_download_bytes)", provider=label)
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise ProviderOutputError(f"{label}: zip member {info.filename!r} is corrupt ({e})", provider=label) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)
