"""Execution: one asyncio task per job key — separate once (or take the
cached stems), then score each track that shares the key.

Scheduling: a semaphore per provider (its ``max_concurrency``) and per kind
(``concurrency.local`` / ``.remote``) bound what runs at once, so a slow or
broken provider never stalls the others; scoring runs in worker threads, at
most two at a time. How a separation runs, what it costs and whether it may
be retried are the provider kind's (:mod:`stemlab.runs.kinds`).

Durability: see :mod:`stemlab.runs.ledger`. Separated stems go to the stem
cache before a job is marked ``separated``; scores are computed from the
cache. SIGINT/SIGTERM cancel the tasks, leave the ledger consistent (remote
jobs are polled on resume) and end in :class:`KeyboardInterrupt`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._crash import crashpoint
from ..errors import (
    BudgetExceeded,
    InDoubt,
    ProviderOutputError,
    ProviderTimeout,
    ProviderUnavailable,
    RunError,
    StemlabError,
)
from ..metrics.sources import SourceStems
from ..types import Separation, Stems, Track
from .cache import ScoreCache, StemCache
from .cost import Budget
from .executors import LocalExecutor
from .jobs import Job, group_by_key
from .kinds import KINDS, JobContext, JobKind, kind_of
from .ledger import JobRow, Ledger
from .monitor import ProgressBars, RssSampler
from .spec import RunSpec

__all__ = ["Policy", "Scheduler", "Scorer", "Stores", "execute"]

log = logging.getLogger("stemlab.runs")

#: score one separation against one track: ``(stems, track, spec, kind) -> payload``
Scorer = Callable[[Any, Track, RunSpec, str], dict[str, Any]]

#: ledger states a forced job starts over from
_FORCE_RESET = ("done", "separated", "failed", "budget", "skipped")
#: ledger states a job is retried from (``failed`` only if allowed)
_RETRY = ("failed", "budget", "skipped", "cancelled")
#: what the stem cache should hold for these states
_SEPARATED = ("separated", "done")


@dataclass(frozen=True)
class Stores:
    """Where a run keeps its state: the ledger and the content-addressed caches."""

    ledger: Ledger
    stems: StemCache
    scores: ScoreCache


@dataclass(frozen=True)
class Policy:
    """What the caller asked: ``force`` (lower-case labels/families re-run
    from scratch), ``retry_failed`` (also retry failed jobs that may have been
    paid for), ``progress`` (bars on stderr) and ``progress_log`` (off a
    terminal: a log line every so many seconds)."""

    force: AbstractSet[str] = frozenset()
    retry_failed: bool = False
    progress: bool = False
    #: seconds between progress log lines on stderr (off a terminal); None: none
    progress_log: float | None = None


def _error_row(e: BaseException) -> tuple[str, str]:
    """(error kind, message) for a failed row; other errors' text is redacted."""
    if isinstance(e, StemlabError):
        return e.kind, str(e)
    from .._secrets import redact

    return type(e).__name__, redact(f"{type(e).__name__}: {e}")


class Scheduler:
    """Runs the jobs of one run (made by :func:`execute`, inside the event loop).

    ``stores``: ledger and caches; ``budget``: the caps paid jobs reserve
    against; ``executor``: where local providers separate; ``scorer``:
    scores one separation (see :data:`Scorer`)."""

    def __init__(self, spec: RunSpec, jobs: list[Job], *, stores: Stores, budget: Budget, executor: LocalExecutor,
                 scorer: Scorer, policy: Policy) -> None:
        self.spec = spec
        self.stores = stores
        self.ledger = stores.ledger
        self.ctx = JobContext(stores.ledger, budget, executor)
        self.scorer = scorer
        self.policy = policy
        self._kind_slots = {name: asyncio.Semaphore(k.slots(spec)) for name, k in KINDS.items()}
        self._provider_slots: dict[str, asyncio.Semaphore] = {}
        for j in jobs:
            if j.label not in self._provider_slots:
                n = j.sel.max_concurrency or kind_of(j.provider).provider_slots(spec)
                self._provider_slots[j.label] = asyncio.Semaphore(n)
        # score one job at a time per core: scoring is numpy-bound
        self._score_slots = asyncio.Semaphore(max(1, min(2, os.cpu_count() or 1)))
        self._rss = RssSampler()
        self._progress = ProgressBars(jobs, enabled=policy.progress, log_every=policy.progress_log)

    def close(self) -> None:
        self._rss.close()
        self._progress.close()

    # ------------------------------------------------------------- one key
    async def run_group(self, group: list[Job]) -> None:
        """Run the jobs sharing one key: separate once, score each track.
        Every failure ends as the key's ledger row, with its reason."""
        job = group[0]
        key = job.key
        try:
            if job.error is not None:  # the track could not be read: a failed row, nothing runs
                raise job.error
            row = self._row_to_run(group)
            if row is None:
                return
            stems = await self._separated_stems(job, row)
            try:
                for j in group:
                    await self._score(j, stems)
            finally:
                stems.close()
            self.ledger.update(key, state="done", error=None, error_kind=None)
        except asyncio.CancelledError:
            self._on_cancel(job)
            raise
        except BudgetExceeded as e:
            self.ledger.update(key, state="budget", error_kind=e.kind, error=str(e))
        except InDoubt as e:  # maybe paid, no way to look: stays 'submitting' (in doubt), never auto-resent
            self.ledger.update(key, error_kind=e.kind, error=str(e), detail="in doubt")
            log.warning("%s on %s is in doubt: %s", job.label, job.track.name, e)
        except Exception as e:  # every failure becomes a row with its reason
            self._fail(job, e)
        finally:
            self.ctx.budget.release(key)
            row = self.ledger.get(key)
            for j in group:
                j.track.release()
                self._progress.done(j, ok=row is not None and row.state == "done")

    def _row(self, key: str) -> JobRow:
        row = self.ledger.get(key)
        if row is None:
            raise RunError(f"ledger: job {key} is not planned")
        return row

    def _row_to_run(self, group: list[Job]) -> JobRow | None:
        """The key's ledger row, made ready to run (forced or retried jobs
        start over, stems found in the cache are adopted); None when there is
        nothing to do (a failed job not to retry, or done and scored)."""
        job = group[0]
        key = job.key
        row = self._row(key)
        forced = job.forced_by(self.policy.force)
        if forced and row.state in _FORCE_RESET:
            self.stores.stems.drop(key)
            self.stores.scores.drop(key)
            self.ledger.update(key, state="planned", detail="forced", remote_id=None, error=None, error_kind=None,
                               phases_json="{}")
            row = self._row(key)
        elif row.state in _RETRY:
            if row.state == "failed" and not self._retry_allowed(row):
                return None
            self.ledger.update(key, state="planned", detail="retry", error=None, error_kind=None)
            row = self._row(key)
        if row.state == "planned" and not forced:
            row = self._adopt_cached(job) or row
        if row.state == "done" and self._scored(group):
            return None  # separated and scored with these settings: nothing to load or compute
        return row

    def _retry_allowed(self, row: JobRow) -> bool:
        """A failed job is retried unless it may have been paid for or the
        input was refused — ``retry_failed`` retries those too."""
        if row.state != "failed":
            return False
        if self.policy.retry_failed:
            return True
        if kind_of(row.kind).may_have_paid(row):
            return False
        return row.error_kind not in ("ProviderRejected", "InputError")

    def _scored(self, group: list[Job]) -> bool:
        mh = self.spec.metrics_hash
        return all(self.stores.scores.get(j.key, mh, j.refs_id) is not None for j in group)

    def _adopt_cached(self, job: Job) -> JobRow | None:
        """A planned job whose stems are already in the content-addressed cache
        (the ledger was lost or rebuilt): take them and what the manifest says
        was paid, instead of separating — or paying — again."""
        cache = self.stores.stems
        if not cache.has(job.key):
            return None
        meta = cache.meta(job.key)
        stems = cache.open(job.key) if meta else None  # validated, not decoded
        if stems is None:
            return None
        stems.close()
        paid = meta.get("paid") or {}
        self.ledger.update(
            job.key, state="separated", detail="restored from the stem cache", remote_id=paid.get("remote_id"),
            cost_usd=paid.get("cost_usd"), credits=paid.get("credits"), credit_unit=paid.get("credit_unit"),
            cost_estimated=paid.get("cost_estimated"), compute_seconds=paid.get("compute_seconds"),
        )
        info: dict[str, Any] = {k: meta[k] for k in ("device", "provenance", "params_used", "output_sample_rate",
                                                     "output_samples", "output_channels", "rtf", "audio_seconds")
                                if k in meta}
        if info:
            self.ledger.merge_json(job.key, "info_json", info)
        log.warning("%s on %s: no ledger record, stems found in the cache: reused%s", job.label, job.track.name,
                    f" (paid job {paid.get('remote_id')})" if paid.get("remote_id") else "")
        return self.ledger.get(job.key)

    async def _separated_stems(self, job: Job, row: JobRow) -> SourceStems:
        """The key's stems from the cache (read a block at a time by the
        scorers), separating first when they are not there."""
        cache = self.stores.stems
        stems = cache.open(job.key) if row.state in _SEPARATED else None
        if stems is not None:
            return stems
        if row.state in _SEPARATED:
            row = self._stems_lost(job, row)
        await self._separate(job, row)
        job.track.release()  # the mixture (and an oracle's references) are not needed to score
        stems = cache.open(job.key)
        if stems is None:
            raise RunError(f"{job.label}: stem cache entry for {job.track.name!r} unreadable after write")
        return stems

    def _stems_lost(self, job: Job, row: JobRow) -> JobRow:
        """A separated job whose cached stems are gone or corrupt: fetch them
        again without paying — a remote job is polled and downloaded by its
        remote id, a local one recomputed."""
        if row.remote_id:
            self.ledger.update(job.key, state="submitted", detail="stems lost from the cache: downloading again")
        else:
            self.ledger.update(job.key, state="planned", detail="stems lost from the cache: separating again")
        log.warning("%s on %s: cached stems missing or corrupt; %s", job.label, job.track.name,
                    "downloading them again (no new charge)" if row.remote_id else "separating again")
        return self._row(job.key)

    def _on_cancel(self, job: Job) -> None:
        row = self.ledger.get(job.key)
        if row is None or row.terminal:
            return
        if row.state == "running":
            self.ledger.update(job.key, state="planned", detail="interrupted")
        # submitting/submitted/separated stay: resume polls or re-scores

    def _fail(self, job: Job, e: Exception) -> None:
        kind, msg = _error_row(e)
        if not isinstance(e, StemlabError):
            log.exception("unexpected error in %s on %s", job.label, job.track.name)
        self.ledger.update(job.key, state="failed", error_kind=kind, error=msg, detail=msg[:200])
        log.warning("%s on %s failed: %s", job.label, job.track.name, msg)

    # ------------------------------------------------------------ separating
    async def _separate(self, job: Job, row: JobRow) -> None:
        """Separate ``job`` within its slots and record the result: stems to
        the cache (with what was paid), info, phases (s) and cost to the ledger."""
        st = job.provider.status()
        if not st.ready:  # the whole message (where it looked, how to fix it) when the provider has one
            raise ProviderUnavailable(st.help or f"{job.label}: {st.detail}", provider=job.label)
        job.provider.check_input(job.track)
        kind = kind_of(job.provider)
        timeout = job.sel.timeout or self.spec.job_timeout
        async with self._kind_slots[kind.name], self._provider_slots[job.label]:
            self._rss.start(job.key)
            t0 = time.perf_counter()
            try:
                sep = await kind.separate(job, row, self.ctx, timeout)
            except asyncio.TimeoutError:
                raise ProviderTimeout(f"{job.label}: job exceeded {timeout:.0f} s on {job.track.name!r}",
                                      provider=job.label) from None
            finally:
                peak = self._rss.stop(job.key)
            wall = time.perf_counter() - t0
        _check_output(job, sep)
        for w in sep.warnings:
            log.warning("%s on %s: %s", job.label, job.track.name, w)
        self._record(job, kind, sep, wall, peak)

    def _record(self, job: Job, kind: JobKind, sep: Separation, wall: float, peak: float) -> None:
        """Store a separation: ``wall`` seconds it took, ``peak`` RSS in MiB."""
        key = job.key
        info = {
            "device": sep.device,
            "warnings": list(sep.warnings),
            "provenance": dict(sep.provenance),
            "params_used": dict(sep.params),
            "output_sample_rate": sep.stems.sample_rate,
            "output_samples": sep.stems.num_samples,
            "output_channels": sep.stems.num_channels,
            "peak_rss_mb": peak,
            "rtf": sep.real_time_factor,
            "remote_id": sep.remote_id,
            "audio_seconds": job.track.seconds,
        }
        phases = {k: float(v) for k, v in sep.timings.items()}
        phases.setdefault("total", wall)
        phases["wall"] = wall
        cost = kind.recorded_cost(sep, phases)
        fields: dict[str, Any] = {"compute_seconds": cost.compute_seconds or None}
        known = self._row(key)
        if kind.records_charge(cost, known):
            fields.update(cost_usd=cost.usd, credits=cost.credits, credit_unit=cost.credit_unit,
                          cost_estimated=int(cost.estimated))
        # what was paid for travels with the stems: a lost ledger is rebuilt from it
        paid = {"job_key": key, "kind": job.provider.kind, "remote_id": sep.remote_id or known.remote_id,
                "cost_usd": fields.get("cost_usd", known.cost_usd), "credits": fields.get("credits", known.credits),
                "credit_unit": fields.get("credit_unit", known.credit_unit),
                "cost_estimated": fields.get("cost_estimated", known.cost_estimated),
                "compute_seconds": fields.get("compute_seconds")}
        self.stores.stems.put(key, sep.stems, meta={"provider": job.label, "track": job.track.name, **info,
                                                    "paid": paid})
        self.ledger.merge_json(key, "info_json", info)
        self.ledger.merge_json(key, "phases_json", phases)
        self.ledger.update(key, state="separated", remote_id=sep.remote_id, **fields)

    # --------------------------------------------------------------- scoring
    async def _score(self, job: Job, stems: Stems | SourceStems) -> None:
        """Score ``job`` against its own track's references (once per metric settings)."""
        key = job.key
        mh = self.spec.metrics_hash
        if self.stores.scores.get(key, mh, job.refs_id) is not None:
            return
        if not job.track.has_references:
            self.stores.scores.put(key, mh, {"rows": [], "frames": [], "museval": None, "corrections": {},
                                             "note": "track has no references: separation only"}, job.refs_id)
            return
        async with self._score_slots:
            crashpoint("run.before_score")
            t0 = time.perf_counter()
            payload = await asyncio.to_thread(self.scorer, stems, job.track, self.spec, job.provider.kind)
            payload["scoring_seconds"] = time.perf_counter() - t0
        self.stores.scores.put(key, mh, payload, job.refs_id)
        crashpoint("run.after_score")
        self.ledger.merge_json(key, "phases_json", {"scoring": payload["scoring_seconds"]})
        if payload.get("corrections"):
            self.ledger.merge_json(key, "info_json", {"corrections": payload["corrections"]})


def _check_output(job: Job, sep: Separation) -> None:
    """Refuse NaN/Inf samples and missing stems."""
    if not all(np.isfinite(a).all() for _, a in sep.stems.items()):
        raise ProviderOutputError(f"{job.label}: output contains NaN/Inf samples", provider=job.label)
    missing = [s for s in job.provider.stems if s not in sep.stems]
    if missing:
        raise ProviderOutputError(f"{job.label}: output lacks stems {missing}", provider=job.label)


@contextlib.contextmanager
def _signals_cancel(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM set ``stop`` and cancel ``tasks``."""
    loop = asyncio.get_running_loop()

    def _on_signal() -> None:
        log.warning("interrupted: finishing the ledger; remote jobs will be polled on --resume")
        stop.set()
        for t in tasks:
            t.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, _on_signal)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def execute(spec: RunSpec, jobs: list[Job], *, stores: Stores, budget: Budget, executor: LocalExecutor,
                  scorer: Scorer, policy: Policy) -> None:
    """Run ``jobs`` (see :class:`Scheduler` for the arguments): one task per
    key; raises KeyboardInterrupt after a signal cancelled them. The
    providers' async clients are closed at the end."""
    sched = Scheduler(spec, jobs, stores=stores, budget=budget, executor=executor, scorer=scorer, policy=policy)
    tasks = [asyncio.create_task(sched.run_group(g), name=k) for k, g in group_by_key(jobs).items()]
    stop = asyncio.Event()
    try:
        with _signals_cancel(tasks, stop):
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        sched.close()
        for j in {id(j.provider): j for j in jobs}.values():
            with contextlib.suppress(Exception):
                await j.provider.aclose()
    if stop.is_set():
        raise KeyboardInterrupt
