"""Dango vocal-remover emulator (seed 003) with its object store, on 127.0.0.1.

Endpoints (fault endpoint names in brackets)::

    POST /vocal-remover/upload/channel            [channel]       {filename, style} → OSS POST policy
    POST /oss                                      [upload]        object store: multipart form POST
    POST /vocal-remover/upload/{channel}/result    [result]        → musicId; charges points
    POST /vocal-remover/{id}[,{id}…]               [status]        status 0/1/2 (batch: {id: item})
    POST /vocal-remover/{id}/download/default/{mp3|flac}/{vocals|instrumental|4stems}
                                                   [download_url]  {url, download}
    GET  /files/{token}/{name}?expires&sig         [download]      the signed file URL (20 min)

Envelope ``{"code": 0, "message": "success", "data": …}``; errors ``{"code":
-1|-10|-100, "message": <the docs' Chinese text>, "data": null}`` under HTTP
200 (bad key: HTTP 401, code -401).

The object store checks a form POST the way OSS does: ``OSSAccessKeyId``
must be the issued one, ``Signature`` the base64 HMAC-SHA1 of ``policy``,
the policy unexpired and its conditions met (``key`` equal,
``x-oss-forbid-overwrite`` = ``true``, size in ``content-length-range``),
``file`` the last field; an existing object is never overwritten (409
``FileAlreadyExists``). Errors are OSS XML (400/403/409); success is 204.

Behaviour on the scaled clock: jobs process for ``max(processing_seconds,
processing_rtf × duration)`` (defaults 60 s and 0.5); a download URL lives
20 minutes and asking again within them returns it without using one of
the song's 7 downloads; songs expire after 30 days. Points: under 30 s 12
free points, else paid points by :attr:`DangoSandbox.points_table` (the
docs say 60–120; the tiers are this sandbox's assumption); failed jobs are
refunded. The sandbox also audits its clients: ``qps_violations`` (more
than 5 API requests of one account within a second — answered 429 with
``Retry-After: 1``, code -429) and ``early_polls`` (a song's first status
query < 40 s after it started, or two queries < 5 s apart). Outputs: MP3
320 kb/s with the encoder delay of an untagged MP3, or FLAC 24-bit; the
4-stem item is a zip of four files named in Chinese (人声/鼓/贝斯/其他).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...audio import decode_bytes
from ...errors import InputError
from .._sandbox.faults import OUTPUT_KINDS
from .._sandbox.separators import derive_stems
from .._sandbox.server import (
    Handler,
    Sandbox,
    SandboxJob,
    _HTTPError,
    iso,
    non_audio_page,
)

__all__ = ["DangoSandbox", "parse_multipart"]

_STYLES = {0: ("multitrack_v2", True), 5: ("v4", False), 6: ("v4_better_vocals", False), 7: ("v4_harmony", False),
           8: ("v4_aggressive", False), 9: ("v5", False), 10: ("v5_better_vocals", False), 11: ("v5_harmony", False),
           12: ("multitrack_v3", True)}
_QUALITY = {0: 0.72, 5: 0.8, 6: 0.78, 7: 0.76, 8: 0.77, 9: 0.86, 10: 0.87, 11: 0.84, 12: 0.8}
_ZIP_NAMES = {"vocals": "人声", "drums": "鼓", "bass": "贝斯", "other": "其他"}
_OUT_NAMES = {"vocals": "人声", "instrumental": "伴奏"}

MSG_BALANCE = "余额不足"
MSG_FORMAT = "暂不支持的文件格式,请上传常见的歌曲类型(如MP3、FLAC等)"
MSG_TOO_LONG = "上传的歌曲不允许超过12分钟,请考虑裁剪音频文件"
MSG_PARAM = "参数错误"
MSG_EXPIRED = "歌曲已过期"
MSG_NO_SONG = "歌曲不存在"
MSG_LOSSY = "无法下载的文件"
MSG_NOT_READY = "歌曲仍在准备中"
MSG_NO_DOWNLOADS = "已经超过最大下载次数"
MSG_NO_4STEMS = "当前模型没有4音轨模式"


def _multipart_boundary(content_type: str) -> str:
    """The boundary of a multipart/form-data Content-Type; ValueError when it is not one or has none."""
    ctype, _, rest = content_type.partition(";")
    if ctype.strip().lower() != "multipart/form-data":
        raise ValueError(f"Content-Type must be multipart/form-data, got {ctype.strip()!r}")
    boundary = ""
    for p in rest.split(";"):
        k, _, v = p.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip().strip('"')
    if not boundary:
        raise ValueError("multipart boundary missing")
    return boundary


def _disposition(head: bytes) -> tuple[str | None, str | None]:
    """``(name, filename)`` from a part's Content-Disposition header (``None`` where absent)."""
    name, filename = None, None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if not line.lower().startswith("content-disposition:"):
            continue
        for p in line.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            v = v.strip().strip('"')
            if k.lower() == "name":
                name = v
            elif k.lower() == "filename":
                filename = v
    return name, filename


def _parse_part(chunk: bytes) -> tuple[str, str | None, bytes]:
    """One part between two delimiters as ``(field name, filename or None, bytes)``."""
    if chunk.startswith(b"\r\n"):
        chunk = chunk[2:]
    head, sep, data = chunk.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("malformed multipart part")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    name, filename = _disposition(head)
    if name is None:
        raise ValueError("multipart part without a name")
    return name, filename, data


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """``[(field name, filename or None, bytes)]`` of a multipart/form-data
    body, in order. Raises ValueError when it is not one."""
    delim = b"--" + _multipart_boundary(content_type).encode()
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise ValueError("no multipart parts")
    out: list[tuple[str, str | None, bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(_parse_part(chunk))
    return out


@dataclass
class _Channel:
    id: str
    account: str
    key: str
    style: int
    filename: str
    lossless: bool
    policy: str
    expires: float  # virtual seconds
    used: bool = False


class DangoSandbox(Sandbox):
    service: ClassVar[str] = "dango"
    path_prefix: ClassVar[str] = ""
    default_quality: ClassVar[float] = 0.85
    default_output_format: ClassVar[str] = "mp3"

    #: (up to seconds, paid points) for songs of ≥ 30 s. Seed 003 (upload result): "如歌曲时长小于30秒,则扣除12点
    #:免费点数,否则扣除60 ~ 120点付费点数" — the tiers inside 60–120 are this sandbox's assumption
    points_table: ClassVar[tuple[tuple[float, float], ...]] = ((180.0, 60.0), (360.0, 90.0), (720.0, 120.0))

    def __init__(
        self,
        *,
        api_keys: Sequence[str] | None = None,
        free_points: float = 1200.0,
        paid_points: float = 100_000.0,
        downloads_per_song: int = 7,
        retention: float = 30 * 86400.0,
        max_seconds: float = 720.0,
        max_upload_bytes: int = 104_857_600,
        qps: float = 5.0,
        qps_slack: float = 0.1,
        first_poll: float = 40.0,
        poll_gap: float = 5.0,
        poll_slack: float = 1.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("queue_seconds", 0.0)
        kwargs.setdefault("processing_seconds", 60.0)
        kwargs.setdefault("processing_rtf", 0.5)
        kwargs.setdefault("url_ttl", 1200.0)
        super().__init__(api_keys=api_keys or ["dango-sandbox-key-0001"], **kwargs)
        self.initial_free, self.initial_paid = float(free_points), float(paid_points)
        self.balances: dict[str, dict[str, float]] = {}
        self.downloads_per_song = int(downloads_per_song)
        self.retention = float(retention)
        self.max_seconds = float(max_seconds)
        self.max_upload_bytes = int(max_upload_bytes)
        self.qps, self.qps_slack = float(qps), float(qps_slack)
        self.first_poll, self.poll_gap, self.poll_slack = float(first_poll), float(poll_gap), float(poll_slack)
        self.oss_access_key_id = "LTAI" + secrets.token_hex(10)
        self._oss_secret = secrets.token_bytes(20)
        self.channels: dict[str, _Channel] = {}
        self.objects: dict[str, bytes] = {}  # object store: key → bytes (emptied once processed)
        self.upload_log: list[tuple[str, int, int]] = []  # (key, bytes, HTTP status) of every upload attempt
        self.download_log: list[tuple[str, str, str, float, bool]] = []  # (musicId, ext, item, t, new URL?)
        self.status_log: list[tuple[tuple[str, ...], float]] = []  # (ids asked, t)
        self.qps_violations: list[tuple[str, float]] = []
        self.early_polls: list[tuple[str, str]] = []
        self._req_times: dict[str, deque[float]] = {}
        self._polls: dict[str, float] = {}
        self._lock = threading.Lock()
        self._refunded: set[str] = set()

    # ---------------------------------------------------------------- wire
    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("POST", "/vocal-remover/upload/channel", "channel", self._channel),
            ("POST", "/oss", "upload", self._oss_upload),
            ("POST", "/vocal-remover/upload/{channel}/result", "result", self._result),
            ("POST", "/vocal-remover/{ids}/download/default/{ext}/{item}", "download_url", self._download_url),
            ("POST", "/vocal-remover/{ids}", "status", self._status),
        ]

    def error_body(self, status: int, code: str, message: str) -> Any:
        try:
            c = int(code)
        except (TypeError, ValueError):
            c = -status
        return {"code": c, "message": message, "data": None}

    @staticmethod
    def ok(data: Any) -> Response:
        return JSONResponse({"code": 0, "message": "success", "data": data})

    def refuse(self, code: int, message: str) -> Exception:
        """A business error: HTTP 200 with a non-zero code (as the docs show)."""
        return self.fail(200, str(code), message)

    def balance(self, account: str) -> dict[str, float]:
        return self.balances.setdefault(account, {"free": self.initial_free, "paid": self.initial_paid})

    def paid_points_for(self, seconds: float) -> float:
        for upto, pts in self.points_table:
            if seconds <= upto:
                return pts
        return self.points_table[-1][1]

    def _api(self, request: Request) -> str | Response:
        """Authenticate and apply the 5-QPS limit: the account, or a 429."""
        acct = self.account(request)
        now = self.clock.now()
        with self._lock:
            q = self._req_times.setdefault(acct, deque())
            window = 1.0 - self.qps_slack
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= self.qps:
                self.qps_violations.append((acct, now))
                return JSONResponse({"code": -429, "message": "请求过于频繁 (more than 5 requests per second)",
                                     "data": None}, status_code=429, headers={"Retry-After": "1"})
            q.append(now)
        return acct

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise self.refuse(-100, MSG_PARAM + ": body must be JSON") from None
        if not isinstance(body, dict):
            raise self.refuse(-100, MSG_PARAM + ": body must be a JSON object")
        return body

    # ------------------------------------------------------------- channel
    async def _channel(self, request: Request) -> Response:
        acct = self._api(request)
        if isinstance(acct, Response):
            return acct
        body = await self._json(request)
        filename, style = body.get("filename"), body.get("style")
        if not isinstance(filename, str) or "." not in filename:
            raise self.refuse(-100, MSG_PARAM + ": filename (with extension) is required")
        ext = filename.rsplit(".", 1)[-1].lower()
        if not isinstance(style, int) or isinstance(style, bool) or style not in _STYLES:
            raise self.refuse(-100, MSG_PARAM + f": style must be one of {sorted(_STYLES)}")
        bal = self.balance(acct)
        if bal["free"] < 12 and bal["paid"] < self.points_table[0][1]:
            raise self.refuse(-10, MSG_BALANCE)
        cid, oid = uuid.uuid4().hex, uuid.uuid4().hex
        key = f"in/{oid}"
        policy_doc = {"expiration": iso(time.time() + 3600),
                      "conditions": [["content-length-range", 0, self.max_upload_bytes],
                                     ["eq", "$x-oss-forbid-overwrite", "true"], ["eq", "$key", key]]}
        policy = base64.b64encode(json.dumps(policy_doc, separators=(",", ":")).encode()).decode()
        self.channels[cid] = _Channel(cid, acct, key, style, filename, ext in ("flac", "wav"), policy,
                                      self.clock.now() + 3600.0)
        return self.ok({"channel": cid, "key": key, "OSSAccessKeyId": self.oss_access_key_id, "policy": policy,
                        "sign": self._sign(policy), "url": f"{self.root_url}/oss"})

    def _sign(self, policy: str) -> str:
        return base64.b64encode(hmac.new(self._oss_secret, policy.encode(), hashlib.sha1).digest()).decode()

    # -------------------------------------------------------- object store
    @staticmethod
    def _oss_error(status: int, code: str, message: str) -> Response:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{uuid.uuid4().hex[:24].upper()}</RequestId><HostId>sandbox-oss</HostId></Error>")
        return Response(body, status_code=status, media_type="application/xml")

    async def _oss_upload(self, request: Request) -> Response:
        body = await request.body()
        resp, key = self._oss_check(request.headers.get("content-type", ""), body)
        self.upload_log.append((key, len(body), resp.status_code))
        return resp

    def _oss_check(self, content_type: str, body: bytes) -> tuple[Response, str]:
        err = self._oss_error
        try:
            parts = parse_multipart(content_type, body)
        except ValueError as e:
            return err(400, "InvalidArgument", f"Bad form: {e}"), ""
        fields = {name: data for name, filename, data in parts if name != "file"}
        files = [(i, filename, data) for i, (name, filename, data) in enumerate(parts) if name == "file"]
        key = fields.get("key", b"").decode("utf-8", "replace")
        refusal = self._oss_form_refusal(fields, files, len(parts)) or self._oss_auth_refusal(fields)
        if refusal is not None:
            return refusal, key
        data = files[0][2]
        refusal = self._oss_policy_refusal(fields["policy"].decode(), fields, data)
        if refusal is not None:
            return refusal, key
        return self._oss_store(key, data, fields), key

    def _oss_form_refusal(self, fields: dict[str, bytes], files: list[tuple[int, str | None, bytes]],
                          n_parts: int) -> Response | None:
        """The error for a form missing a required field or without exactly one, last, ``file``."""
        for need in ("key", "OSSAccessKeyId", "policy", "Signature"):
            if need not in fields:
                return self._oss_error(400, "InvalidArgument", f"Form field {need} is required")
        if len(files) != 1:
            return self._oss_error(400, "InvalidArgument", "Exactly one form field 'file' is required")
        if files[0][0] != n_parts - 1:
            return self._oss_error(400, "InvalidArgument", "The form field 'file' must be the last field")
        return None

    def _oss_auth_refusal(self, fields: dict[str, bytes]) -> Response | None:
        """The error for a wrong access key id or signature, or an unknown or expired policy."""
        err = self._oss_error
        if fields["OSSAccessKeyId"].decode() != self.oss_access_key_id:
            return err(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
        policy = fields["policy"].decode()
        if not hmac.compare_digest(fields["Signature"].decode(), self._sign(policy)):
            return err(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                       "signature you provided.")
        ch = next((c for c in self.channels.values() if c.policy == policy), None)
        if ch is None:
            return err(403, "AccessDenied", "Invalid according to Policy: unknown policy")
        if self.clock.now() > ch.expires:
            return err(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        return None

    def _oss_policy_refusal(self, policy: str, fields: dict[str, bytes], data: bytes) -> Response | None:
        """The error for the first of the policy's conditions the upload breaks, or ``None``."""
        err = self._oss_error
        doc = json.loads(base64.b64decode(policy))
        for cond in doc["conditions"]:
            if cond[0] == "content-length-range":
                if not cond[1] <= len(data) <= cond[2]:
                    code = "EntityTooLarge" if len(data) > cond[2] else "EntityTooSmall"
                    return err(400, code, f"Your proposed upload size {len(data)} is outside the policy range "
                               f"[{cond[1]}, {cond[2]}].")
            elif cond[0] == "eq":
                got = fields.get(cond[1].lstrip("$"))
                if got is None or got.decode() != cond[2]:
                    return err(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed: "
                               + json.dumps(cond, ensure_ascii=False))
        return None

    def _oss_store(self, key: str, data: bytes, fields: dict[str, bytes]) -> Response:
        """Store the object (204), unless it exists and the form forbids overwriting it (409)."""
        forbid = fields.get("x-oss-forbid-overwrite", b"false").decode().lower() == "true"
        with self._lock:
            if key in self.objects and forbid:
                return self._oss_error(409, "FileAlreadyExists", "The object you specified already exists and can "
                                       "not be overwritten.")
            self.objects[key] = data
        return Response(status_code=204)

    # -------------------------------------------------------------- result
    async def _result(self, request: Request) -> Response:
        acct = self._api(request)
        if isinstance(acct, Response):
            return acct
        ch = self.channels.get(request.path_params["channel"])
        if ch is None or ch.account != acct or ch.used:
            raise self.refuse(-100, MSG_PARAM + ": 通道不存在 (no such channel, or it was used)")
        ch.used = True  # one use, success or not
        data = self.objects.get(ch.key)
        if data is None:
            raise self.refuse(-100, MSG_PARAM + ": 文件未上传 (nothing was uploaded)")
        try:
            audio, sr = await asyncio.to_thread(decode_bytes, data, max_seconds=None)
        except InputError:
            raise self.refuse(-1, MSG_FORMAT) from None
        finally:
            self.objects[ch.key] = b""  # processed: the key stays taken (no overwrite), the bytes go (memory)
        duration = audio.shape[1] / sr
        if duration > self.max_seconds:
            raise self.refuse(-1, MSG_TOO_LONG)
        bal = self.balance(acct)
        free = duration < 30.0  # seed 003: under 30 s, 12 free points; else 60–120 paid points
        points = 12.0 if free else self.paid_points_for(duration)
        pool = "free" if free else "paid"
        if bal[pool] < points:
            raise self.refuse(-10, MSG_BALANCE)
        multitrack = _STYLES[ch.style][1]
        stems = ("vocals", "drums", "bass", "other", "instrumental") if multitrack else ("vocals", "instrumental")
        job = self.new_job(account=acct, duration=duration, stems=stems, output_format="mp3", filename=ch.filename)
        with self._lock:
            del self.ledger.jobs[job.id]
            job.id = ch.key.split("/", 1)[1]
            self.ledger.add_job(job)
            bal[pool] -= points
        self.ledger.charge(job.id, acct, points, f"dango_{pool}_points", self.clock.now())
        self.ledger.creates.append((job.id, "new"))
        job.extra.update(style=ch.style, lossless=ch.lossless, multitrack=multitrack, points=points, pool=pool,
                         downloads_left=self.downloads_per_song, issued={}, tokens={})
        if job.fail is None:
            self.start_separation(job, audio, sr)
        return self.ok(job.id)

    def _separate_files(self, job: SandboxJob, audio: np.ndarray, sr: int) -> dict[str, str]:
        """Separate and keep the arrays; files are encoded per requested
        format when a download URL is first asked for."""
        result = self.separator_for(job)(audio, sr)
        stems = derive_stems(result, job.stems, audio)
        out_sr, fault = sr, self.faults.take("output", OUTPUT_KINDS)
        if fault is not None:
            stems, out_sr = self._apply_output_fault(fault, stems, sr)
            job.extra["non_audio"] = fault.kind == "non_audio"  # files made on demand: see _encode_item
        # float16 halves what every finished job holds (−66 dB rounding, far below any separation error)
        job.extra["arrays"] = {k: np.asarray(v, dtype=np.float16) for k, v in stems.items()}
        job.extra["sr"] = out_sr
        return {}

    def quality_for(self, job: SandboxJob) -> float:
        return _QUALITY.get(int(job.extra.get("style", 9)), self.default_quality)

    # -------------------------------------------------------------- status
    def _job(self, acct: str, mid: str) -> SandboxJob:
        job = self.ledger.jobs.get(mid)
        if job is None or job.account != acct:
            raise self.refuse(-1, MSG_NO_SONG)
        if self.clock.now() - job.created_at > self.retention:
            raise self.refuse(-10, MSG_EXPIRED)
        return job

    def _code(self, job: SandboxJob) -> int:
        st = job.status(self.clock.now())
        if st == "failed":
            if job.id not in self._refunded:
                self._refunded.add(job.id)
                pool, pts = job.extra.get("pool", "paid"), float(job.extra.get("points", 0.0))
                self.balance(job.account)[pool] += pts
                self.ledger.refund(job.id)
            return 1
        return 2 if st == "succeeded" else 0

    def _item(self, job: SandboxJob) -> dict[str, Any]:
        return {"status": self._code(job), "length": int(job.duration), "name": job.filename,
                "loseless": bool(job.extra.get("lossless")), "download": int(job.extra.get("downloads_left", 0)),
                "cost": 0 if job.extra.get("pool") == "free" else int(job.extra.get("points", 0))}

    def _audit_poll(self, mid: str, job: SandboxJob, now: float) -> None:
        last = self._polls.get(mid)
        if last is None and now - job.created_at < self.first_poll - self.poll_slack:
            self.early_polls.append((mid, f"first poll {now - job.created_at:.1f} s after start"))
        elif last is not None and now - last < self.poll_gap - self.poll_slack:
            self.early_polls.append((mid, f"polled again after {now - last:.1f} s"))
        self._polls[mid] = now

    async def _status(self, request: Request) -> Response:
        acct = self._api(request)
        if isinstance(acct, Response):
            return acct
        ids = [i for i in request.path_params["ids"].split(",") if i]
        if not ids:
            raise self.refuse(-100, MSG_PARAM)
        now = self.clock.now()
        self.status_log.append((tuple(ids), now))
        if len(ids) == 1:
            job = self._job(acct, ids[0])
            self._audit_poll(ids[0], job, now)
            return self.ok(self._item(job))
        out: dict[str, Any] = {}
        for mid in ids:
            try:
                job = self._job(acct, mid)
            except _HTTPError:  # unknown/expired ids are left out of a batch answer
                continue
            self._audit_poll(mid, job, now)
            out[mid] = self._item(job)
        return self.ok(out)

    # ------------------------------------------------------------ download
    async def _download_url(self, request: Request) -> Response:
        acct = self._api(request)
        if isinstance(acct, Response):
            return acct
        p = request.path_params
        job = self._job(acct, p["ids"])
        ext, item = p["ext"], p["item"]
        if ext not in ("mp3", "flac") or item not in ("vocals", "instrumental", "4stems"):
            raise self.refuse(-100, MSG_PARAM)
        if self._code(job) != 2:
            raise self.refuse(-1, MSG_NOT_READY)
        if ext == "flac" and not job.extra.get("lossless"):
            raise self.refuse(-1, MSG_LOSSY)
        if item == "4stems" and not job.extra.get("multitrack"):
            raise self.refuse(-1, MSG_NO_4STEMS)
        now = self.clock.now()
        issued = job.extra["issued"].get((ext, item))
        if issued is not None and now < issued[1]:  # same URL within 20 minutes: free
            self.download_log.append((job.id, ext, item, now, False))
            return self.ok({"url": issued[0], "download": job.extra["downloads_left"]})
        if job.extra["downloads_left"] <= 0:
            raise self.refuse(-1, MSG_NO_DOWNLOADS)
        token = job.extra["tokens"].get((ext, item))
        if token is None:
            data, ctype, name = await asyncio.to_thread(self._encode_item, job, ext, item)
            token = self.store(data, ctype, name)
            job.extra["tokens"][(ext, item)] = token
        job.extra["downloads_left"] -= 1
        now = self.clock.now()  # after encoding: the URL's 20 minutes start when it is handed out
        url = self.signed_url(token)
        job.extra["issued"][(ext, item)] = (url, now + self.url_ttl)
        self.download_log.append((job.id, ext, item, now, True))
        return self.ok({"url": url, "download": job.extra["downloads_left"]})

    def _encode_item(self, job: SandboxJob, ext: str, item: str) -> tuple[bytes, str, str]:
        if job.extra.get("non_audio"):  # output:non_audio — an HTML page where the file should be
            name = "4stems.zip" if item == "4stems" else f"{'320_' if ext == 'mp3' else ''}{_OUT_NAMES[item]}.{ext}"
            return non_audio_page(name), "text/html; charset=utf-8", name
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in job.extra["arrays"].items()}
        sr = job.extra["sr"]
        prefix = "320_" if ext == "mp3" else ""
        if item == "4stems":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
                for stem, zh in _ZIP_NAMES.items():
                    data, _, e = self.encode_output(arrays[stem], sr, ext)
                    zf.writestr(f"{prefix}{zh}.{e}", data)
            return buf.getvalue(), "application/zip", "4stems.zip"
        data, ctype, e = self.encode_output(arrays[item], sr, ext)
        return data, ctype, f"{prefix}{_OUT_NAMES[item]}.{e}"

    # --------------------------------------------------------------- audit
    def downloads_used(self, music_id: str) -> int:
        """Downloads of the song's 7 that were used (new URLs issued)."""
        return sum(1 for mid, *_, new in self.download_log if mid == music_id and new)

    def points_charged(self, pool: str = "paid") -> float:
        """Points charged and not refunded (``pool``: "paid" or "free")."""
        unit = f"dango_{pool}_points"
        return sum(c.amount for c in self.ledger.charges if c.unit == unit and not c.refunded)
