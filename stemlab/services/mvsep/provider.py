"""MVSEP (mvsep.com): dozens of hosted separation models, billed in credits.

Wire format from the vendor's API docs (seed 002) and the official client
``mvsep-cli`` 1.2.0 (the live format); see :class:`MVSep` for where they
differ. Models are chosen by name (``mvsep:demucs4ht?model=htdemucs_ft``,
``mvsep:bs_roformer``, ``mvsep:ensemble?model=v_2025_06_30``), mapped onto the
service's numbers (``sep_type``, ``add_opt1..3``) through the algorithm list
``GET /api/app/algorithms`` — fetched once per host and cached; the shipped
snapshot ``algorithms.json`` (:mod:`.catalog`) lets offline runs plan and
validate; credits are :mod:`.pricing`'s.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from ...audio import encode_bytes
from ...errors import (
    ConfigError,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderUnavailable,
    StemlabError,
)
from ...providers.base import JobJournal, Param
from ...types import Cost, Separation, Track
from .. import SERVICES
from .._remote.http import (
    COMMON_OPTIONS,
    DONE,
    FAILED,
    RUNNING,
    Auth,
    JobContext,
    JobState,
    PollSchedule,
    RemoteJobInfo,
    RemoteProvider,
    Response,
    Submission,
    log,
    sequence_of,
)
from . import pricing
from .api import MIRRORS, OUTPUT_FORMATS, STATUS_MAP, stem_in_name
from .catalog import (
    ACCOMP_WORDS,
    STEM_WORDS,
    VARIANTS,
    Algorithm,
    ModelChoice,
    load_snapshot,
    parse_algorithms,
    slugify,
    stems_for,
    stems_of,
    variant_names,
)

__all__ = ["MVSep"]


#: the algorithm list of each host, fetched at most once per ``_ALGO_TTL`` seconds
_ALGO_CACHE: dict[str, tuple[float, dict[int, Algorithm]]] = {}
_ALGO_TTL = 6 * 3600.0


class MVSep(RemoteProvider):
    """MVSEP: model by name, credits per minute × the algorithm's price coefficient.

    Flow: ``POST /api/separation/create`` (multipart ``api_token``,
    ``audiofile`` — FLAC 16-bit of the decoded mixture named
    ``<job tag>_<track>.flac`` — or ``url`` + ``remote_type`` when
    ``track.metadata["url"]`` is public; ``sep_type``, ``add_opt1..3``,
    ``output_format``, ``is_demo``) → poll ``GET /api/separation/get?hash=``
    (waiting → processing | distributing → merging → done | failed;
    not_found = unknown/expired) → download each ``data.files[].url``
    (redirects followed, e.g. to a storage host). Cancel, queue, user,
    history and the algorithm list are methods (:meth:`acancel`,
    :meth:`aqueue`, :meth:`auser`, :meth:`ahistory`, :meth:`aalgorithms`);
    the Quality Checker is :class:`~stemlab.services.mvsep.quality_checker.QualityChecker`.

    Seed 002 vs mvsep-cli 1.2.0 — stemlab accepts both:

    1. Mirror: the seed's ``mirror=1`` on ``/separation/get`` is a paid
       (1 credit) alternate download mirror needing ``api_token``; the CLI's
       "mirror" switches the whole host (``https://mirror.mvsep.com``).
       stemlab: option ``mirror`` = ``"main"`` | ``"mirror"`` picks the host
       (``base_url`` overrides both), option ``download_mirror=True`` asks
       ``mirror=1`` once the job is done (+1 credit, added to the cost).
       Polls always send ``mirror=0`` like the CLI.
    2. Final statuses: CLI ``done/failed/not_found``; ZFTurbo's example also
       ``error``. All four end the wait; anything unknown counts as running.
    3. Defaults: seed ``sep_type`` 11 / ``output_format`` 0 (mp3); CLI 20 /
       1 (wav). stemlab always sends both explicitly (variant default
       ``demucs4ht``, param ``output_format`` default ``wav``).
    4. ``add_optN``: the CLI sends them only when non-empty; so does
       stemlab — only the fields set by ``model`` / ``add_optN``; the service
       applies each field's ``default_key`` to the rest.
    5. Chunk fields: the seed shows ``finished_chunks/all_chunks`` under
       ``distributing``, the CLI prints them under ``merging``; both are read
       (journal note ``chunks``).
    6. Files: ``data.files[]`` carry ``url`` and ``download`` (filename); the
       CLI also reads ``name``. The stem is taken from ``type``/``name`` when
       it names one, else from the last ``_<stem>`` of the file name.
    7. Retries: the CLI does not retry create/get; stemlab's base retries GETs
       on 429/5xx/connect errors (``Retry-After`` as seconds *or* HTTP-date —
       the CLI crashes on dates) and retries the paid create only when the
       service certainly did not act (connect error, 429, 503); an ambiguous
       failure is reconciled through ``/app/separation_history`` (the hash
       embeds the upload file name, which carries the job tag).
    8. ``/app/algorithms``: the CLI adds ``scopes=single_upload``; stemlab
       sends it too.

    Concurrency: Premium accounts may run 10 jobs at once, others 1. Option
    ``plan`` = ``"auto"`` (default: asks ``/app/user`` once for
    ``premium_enabled``), ``"premium"`` or ``"free"``; an explicit
    ``max_concurrency`` wins. Free accounts spend no credits (cost 0).

    Cost: credits as :func:`.pricing.credits_for` with the algorithm's
    ``price_coefficient`` (live list, else the snapshot). USD =
    credits × ``usd_per_credit`` (option, default 0: MVSEP publishes no API
    price per credit).
    """

    family: ClassVar[str] = "mvsep"
    description: ClassVar[str] = SERVICES["mvsep"].description
    variants: ClassVar[tuple[str, ...]] = variant_names()
    default_variant: ClassVar[str | None] = "demucs4ht"
    params_schema: ClassVar[tuple[Param, ...]] = (
        Param("model", str, None, help="model of the algorithm by name (see 'valid' in the error for a bad one) "
              "or its option key", nullable=True),
        Param("output_format", str, "wav", help="format of the returned stems", choices=tuple(OUTPUT_FORMATS)),
        Param("add_opt1", str, None, help="raw add_opt1 (option key) when not set by 'model'", nullable=True),
        Param("add_opt2", str, None, help="raw add_opt2 (option key)", nullable=True),
        Param("add_opt3", str, None, help="raw add_opt3 (option key)", nullable=True),
    )
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS + (
        "mirror", "download_mirror", "plan", "usd_per_credit", "is_demo", "algorithms",
    )
    default_base_url: ClassVar[str] = MIRRORS["main"] + "/api"
    # free queues can take minutes; the CLI polls every 5 s
    default_poll: ClassVar[PollSchedule] = PollSchedule(initial=5.0, interval=5.0, max_interval=20.0, backoff=1.2,
                                                        max_wait=3600.0)
    default_rate_limit: ClassVar[float | None] = 2.0  # undocumented; conservative
    default_max_concurrency: ClassVar[int] = 10  # premium; lowered to 1 for free accounts
    idempotent_submit: ClassVar[bool] = False
    #: the token travels as a form field / query parameter: a redirect is followed only within the API's
    #: origin (httpx used to re-POST the token to any origin on a 307); result files may redirect to a
    #: storage host — they are fetched without the token
    redirects: ClassVar[Literal["same-origin", "none"]] = "same-origin"

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(variant, params, **options)
        if not options.get("base_url"):
            self.base_url = MIRRORS[str(self.options.get("mirror") or "main")] + "/api"
        plan = self.options.get("plan", "auto")
        #: True/False once known (option plan or /app/user); None: assume premium (pays credits)
        self.premium: bool | None = None if plan == "auto" else plan == "premium"
        self._plan_checked = plan != "auto"
        self._plan_task: asyncio.Future[None] | None = None
        if self.premium is not None and "max_concurrency" not in self.options:
            self.max_concurrency = 10 if self.premium else 1

    # ------------------------------------------------------------ config
    def validate(self) -> None:
        fam = self.family
        o = self.options
        if o.get("mirror", "main") not in MIRRORS:
            raise ConfigError(
                f"provider mvsep: option mirror expects one of {sorted(MIRRORS)}, got {o.get('mirror')!r}",
                field="mvsep.options.mirror",
            )
        if o.get("plan", "auto") not in ("auto", "free", "premium"):
            raise ConfigError(f"provider mvsep: option plan expects 'auto', 'free' or 'premium', got {o.get('plan')!r}",
                              field="mvsep.options.plan")
        upc = o.get("usd_per_credit")
        if upc is not None and (not isinstance(upc, (int, float)) or isinstance(upc, bool) or upc < 0):
            raise ConfigError(f"provider mvsep: option usd_per_credit expects a number ≥ 0, got {upc!r}",
                              field="mvsep.options.usd_per_credit")
        algos = o.get("algorithms")
        if algos is not None and not isinstance(algos, Mapping):
            raise ConfigError("provider mvsep: option algorithms expects a mapping render_id → Algorithm "
                              "(see parse_algorithms)", field=f"{fam}.options.algorithms")
        self.choice = self.resolve(self.algorithms_offline())

    def algorithms_offline(self) -> dict[int, Algorithm]:
        """The list used before any request: option ``algorithms``, a cached
        live list of this host, or the shipped snapshot."""
        given = self.options.get("algorithms")
        if given:
            return dict(given)
        cached = _ALGO_CACHE.get(getattr(self, "base_url", "") or "")
        return cached[1] if cached else load_snapshot()

    def algorithm(self, algos: Mapping[int, Algorithm] | None = None) -> Algorithm:
        algos = algos if algos is not None else self.algorithms_offline()
        assert self.variant is not None
        rid = VARIANTS.get(self.variant)
        if rid is None:
            rid = next((a.render_id for a in algos.values() if a.slug == self.variant), None)
        if rid is None or rid not in algos:
            raise ConfigError(f"provider mvsep: variant {self.variant!r} is not in the algorithm list; valid: "
                              f"{sorted(a.slug for a in algos.values() if stems_of(a.name))}", field="mvsep.variant")
        return algos[rid]

    def resolve(self, algos: Mapping[int, Algorithm]) -> ModelChoice:
        """Map variant + ``model`` + raw ``add_optN`` onto the wire numbers;
        :class:`ConfigError` naming the valid names for anything unknown."""
        algo = self.algorithm(algos)
        opts: dict[str, str] = {}
        for n in ("add_opt1", "add_opt2", "add_opt3"):
            raw = self.config.get(n)
            if raw is None:
                continue
            f = algo.field(n)
            if f is None:
                raise ConfigError(f"provider mvsep:{self.variant}: parameter {n} is not a field of {algo.name!r} "
                                  f"(fields: {[x.name for x in algo.fields] or 'none'})", field=f"mvsep.params.{n}")
            if f.options and str(raw) not in f.options:
                raise ConfigError(f"provider mvsep:{self.variant}: {n} ({f.text}) = {raw!r} is not an option; valid: "
                                  f"{sorted(f.options)}", field=f"mvsep.params.{n}")
            opts[n] = str(raw)
        model = self.config.get("model")
        mf = algo.model_field
        if model is not None:
            if mf is None:
                raise ConfigError(f"provider mvsep:{self.variant}: {algo.name!r} has no model choice; drop 'model'",
                                  field="mvsep.params.model")
            names = mf.names()
            key = names.get(slugify(str(model)))
            if key is None and str(model) in mf.options:
                key = str(model)
            if key is None:
                key = next((k for k, lab in mf.options.items() if lab.lower() == str(model).lower()), None)
            if key is None:
                raise ConfigError(f"provider mvsep:{self.variant}: unknown model {model!r} for {algo.name!r}; valid: "
                                  f"{sorted(names)} (or option keys {sorted(mf.options)})", field="mvsep.params.model")
            if mf.name in opts and opts[mf.name] != key:
                raise ConfigError(f"provider mvsep:{self.variant}: model {model!r} (key {key}) contradicts "
                                  f"{mf.name}={opts[mf.name]!r}", field="mvsep.params.model")
            opts[mf.name] = key
        stems, model_label = stems_for(algo, opts)
        if not stems:
            raise ConfigError(f"provider mvsep:{self.variant}: cannot tell the stems of {algo.name!r}",
                              field="mvsep.variant")
        return ModelChoice(algo.render_id, opts, stems, model_label)

    @property
    def stems(self) -> tuple[str, ...]:
        return self.choice.stems

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out.update(sep_type=self.choice.sep_type, add_opts=dict(self.choice.add_opts), model_label=self.choice.model)
        return out

    # ---------------------------------------------------------------- cost
    def price_coefficient(self) -> float:
        try:
            return self.algorithm().price_coefficient
        except ConfigError:  # the live list dropped the algorithm; the submit will say so
            return 1.0

    def cost_for_seconds(self, seconds: float) -> Cost:
        if self.premium is False:  # free accounts (premium_enabled 0) spend no credits
            return Cost(credits=0.0, credit_unit="mvsep_credits", estimated=True)
        credits = float(pricing.credits_for(seconds, self.price_coefficient()))
        if self.options.get("download_mirror"):
            credits += pricing.MIRROR_CREDITS
        upc = float(self.options.get("usd_per_credit") or 0.0)
        return Cost(usd=credits * upc, credits=credits, credit_unit="mvsep_credits", estimated=True)

    # ---------------------------------------------------------------- wire
    def auth(self, key: str) -> Auth:
        """MVSEP takes the token as a form field on POSTs (query on GETs: see :meth:`_token`)."""
        return Auth(form={"api_token": key})

    def _token(self) -> dict[str, str]:
        return {"api_token": self._require_key()}

    def parse_error(self, resp: Response) -> tuple[str, str]:
        data = resp.json_or_none()
        if isinstance(data, dict):
            inner = data.get("data")
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                return str(data.get("status") or ""), inner["message"]
            if isinstance(data.get("message"), str):
                return "", data["message"]
            errs = data.get("errors")
            if isinstance(errs, dict) and errs:
                return "", "; ".join(f"{k}: {v[0] if isinstance(v, list) and v else v}" for k, v in errs.items())
        return "", resp.excerpt(160)

    def error_for(self, resp: Response) -> StemlabError:
        """As the base, plus: the ``app/*`` endpoints answer a bad token with
        HTTP 400 (not 401) — still an authentication failure."""
        if resp.status == 400:
            _, msg = self.parse_error(resp)
            if re.search(r"api[_ ]?(token|key)", msg, re.I):
                return ProviderUnavailable(
                    f"{resp.what}: authentication failed (HTTP 400: {msg}); check ${self.env_var} or the api_key "
                    "option", provider=self.id, status=400)
        return super().error_for(resp)

    def _body(self, resp: Response, *, allow_false: bool = False) -> dict[str, Any]:
        body = resp.json()
        if not isinstance(body, dict):
            raise ProviderOutputError(f"{resp.what}: expected a JSON object, got {type(body).__name__}",
                                      provider=self.id)
        if body.get("success") is False and not allow_false:
            _, msg = self.parse_error(resp)
            raise ProviderRejected(f"{resp.what}: service refused ({msg or 'no message'})", provider=self.id,
                                   status=resp.status)
        return body

    async def _get(self, job_client: Any, path: str, params: Mapping[str, Any], what: str,
                   token: bool = False) -> Response:
        q = dict(params)
        if token:
            q.update(self._token())
        return await job_client.request("GET", path, params=q, auth=False, what=f"{self.id}: {what}")

    # ------------------------------------------------------- algorithm list
    async def aalgorithms(self, *, refresh: bool = False) -> dict[int, Algorithm]:
        """The host's algorithm list (cached ``_ALGO_TTL`` s per host); the
        shipped snapshot when the service cannot be asked."""
        hit = _ALGO_CACHE.get(self.base_url)
        if hit and not refresh and time.monotonic() - hit[0] < _ALGO_TTL:
            return hit[1]
        try:
            resp = await self._get(self._client(), "/app/algorithms", {"scopes": "single_upload"}, "algorithm list")
            algos = parse_algorithms(resp.json())
            if not algos:
                raise ProviderOutputError(f"{self.id}: the algorithm list is empty", provider=self.id)
        except ProviderError as e:
            log.warning("%s: algorithm list unavailable (%s); using the shipped snapshot", self.id, e.message)
            _ALGO_CACHE[self.base_url] = (time.monotonic() - _ALGO_TTL + 600.0, load_snapshot())  # ask again in 10 min
            return load_snapshot()
        _ALGO_CACHE[self.base_url] = (time.monotonic(), algos)
        return algos

    # ---------------------------------------------------------------- plan
    async def _ensure_plan(self) -> None:
        """Ask ``/app/user`` once whether the account is Premium (10
        parallel jobs, pays credits) or not (1 job, free); concurrent callers
        wait for the same answer."""
        if self._plan_checked:
            return
        t = self._plan_task
        if t is None or t.get_loop() is not asyncio.get_running_loop():
            t = self._plan_task = asyncio.ensure_future(self._detect_plan())
        await t

    async def _detect_plan(self) -> None:
        try:
            user = await self.auser()
            premium = str(user.get("premium_enabled", "0")) in ("1", "True", "true")
        except ProviderError as e:
            log.warning("%s: could not read the account plan (%s); assuming a free account (1 job at a time)",
                        self.id, e.message)
            premium = False
        self.premium = premium
        if "max_concurrency" not in self.options:
            self.max_concurrency = 10 if premium else 1
            self._limits()  # tightens the shared job slots of this account
        self._plan_checked = True

    async def aseparate(self, track: Track, journal: JobJournal | None = None) -> Separation:
        self._require_key()
        await self._ensure_plan()
        return await super().aseparate(track, journal)

    # ------------------------------------------------------------- submit
    async def create(self, job: JobContext, prepared: Any) -> Submission:
        algos = await self.aalgorithms()
        try:
            choice = self.resolve(algos)
        except ConfigError as e:
            raise ProviderRejected(f"{self.id}: the live algorithm list no longer accepts this choice: {e.message}",
                                   provider=self.id) from None
        if choice != self.choice:
            job.warnings.append(f"live algorithm list changed the choice: {choice} (was {self.choice})")
        form: dict[str, str] = {
            "sep_type": str(choice.sep_type),
            "output_format": str(OUTPUT_FORMATS[self.config["output_format"]]),
            "is_demo": "1" if self.options.get("is_demo") else "0",
        }
        form.update({k: v for k, v in choice.add_opts.items() if v != ""})
        files = None
        if prepared["kind"] == "url":
            form["url"] = prepared["url"]
            form["remote_type"] = prepared.get("remote_type", "direct")
        else:
            files = {"audiofile": (prepared["filename"], prepared["data"], "audio/flac")}
        resp = await job.client.request("POST", "/separation/create", data=form, files=files, retry="safe",
                                        upload=True, what=f"{self.id}: create separation")
        data = self._body(resp).get("data") or {}
        rid = data.get("hash") if isinstance(data, dict) else None
        if not isinstance(rid, str) or not rid:
            raise ProviderOutputError(f"{self.id}: create answered without a hash ({resp.excerpt(120)!r})",
                                      provider=self.id)
        job.note("sep_type", choice.sep_type)
        job.note("add_opts", dict(choice.add_opts))
        if data.get("link"):
            job.note("link", str(data["link"]))
        return Submission(rid, self.estimate_cost(job.track), {"sep_type": choice.sep_type})

    async def prepare(self, job: JobContext) -> dict[str, Any]:
        url = job.track.metadata.get("url") or job.track.metadata.get("public_url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            job.note("input", "url")
            return {"kind": "url", "url": url, "remote_type": str(job.track.metadata.get("remote_type") or "direct")}
        with job.timed("encode", local=True):
            data = await asyncio.to_thread(encode_bytes, job.track.mixture, job.track.sample_rate, "flac")
        job.note("input", "audiofile")
        job.note("upload_bytes", len(data))
        return {"kind": "file", "filename": job.upload_filename("flac"), "data": data}

    # ---------------------------------------------------------------- poll
    def state_from(self, body: Mapping[str, Any]) -> JobState:
        """A ``/separation/get`` answer in stemlab's terms (every status)."""
        raw = str(body.get("status") or ("not_found" if body.get("success") is False else "")).lower()
        raw_data = body.get("data")
        data = raw_data if isinstance(raw_data, dict) else {}
        status = STATUS_MAP.get(raw, RUNNING)
        info: dict[str, Any] = {}
        for k in ("queue_count", "current_order", "finished_chunks", "all_chunks", "algorithm", "output_format"):
            if data.get(k) is not None:
                info[k] = data[k]
        msg = data.get("message")
        if status == FAILED:
            reason = str(msg) if msg else ("the job is unknown, deleted or expired" if raw == "not_found"
                                           else "no reason given")
            return JobState(FAILED, error_code=raw, error_message=reason, service_status=raw, info=info)
        outputs: dict[str, str] = {}
        if status == DONE:
            outputs = self._outputs(data.get("files"))
        return JobState(status, outputs=outputs, service_status=raw, info=info)

    def _outputs(self, files: Any) -> dict[str, str]:
        """stemlab stem → URL from ``data.files``."""
        out: dict[str, str] = {}
        if not isinstance(files, list):
            return out
        has_vocals = "vocals" in self.stems
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("url"), str):
                continue
            stem = None
            for cand in (f.get("type"), f.get("name")):
                if isinstance(cand, str) and slugify(cand) in STEM_WORDS:
                    stem = slugify(cand)
                    break
            if stem is None:
                fname = str(f.get("download") or f["url"].split("?", 1)[0].rsplit("/", 1)[-1])
                stem = stem_in_name(fname.rsplit(".", 1)[0])
            if stem is None:
                continue
            if has_vocals and stem in ACCOMP_WORDS:
                stem = "accompaniment"
            out.setdefault(stem, f["url"].replace("\\/", "/"))
        return out

    async def fetch_state(self, job: JobContext, remote_id: str) -> JobState:
        resp = await self._get(job.client, "/separation/get", {"hash": remote_id, "mirror": "0"},
                               f"status of {remote_id}")
        st = self.state_from(self._body(resp, allow_false=True))
        if st.info.get("all_chunks") is not None:
            job.notes["chunks"] = f"{st.info.get('finished_chunks')}/{st.info.get('all_chunks')}"
        if st.status == DONE:
            if self.options.get("download_mirror"):
                mresp = await self._get(job.client, "/separation/get", {"hash": remote_id, "mirror": "1"},
                                        f"mirror links of {remote_id}", token=True)
                mst = self.state_from(self._body(mresp))
                if mst.status == DONE and mst.outputs:
                    st = mst
                    job.note("download_mirror", True)
            if not st.outputs:
                raise ProviderOutputError(f"{self.id}: job {remote_id} is done but lists no files", provider=self.id,
                                          remote_id=remote_id)
            st.cost = self.estimate_cost(job.track)
            st.cost = Cost(st.cost.usd, st.cost.credits, st.cost.credit_unit, estimated=False)
        return st

    def failed_error(self, job: JobContext, state: JobState) -> ProviderError:
        err = super().failed_error(job, state)
        if state.error_code == "not_found":
            return ProviderOutputError(f"{self.id}: remote job {job.remote_id} not found (unknown, deleted or expired) "
                                       f"on track {job.track.name!r}", **err.details)
        return err

    # --------------------------------------------------------- reconcile
    async def list_recent(self, job: JobContext) -> list[RemoteJobInfo] | None:
        items = await self.ahistory(limit=20, client=job.client)
        out = []
        for it in items:
            if isinstance(it, dict) and it.get("hash"):
                cr = it.get("credits")
                cost = Cost(credits=float(cr), credit_unit="mvsep_credits", estimated=False) \
                    if isinstance(cr, (int, float)) and not isinstance(cr, bool) else None
                out.append(RemoteJobInfo(remote_id=str(it["hash"]), filename=str(it["hash"]), cost=cost))
        return out

    # ------------------------------------------------------ account calls
    def _run(self, coro: Any) -> Any:
        async def _go() -> Any:
            try:
                return await coro
            finally:
                await self.aclose()

        return asyncio.run(_go())

    async def auser(self) -> dict[str, Any]:
        """``GET /app/user``: name, email, ``premium_minutes`` (credits left),
        ``premium_enabled``, ``current_queue`` … (the token is not returned)."""
        resp = await self._get(self._client(), "/app/user", {}, "user", token=True)
        data = self._body(resp).get("data") or {}
        return {k: v for k, v in dict(data).items() if k != "api_token"}

    async def acredits(self) -> float:
        """Credits left on the account (``premium_minutes``)."""
        return float((await self.auser()).get("premium_minutes") or 0.0)

    async def aqueue(self) -> dict[str, Any]:
        """``GET /app/queue``: ``{queue: {in_process, premium, registered, unregistered}, plan: {plan, queue}}``."""
        resp = await self._get(self._client(), "/app/queue", {}, "queue", token=True)
        return self._body(resp)

    async def ahistory(self, *, start: int = 0, limit: int = 10, client: Any = None) -> list[dict[str, Any]]:
        """``GET /app/separation_history`` (``limit`` ≤ 20)."""
        resp = await self._get(client or self._client(), "/app/separation_history",
                               {"start": int(start), "limit": max(1, min(20, int(limit)))}, "separation history",
                               token=True)
        return [x for x in sequence_of(self._body(resp), "data") if isinstance(x, dict)]

    async def acancel(self, remote_id: str) -> bool:
        """``POST /separation/cancel``: True when the service cancelled (and
        refunded) the job — only before processing starts."""
        resp = await self._client().request("POST", "/separation/cancel", data={"hash": remote_id}, retry="safe",
                                            what=f"{self.id}: cancel {remote_id}", accept_status=frozenset({400}))
        body = resp.json_or_none()
        return bool(isinstance(body, dict) and body.get("success") is True)

    async def astatus(self, remote_id: str) -> JobState:
        """One status answer for a hash (no job context needed)."""
        resp = await self._get(self._client(), "/separation/get", {"hash": remote_id, "mirror": "0"},
                               f"status of {remote_id}")
        return self.state_from(self._body(resp, allow_false=True))

    def user(self) -> dict[str, Any]:
        return self._run(self.auser())

    def credits(self) -> float:
        return self._run(self.acredits())

    def queue(self) -> dict[str, Any]:
        return self._run(self.aqueue())

    def history(self, start: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        return self._run(self.ahistory(start=start, limit=limit))

    def cancel(self, remote_id: str) -> bool:
        return self._run(self.acancel(remote_id))

    def algorithms(self, refresh: bool = False) -> dict[int, Algorithm]:
        return self._run(self.aalgorithms(refresh=refresh))

