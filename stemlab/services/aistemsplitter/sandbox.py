"""AI Stem Splitter emulator: the SDK 0.1.1 wire format on 127.0.0.1.

Endpoints (fault endpoint names in brackets)::

    GET  /v1/credits                      [credits]         {balance, unit:"seconds"}
    POST /v1/audio/uploads                [upload_reserve]  {uploadId, uploadUrl, uploadHeaders, expiresAt}
    POST /storage/upload/{uploadId}       [upload]          raw bytes + uploadHeaders → {url, key}
    PUT  /storage/upload/{uploadId}?token [upload]          ``upload_style="seed"``: presigned PUT, empty answer
    POST /v1/audio/splits                 [create]          Idempotency-Key honoured
    GET  /v1/audio/splits                 [list]            recent splits of the key
    GET  /v1/audio/splits/{id}            [status]
    GET  /files/{token}/{name}?expires&sig [download]       pre-signed, expiring stem URLs

Answers use the SDK envelope ``{"success": true, "data": …}`` /
``{"success": false, "error": {"code", "message"}}`` (``envelope=False``
serves the seed's bare JSON instead; ``upload_style="seed"`` the seed's
presigned-PUT upload: the reservation carries ``method: "PUT"`` and the
``audio_url`` the file will have, the PUT is answered with an empty 200 as
object stores do; ``model_names`` limits the accepted ``stemModel`` names
to the seed's or the SDK's). Jobs go queued → processing →
succeeded/failed on the scaled clock; credits are seconds of input, charged
at creation (``ceil(duration)``) and refunded when a job fails. A repeated
create with the same ``Idempotency-Key`` and body returns the same job
without charging (another body → 409 ``IDEMPOTENCY_CONFLICT``) — unless
the sandbox was made with ``honor_idempotency=False``, which ignores the key
(every create is a new job, charged again). Webhooks
(``webhookUrl``/``webhook_url``) are POSTed to local URLs only, signed
``aistemsplitter-signature: t=…,v1=…``; faults ``webhook:webhook_missing``,
``webhook_duplicate``, ``webhook_bad_signature``.

Assumptions where the live service is undocumented (see remote-apis.md):
the list endpoint's path and shape, refunds on failure, 402 on an empty
balance, the stem URL lifetime (``url_ttl``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...audio import decode_bytes
from ...errors import InputError
from .._sandbox.faults import WEBHOOK_KINDS
from .._sandbox.server import Handler, Sandbox, SandboxJob, iso, localhost_url

__all__ = ["AIStemSplitterSandbox"]

_MODELS = {"htdemucs_ft": "htdemucs_ft", "htdemucs": "htdemucs", "htdemucs_6s": "htdemucs_6s", "4s": "htdemucs_ft",
           "6s": "htdemucs_6s"}
_SEED_NAMES = {"htdemucs_ft", "htdemucs", "htdemucs_6s"}
_SDK_NAMES = {"4s", "6s"}
_FOUR = ("vocals", "drums", "bass", "other")
_QUALITY = {"htdemucs_ft": 0.88, "htdemucs": 0.82, "htdemucs_6s": 0.78}

#: seed 001 (Webhooks / FAQ): "the webhook signature scheme (HMAC-SHA256 in aistemsplitter-signature)"
_SIGNATURE_HEADER = "aistemsplitter-signature"


def _signature(secret: str, body: bytes) -> str:
    """The ``aistemsplitter-signature`` value of a delivery: seed 001 says
    HMAC-SHA256 in that header; the value ``t=<unix>,v1=<hex of
    HMAC-SHA256(secret, "<t>.<raw body>")>`` is the layout remote-apis.md §1.6
    records (no seed or wheel pins it)."""
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class AIStemSplitterSandbox(Sandbox):
    service: ClassVar[str] = "aistemsplitter"
    path_prefix: ClassVar[str] = "/v1"

    def __init__(
        self,
        *,
        envelope: bool = True,
        model_names: str = "both",
        list_supported: bool = True,
        initial_credits: float = 360_000.0,
        webhook_secret: str = "whsec_sandbox_0123456789abcdef",
        refund_failed: bool = True,
        upload_style: str = "sdk",
        api_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_keys=api_keys or ["ast_test_sandbox_0001"], **kwargs)
        if model_names not in ("both", "seed", "sdk"):
            raise ValueError("model_names must be 'both', 'seed' or 'sdk'")
        if upload_style not in ("sdk", "seed"):
            raise ValueError("upload_style must be 'sdk' or 'seed'")
        self.upload_style = upload_style
        self.envelope = envelope
        self.model_names = model_names
        self.list_supported = list_supported
        self.initial_credits = float(initial_credits)
        self.balances: dict[str, float] = {}
        self.webhook_secret = webhook_secret
        self.refund_failed = refund_failed
        self.uploads: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[tuple[str, str], str] = {}
        self.deliveries: list[tuple[str, str, int]] = []  # (event id, type, HTTP status or -1)
        self._refunded: set[str] = set()
        self._inflight: dict[tuple[str, str], asyncio.Event] = {}

    # ---------------------------------------------------------------- wire
    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("GET", "/v1/credits", "credits", self._credits),
            ("POST", "/v1/audio/uploads", "upload_reserve", self._reserve),
            ("POST", "/storage/upload/{upload_id}", "upload", self._upload),
            ("PUT", "/storage/upload/{upload_id}", "upload", self._upload),
            ("POST", "/v1/audio/splits", "create", self._create),
            ("GET", "/v1/audio/splits", "list", self._list),
            ("GET", "/v1/audio/splits/{split_id}", "status", self._status),
        ]

    def error_body(self, status: int, code: str, message: str) -> Any:
        if self.envelope:
            return {"success": False, "error": {"code": code, "message": message}}
        return {"error": {"code": code, "message": message}}

    def endpoint_error_response(self, endpoint: str, status: int, code: str, message: str) -> Response:
        if endpoint == "upload":  # the storage worker's flat shape, which the SDK parses
            return JSONResponse({"success": False, "error": code, "message": message}, status_code=status)
        return super().endpoint_error_response(endpoint, status, code, message)

    def ok(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = {"success": True, "data": data} if self.envelope else data
        return JSONResponse(body, status_code=status, headers=headers)

    def balance(self, account: str) -> float:
        return self.balances.setdefault(account, self.initial_credits)

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise self.fail(422, "VALIDATION_ERROR", "Body must be JSON") from None
        if not isinstance(body, dict):
            raise self.fail(422, "VALIDATION_ERROR", "Body must be a JSON object")
        return body

    # ------------------------------------------------------------ handlers
    async def _credits(self, request: Request) -> Response:
        acct = self.account(request)
        return self.ok({"balance": self.balance(acct), "unit": "seconds"})

    async def _reserve(self, request: Request) -> Response:
        acct = self.account(request)
        body = await self._json(request)
        filename, ctype, length = body.get("filename"), body.get("contentType"), body.get("contentLength")
        if not isinstance(filename, str) or not filename:
            raise self.fail(422, "VALIDATION_ERROR", "filename is required")
        if not isinstance(ctype, str) or not ctype.startswith(("audio/", "video/", "application/octet-stream")):
            raise self.fail(422, "VALIDATION_ERROR", f"contentType must be an audio type, got {ctype!r}")
        if not isinstance(length, int) or length <= 0:
            raise self.fail(422, "VALIDATION_ERROR", "contentLength must be a positive integer")
        upl = "upl_" + uuid.uuid4().hex[:16]
        token = "token_" + secrets.token_hex(8)
        folder = f"audio/api/{acct}/{upl}"
        self.uploads[upl] = {"account": acct, "filename": filename, "contentType": ctype, "contentLength": length,
                             "token": token, "folder": folder, "key": None, "file": None}
        if self.upload_style == "seed":
            # the seed's presign flow: a pre-signed PUT URL (auth in the query, S3-style empty answer), then
            # submit with the returned audio_url
            self.uploads[upl]["file"] = self.store(b"", ctype, filename)
            return self.ok({
                "uploadId": upl,
                "uploadUrl": f"{self.root_url}/storage/upload/{upl}?token={token}",
                "method": "PUT",
                "audio_url": f"{self.root_url}/public/{self.uploads[upl]['file']}/{filename}",
                "expiresAt": iso(time.time() + 3600),
            }, status=201)
        return self.ok({
            "uploadId": upl,
            "uploadUrl": f"{self.root_url}/storage/upload/{upl}",
            "uploadHeaders": {"X-Upload-Token": token, "X-Folder": folder},
            "expiresAt": iso(time.time() + 3600),
        }, status=201)

    async def _upload(self, request: Request) -> Response:
        upl = self.uploads.get(request.path_params["upload_id"])

        def flat(status: int, code: str, msg: str) -> Response:  # the upload worker's flat error shape
            return JSONResponse({"success": False, "error": code, "message": msg}, status_code=status)

        if upl is None:
            return flat(404, "UPLOAD_NOT_FOUND", "Unknown upload")
        if (request.headers.get("x-upload-token") or request.query_params.get("token")) != upl["token"]:
            return flat(403, "UPLOAD_FORBIDDEN", "Missing or wrong X-Upload-Token")
        data = await request.body()
        if len(data) != upl["contentLength"]:
            return flat(400, "SIZE_MISMATCH", f"Expected {upl['contentLength']} bytes, got {len(data)}")
        key = f"{upl['folder']}/{upl['filename']}"
        if request.method == "PUT":  # presigned PUT (seed): the object lands under the announced audio_url
            self.files[upl["file"]].data = data
            upl["key"] = key
            return Response(b"", status_code=200)
        token = self.store(data, upl["contentType"], upl["filename"])
        upl["key"], upl["file"] = key, token
        return JSONResponse({"success": True, "data": {"url": f"{self.root_url}/public/{token}/{upl['filename']}",
                                                        "key": key}})

    async def _input_bytes(self, acct: str, inp: Any) -> tuple[bytes | None, str, tuple[str, str] | None]:
        """(bytes, filename, failure) of a split's input."""
        if not isinstance(inp, dict):
            raise self.fail(422, "VALIDATION_ERROR", "input is required")
        kind = inp.get("type")
        if kind == "uploaded_file":
            upl = self.uploads.get(str(inp.get("uploadId")))
            if upl is None or upl["account"] != acct:
                raise self.fail(422, "VALIDATION_ERROR", "input.uploadId: unknown upload")
            if upl["file"] is None:
                raise self.fail(422, "VALIDATION_ERROR", "input.uploadId: nothing was uploaded")
            if inp.get("storageKey") not in (None, upl["key"]):
                raise self.fail(422, "VALIDATION_ERROR", "input.storageKey does not match the upload")
            return self.files[upl["file"]].data, upl["filename"], None
        if kind == "direct_url":
            url = inp.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise self.fail(422, "VALIDATION_ERROR", "input.url must be an http(s) URL")
            name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "audio"
            data = self.read_local_url(url)
            if data is not None:
                return data, name, None
            if not localhost_url(url):
                return None, name, ("INPUT_FETCH_FAILED", "The sandbox fetches local URLs only")
            try:
                async with httpx.AsyncClient(timeout=10) as c:
                    r = await c.get(url)
                r.raise_for_status()
            except httpx.HTTPError as e:
                return None, name, ("INPUT_FETCH_FAILED", f"Could not fetch input URL: {type(e).__name__}")
            return r.content, name, None
        raise self.fail(422, "VALIDATION_ERROR", "input.type must be 'direct_url' or 'uploaded_file'")

    async def _create(self, request: Request) -> Response:
        """Requests with the same Idempotency-Key are served one at a time: a
        retry that arrives while the first is still being processed (the
        client timed out) waits for it and gets the replay."""
        acct = self.account(request)
        # honor_idempotency=False: a careless service that ignores the key (every create new, charged)
        key = request.headers.get("idempotency-key") if self.honor_idempotency else None
        if not key:
            return await self._create_once(request, acct, None)
        ik = (acct, key)
        while ik in self._inflight:
            await self._inflight[ik].wait()
        ev = self._inflight[ik] = asyncio.Event()
        try:
            return await self._create_once(request, acct, key)
        finally:
            del self._inflight[ik]
            ev.set()

    def _replay(self, job: SandboxJob, digest: str) -> Response:
        """The answer to a create that reuses an Idempotency-Key: the first job
        again, or 409 when the request differs."""
        if job.request_hash != digest:
            raise self.fail(409, "IDEMPOTENCY_CONFLICT", "Idempotency-Key reused with a different request")
        self.ledger.creates.append((job.id, "replay"))
        return self.ok(self._split(job), status=200, headers={"Idempotent-Replayed": "true"})

    def _model_and_format(self, body: dict[str, Any]) -> tuple[Any, Any]:
        """The create's stem model (of the names this sandbox accepts) and output format (mp3/wav); 422 otherwise."""
        model = body.get("stemModel", body.get("stem_model", body.get("model", "htdemucs_ft")))
        allowed = _SEED_NAMES | _SDK_NAMES if self.model_names == "both" else \
            _SEED_NAMES if self.model_names == "seed" else _SDK_NAMES
        if model not in allowed:
            raise self.fail(422, "VALIDATION_ERROR", f"stemModel must be one of {sorted(allowed)}, got {model!r}")
        fmt = body.get("outputFormat", body.get("output_format", "wav"))
        if fmt not in ("mp3", "wav"):
            raise self.fail(422, "VALIDATION_ERROR", f"outputFormat must be 'mp3' or 'wav', got {fmt!r}")
        return model, fmt

    async def _decode_input(self, data: bytes | None, failure: tuple[str, str] | None
                            ) -> tuple[np.ndarray | None, int, tuple[str, str] | None]:
        """``(audio, sample rate, failure)`` of the input bytes (``(None, 0, failure)``
        without them); bytes that do not decode become the job's failure."""
        audio: np.ndarray | None = None
        sr = 0
        if data is not None:
            try:
                audio, sr = await asyncio.to_thread(self._decode_held, data)
            except InputError:
                failure = ("INVALID_AUDIO", "The input could not be decoded as audio")
        return audio, sr, failure

    async def _create_once(self, request: Request, acct: str, key: str | None) -> Response:
        body = await self._json(request)
        digest = self.body_hash(body)
        if key and (acct, key) in self.idempotency:
            return self._replay(self.ledger.jobs[self.idempotency[(acct, key)]], digest)
        model, fmt = self._model_and_format(body)
        hook = body.get("webhookUrl", body.get("webhook_url"))
        data, filename, failure = await self._input_bytes(acct, body.get("input"))
        audio, sr, failure = await self._decode_input(data, failure)
        duration = audio.shape[1] / sr if audio is not None else 0.0
        # credits are seconds of input (SDK 0.1.1 GET /credits: unit "seconds"; creditsUsed an integer):
        # whole seconds, rounded up; seed 000 sells them as minute packs
        credits = float(math.ceil(duration)) if failure is None else 0.0
        if credits > self.balance(acct):
            raise self.fail(
                402, "INSUFFICIENT_CREDITS", f"Needs {credits:.0f} credits, balance {self.balance(acct):.0f}"
            )
        canon = _MODELS[str(model)]
        stems = _FOUR + (("guitar", "piano") if canon == "htdemucs_6s" else ())
        job = self.new_job(account=acct, duration=duration, stems=stems, output_format=str(fmt), filename=filename,
                           idempotency_key=key, request_hash=digest, webhook_url=hook, id_prefix="split_")
        job.extra.update(model=str(model), credits=credits)
        if failure is not None:
            job.fail = failure
        if key:
            self.idempotency[(acct, key)] = job.id
        self.ledger.creates.append((job.id, "new"))
        if credits > 0:
            self.balances[acct] = self.balance(acct) - credits
            self.ledger.charge(job.id, acct, credits, "seconds", self.clock.now())
        if failure is None and job.fail is None:
            self.start_separation(job, audio, sr)
        if hook:
            self.spawn(self._deliver_webhook(job))
        return self.ok(self._split(job), status=201)

    def _decode_held(self, data: bytes) -> tuple[np.ndarray, int]:
        with self.clock.hold():  # real decoding time is not service time ×1/scale
            return decode_bytes(data)

    def _refund_if_failed(self, job: SandboxJob, status: str) -> None:
        if status == "failed" and self.refund_failed and job.id not in self._refunded:
            self._refunded.add(job.id)
            credits = float(job.extra.get("credits", 0.0))
            if credits:
                self.balances[job.account] = self.balance(job.account) + credits
                self.ledger.refund(job.id)

    def _split(self, job: SandboxJob) -> dict[str, Any]:
        status = job.status(self.clock.now())
        self._refund_if_failed(job, status)
        stems: dict[str, str] = {}
        if status == "succeeded" and job.outputs:
            stems = {k: self.signed_url(t) for k, t in job.outputs.items()}
        err = None
        if status == "failed":
            code, msg = job.error or job.fail or ("PROCESSING_FAILED", "Separation failed")
            err = {"code": code, "message": msg}
        return {
            "id": job.id, "status": status, "stemModel": job.extra.get("model"), "filename": job.filename,
            "durationSeconds": round(job.duration, 3), "creditsUsed": int(job.extra.get("credits", 0)),
            "outputFormat": job.output_format, "createdAt": iso(job.extra.setdefault("created_wall", time.time())),
            "updatedAt": iso(), "stems": stems, "error": err,
        }

    async def _status(self, request: Request) -> Response:
        acct = self.account(request)
        job = self.ledger.jobs.get(request.path_params["split_id"])
        if job is None or job.account != acct:
            raise self.fail(404, "NOT_FOUND", "Split not found")
        return self.ok(self._split(job))

    async def _list(self, request: Request) -> Response:
        acct = self.account(request)
        if not self.list_supported:
            raise self.fail(404, "NOT_FOUND", "Not found")
        try:
            limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
        except ValueError:
            raise self.fail(422, "VALIDATION_ERROR", "limit must be an integer") from None
        jobs = sorted((j for j in self.ledger.jobs.values() if j.account == acct), key=lambda j: -j.created_at)
        return self.ok({"items": [self._split(j) for j in jobs[:limit]], "nextCursor": None})

    # ------------------------------------------------------------- webhooks
    async def _deliver_webhook(self, job: SandboxJob) -> None:
        url = job.webhook_url
        assert url is not None
        # wait (on the scaled clock) until the job is final
        while True:
            st = job.status(self.clock.now())
            if st in ("succeeded", "failed"):
                break
            await self.clock.sleep(max(0.05, job.finishes_at - self.clock.now()) if not job.stuck else 5.0)
        fault = self.faults.take("webhook", WEBHOOK_KINDS)
        if fault is not None and fault.kind == "webhook_missing":
            self.deliveries.append(("", "missing", -1))
            return
        event: dict[str, Any] = {"id": "evt_" + uuid.uuid4().hex[:20], "type": f"split.{st}", "createdAt": iso(),
                 "data": self._split(job)}
        body = json.dumps(event).encode()
        secret = self.webhook_secret
        if fault is not None and fault.kind == "webhook_bad_signature":
            secret = "whsec_wrong_" + secrets.token_hex(8)
        times = 2 if fault is not None and fault.kind == "webhook_duplicate" else 1
        if not localhost_url(url):
            self.deliveries.append((event["id"], "refused:non-local", -1))
            return
        async with httpx.AsyncClient(timeout=10) as c:
            for _ in range(times):
                try:
                    r = await c.post(url, content=body, headers={"Content-Type": "application/json",
                                                                 _SIGNATURE_HEADER: _signature(secret, body)})
                    self.deliveries.append((event["id"], event["type"], r.status_code))
                except httpx.HTTPError:
                    self.deliveries.append((event["id"], event["type"], -1))

    # ------------------------------------------------------------ quality
    def quality_for(self, job: SandboxJob) -> float:
        """Default separator quality per model (htdemucs_ft best)."""
        model = str(job.extra.get("model", ""))
        return _QUALITY.get(_MODELS.get(model, model), self.default_quality)
