"""Suno stems-gateway emulator (seed 004) on 127.0.0.1.

Endpoint (fault endpoint name in brackets)::

    GET /suno/act/stems/{clip_id}   [stems]     Bearer auth → {"clips": [Vocals, Instrumental]}
    GET /files/{token}/{name}       [download]  the clips' audio_url (MP3, pre-signed)

Clips are registered with :meth:`SunoSandbox.register_clip` (audio and,
optionally, reference stems for the degraded oracle) or
:meth:`SunoSandbox.clip_for_track`. The first request for a clip creates a
stem job and charges one call; later requests return the same job's two
clips with their current status (``queued`` → ``streaming`` →
``complete`` with ``audio_url``; ``error`` on failure) — the assumption
stemlab's provider documents. Outputs are MP3 at 320 kb/s with the encoder
delay of an untagged MP3 (1105 samples) unless ``lossy_delay`` says otherwise.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._sandbox.server import Handler, Sandbox, SandboxJob

__all__ = ["SunoSandbox"]

_STATUS = {"queued": "queued", "processing": "streaming", "succeeded": "complete", "failed": "error"}


class SunoSandbox(Sandbox):
    service: ClassVar[str] = "suno"
    path_prefix: ClassVar[str] = ""
    default_quality: ClassVar[float] = 0.72
    default_output_format: ClassVar[str] = "mp3"

    def __init__(self, *, api_keys: Sequence[str] | None = None, output_format: str = "mp3", **kwargs: Any) -> None:
        kwargs.setdefault("queue_seconds", 5.0)
        kwargs.setdefault("processing_seconds", 30.0)
        super().__init__(api_keys=api_keys or ["sk-suno-sandbox-0001"], **kwargs)
        self.output_format = output_format
        self.clips: dict[str, dict[str, Any]] = {}
        self.stem_jobs: dict[tuple[str, str], str] = {}  # (account, clip id) → job id
        self._by_hash: dict[str, str] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- clips
    def register_clip(self, mixture: np.ndarray, sample_rate: int, stems: Mapping[str, np.ndarray] | None = None,
                      *, title: str = "Sandbox Song", clip_id: str | None = None, tags: str = "sandbox") -> str:
        """Make a clip the gateway knows; returns its id (a UUID)."""
        cid = clip_id or str(uuid.uuid4())
        mix = np.asarray(mixture, dtype=np.float32)
        if mix.ndim == 1:
            mix = mix[None]
        self.clips[cid] = {"load": lambda: mix, "sr": int(sample_rate), "title": title, "tags": tags,
                           "duration": mix.shape[1] / sample_rate}
        if stems:
            self.register_references(mix, stems, sample_rate, name=title)
        return cid

    def clip_for_track(self, track: Any) -> str:
        """The clip id of a :class:`~stemlab.types.Track` (registered on first
        use, with its references if it has them; audio is decoded again from
        the track when a job needs it). Usable as the provider option
        ``clip_ids``."""
        with self._lock:
            h = track.content_hash
            cid = self._by_hash.get(h)
            if cid is None:
                cid = str(uuid.uuid4())
                self.clips[cid] = {"load": lambda: track.mixture, "sr": int(track.sample_rate),
                                   "title": str(track.name), "tags": "sandbox", "duration": float(track.seconds)}
                if track.has_references:
                    self.references.register_lazy(track.mixture, track.sample_rate,
                                                  lambda: dict(track.references.items()), str(track.name))
                self._by_hash[h] = cid
            return cid

    def register_track(self, track: Any) -> None:
        self.clip_for_track(track)

    def provider_options(self) -> dict[str, Any]:
        return {**super().provider_options(), "clip_ids": self.clip_for_track}

    # --------------------------------------------------------------- wire
    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("GET", "/suno/act/stems/{clip_id}", "stems", self._stems)]

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": {"message": message, "type": code.lower(), "code": status}}

    def _clip(self, job: SandboxJob, which: str) -> dict[str, Any]:
        src = self.clips[job.extra["clip_id"]]
        st = job.status(self.clock.now())
        status = _STATUS[st]
        url = ""
        stem = "vocals" if which == "Vocals" else "instrumental"
        if st == "succeeded" and job.outputs:
            url = self.signed_url(job.outputs[stem])
        meta: dict[str, Any] = {"can_remix": True, "duration": round(src["duration"], 2), "is_remix": False,
                                "prompt": "", "stem_from_id": job.extra["clip_id"], "tags": src["tags"],
                                "type": "stem"}
        if st == "failed":
            code, msg = job.error or job.fail or ("PROCESSING_FAILED", "Stem separation failed")
            meta.update(error_type=code, error_message=msg)
        return {"audio_url": url, "id": job.extra["ids"][stem], "image_url": "", "major_model_version": "",
                "metadata": meta, "model_name": "", "status": status, "title": f"{src['title']} - {which}",
                "video_url": ""}

    async def _stems(self, request: Request) -> Response:
        acct = self.account(request)
        cid = request.path_params["clip_id"]
        if cid not in self.clips:
            raise self.fail(404, "NOT_FOUND", f"clip {cid} not found")
        with self._lock:
            jid = self.stem_jobs.get((acct, cid))
            created = jid is None
            if created:
                src = self.clips[cid]
                job = self.new_job(account=acct, duration=src["duration"], stems=("vocals", "instrumental"),
                                   output_format=self.output_format, filename=src["title"], id_prefix="stem_")
                job.extra.update(clip_id=cid, ids={"vocals": str(uuid.uuid4()), "instrumental": str(uuid.uuid4())})
                self.stem_jobs[(acct, cid)] = job.id
                # seed 004 documents no price: the sandbox charges one "call" per stem job (see the module doc)
                self.ledger.charge(job.id, acct, 1.0, "calls", self.clock.now())
                self.ledger.creates.append((job.id, "new"))
            else:
                job = self.ledger.jobs[jid]  # type: ignore[index]
        if created and job.fail is None:
            self.start_separation(job, self.clips[cid]["load"], self.clips[cid]["sr"])
        return JSONResponse({"clips": [self._clip(job, "Vocals"), self._clip(job, "Instrumental")]})
