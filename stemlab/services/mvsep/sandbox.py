"""MVSEP emulator: the API of seed 002 / mvsep-cli 1.2.0 on 127.0.0.1.

Endpoints under ``/api`` (fault endpoint names in brackets)::

    POST /api/separation/create          [create]      multipart api_token, audiofile | url (+remote_type), sep_type,
                                                       add_opt1..3, output_format 0–5, is_demo
    GET  /api/separation/get?hash=       [status]      every status; mirror=1 (+api_token) costs 1 credit
    GET  /api/separation/get-remote      [status_remote]
    POST /api/separation/cancel          [cancel]      only while waiting; refunds
    GET  /api/app/algorithms             [algorithms]  the shipped snapshot (a bare array)
    GET  /api/app/queue                  [queue]
    GET  /api/app/user                   [user]        400 on a bad token (as the docs say)
    GET  /api/app/separation_history     [history]
    GET  /api/app/news                   [news]
    POST /api/app/{enable,disable}_{premium,long_filenames}   [toggle]
    GET  /api/quality_checker/queue|leaderboard|entry          [qc_queue|qc_leaderboard|qc_entry]
    POST /api/quality_checker/add        [qc_add]      401 on a bad token
    GET|POST /api/quality_checker/delete [qc_delete]
    GET  /dl/{token}/{file}, /mirror/dl/{token}/{file}  [redirect]  302 → the signed file URL
    GET  /files/{token}/{file}?expires&sig              [download]

stemlab's provider takes ``base_url`` = :attr:`base_url` (``…/api``);
mvsep-cli takes the root (``MVSEP_API(token, base_url=sandbox.root_url)``,
it appends ``/api``) — the only change its flows need.

Answers: ``{"success": true, "data": …}``; errors ``{"success": false,
"data": {"message": …}}`` with HTTP 400 (bad/missing field, too many
parallel jobs, not enough credits) or 401 (bad token on create/QC add).
``/separation/get`` answers HTTP 200 for every status, ``success: false``
with ``status: "not_found"`` for an unknown hash.

Jobs (scaled clock): ``waiting`` for ``queue_seconds`` → ``processing`` —
or, when the input is longer than ``chunk_seconds``, ``distributing``
(``finished_chunks/all_chunks`` rising) then ``merging`` for the last 20 %
— → ``done`` (files ``<input>_<stem>.<ext>``: mp3 320k/m4a with encoder
delay, wav 16/32-bit, flac 16/24-bit per ``output_format``) or ``failed``
(``data.message`` = the reason). Premium tokens are charged
``max(1, floor(duration·price_coefficient/60))`` credits at creation
(refunded on failure or cancel) and may run 10 jobs at once; free tokens pay
nothing, run 1 job and cannot use premium-only algorithms.

Quality Checker: each dataset type the sandbox knows (0 Synth: vocals,
instrum; 1 Multi: vocals, bass, drums, other, instrum; 2 Piano; 4 Guitar)
has a small deterministic synthetic dataset (:meth:`MVSepSandbox.qc_dataset`);
an uploaded zip of ``<song>_<stem>.wav|flac|mp3`` is scored after
``qc_seconds`` with the global SDR per stem (``10·log10(Σs²/Σ(s−ŝ)²)``,
mean over songs) into ``sdr_<stem>``; the leaderboard sorts by them.
"""

from __future__ import annotations

import asyncio
import copy
import email.parser
import email.policy
import hashlib
import io
import json
import math
import re
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ...audio import decode_bytes, encode_bytes
from ...errors import InputError
from .._sandbox.server import Handler, Sandbox, SandboxJob, localhost_url

__all__ = ["MVSepSandbox", "QC_DATASETS", "parse_form"]

#: ``output_format`` → the sandbox's encoding name
_FORMATS = {0: "mp3", 1: "wav16", 2: "flac16", 3: "m4a", 4: "wav32", 5: "flac24"}
_EXT = {"mp3": "mp3", "wav16": "wav", "wav32": "wav", "flac16": "flac", "flac24": "flac", "m4a": "m4a"}
_WIRE_FORMAT = {"mp3": "mp3", "wav16": "wav", "wav32": "wav", "flac16": "flac", "flac24": "flac", "m4a": "m4a"}
#: stemlab stem → the word MVSEP puts in file names
_WORD = {"accompaniment": "instrum"}
_REMOTE_TYPES = ("direct", "mega", "drive", "dropbox")
#: sandbox separator quality per sep_type (HQ models better than old ones)
_QUALITY = {40: 0.9, 48: 0.9, 63: 0.9, 26: 0.93, 28: 0.93, 30: 0.93, 20: 0.86, 25: 0.86, 46: 0.88}

#: the stem words of seed 002's separation-type table ("名称 值 Additional fields"):
#: an algorithm's name — or its model option's label — lists its stems in
#: parentheses, e.g. "Demucs4 HT (vocals, drums, bass, other)", "spleeter" →
#: "2 stems (vocals, music)", "MelBand Karaoke (lead/back vocals)"
_SEED_STEM_WORDS = frozenset({
    "vocals", "instrum", "instrumental", "music", "drums", "bass", "other", "piano", "guitar", "strings", "wind",
    "organ", "saxophone", "violin", "crowd", "noreverb", "dialog", "sfx", "speech", "effects", "kick", "snare",
    "cymbals", "toms", "ride", "hh", "crash", "hihat",
})
#: listed next to vocals these mean "everything else": one backing stem, whose files say ``instrum``
_BACKING_WORDS = frozenset({"instrum", "instrumental", "music"})


@dataclass(frozen=True)
class _Algorithm:
    """One entry of ``GET /app/algorithms`` as the sandbox reads it (seed 002
    "获取分离类型": ``render_id``, ``name``, ``orientation`` 2 = premium users
    only, ``price_coefficient``, ``algorithm_fields`` with JSON-encoded
    ``options`` and a ``default_key``)."""

    render_id: int
    name: str
    price_coefficient: float
    orientation: int
    #: add_optN → (field text, option key → label, default key)
    fields: Mapping[str, tuple[str, Mapping[str, str], str | None]]


def _read_algorithms(raw: Sequence[Mapping[str, Any]]) -> dict[int, _Algorithm]:
    out: dict[int, _Algorithm] = {}
    for it in raw:
        fields: dict[str, tuple[str, Mapping[str, str], str | None]] = {}
        for f in it.get("algorithm_fields") or []:
            opts = f.get("options") or {}
            if isinstance(opts, str):
                opts = json.loads(opts) if opts.strip() else {}
            dk = f.get("default_key")
            fields[str(f.get("name"))] = (str(f.get("text") or ""), {str(k): str(v) for k, v in dict(opts).items()},
                                          None if dk is None else str(dk))
        out[int(it["render_id"])] = _Algorithm(int(it["render_id"]), str(it.get("name") or ""),
                                               float(it.get("price_coefficient") or 1.0),
                                               int(it.get("orientation") or 0), fields)
    return out


def _listed_stems(text: str) -> list[str] | None:
    """The first parenthesised list in ``text`` made only of the seed's stem
    words ("lead/back vocals" is two stems), or None."""
    for group in re.findall(r"\(([^()]*)\)", text):
        out: list[str] = []
        for word in (w.strip().lower() for w in group.split(",")):
            if word == "lead/back vocals":
                out += ["lead_vocals", "back_vocals"]
            elif word in _SEED_STEM_WORDS:
                out.append(word)
            else:
                out = []
                break
        if out:
            return out
    return None


def _job_stems(algo: _Algorithm, add_opts: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """(stems the job returns, the chosen model's label): the stems the model
    label lists, else those of the algorithm name; Demucs4 HT's "htdemucs_6s
    (6 stems, additional piano and guitar)" adds guitar and piano. Next to
    vocals the backing word is the ``accompaniment`` (the separator's name
    for it; files say ``instrum``)."""
    label = None
    for name, (text, options, default) in algo.fields.items():
        if "model" in text.lower():
            label = options.get(str(add_opts.get(name) or default or ""))
            break
    words = (_listed_stems(label) if label else None) or _listed_stems(algo.name) or []
    if label and "6 stems" in label and "guitar" not in words:
        words += ["guitar", "piano"]
    if "vocals" in words:
        words = ["accompaniment" if w in _BACKING_WORDS else w for w in words]
    return tuple(dict.fromkeys(words)), label


def _credits(seconds: float, price_coefficient: float) -> float:
    """Seed 002 "获取分离类型", ``price_coefficient``: a premium job costs
    ``floor(<音频文件时长(秒)> * price_coefficient / 60)?:1`` credits."""
    n = math.floor(seconds * price_coefficient / 60)
    return float(n or 1)


#: Quality Checker dataset type → (dataset name, stems); others are refused
QC_DATASETS: Mapping[int, tuple[str, tuple[str, ...]]] = {
    0: ("Synth", ("vocals", "instrum")),
    1: ("Multi", ("vocals", "bass", "drums", "other", "instrum")),
    2: ("Piano", ("piano", "other")),
    4: ("Guitar", ("guitar", "other")),
}


async def parse_form(request: Request) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """(fields, files) of a urlencoded or multipart body — standard library
    only (``email`` parser), so the sandbox needs no python-multipart."""
    body = await request.body()
    ctype = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if ctype.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            raw = part.get_payload(decode=True)  # bytes (None for a nested multipart)
            payload = raw if isinstance(raw, bytes) else b""
            filename = part.get_filename()
            if filename is not None:
                files[str(name)] = (str(filename), payload)
            else:
                fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    elif body:
        fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return fields, files


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    r, e = ref[..., :n].astype(np.float64), est[..., :n].astype(np.float64)
    num = float(np.sum(r**2)) + 1e-8
    den = float(np.sum((r - e) ** 2)) + 1e-8
    return 10.0 * math.log10(num / den)


class MVSepSandbox(Sandbox):
    service: ClassVar[str] = "mvsep"
    path_prefix: ClassVar[str] = "/api"
    default_quality: ClassVar[float] = 0.85

    def __init__(
        self,
        *,
        api_keys: Sequence[str] | None = None,
        free_keys: Sequence[str] | None = None,
        initial_credits: float = 1000.0,
        chunk_seconds: float = 600.0,
        qc_seconds: float = 60.0,
        qc_songs: int = 2,
        qc_song_seconds: float = 2.0,
        refund_failed: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_keys=api_keys or ["mvsep_sandbox_premium_token_0001"], **kwargs)
        self.free_keys: list[str] = list(free_keys) if free_keys is not None else ["mvsep_sandbox_free_token_0001"]
        self.premium: dict[str, bool] = {k: True for k in self.api_keys}
        self.premium.update({k: False for k in self.free_keys})
        self.initial_credits = float(initial_credits)
        self.balances: dict[str, float] = {}
        self.chunk_seconds = float(chunk_seconds)
        self.qc_seconds = float(qc_seconds)
        self.qc_songs = int(qc_songs)
        self.qc_song_seconds = float(qc_song_seconds)
        self.refund_failed = refund_failed
        self.algorithm_list: list[dict[str, Any]] = []
        self.algorithms: dict[int, _Algorithm] = {}
        self.set_algorithms(None)
        self.long_filenames: dict[str, bool] = {}
        self.qc_entries: dict[int, dict[str, Any]] = {}
        self._qc_next = 7001
        self._qc_cache: dict[int, dict[str, dict[str, np.ndarray]]] = {}
        self._refunded: set[str] = set()
        self._mirror_calls = 0

    def set_algorithms(self, raw: list[dict[str, Any]] | None) -> None:
        """Serve ``raw`` (the ``/app/algorithms`` array) instead of the
        shipped snapshot — e.g. with another ``price_coefficient``."""
        if raw is None:
            # the snapshot of the live list the service folder ships (data, not client code)
            text = resources.files("stemlab.services.mvsep").joinpath("algorithms.json").read_text("utf-8")
            raw = json.loads(text)["algorithms"]
        self.algorithm_list = copy.deepcopy(list(raw))
        self.algorithms = _read_algorithms(self.algorithm_list)

    # ---------------------------------------------------------------- wire
    def routes(self) -> list[tuple[str, str, str, Handler]]:
        r: list[tuple[str, str, str, Handler]] = [
            ("POST", "/api/separation/create", "create", self._create),
            ("GET", "/api/separation/get", "status", self._get),
            ("GET", "/api/separation/get-remote", "status_remote", self._get_remote),
            ("POST", "/api/separation/cancel", "cancel", self._cancel),
            ("GET", "/api/app/algorithms", "algorithms", self._algorithms),
            ("GET", "/api/app/queue", "queue", self._queue),
            ("GET", "/api/app/user", "user", self._user),
            ("GET", "/api/app/separation_history", "history", self._history),
            ("GET", "/api/app/news", "news", self._news),
            ("GET", "/api/quality_checker/queue", "qc_queue", self._qc_queue),
            ("GET", "/api/quality_checker/leaderboard", "qc_leaderboard", self._qc_leaderboard),
            ("POST", "/api/quality_checker/add", "qc_add", self._qc_add),
            ("GET", "/api/quality_checker/entry", "qc_entry", self._qc_entry),
            ("GET", "/api/quality_checker/delete", "qc_delete", self._qc_delete),
            ("POST", "/api/quality_checker/delete", "qc_delete", self._qc_delete),
            ("GET", "/dl/{token}/{name}", "redirect", self._redirect),
            ("GET", "/mirror/dl/{token}/{name}", "redirect", self._redirect),
        ]
        for what in ("premium", "long_filenames"):
            for verb in ("enable", "disable"):
                r.append(("POST", f"/api/app/{verb}_{what}", "toggle", self._toggle))
        return r

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"success": False, "data": {"message": message}}

    @staticmethod
    def ok(data: Any, **extra: Any) -> Response:
        return JSONResponse({"success": True, **extra, "data": data})

    def token_account(self, token: str | None, *, status: int = 401) -> str:
        """The account of ``token``; HTTP ``status`` (401 on create/QC add,
        400 on the app/* endpoints) for an unknown one."""
        if not token or token not in self.premium:
            raise self.fail(status, "UNAUTHORIZED", "Unknown or invalid api_token")
        return "acct_" + hashlib.sha256(token.encode()).hexdigest()[:10]

    def _is_premium(self, account: str) -> bool:
        return any(self.premium[t] for t in self.premium
                   if "acct_" + hashlib.sha256(t.encode()).hexdigest()[:10] == account)

    def balance(self, account: str) -> float:
        return self.balances.setdefault(account, self.initial_credits)

    def limit_for(self, account: str) -> int:
        """Parallel jobs allowed: Premium 10, others 1."""
        return 10 if self._is_premium(account) else 1

    # ------------------------------------------------------------- status
    def mv_status(self, job: SandboxJob) -> str:
        """waiting | processing | distributing | merging | done | failed."""
        if job.extra.get("cancelled"):
            return "failed"
        now = self.clock.now()
        st = job.status(now)
        if st == "failed":
            self._refund_if_failed(job)
            return "failed"
        if st == "succeeded":
            return "done"
        if st == "queued":
            return "waiting"
        if job.extra.get("all_chunks", 1) > 1:
            frac = (now - job.created_at - job.queue_seconds) / max(job.processing_seconds, 1e-9)
            return "distributing" if frac < 0.8 else "merging"
        return "processing"

    def _refund_if_failed(self, job: SandboxJob) -> None:
        if self.refund_failed and job.id not in self._refunded:
            self._refunded.add(job.id)
            credits = float(job.extra.get("credits", 0.0))
            if credits:
                self.balances[job.account] = self.balance(job.account) + credits
            self.ledger.refund(job.id)

    def _active(self, account: str) -> list[SandboxJob]:
        return [j for j in self.ledger.jobs.values()
                if j.account == account and self.mv_status(j) not in ("done", "failed")]

    def _waiting(self, premium: bool) -> list[SandboxJob]:
        return sorted((j for j in self.ledger.jobs.values()
                       if self.mv_status(j) == "waiting" and self._is_premium(j.account) == premium),
                      key=lambda j: j.created_at)

    def _job_data(self, job: SandboxJob, status: str, *, mirror: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {}
        algo = self.algorithms[int(job.extra["sep_type"])]
        if status in ("waiting", "distributing"):
            queue = self._waiting(self._is_premium(job.account))
            data["queue_count"] = len(queue)
            data["current_order"] = next((i + 1 for i, j in enumerate(queue) if j.id == job.id), 0)
        if status in ("distributing", "merging"):
            all_chunks = int(job.extra["all_chunks"])
            frac = (self.clock.now() - job.created_at - job.queue_seconds) / max(job.processing_seconds, 1e-9)
            data["finished_chunks"] = (
                all_chunks if status == "merging" else min(all_chunks - 1, int(frac / 0.8 * all_chunks))
            )
            data["all_chunks"] = all_chunks
        if status == "failed":
            if job.extra.get("cancelled"):
                data["message"] = "The separation was cancelled"
            else:
                code, msg = job.error or job.fail or ("failed", "Separation failed")
                data["message"] = msg
        elif status == "done":
            assert job.outputs is not None
            base = re.sub(r"\.[A-Za-z0-9]+$", "", job.filename) or "audio"
            fmt = job.output_format
            files = []
            for stem, token in job.outputs.items():
                fname = f"{base}_{_WORD.get(stem, stem)}.{_EXT[fmt]}"
                prefix = "/mirror/dl" if mirror else "/dl"
                files.append({"url": f"{self.root_url}{prefix}/{token}/{fname}", "download": fname,
                              "size": len(self.files[token].data)})
            data.update({
                "message": "Separation finished", "algorithm": algo.name,
                "algorithm_description": job.extra.get("model_label") or algo.name,
                "output_format": _WIRE_FORMAT[fmt], "tags": {"title": base},
                "input_file": {"url": f"{self.root_url}/public/{job.extra['input_token']}/{job.filename}",
                               "download": job.filename} if job.extra.get("input_token") else None,
                "files": files,
                "date": datetime.fromtimestamp(job.extra["created_wall"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            })
        else:
            data["message"] = {"waiting": "Waiting in queue", "processing": "Processing",
                               "distributing": "Distributing chunks to GPUs", "merging": "Merging chunks"}[status]
        return data

    # ------------------------------------------------------------ handlers
    def _create_options(self, form: Mapping[str, str]) -> tuple[int, int, _Algorithm, dict[str, str]]:
        """``(sep_type, output_format, algorithm, add_opt*)`` of a create form, checked."""
        try:
            sep_type = int(form.get("sep_type") or 11)
            fmt_no = int(form.get("output_format") or 0)
        except ValueError:
            raise self.fail(400, "INVALID", "sep_type and output_format must be integers") from None
        algo = self.algorithms.get(sep_type)
        if algo is None:
            raise self.fail(400, "INVALID", f"Unknown separation type {sep_type}")
        if fmt_no not in _FORMATS:
            raise self.fail(400, "INVALID", f"Unknown output format {fmt_no}")
        opts: dict[str, str] = {}
        for n in ("add_opt1", "add_opt2", "add_opt3"):
            v = form.get(n)
            if v in (None, ""):
                continue
            f = algo.fields.get(n)
            if f is None or (f[1] and v not in f[1]):
                raise self.fail(400, "INVALID", f"Invalid value {v!r} for {n} of separation type {sep_type}")
            opts[n] = v
        return sep_type, fmt_no, algo, opts

    async def _create_input(self, form: Mapping[str, str], files: Mapping[str, tuple[str, bytes]],
                            ) -> tuple[str, bytes | None, tuple[str, str] | None]:
        """``(file name, audio bytes or None, failure or None)`` of a create
        form: the upload, or the URL the sandbox can fetch."""
        failure: tuple[str, str] | None = None
        data: bytes | None = None
        if "audiofile" in files:
            filename, data = files["audiofile"]
        elif form.get("url"):
            url = form["url"]
            filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "audio"
            rtype = form.get("remote_type") or "direct"
            if rtype not in _REMOTE_TYPES:
                raise self.fail(400, "INVALID", f"remote_type must be one of {list(_REMOTE_TYPES)}")
            if rtype != "direct":
                failure = ("failed", f"Remote type {rtype!r} cannot be fetched by the sandbox")
            else:
                data = self.read_local_url(url)
                if data is None and localhost_url(url):
                    try:
                        async with httpx.AsyncClient(timeout=10) as c:
                            r = await c.get(url)
                        r.raise_for_status()
                        data = r.content
                    except httpx.HTTPError as e:
                        failure = ("failed", f"Could not download the audio from the URL ({type(e).__name__})")
                elif data is None:
                    failure = ("failed", "The sandbox downloads local URLs only")
        else:
            raise self.fail(400, "INVALID", "audiofile or url is required")
        return filename, data, failure

    async def _create(self, request: Request) -> Response:
        form, files = await parse_form(request)
        acct = self.token_account(form.get("api_token"), status=401)
        premium = self._is_premium(acct)
        sep_type, fmt_no, algo, opts = self._create_options(form)
        if algo.orientation == 2 and not premium:
            raise self.fail(400, "PREMIUM", f"Separation type {sep_type} is available for premium users only")
        if len(self._active(acct)) >= self.limit_for(acct):
            raise self.fail(400, "PARALLEL", f"You can have at most {self.limit_for(acct)} separation(s) "
                            "in progress; wait for one to finish")
        filename, data, failure = await self._create_input(form, files)
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)[:120] or "audio"
        audio: np.ndarray | None = None
        sr = 0
        if data is not None:
            try:
                audio, sr = await asyncio.to_thread(decode_bytes, data)
            except InputError:
                failure = ("failed", "The audio file could not be decoded")
        duration = audio.shape[1] / sr if audio is not None else 0.0
        credits = _credits(duration, algo.price_coefficient) if premium and failure is None else 0.0
        if credits > self.balance(acct):
            raise self.fail(400, "CREDITS", f"Not enough credits: the separation needs {credits:.0f}, "
                            f"you have {self.balance(acct):.0f}")
        stems, label = _job_stems(algo, opts)
        if not stems:
            stems = ("output",)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        job = self.new_job(account=acct, duration=duration, stems=stems, output_format=_FORMATS[fmt_no],
                           filename=filename, id_prefix="")
        # MVSEP hashes embed the time and the upload's file name
        del self.ledger.jobs[job.id]
        job.id = f"{stamp}-{uuid.uuid4().hex[:10]}-{filename}"
        self.ledger.add_job(job)
        chunks = int(math.ceil(duration / self.chunk_seconds)) if duration > self.chunk_seconds else 1
        job.extra.update(sep_type=sep_type, add_opts=opts, model_label=label, credits=credits, all_chunks=chunks,
                         created_wall=time.time(), is_demo=form.get("is_demo") in ("1", "true", "True"))
        if data is not None:
            job.extra["input_token"] = self.store(data, "application/octet-stream", filename)
        if failure is not None:
            job.fail = failure
        self.ledger.creates.append((job.id, "new"))
        if credits > 0:
            self.balances[acct] = self.balance(acct) - credits
            self.ledger.charge(job.id, acct, credits, "mvsep_credits", self.clock.now())
        if failure is None and job.fail is None:
            self.start_separation(job, audio, sr)
        link = f"{self.root_url}/api/separation/get?hash={job.id}"
        return self.ok({"link": link, "hash": job.id})

    async def _get(self, request: Request) -> Response:
        q = request.query_params
        job = self.ledger.jobs.get(q.get("hash", ""))
        mirror = q.get("mirror", "0") == "1"
        if mirror:
            acct = self.token_account(q.get("api_token"), status=400)
            if job is not None and job.account != acct:
                job = None
        if job is None:
            return JSONResponse({"success": False, "status": "not_found",
                                 "data": {"message": "Separation not found, deleted or expired"}})
        status = self.mv_status(job)
        if mirror and status == "done":
            if self.balance(job.account) < 1:
                raise self.fail(400, "CREDITS", "Not enough credits for the mirror (1 credit)")
            self._mirror_calls += 1
            self.balances[job.account] = self.balance(job.account) - 1
            self.ledger.charge(f"{job.id}#mirror{self._mirror_calls}", job.account, 1.0, "mvsep_credits",
                               self.clock.now())
        return self.ok(self._job_data(job, status, mirror=mirror), status=status)

    async def _get_remote(self, request: Request) -> Response:
        job = self.ledger.jobs.get(request.query_params.get("hash", ""))
        if job is None:
            return JSONResponse({"success": False, "status": "not_found", "data": {"message": "Not found"}})
        status = self.mv_status(job)
        status = "processing" if status in ("distributing", "merging") else status
        data: dict[str, Any] = {}
        if status == "waiting":
            data = {k: v for k, v in self._job_data(job, "waiting").items() if k != "message"}
        elif status == "failed":
            data = {"message": self._job_data(job, "failed")["message"]}
        elif status == "done":
            data = {"link": f"{self.root_url}/api/separation/get?hash={job.id}", "hash": job.id}
        return self.ok(data, status=status)

    async def _cancel(self, request: Request) -> Response:
        form, _ = await parse_form(request)
        acct = self.token_account(form.get("api_token"), status=400)
        job = self.ledger.jobs.get(form.get("hash", ""))
        if job is None or job.account != acct:
            return JSONResponse({"success": False, "data": {"message": "Separation not found"}})
        if self.mv_status(job) != "waiting":
            return JSONResponse({"success": False, "data": {"message": "The separation is already being processed"}})
        job.extra["cancelled"] = True
        credits = float(job.extra.get("credits", 0.0))
        if credits and job.id not in self._refunded:
            self._refunded.add(job.id)
            self.balances[acct] = self.balance(acct) + credits
            self.ledger.refund(job.id)
        return self.ok({"message": "The separation was cancelled and the credits refunded"})

    async def _algorithms(self, request: Request) -> Response:
        return JSONResponse(self.algorithm_list)

    async def _queue(self, request: Request) -> Response:
        token = request.query_params.get("api_token")
        jobs = list(self.ledger.jobs.values())
        st = [(j, self.mv_status(j)) for j in jobs]
        prem = sum(1 for j, s in st if s == "waiting" and self._is_premium(j.account))
        reg = sum(1 for j, s in st if s == "waiting" and not self._is_premium(j.account))
        plan = {"plan": "unregistered", "queue": 0}
        if token:
            acct = self.token_account(token, status=400)
            plan = (
                {"plan": "premium", "queue": prem} if self._is_premium(acct) else {"plan": "registered", "queue": reg}
            )
        return JSONResponse({"queue": {"in_process": sum(1 for _, s in st if s in ("processing", "distributing",
                                                                                   "merging")),
                                       "premium": prem, "registered": reg, "unregistered": 0}, "plan": plan})

    async def _user(self, request: Request) -> Response:
        token = request.query_params.get("api_token")
        acct = self.token_account(token, status=400)
        return self.ok({"name": "sandbox user", "email": f"{acct}@sandbox.invalid", "api_token": token,
                        "premium_minutes": self.balance(acct), "premium_enabled": 1 if self._is_premium(acct) else 0,
                        "long_filenames_enabled": 1 if self.long_filenames.get(acct) else 0,
                        "current_queue": len(self._active(acct))})

    async def _history(self, request: Request) -> Response:
        q = request.query_params
        acct = self.token_account(q.get("api_token"), status=400)
        start, limit = self._page(q)
        jobs = sorted((j for j in self.ledger.jobs.values() if j.account == acct), key=lambda j: -j.created_at)
        out = []
        for j in jobs[start:start + limit]:
            algo = self.algorithms[int(j.extra["sep_type"])]
            credits = j.extra.get("credits")
            out.append({"hash": j.id, "job_exists": True,
                        "credits": None if j.id in self._refunded else credits,
                        "time_left": "71 hours", "algorithm": {"render_id": algo.render_id, "name": algo.name}})
        return self.ok(out)

    async def _news(self, request: Request) -> Response:
        return JSONResponse([{"title": "Sandbox", "lang": "en", "text": "Offline MVSEP emulator (stemlab sandbox)",
                              "created_at": "2026-11-22 00:00:00"}])

    async def _toggle(self, request: Request) -> Response:
        form, _ = await parse_form(request)
        acct = self.token_account(form.get("api_token"), status=400)
        path = request.url.path
        on = "/enable_" in path
        if path.endswith("long_filenames"):
            self.long_filenames[acct] = on
        return JSONResponse({"success": True, "message": f"{'enabled' if on else 'disabled'}"})

    @staticmethod
    def _page(q: Mapping[str, str]) -> tuple[int, int]:
        try:
            start = max(0, int(q.get("start") or 0))
            limit = max(1, min(20, int(q.get("limit") or 10)))
        except ValueError:
            raise _bad("start and limit must be integers") from None
        return start, limit

    async def _redirect(self, request: Request) -> Response:
        token = request.path_params["token"]
        if token not in self.files:
            return Response("not found", status_code=404)
        return RedirectResponse(self.signed_url(token), status_code=302)

    # ------------------------------------------------------ quality checker
    def qc_dataset(self, dataset_type: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """song → {stem: (2, n) float32 at 44.1 kHz} plus ``"mixture"`` — the
        sandbox's tiny stand-in for a Quality Checker dataset (deterministic)."""
        if dataset_type not in QC_DATASETS:
            raise KeyError(dataset_type)
        if dataset_type not in self._qc_cache:
            _, stems = QC_DATASETS[dataset_type]
            sr, n = 44100, int(self.qc_song_seconds * 44100)
            rng = np.random.RandomState(1000 + dataset_type)
            t = np.arange(n) / sr
            songs: dict[str, dict[str, np.ndarray]] = {}
            for s in range(self.qc_songs):
                parts: dict[str, np.ndarray] = {}
                derive = "instrum" in stems and len(stems) > 2  # Multi: instrum = the sum of the others
                for k, stem in enumerate(x for x in stems if not (derive and x == "instrum")):
                    f0 = 110.0 * (k + 1) * (1.0 + 0.25 * rng.rand())
                    env = 0.5 + 0.5 * np.sin(2 * np.pi * (0.5 + rng.rand()) * t + rng.rand() * 6)
                    tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.rand() * 6) / h for h in range(1, 6))
                    sig = (0.15 * env * tone + 0.01 * rng.randn(n)).astype(np.float32)
                    pan = rng.rand()
                    parts[stem] = np.stack([sig * (1 - 0.5 * pan), sig * (0.5 + 0.5 * pan)]).astype(np.float32)
                if derive:
                    parts["instrum"] = sum((v for k, v in parts.items() if k != "vocals"),
                                           np.zeros((2, n), np.float32)).astype(np.float32)
                parts["mixture"] = sum((v for k, v in parts.items() if not (derive and k == "instrum")),
                                       np.zeros((2, n), np.float32)).astype(np.float32)
                songs[f"song_{s:03d}"] = parts
            self._qc_cache[dataset_type] = songs
        return self._qc_cache[dataset_type]

    def _qc_score(self, entry: dict[str, Any]) -> None:
        """Score an entry's zip once its processing time has passed."""
        if entry["proc"] == 1 or self.clock.now() < entry["_ready_at"]:
            return
        entry["proc"] = 1
        entry["proc_remote_date"] = int(time.time())
        dt = int(entry["dataset_type"])
        if dt not in QC_DATASETS:
            entry["msg"] = f"Dataset type {dt} is not available in the sandbox"
            return
        songs = self.qc_dataset(dt)
        _, stems = QC_DATASETS[dt]
        try:
            zf = zipfile.ZipFile(io.BytesIO(entry["_zip"]))
        except zipfile.BadZipFile:
            entry["msg"] = "The uploaded file is not a zip archive"
            return
        names = {re.sub(r"\.[A-Za-z0-9]+$", "", n.rsplit("/", 1)[-1]): n for n in zf.namelist() if not n.endswith("/")}
        scores: dict[str, list[float]] = {s: [] for s in stems}
        for song, parts in songs.items():
            for stem in stems:
                member = names.get(f"{song}_{stem}")
                if member is None:
                    entry["msg"] = f"Missing file {song}_{stem}.wav in the zip"
                    return
                try:
                    est, sr = decode_bytes(zf.read(member))
                except InputError as e:
                    entry["msg"] = f"Cannot read {member}: {e}"
                    return
                ref = parts[stem]
                if est.shape[0] != ref.shape[0]:
                    est = np.repeat(est[:1], ref.shape[0], axis=0)
                scores[stem].append(_sdr(ref, est))
        metrics = {f"sdr_{k}": round(float(np.mean(v)), 4) for k, v in scores.items()}
        entry["metrics"] = metrics
        entry.update(metrics)
        entry["msg"] = "OK"

    def _qc_public(self, entry: dict[str, Any]) -> dict[str, Any]:
        self._qc_score(entry)
        return {k: v for k, v in entry.items() if not k.startswith("_")}

    def _qc_sortables(self, dataset_type: int) -> list[str]:
        return [f"sdr_{s}" for s in QC_DATASETS.get(dataset_type, ("", ()))[1]]

    async def _qc_add(self, request: Request) -> Response:
        form, files = await parse_form(request)
        acct = self.token_account(form.get("api_token"), status=401)
        missing = [k for k in ("algo_name", "main_text", "password") if not form.get(k)]
        if "zipfile" not in files:
            missing.insert(0, "zipfile")
        if missing:
            raise self.fail(400, "INVALID", f"The form is invalid: missing {', '.join(missing)}")
        try:
            dt = int(form.get("dataset_type") or 0)
            ens = int(form.get("ensemble") or 0)
        except ValueError:
            raise self.fail(400, "INVALID", "dataset_type and ensemble must be integers") from None
        if not 0 <= dt <= 11 or ens not in (0, 1):
            raise self.fail(400, "INVALID", "dataset_type must be 0–11 and ensemble 0 or 1")
        eid = self._qc_next
        self._qc_next += 1
        self.qc_entries[eid] = {
            "id": eid, "dataset_type": dt, "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "algo_name": form["algo_name"], "main_text": form["main_text"], "proc": 0, "proc_remote_date": None,
            "msg": "", "metrics": None, "dataset_name": QC_DATASETS.get(dt, (f"Dataset {dt}",))[0],
            "ensemble": ens, "_zip": files["zipfile"][1], "_account": acct,
            "_password": hashlib.sha256(form["password"].encode()).hexdigest(),
            "_ready_at": self.clock.now() + self.qc_seconds,
        }
        return self.ok({"id": eid, "link": f"{self.root_url}/quality_checker/entry?id={eid}"})

    async def _qc_queue(self, request: Request) -> Response:
        start, limit = self._page(request.query_params)
        entries = sorted(self.qc_entries.values(), key=lambda e: -e["id"])
        return JSONResponse([self._qc_public(e) for e in entries[start:start + limit]])

    async def _qc_leaderboard(self, request: Request) -> Response:
        q = request.query_params
        try:
            dt = int(q.get("dataset_type") or 0)
        except ValueError:
            raise self.fail(400, "INVALID", "dataset_type must be an integer") from None
        start, limit = self._page(q)
        sortables = self._qc_sortables(dt)
        sort = q.get("sort") or (sortables[0] if sortables else "")
        if sortables and sort not in sortables:
            raise self.fail(400, "INVALID", f"sort must be one of {sortables}")
        flt = (q.get("algo_name_filter") or "").lower()
        rows = [self._qc_public(e) for e in self.qc_entries.values() if e["dataset_type"] == dt]
        rows = [r for r in rows if r["proc"] == 1 and r["msg"] == "OK" and flt in r["algo_name"].lower()]
        rows.sort(key=lambda r: -(r.get(sort) or -1e9))
        return JSONResponse({"data": rows[start:start + limit], "dataset_type": dt, "sortables": sortables,
                             "sort": sort})

    async def _qc_entry(self, request: Request) -> Response:
        try:
            eid = int(request.query_params.get("id") or "")
        except ValueError:
            raise self.fail(400, "INVALID", "id must be an integer") from None
        e = self.qc_entries.get(eid)
        if e is None:
            raise self.fail(404, "NOT_FOUND", f"Entry {eid} not found")
        return JSONResponse(self._qc_public(e))

    async def _qc_delete(self, request: Request) -> Response:
        form, _ = await parse_form(request)
        params = {**dict(request.query_params), **form}
        try:
            eid = int(params.get("id") or "")
        except ValueError:
            raise self.fail(400, "INVALID", "id must be an integer") from None
        e = self.qc_entries.get(eid)
        if e is None:
            return JSONResponse({"success": False, "data": {"message": f"Entry {eid} not found"}})
        if hashlib.sha256(str(params.get("password") or "").encode()).hexdigest() != e["_password"]:
            return JSONResponse({"success": False, "data": {"message": "Wrong password"}})
        del self.qc_entries[eid]
        return self.ok({"message": f"Entry {eid} deleted"})

    # ------------------------------------------------------------- output
    def encode_output(self, audio: np.ndarray, sr: int, fmt: str) -> tuple[bytes, str, str]:
        """MVSEP's six output formats (mp3/m4a lossy with encoder delay)."""
        a = np.asarray(audio, dtype=np.float32)
        if fmt == "wav16":
            return encode_bytes(a, sr, "wav", subtype="PCM_16"), "audio/wav", "wav"
        if fmt == "wav32":
            return encode_bytes(a, sr, "wav", subtype="FLOAT"), "audio/wav", "wav"
        if fmt == "flac16":
            return encode_bytes(a, sr, "flac", subtype="PCM_16"), "audio/flac", "flac"
        if fmt == "flac24":
            return super().encode_output(a, sr, "flac")
        return super().encode_output(a, sr, fmt)

    def quality_for(self, job: SandboxJob) -> float:
        return _QUALITY.get(int(job.extra.get("sep_type", -1)), self.default_quality)

    def provider_options(self) -> dict[str, Any]:
        out = super().provider_options()
        out["plan"] = "auto"
        return out


def _bad(message: str) -> Exception:
    from .._sandbox.server import _HTTPError

    return _HTTPError(400, "INVALID", message)
