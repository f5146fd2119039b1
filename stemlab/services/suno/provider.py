"""Suno stems through an API gateway (seed 004): vocals + instrumental of a
Suno clip.

``GET /suno/act/stems/{clip_id}`` with ``Authorization: Bearer <key>``
answers ``{"clips": [<"… - Vocals">, <"… - Instrumental">]}``, each clip
with ``status`` and, once ready, ``audio_url``. The gateway separates clips
that live on Suno — it takes no uploaded audio — so a track needs a Suno
clip id: ``track.suno_clip_id`` (``Track.replace(suno_clip_id=…)``), or the
option ``clip_ids`` (a mapping track name → clip id, or a callable
``track → clip id | None``). Other tracks are refused with
:class:`~stemlab.errors.ProviderRejected` before anything is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, ClassVar, Literal, Mapping
from urllib.parse import quote

from ...audio import check_audio
from ...errors import ConfigError, ProviderOutputError, ProviderRejected
from ...types import Cost, Track
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
)
from . import pricing

__all__ = ["Suno", "READY_STATUSES"]

#: clip statuses that mean "audio_url is final"
READY_STATUSES = frozenset({"complete", "completed", "succeeded", "success", "ready", "done"})
_FAILED = frozenset({"error", "failed", "failure"})
_RUNNING = frozenset({"streaming", "processing", "running", "generating"})


class Suno(RemoteProvider):
    """Suno stems gateway: stems ``vocals`` and ``accompaniment``.

    The gateway's ``"<title> - Instrumental"`` clip is returned as
    ``accompaniment`` — the musdb name for "everything but vocals", which is
    what the metrics layer compares it with.

    Assumptions (the seed documents one endpoint and one queued example):

    * the same ``GET /suno/act/stems/{clip_id}`` is polled for status — asking
      again for a clip returns the same stem job rather than starting (and
      charging) another; this also makes a submit safe to repeat, so an
      in-doubt job is reconciled by simply asking again;
    * a clip is finished when its ``status`` is one of
      :data:`READY_STATUSES` and ``audio_url`` is set; ``error``/``failed``
      fails the job with the clip's ``metadata.error_message``;
    * the two clips are told apart by their title suffix (``- Vocals`` /
      ``- Instrumental``), else by position (vocals first).

    The gateway host is account-specific: pass ``base_url``. Pricing is
    undocumented: each call counts as 1 "call" credit; ``usd_per_call``
    (option, default 0) sets its price.
    """

    family: ClassVar[str] = "suno"
    description: ClassVar[str] = SERVICES["suno"].description
    option_names: ClassVar[tuple[str, ...]] = COMMON_OPTIONS + ("clip_ids", "usd_per_call")
    default_base_url: ClassVar[str] = ""
    default_poll: ClassVar[PollSchedule] = PollSchedule(initial=5.0, interval=5.0, max_interval=20.0, backoff=1.25,
                                                        max_wait=900.0)
    default_rate_limit: ClassVar[float | None] = 2.0
    default_max_concurrency: ClassVar[int] = 4
    idempotent_submit: ClassVar[bool] = True
    #: the key is a Bearer header; the gateway (seed 004) documents no redirects: same origin only
    redirects: ClassVar[Literal["same-origin", "none"]] = "same-origin"

    def validate(self) -> None:
        ids = self.options.get("clip_ids")
        if ids is not None and not (isinstance(ids, Mapping) or callable(ids)):
            raise ConfigError("provider suno: option clip_ids expects a mapping (track name → clip id) or a callable",
                              field="suno.options.clip_ids")
        usd = self.options.get("usd_per_call")
        if usd is not None and (not isinstance(usd, (int, float)) or isinstance(usd, bool) or usd < 0):
            raise ConfigError(f"provider suno: option usd_per_call expects a number ≥ 0, got {usd!r}",
                              field="suno.options.usd_per_call")

    @property
    def stems(self) -> tuple[str, ...]:
        return ("vocals", "accompaniment")

    def cost_for_seconds(self, seconds: float) -> Cost:
        calls = pricing.calls_for(seconds)
        return Cost(usd=calls * float(self.options.get("usd_per_call") or 0.0), credits=calls, credit_unit="calls",
                    estimated=True)

    # --------------------------------------------------------------- input
    def clip_id(self, track: Track) -> str | None:
        if track.suno_clip_id:
            return str(track.suno_clip_id)
        ids: Mapping[str, str] | Callable[[Track], str | None] | None = self.options.get("clip_ids")
        if ids is None:
            return None
        cid = ids(track) if callable(ids) else ids.get(track.name)
        return str(cid) if cid else None

    def check_input(self, track: Track) -> None:
        super().check_input(track)
        if self.clip_id(track) is None:
            raise ProviderRejected(
                f"{self.id}: track {track.name!r} has no Suno clip id; the Suno stems gateway separates Suno clips "
                "only (set Track.suno_clip_id or the clip_ids option)",
                provider=self.id, track=track.name, reason="no_suno_clip_id",
            )

    # ---------------------------------------------------------------- wire
    def parse_error(self, resp: Response) -> tuple[str, str]:
        data = resp.json_or_none()
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return str(err.get("code") or err.get("type") or ""), str(err.get("message") or "")
            if isinstance(err, str):
                return "", err
            for k in ("message", "detail", "msg"):
                if isinstance(data.get(k), str):
                    return str(data.get("code") or ""), data[k]
        return "", resp.excerpt(160)

    async def _ask(self, job: JobContext, clip_id: str, what: str) -> list[dict[str, Any]]:
        resp = await job.client.request("GET", f"/suno/act/stems/{quote(clip_id, safe='')}", retry="all",
                                        what=f"{self.id}: {what} ({clip_id})")
        data = resp.json()
        clips = data.get("clips") if isinstance(data, dict) else data if isinstance(data, list) else None
        if isinstance(data, dict) and clips is None and isinstance(data.get("data"), dict):
            clips = data["data"].get("clips")
        if not isinstance(clips, list) or not all(isinstance(c, dict) for c in clips):
            raise ProviderOutputError(f"{self.id}: stems answer for clip {clip_id} has no 'clips' list "
                                      f"({resp.excerpt(120)!r})", provider=self.id)
        return clips

    def _pair(self, job: JobContext, clips: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c in clips:
            title = str(c.get("title") or "").strip().lower()
            if title.endswith("vocals") or title.endswith("vocal"):
                out.setdefault("vocals", c)
            elif title.endswith("instrumental") or title.endswith("accompaniment"):
                out.setdefault("accompaniment", c)
        if len(out) < 2 and len(clips) >= 2:
            if "positional" not in job.notes:
                job.note("positional", True)
                job.warnings.append("stem clips not recognisable by title; took the first as vocals, the second as "
                                    "instrumental")
            out = {"vocals": clips[0], "accompaniment": clips[1]}
        if len(out) < 2:
            raise ProviderOutputError(f"{self.id}: expected a Vocals and an Instrumental clip, got "
                                      f"{[c.get('title') for c in clips]}", provider=self.id)
        return out

    def _state(self, job: JobContext, clips: list[dict[str, Any]]) -> JobState:
        pair = self._pair(job, clips)
        statuses = {k: str(c.get("status") or "").lower() for k, c in pair.items()}
        for k, c in pair.items():
            if statuses[k] in _FAILED:
                meta = c.get("metadata") if isinstance(c.get("metadata"), dict) else {}
                return JobState(FAILED, error_code=str(meta.get("error_type") or "error"),
                                error_message=str(meta.get("error_message") or f"{k} clip {c.get('id')} failed"),
                                service_status=statuses[k])
        if all(statuses[k] in READY_STATUSES and pair[k].get("audio_url") for k in pair):
            return JobState(DONE, outputs={k: str(c["audio_url"]) for k, c in pair.items()},
                            service_status="complete",
                            info={"stem_clip_ids": {k: c.get("id") for k, c in pair.items()}})
        if any(s in _RUNNING or s in READY_STATUSES for s in statuses.values()):
            return JobState(RUNNING, service_status="/".join(sorted(set(statuses.values()))))
        return JobState(QUEUED, service_status="/".join(sorted(set(statuses.values()))))

    async def prepare(self, job: JobContext) -> None:
        # Suno never receives the audio, but the stems it returns are scored
        # against it: refuse a broken track before the paid request, like every
        # provider (in a worker thread: reading the mixture may decode the file)
        t = job.track
        await asyncio.to_thread(lambda: check_audio(t.mixture, f"track {t.name!r} mixture"))

    async def create(self, job: JobContext, prepared: Any) -> Submission:
        cid = self.clip_id(job.track)
        assert cid is not None  # check_input ran
        clips = await self._ask(job, cid, "create stems")
        state = self._state(job, clips)
        ids = {k: c.get("id") for k, c in self._pair(job, clips).items()}
        job.note("stem_clip_ids", ids)
        return Submission(cid, self.estimate_cost(job.track), {"stem_clip_ids": ids}, state)

    async def fetch_state(self, job: JobContext, remote_id: str) -> JobState:
        return self._state(job, await self._ask(job, remote_id, "stems status"))

    async def reconcile(self, job: JobContext, *, attempts: int = 1) -> RemoteJobInfo | None:
        """Asking again for the clip *is* the reconciliation (see the class
        docstring): the gateway answers with the clip's one stem job and never
        charges a second, so a submit in doubt — a run killed mid-request, an
        answer lost or unusable — is sent again (None: "submit")."""
        job.note("reconcile", "the clip id is the job's key: asking for the clip's stems again")
        return None
