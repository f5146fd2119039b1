"""AI Stem Splitter (api.aistemsplitter.org): hosted Demucs, billed per minute.

Wire format from the official SDK ``aistemsplitter`` 0.1.1 (the live format)
and the vendor's docs (seeds 000/001); see :class:`AIStemSplitter` for where
they disagree and what stemlab does about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from ...audio import encode_bytes
from ...errors import ConfigError, ProviderError, ProviderOutputError, ProviderRejected, ProviderUnavailable
from ...providers.base import Param
from ...types import Cost
from .. import SERVICES
from .._remote.http import (
    COMMON_OPTIONS,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    JobContext,
    JobState,
    PollSchedule,
    RemoteJobInfo,
    RemoteProvider,
    Response,
    Submission,
    sequence_of,
)
from . import pricing
from .catalog import FROM_WIRE, MODEL_ALIASES, MODELS, stems_of
from .pricing import PRICING, PricingTable

__all__ = ["AIStemSplitter"]


_STATUS = {
    "queued": QUEUED, "pending": QUEUED, "created": QUEUED,
    "processing": RUNNING, "running": RUNNING, "started": RUNNING,
    "succeeded": DONE, "completed": DONE, "success": DONE,
    "failed": FAILED, "canceled": FAILED, "cancelled": FAILED, "error": FAILED,
}
#: job error codes that mean "this input will never work" (not worth a retry)
_REJECT_CODES = {"VALIDATION_ERROR", "UNSUPPORTED_FORMAT", "INVALID_AUDIO", "FILE_TOO_LARGE", "DURATION_EXCEEDED",
                 "INPUT_FETCH_FAILED", "UNSUPPORTED_MEDIA"}


class AIStemSplitter(RemoteProvider):
    """AI Stem Splitter: htdemucs_ft (default), htdemucs, htdemucs_6s.

    Flow: local audio → ``POST /audio/uploads`` (reservation) → raw-bytes
    ``POST`` to ``uploadUrl`` with ``uploadHeaders`` (no auth) → ``POST
    /audio/splits`` with ``{"input": {"type": "uploaded_file", uploadId,
    fileUrl, storageKey}}`` and an ``Idempotency-Key`` → poll ``GET
    /audio/splits/{id}`` (queued → processing → succeeded/failed) → download
    each ``stems[name]`` URL. A track whose ``metadata["url"]`` holds a
    public URL is sent as ``{"type": "direct_url", "url": …}`` instead (no
    upload). Uploads are FLAC (16-bit) of the decoded mixture, named
    ``<job tag>_<track>.flac`` so an in-doubt job is recognisable in the
    job list.

    Seed (vendor docs) vs SDK 0.1.1 (the live wire format) — stemlab accepts both:

    1. Envelope: the seed shows bare JSON (``{"id", "status"}``); the SDK
       requires ``{"success": true, "data": …}`` and errors as ``{"success":
       false, "error": {"code", "message"}}``. Answers with or without the
       envelope are read; an envelope with ``success: false`` is an error
       even under HTTP 200.
    2. Model names: seeds say ``htdemucs_ft``/``htdemucs``/``htdemucs_6s``
       (``model='htdemucs_6s'``); the SDK README and n8n node say
       ``"6s"``/``"4s"``. stemlab sends the seed name; with option
       ``model_names="auto"`` (default) a 400/422 naming the model is retried
       once with the short alias (``htdemucs_6s→6s``, ``htdemucs_ft→4s``;
       ``htdemucs`` has none), under a derived idempotency key. ``"seed"`` /
       ``"sdk"`` force one spelling. Echoed ``stemModel`` values are read
       both ways.
    3. Upload: the seed describes ``presign_upload()`` → PUT → ``audio_url``;
       the SDK does ``POST /audio/uploads`` → POST raw bytes → input type
       ``uploaded_file``. stemlab follows the SDK, honours ``"method":
       "PUT"`` in a reservation, and takes the file URL/key from the
       reservation when the storage answers with an empty body.
    4. Stem counts: the seeds disagree (``htdemucs_ft`` "6 stems" vs "4
       stems"); stemlab expects 4 stems for htdemucs_ft/htdemucs and 6 for
       htdemucs_6s, ignoring extra files.
    5. Webhooks: ``webhook_url`` (seed, Python naming) vs ``webhookUrl``
       (Java SDK); stemlab sends ``webhookUrl``. The signature scheme
       (``aistemsplitter-signature: t=<unix>,v1=<hex>`` HMAC-SHA256 of
       ``"<t>.<raw body>"``) is verified by
       :mod:`stemlab.services._remote.webhooks`.
    6. Listing recent jobs: named in seed 001, absent from the SDK; stemlab
       tries ``GET /audio/splits?limit=50`` for reconciliation and, if the
       service answers 404/405, resubmits with the same Idempotency-Key
       (the server dedups).
    7. Retries: the seed claims SDK backoff; 0.1.1 has none — stemlab's own
       HTTP base retries (429/5xx/connect/read, Retry-After honoured).
    8. API key: seed 001 says the client reads ``$AISTEMSPLITTER_API_KEY``;
       the SDK needs it passed. stemlab reads the env var or ``api_key``.
    9. Idempotency-Key: only in the SDK; stemlab always sends it.

    Cost: 1 credit = 1 s of input (``creditsUsed``; rounding up assumed);
    USD at ``usd_per_minute`` (option), else at the minute pack named by
    the option ``pack`` (``"50 min"`` $0.1398/min, ``"150 min"`` $0.10/min,
    ``"500 min"`` ≈$0.08/min; default the 50-minute pack, the dearest — safe
    for budget caps). The 10 free minutes
    are not subtracted (stemlab cannot see the account's remaining free
    minutes). Table and formula: :mod:`.pricing` (dated).
    """

    family: ClassVar[str] = "aistemsplitter"
    description: ClassVar[str] = SERVICES["aistemsplitter"].description
    variants: ClassVar[tuple[str, ...]] = MODELS
    default_variant: ClassVar[str | None] = "htdemucs_ft"
    params_schema: ClassVar[tuple[Param, ...]] = (
        Param("output_format", str, "wav", help="format the service returns the stems in", choices=("wav", "mp3")),
    )
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS + ("model_names", "usd_per_minute", "pack")
    default_base_url: ClassVar[str] = "https://api.aistemsplitter.org/v1"
    # the SDK polls every 2 s for up to 300 s; long tracks need longer
    default_poll: ClassVar[PollSchedule] = PollSchedule(initial=2.0, interval=2.0, max_interval=10.0, backoff=1.25,
                                                        max_wait=1800.0)
    default_rate_limit: ClassVar[float | None] = 5.0  # the live caps are on /developers/api; conservative
    default_max_concurrency: ClassVar[int] = 4
    idempotent_submit: ClassVar[bool] = True
    #: the key is a Bearer header; the API (seeds 000/001) documents no redirects, so one is followed only
    #: within the API's origin; the output URLs are pre-signed and fetched without the key
    redirects: ClassVar[Literal["same-origin", "none"]] = "same-origin"
    pricing: ClassVar[PricingTable] = PRICING

    def validate(self) -> None:
        mode = self.options.get("model_names", "auto")
        if mode not in ("auto", "seed", "sdk"):
            raise ConfigError(f"provider aistemsplitter: option model_names expects 'auto', 'seed' or 'sdk', "
                              f"got {mode!r}", field="aistemsplitter.options.model_names")
        upm = self.options.get("usd_per_minute")
        if upm is not None and (not isinstance(upm, (int, float)) or isinstance(upm, bool) or upm < 0):
            raise ConfigError(f"provider aistemsplitter: option usd_per_minute expects a number ≥ 0, got {upm!r}",
                              field="aistemsplitter.options.usd_per_minute")
        pack = self.options.get("pack")
        if pack is not None and pack not in [p[0] for p in self.pricing.packs]:
            raise ConfigError(
                f"provider aistemsplitter: option pack expects one of "
                f"{[p[0] for p in self.pricing.packs]}, got {pack!r}",
                field="aistemsplitter.options.pack",
            )

    @property
    def stems(self) -> tuple[str, ...]:
        return stems_of(self.variant)

    # ---------------------------------------------------------------- cost
    def cost_for_seconds(self, seconds: float) -> Cost:
        credits = pricing.credits_for(seconds)
        upm = self.options.get("usd_per_minute")
        rate = float(upm) if upm is not None else self.pricing.usd_per_minute(self.options.get("pack"))
        return Cost(usd=credits / 60.0 * rate, credits=credits, credit_unit="seconds", estimated=True)

    def _cost_from(self, data: Mapping[str, Any]) -> Cost | None:
        used = data.get("creditsUsed", data.get("credits_used"))
        if isinstance(used, (int, float)) and not isinstance(used, bool) and used > 0:
            c = self.cost_for_seconds(float(used))
            return Cost(usd=c.usd, credits=float(used), credit_unit="seconds", estimated=False)
        return None

    # ---------------------------------------------------------------- wire
    def parse_error(self, resp: Response) -> tuple[str, str]:
        data = resp.json_or_none()
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return str(err.get("code") or ""), str(err.get("message") or "")
            if isinstance(err, str):  # upload worker: flat {"error": CODE, "message": …}
                return err, str(data.get("message") or "")
            if isinstance(data.get("message"), str):
                return str(data.get("code") or ""), data["message"]
        return "", resp.excerpt(160)

    def _data(self, resp: Response) -> dict[str, Any]:
        """The payload of an answer, with or without the SDK envelope."""
        body = resp.json()
        if isinstance(body, dict) and "success" in body:
            if body.get("success") is True and isinstance(body.get("data"), dict):
                return body["data"]
            if body.get("success") is True and isinstance(body.get("data"), list):
                return {"items": body["data"]}
            err = self.error_for(resp)
            if resp.status < 400:  # success:false under HTTP 200: still an error
                raise ProviderRejected(err.message.replace("HTTP 200", "service error"), provider=self.id,
                                       **{k: v for k, v in err.details.items() if k != "provider"})
            raise err
        if isinstance(body, dict):
            return body
        if isinstance(body, list):
            return {"items": body}
        raise ProviderOutputError(f"{resp.what}: expected a JSON object, got {type(body).__name__}", provider=self.id)

    def _wire_model(self, alias: bool) -> str:
        assert self.variant is not None
        return MODEL_ALIASES.get(self.variant, self.variant) if alias else self.variant

    # ------------------------------------------------------------- prepare
    async def prepare(self, job: JobContext) -> dict[str, Any]:
        url = job.track.metadata.get("url") or job.track.metadata.get("public_url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            job.note("input", "direct_url")
            return {"type": "direct_url", "url": url}
        with job.timed("encode", local=True):
            data = await asyncio.to_thread(encode_bytes, job.track.mixture, job.track.sample_rate, "flac")
        filename = job.upload_filename("flac")
        with job.timed("upload"):
            up = await self.upload(job, data, filename=filename, content_type="audio/flac")
        job.note("input", "uploaded_file")
        job.note("upload_bytes", len(data))
        return up

    async def upload(self, job: JobContext, data: bytes, *, filename: str, content_type: str) -> dict[str, Any]:
        """The SDK's two-step upload; returns the split ``input`` object."""
        c = job.client
        res = self._data(await c.request(
            "POST", "/audio/uploads",
            json={"filename": filename, "contentType": content_type, "contentLength": len(data)},
            what=f"{self.id}: upload reservation",
        ))
        upload_url = res.get("uploadUrl") or res.get("upload_url") or res.get("url")
        if not isinstance(upload_url, str) or not upload_url:
            raise ProviderOutputError(f"{self.id}: upload reservation lacks uploadUrl (keys {sorted(res)})",
                                      provider=self.id)
        headers = {str(k): str(v) for k, v in dict(res.get("uploadHeaders") or res.get("upload_headers") or {}).items()}
        headers["Content-Type"] = content_type
        method = str(res.get("method") or "POST").upper()
        resp = await c.request(method, upload_url, content=data, headers=headers, auth=False, upload=True,
                               what=f"{self.id}: upload of {len(data)} bytes to storage")
        stored: dict[str, Any] = {}
        body = resp.json_or_none()
        if isinstance(body, dict):
            if body.get("success") is False:
                raise self.error_for(resp)
            raw_inner = body.get("data")
            inner = raw_inner if isinstance(raw_inner, dict) else body
            stored = inner
        file_url = stored.get("url") or res.get("fileUrl") or res.get("audio_url") or res.get("audioUrl")
        key = stored.get("key") or res.get("storageKey") or res.get("key")
        if not file_url:
            raise ProviderOutputError(
                f"{self.id}: storage accepted the upload but returned no file URL ({resp.excerpt(120)!r})",
                provider=self.id,
            )
        out: dict[str, Any] = {"type": "uploaded_file", "fileUrl": file_url}
        if res.get("uploadId"):
            out["uploadId"] = res["uploadId"]
        if key:
            out["storageKey"] = key
        return out

    # -------------------------------------------------------------- submit
    def _webhook_url(self) -> str | None:
        url = self.options.get("webhook_url")
        rec = self.options.get("webhook_receiver")
        if not url and rec is not None:
            url = getattr(rec, "url", None)
        return str(url) if url else None

    async def create(self, job: JobContext, prepared: Any) -> Submission:
        try:
            return await self._create_any_name(job, prepared)
        except ProviderRejected as e:
            if str(e.details.get("code") or "").upper() != "IDEMPOTENCY_CONFLICT":
                raise
            return await self._adopt_conflicting(job, e)

    async def _adopt_conflicting(self, job: JobContext, e: ProviderRejected) -> Submission:
        """The service already holds a split under this Idempotency-Key but
        with another body — a resumed run re-uploaded the input (new
        uploadId). That split is ours: find it in the job list (by key or the
        job tag of the upload name); never submit under a new key."""
        jobs = await self.list_recent(job)
        for info in jobs or []:
            if info.idempotency_key == job.idempotency_key or (info.filename and job.tag in info.filename):
                job.note("reconciled", info.remote_id)
                return Submission(info.remote_id, self.adopt_cost(info) or self.estimate_cost(job.track),
                                  {"reconciled": True})
        where = "its job list does not show it" if jobs is not None else "the service offers no job list"
        raise ProviderUnavailable(
            f"{self.id}: a split for {job.track.name!r} was already submitted under Idempotency-Key "
            f"{job.idempotency_key} (the service refused the resend: {e.message}) and {where}; "
            "nothing was charged again — inspect the account, then rerun with --force to submit anew",
            provider=self.id, code="IDEMPOTENCY_CONFLICT",
        ) from None

    async def _create_any_name(self, job: JobContext, prepared: Any) -> Submission:
        mode = self.options.get("model_names", "auto")
        alias_first = mode == "sdk"
        try:
            return await self._create(job, prepared, alias=alias_first)
        except ProviderRejected as e:
            retry_alias = (mode == "auto" and self.variant in MODEL_ALIASES and e.details.get("status") in (400, 422)
                           and "model" in e.message.lower())
            if not retry_alias:
                raise
            job.note("stem_model_fallback", f"{self.variant} refused; retrying as {MODEL_ALIASES[self.variant or '']}")
            return await self._create(job, prepared, alias=True, key_suffix="-alias")

    async def _create(self, job: JobContext, prepared: Any, *, alias: bool, key_suffix: str = "") -> Submission:
        body: dict[str, Any] = {"input": prepared, "stemModel": self._wire_model(alias),
                                "outputFormat": self.config["output_format"]}
        hook = self._webhook_url()
        if hook:
            body["webhookUrl"] = hook
        resp = await job.client.request(
            "POST", "/audio/splits", json=body, headers={"Idempotency-Key": job.idempotency_key + key_suffix},
            # "safe": a lost answer is reconciled through the job list before any resend — the
            # Idempotency-Key alone would trust the service to dedup
            retry="safe", what=f"{self.id}: create split",
        )
        data = self._data(resp)
        rid = data.get("id")
        if not isinstance(rid, str) or not rid:
            raise ProviderOutputError(f"{self.id}: create split answered without a job id ({resp.excerpt(120)!r})",
                                      provider=self.id)
        job.note("stem_model_sent", body["stemModel"])
        cost = self._cost_from(data) or self.estimate_cost(job.track)
        return Submission(rid, cost, {"stem_model_sent": body["stemModel"]}, self._state(data))

    # ---------------------------------------------------------------- poll
    def _state(self, data: Mapping[str, Any]) -> JobState:
        raw = str(data.get("status") or "").lower()
        status = _STATUS.get(raw, RUNNING)
        stems = data.get("stems") or {}
        outputs = (
            {str(k): str(v) for k, v in stems.items() if isinstance(v, str) and v} if isinstance(stems, dict) else {}
        )
        err = data.get("error")
        code = msg = None
        if isinstance(err, dict):
            code, msg = err.get("code"), err.get("message")
        elif isinstance(err, str) and err:
            msg = err
        model = data.get("stemModel")
        info: dict[str, Any] = {"stem_model": FROM_WIRE.get(str(model), str(model))} if model else {}
        if data.get("durationSeconds") is not None:
            info["duration_seconds"] = data.get("durationSeconds")
        return JobState(status=status, outputs=outputs, error_code=str(code) if code else None,
                        error_message=str(msg) if msg else None, cost=self._cost_from(data) if status == DONE else None,
                        service_status=raw, info=info)

    async def fetch_state(self, job: JobContext, remote_id: str) -> JobState:
        resp = await job.client.request("GET", f"/audio/splits/{quote(remote_id, safe='')}",
                                        what=f"{self.id}: status of {remote_id}")
        st = self._state(self._data(resp))
        if st.status == DONE and not st.outputs:
            raise ProviderOutputError(f"{self.id}: job {remote_id} succeeded without stem URLs", provider=self.id)
        model = st.info.get("stem_model")
        if model and model != self.variant:
            job.warnings.append(f"service reports model {model!r}, asked for {self.variant!r}")
        return st

    def failed_error(self, job: JobContext, state: JobState) -> ProviderError:
        err = super().failed_error(job, state)
        if (state.error_code or "").upper() in _REJECT_CODES:
            return ProviderRejected(err.message, **err.details)
        return err

    # ---------------------------------------------------------- reconcile
    async def list_recent(self, job: JobContext) -> list[RemoteJobInfo] | None:
        resp = await job.client.request(
            "GET",
            "/audio/splits",
            params={"limit": 50},
            accept_status=frozenset({404, 405}),
            what=f"{self.id}: list recent splits",
        )
        if resp.status in (404, 405):
            return None
        return self._infos(self._data(resp))

    def _infos(self, data: Any) -> list[RemoteJobInfo]:
        items = sequence_of(data, "items", "splits", "data", "jobs")
        out = []
        for it in items:
            if isinstance(it, dict) and it.get("id"):
                out.append(RemoteJobInfo(
                    remote_id=str(it["id"]), status=str(it.get("status") or ""),
                    filename=str(it.get("filename") or ""),
                    idempotency_key=it.get("idempotencyKey") or it.get("idempotency_key"),
                    created_at=it.get("createdAt"), cost=self._cost_from(it),
                ))
        return out

    async def alist_splits(self, limit: int = 50) -> list[RemoteJobInfo] | None:
        """Recent split jobs of the account, newest first (None when the
        service has no list endpoint)."""
        self._require_key()
        resp = await self._client().request("GET", "/audio/splits", params={"limit": int(limit)},
                                            accept_status=frozenset({404, 405}), what=f"{self.id}: list recent splits")
        if resp.status in (404, 405):
            return None
        return self._infos(self._data(resp))

    def list_splits(self, limit: int = 50) -> list[RemoteJobInfo] | None:
        async def _run() -> list[RemoteJobInfo] | None:
            try:
                return await self.alist_splits(limit)
            finally:
                await self.aclose()

        return asyncio.run(_run())

    # ------------------------------------------------------------- credits
    async def aget_credits(self) -> dict[str, Any]:
        """``{"balance": …, "unit": "seconds"}`` of the account."""
        self._require_key()
        resp = await self._client().request("GET", "/credits", what=f"{self.id}: credits")
        return self._data(resp)

    def get_credits(self) -> dict[str, Any]:
        async def _run() -> dict[str, Any]:
            try:
                return await self.aget_credits()
            finally:
                await self.aclose()

        return asyncio.run(_run())
