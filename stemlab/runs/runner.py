"""The async runner: tracks × providers → separations → scores, resumable.

Scheduling: one asyncio task per job; a semaphore per provider (its
``max_concurrency``) and per kind (``concurrency.local`` / ``.remote``) bound
what runs at once, so a slow or broken provider never stalls the others.
Local providers run in worker threads (numpy/torch release the GIL; torch's
thread count is set per provider), remote ones through their async clients.

Durability: see :mod:`stemlab.runs.ledger`. Separated stems go to the stem
cache before a job is marked ``separated``; scores are computed from the cache.
A re-run of the same spec recomputes nothing; changing metric settings only
re-scores; ``force`` re-runs the named providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import __version__
from .._crash import crashpoint
from ..errors import (
    BudgetExceeded,
    ConfigError,
    DatasetError,
    InputError,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RunError,
    StemlabError,
)
from ..providers import create as create_provider
from ..providers.base import Provider
from ..metrics.sources import SourceStems
from ..types import Cost, Separation, Stems, Track
from .cache import ScoreCache, StemCache
from .cost import Budget, PlanCost, summarize_costs
from .ledger import JobRow, Ledger
from .spec import ProviderSel, RunSpec, load_spec

__all__ = ["Runner", "RunResult", "Job", "run"]

log = logging.getLogger("stemlab.runs")


@dataclass
class Job:
    """One (track, provider) pair. Jobs of tracks with identical mixtures share
    a ``key`` (one separation, paid once) unless the provider reads the
    references; each job is scored against its own track's references
    (``refs_id``). ``error`` marks a track that could not be read: its job
    becomes a failed row without running."""

    key: str
    dataset: str
    track: Track
    mixture_hash: str
    provider: Provider
    sel: ProviderSel
    label: str
    estimate: Cost
    row: JobRow | None = None
    refs_id: str = ""
    error: StemlabError | None = None


@dataclass
class RunResult:
    output: Path
    run_id: str
    jobs: "Any"  # pandas.DataFrame
    scores: "Any"
    frames: "Any"
    meta: dict[str, Any]
    plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return int((self.jobs["status"] != "done").sum()) if len(self.jobs) else 0


# ------------------------------------------------------------------ helpers

class _RssSampler:
    """Samples the process RSS every ``interval`` s; jobs read the peak seen
    while they ran (approximate when jobs overlap — documented in the row)."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self._peaks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stemlab-rss", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = self._proc.memory_info().rss / 2**20
            except Exception:  # pragma: no cover - process is exiting
                return
            with self._lock:
                for k in self._peaks:
                    self._peaks[k] = max(self._peaks[k], rss)

    def start(self, key: str) -> None:
        with self._lock:
            self._peaks[key] = self._proc.memory_info().rss / 2**20

    def stop(self, key: str) -> float:
        with self._lock:
            return round(self._peaks.pop(key, 0.0), 1)

    def close(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def _output_lock(out: Path):
    """Exclusive lock on the output directory: a second runner refuses."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunError(f"{out} is in use by another stemlab run ({holder}); wait for it or use another output", file=str(out)) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {platform.node()}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


OWNER_FILE = "run-owner.json"
#: what a results directory holds besides its cache and ledger
RESULT_FILES = ("scores.parquet", "scores.csv", "jobs.parquet", "jobs.csv", "frames.parquet", "run.json")


def _claim_output(out: Path, spec: RunSpec, *, overwrite: bool, write: bool = True) -> None:
    """A results directory belongs to one spec (its datasets and providers,
    :attr:`RunSpec.output_hash`): another spec's run refuses, unless
    ``overwrite`` — then the old results go (cache and ledger stay: they are
    content-addressed, and what was paid for is never lost)."""
    f = out / OWNER_FILE
    mine = {"output_hash": spec.output_hash, "name": spec.name, "spec_hash": spec.spec_hash}
    try:
        cur = json.loads(f.read_text())
        if not isinstance(cur, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        cur = None
    except (OSError, ValueError) as e:
        log.warning("%s is unreadable (%s): taking the directory over", f, e)
        cur = None
    if cur is not None and cur.get("output_hash") != spec.output_hash:
        if not overwrite:
            raise RunError(
                f"{out} holds the results of another spec ({cur.get('name')!r}: other datasets or providers); "
                "write to another output directory (-o), or pass --overwrite to replace those results (the stem "
                "cache and the ledger are kept and reused)", file=str(out))
        if write:
            for name in RESULT_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "museval", ignore_errors=True)
            log.warning("%s: replaced the results of spec %r", out, cur.get("name"))
    if write and cur != mine:
        tmp = out / f".{OWNER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(mine, indent=1))
        os.replace(tmp, f)


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "stemlab": __version__}
    for pkg in ("numpy", "scipy", "torch", "demucs", "av", "soundfile", "soxr", "httpx", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


from .._slug import slug as _slug  # noqa: E402  (one slug for run and score museval JSON paths)


def _channels(track: Track) -> int:
    """The mixture's channel count, from the file header when it is a file."""
    if "mixture" not in track.__dict__ and track.path is not None and Path(track.path).is_file():
        from .. import audio

        return int(audio.probe(track.path).channels)
    return int(track.mixture.shape[0])


def _unreadable_track(dataset: str, name: str) -> Track:
    """Stands in for a track that could not be opened (its jobs are failed rows)."""

    def load() -> np.ndarray:
        raise DatasetError(f"track {name!r} of {dataset} could not be read")

    return Track(name=name, sample_rate=1, dataset=dataset, duration=0.0, load_mixture=load)


def _error_row(e: BaseException) -> tuple[str, str]:
    if isinstance(e, StemlabError):
        return e.kind, str(e)
    from .._secrets import redact

    return type(e).__name__, redact(f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------- runner

class Runner:
    """Plan and execute a :class:`RunSpec`.

    ``force``: provider labels/families whose cached results are ignored;
    ``retry_failed``: also retry failed jobs that may have been paid for;
    ``overwrite``: take over an output directory that holds another spec's
    results (they are removed; the stem cache and ledger are kept and reused);
    ``executor``: object with ``async separate(provider, track) -> Separation``
    for local providers (default: worker threads)."""

    def __init__(
        self,
        spec: RunSpec | Mapping[str, Any] | str | Path,
        *,
        output: str | Path | None = None,
        force: Sequence[str] = (),
        retry_failed: bool = False,
        overwrite: bool = False,
        strict: bool = False,
        quiet: bool = False,
        progress: bool | None = None,
        executor: Any = None,
        sandboxes: Any = None,
    ) -> None:
        self.spec = spec if isinstance(spec, RunSpec) else load_spec(spec)
        self.output = Path(output or self.spec.output).expanduser()
        self.force = {f.lower() for f in force}
        self.retry_failed = retry_failed
        self.overwrite = overwrite
        self.strict = strict
        self.quiet = quiet
        self.progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
        self._executor = executor
        self._sandboxes = sandboxes
        self._own_sandboxes = False
        self.ledger: Ledger | None = None
        self.run_id = ""

    # --------------------------------------------------------------- providers
    def _build_providers(self) -> list[tuple[ProviderSel, Provider, str]]:
        out = []
        seen: dict[str, int] = {}
        for sel in self.spec.providers:
            opts: dict[str, Any] = {}
            if sel.sandbox:
                opts.update(self._sandbox_options(sel))
            prov = create_provider(sel.ref, **opts)  # built once, from the parsed reference
            label = sel.label or prov.id
            if sel.sandbox:
                label = f"{label} [sandbox]" if not sel.label else label
            n = seen.get(label, 0)
            seen[label] = n + 1
            if n:
                label = f"{label} #{n + 1}"
            out.append((sel, prov, label))
        return out

    def _sandbox_options(self, sel: ProviderSel) -> dict[str, Any]:
        from ..sandbox import SandboxPool

        if self._sandboxes is None:
            self._sandboxes = SandboxPool()
            self._own_sandboxes = True
        return self._sandboxes.options_for(sel.ref.family)

    # ------------------------------------------------------------------ plan
    def _job_key(self, mixture_hash: str, prov: Provider, sel: ProviderSel, refs_id: str = "") -> str:
        where = ""
        if prov.kind == "remote":
            where = "sandbox" if sel.sandbox else "live:" + str(prov.options.get("base_url", "default"))
        blob = f"{mixture_hash}|{prov.family}|{prov.params_hash}|{where}"
        if prov.needs_references:  # an oracle's output depends on the references too
            blob += f"|refs:{refs_id}"
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _mixture_hash(self, track: Track) -> str:
        assert self.ledger is not None
        if track.path is not None and Path(track.path).is_file():
            return self.ledger.cached_hash(Path(track.path), f"{track.dataset}|{track.name}", lambda: track.content_hash)
        return track.content_hash

    def _refs_id(self, track: Track) -> str:
        """Identity of a track's references: the content hashes of their files
        (cached by path, size and mtime), else of their decoded PCM."""
        assert self.ledger is not None
        if not track.has_references:
            return "none"
        files = track.reference_files
        if files:
            parts = [f"{n}={self.ledger.cached_file_hash(Path(f))}" for n, f in sorted(files.items())]
            return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        refs = track.references
        assert refs is not None
        h = hashlib.sha256()
        for n in sorted(refs.names):
            h.update(f"{n}|{refs.sample_rate}|{refs[n].shape}|".encode())
            h.update(np.ascontiguousarray(refs[n]).tobytes())
        return h.hexdigest()[:24]

    def _check_track(self, track: Track) -> tuple[str, str]:
        """Read what planning needs from a track (its mixture hash and
        references identity), checking it is usable; raises a StemlabError
        naming the file and the problem."""
        h = self._mixture_hash(track)
        if track.path is None or not Path(track.path).is_file():
            mix = track.mixture  # in memory: check it directly
            if mix.shape[1] == 0:
                raise InputError(f"track {track.name!r}: mixture has 0 samples", field="mixture")
            if not np.isfinite(mix).all():
                raise InputError(f"track {track.name!r}: mixture contains NaN/Inf samples", field="mixture")
        channels = _channels(track)
        if channels > 2:
            raise InputError(
                f"track {track.name!r}: mixture has {channels} channels; stemlab separates mono or stereo "
                "(downmix the file first)", file=str(track.path) if track.path else None, field="mixture")
        return h, self._refs_id(track)

    def _tracks(self, ds: Any) -> Iterable[tuple[str, Track | None, StemlabError | None]]:
        """(name, track, error) for every track of ``ds``: a track that cannot
        be opened comes with its error instead of stopping the plan."""
        for name in ds.track_names():
            try:
                yield name, ds._make_track(name), None
            except StemlabError as e:
                yield name, None, e
            except OSError as e:
                yield name, None, InputError(f"track {name!r}: cannot read ({e.strerror or e})",
                                             file=getattr(e, "filename", None))

    def plan(self) -> tuple[list[Job], dict[str, PlanCost]]:
        assert self.ledger is not None
        providers = self._build_providers()
        jobs: list[Job] = []
        costs = {label: PlanCost(label) for _, _, label in providers}
        for dsel in self.spec.datasets:
            ds = dsel.open()
            for name, track, error in self._tracks(ds):
                h = refs_id = ""
                if track is not None:
                    try:
                        h, refs_id = self._check_track(track)
                    except StemlabError as e:
                        error = e
                    except Exception as e:  # a decoder or loader bug: still one bad track, not a dead run
                        error = InputError(f"track {name!r}: cannot be read ({type(e).__name__}: {e})")
                    if error is None and self._sandboxes is not None:
                        self._sandboxes.register(track)
                    track.release()
                if error is not None:
                    log.warning("track %r of %s is skipped: %s", name, ds.name, error)
                    track = _unreadable_track(ds.name, name)
                    h = "unreadable:" + hashlib.sha256(f"{ds.name}|{name}".encode()).hexdigest()[:16]
                assert track is not None
                for sel, prov, label in providers:
                    key = self._job_key(h, prov, sel, refs_id)
                    est = prov.estimate_cost(track) if error is None else Cost(estimated=False)
                    row = self.ledger.get(key)
                    cached = row is not None and row.state == "done" and label.lower() not in self.force \
                        and prov.family not in self.force
                    if error is not None:
                        pass
                    elif cached:
                        costs[label].cached += 1
                    else:
                        costs[label].add(est, track.seconds)
                    jobs.append(Job(key, ds.name, track, h, prov, sel, label, est, row, refs_id, error))
        return jobs, costs

    # ------------------------------------------------------------------ run
    def run(self, dry_run: bool = False) -> RunResult:
        """Plan, execute (unless ``dry_run``) and write results."""
        with _output_lock(self.output):
            _claim_output(self.output, self.spec, overwrite=self.overwrite, write=not dry_run)
            self.ledger = Ledger(self.output / "ledger.sqlite")
            try:
                return self._run_locked(dry_run)
            finally:
                if self._own_sandboxes and self._sandboxes is not None:
                    self._sandboxes.close()
                self.ledger.close()

    def _run_locked(self, dry_run: bool) -> RunResult:
        assert self.ledger is not None
        meta = self._meta()
        self.run_id = self.ledger.begin_run(self.spec.spec_hash, meta)
        meta["run_id"] = self.run_id
        jobs, costs = self.plan()
        plan_rows = summarize_costs(costs)
        if dry_run:
            self.ledger.end_run(self.run_id)
            return RunResult(self.output, self.run_id, *self._empty_frames(), meta=meta, plan=plan_rows)
        for j in jobs:
            j.row = self.ledger.plan(
                job_key=j.key, run_id=self.run_id, dataset=j.dataset, track=j.track.name, mixture_hash=j.mixture_hash,
                provider=j.label, family=j.provider.family, kind=j.provider.kind, params_hash=j.provider.params_hash,
                params=j.provider.config, estimate=j.estimate,
            )
        per_provider = {
            j.label: (j.sel.budget_usd, j.sel.budget_credits)
            for j in jobs
            if j.sel.budget_usd is not None or j.sel.budget_credits is not None
        }
        self.budget = Budget(self.ledger, self.spec.budget_usd, per_provider)
        self.stem_cache = StemCache(self.output / "cache")
        self.score_cache = ScoreCache(self.output / "cache")
        own_executor = False
        if self._executor is None and any(j.provider.kind == "local" for j in jobs):
            from .executors import make_executor

            self._executor = make_executor(self.spec.executor, self.spec.executor_options)
            own_executor = True
        interrupted = False
        try:
            asyncio.run(self._execute(jobs))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if own_executor and self._executor is not None:
                with contextlib.suppress(Exception):
                    self._executor.close()
                self._executor = None
            for j in {id(j.provider): j for j in jobs}.values():
                with contextlib.suppress(Exception):
                    j.provider.close()
        self.ledger.end_run(self.run_id)
        result = self._write_results(jobs, meta, plan_rows)
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _meta(self) -> dict[str, Any]:
        from .._secrets import redact_obj

        return {
            "name": self.spec.name,
            "spec_hash": self.spec.spec_hash,
            "metrics_hash": self.spec.metrics_hash,
            "spec": redact_obj(self.spec.raw),  # an api_key written into the spec never reaches disk
            "versions": package_versions(),
            "git_commit": _git_commit(),
            "host": platform.node(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "executor": self.spec.executor,
        }

    # -------------------------------------------------------------- execution
    async def _execute(self, jobs: list[Job]) -> None:
        self._sem_kind = {
            "local": asyncio.Semaphore(self.spec.local_concurrency),
            "remote": asyncio.Semaphore(self.spec.remote_concurrency),
        }
        self._sem_prov: dict[str, asyncio.Semaphore] = {}
        for j in jobs:
            if j.label not in self._sem_prov:
                n = j.sel.max_concurrency or (1 if j.provider.kind == "local" else self.spec.remote_concurrency)
                self._sem_prov[j.label] = asyncio.Semaphore(n)
        self._rss = _RssSampler()
        self._bars = self._make_bars(jobs)
        # score one job at a time per core: scoring is numpy-bound
        self._score_sem = asyncio.Semaphore(max(1, min(2, os.cpu_count() or 1)))
        loop = asyncio.get_running_loop()
        groups: dict[str, list[Job]] = {}
        for j in jobs:  # tracks with identical mixtures share a separation
            groups.setdefault(j.key, []).append(j)
        tasks = [asyncio.create_task(self._job(g), name=k) for k, g in groups.items()]
        stop = asyncio.Event()

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
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._rss.close()
            for b in self._bars.values():
                b.close()
            for j in {id(j.provider): j for j in jobs}.values():
                with contextlib.suppress(Exception):
                    await j.provider.aclose()
        if stop.is_set():
            raise KeyboardInterrupt

    def _make_bars(self, jobs: list[Job]) -> dict[str, Any]:
        from tqdm import tqdm

        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.label] = counts.get(j.label, 0) + 1
        return {
            label: tqdm(total=n, desc=label[:40], unit="job", disable=not self.progress, leave=True, position=i)
            for i, (label, n) in enumerate(counts.items())
        }

    def _retry_allowed(self, row: JobRow) -> bool:
        if row.state != "failed":
            return False
        if self.retry_failed or row.kind == "local" or not row.remote_id:
            return row.error_kind not in ("ProviderRejected", "InputError") or self.retry_failed
        return False

    def _stems_lost(self, job: Job, row: JobRow) -> JobRow:
        """A separated job whose cached stems are gone or corrupt: fetch them
        again without paying — a remote job is polled and downloaded by its
        remote id, a local one recomputed."""
        assert self.ledger is not None
        if row.remote_id:
            self.ledger.update(job.key, state="submitted", detail="stems lost from the cache: downloading again")
        else:
            self.ledger.update(job.key, state="planned", detail="stems lost from the cache: separating again")
        log.warning("%s on %s: cached stems missing or corrupt; %s", job.label, job.track.name,
                    "downloading them again (no new charge)" if row.remote_id else "separating again")
        new = self.ledger.get(job.key)
        assert new is not None
        return new

    def _adopt_cached(self, job: Job) -> JobRow | None:
        """A planned job whose stems are already in the content-addressed cache
        (the ledger was lost or rebuilt): take them and what the manifest says
        was paid, instead of separating — or paying — again."""
        assert self.ledger is not None
        if not self.stem_cache.has(job.key):
            return None
        meta = self.stem_cache.meta(job.key)
        stems = self.stem_cache.open(job.key) if meta else None  # validated, not decoded
        if stems is None:
            return None
        stems.close()
        paid = meta.get("paid") or {}
        self.ledger.update(
            job.key, state="separated", detail="restored from the stem cache", remote_id=paid.get("remote_id"),
            cost_usd=paid.get("cost_usd"), credits=paid.get("credits"), credit_unit=paid.get("credit_unit"),
            cost_estimated=paid.get("cost_estimated"), compute_seconds=paid.get("compute_seconds"),
        )
        info = {k: meta[k] for k in ("device", "provenance", "params_used", "output_sample_rate", "output_samples",
                                     "output_channels", "rtf", "audio_seconds") if k in meta}
        if info:
            self.ledger.merge_json(job.key, "info_json", info)
        log.warning("%s on %s: no ledger record, stems found in the cache: reused%s", job.label, job.track.name,
                    f" (paid job {paid.get('remote_id')})" if paid.get("remote_id") else "")
        return self.ledger.get(job.key)

    def _scored(self, group: list[Job]) -> bool:
        mh = self.spec.metrics_hash
        return all(self.score_cache.get(j.key, mh, j.refs_id) is not None for j in group)

    async def _job(self, group: list[Job]) -> None:
        """Run the jobs sharing one key: separate once, score each track."""
        assert self.ledger is not None
        job = group[0]
        key = job.key
        try:
            if job.error is not None:  # the track could not be read: a failed row, nothing runs
                raise job.error
            row = self.ledger.get(key)
            assert row is not None
            forced = job.label.lower() in self.force or job.provider.family in self.force
            if forced and row.state in ("done", "separated", "failed", "budget", "skipped"):
                self.stem_cache.drop(key)
                self.score_cache.drop(key)
                self.ledger.update(key, state="planned", detail="forced", remote_id=None, error=None, error_kind=None,
                                   phases_json="{}")
                row = self.ledger.get(key)
            elif row.state in ("failed", "budget", "skipped", "cancelled"):
                if row.state == "failed" and not self._retry_allowed(row):
                    return
                self.ledger.update(key, state="planned", detail="retry", error=None, error_kind=None)
                row = self.ledger.get(key)
            assert row is not None
            if row.state == "planned" and not forced:
                row = self._adopt_cached(job) or row
            if row.state == "done" and self._scored(group):
                return  # separated and scored with these settings: nothing to load or compute
            # scores read the separation from the cache a block at a time
            stems = self.stem_cache.open(key) if row.state in ("separated", "done") else None
            if stems is None:
                if row.state in ("separated", "done"):
                    row = self._stems_lost(job, row)
                await self._separate(job, row)
                job.track.release()  # the mixture (and an oracle's references) are not needed to score
                stems = self.stem_cache.open(key)
                if stems is None:
                    raise RunError(f"{job.label}: stem cache entry for {job.track.name!r} unreadable after write")
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
        except Exception as e:  # every failure becomes a row with its reason
            kind, msg = _error_row(e)
            if not isinstance(e, StemlabError):
                log.exception("unexpected error in %s on %s", job.label, job.track.name)
            self.ledger.update(key, state="failed", error_kind=kind, error=msg, detail=msg[:200])
            log.warning("%s on %s failed: %s", job.label, job.track.name, msg)
        finally:
            self.budget.release(key)
            for j in group:
                j.track.release()
                bar = self._bars.get(j.label)
                if bar is not None:
                    bar.update(1)

    def _on_cancel(self, job: Job) -> None:
        assert self.ledger is not None
        row = self.ledger.get(job.key)
        if row is None or row.terminal:
            return
        if row.state == "running":
            self.ledger.update(job.key, state="planned", detail="interrupted")
        # submitting/submitted/separated stay: resume polls or re-scores

    async def _separate(self, job: Job, row: JobRow) -> None:
        assert self.ledger is not None
        prov, key = job.provider, job.key
        st = prov.status()
        if not st.ready:
            raise ProviderUnavailable(f"{job.label}: {st.detail}", provider=job.label)
        job.provider.check_input(job.track)
        timeout = job.sel.timeout or self.spec.job_timeout
        async with self._sem_kind[prov.kind], self._sem_prov[job.label]:
            self._rss.start(key)
            t0 = time.perf_counter()
            try:
                if prov.kind == "remote":
                    if not row.remote_id and not row.in_doubt:
                        self.budget.reserve(key, job.label, job.estimate)
                    journal = self.ledger.journal(key)
                    sep = await asyncio.wait_for(prov.aseparate(job.track, journal), timeout)
                else:
                    self.ledger.update(key, state="running", attempts=row.attempts + 1)
                    sep = await self._run_local(job, timeout)
            except asyncio.TimeoutError:
                raise ProviderTimeout(f"{job.label}: job exceeded {timeout:.0f} s on {job.track.name!r}", provider=job.label) from None
            finally:
                peak = self._rss.stop(key)
            wall = time.perf_counter() - t0
        self._check_output(job, sep)
        for w in sep.warnings:
            log.warning("%s on %s: %s", job.label, job.track.name, w)
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
        cost = sep.cost
        if prov.kind == "local":
            cost = Cost(compute_seconds=phases.get("separate", wall), estimated=False)
        fields: dict[str, Any] = {"compute_seconds": cost.compute_seconds or None}
        known = self.ledger.get(key)
        assert known is not None
        if prov.kind == "local" or not known.remote_id:
            fields.update(cost_usd=cost.usd, credits=cost.credits, credit_unit=cost.credit_unit,
                          cost_estimated=int(cost.estimated))
        elif not cost.estimated:
            fields.update(cost_usd=cost.usd, credits=cost.credits, credit_unit=cost.credit_unit, cost_estimated=0)
        # what was paid for travels with the stems: a lost ledger is rebuilt from it
        paid = {"job_key": key, "kind": prov.kind, "remote_id": sep.remote_id or known.remote_id,
                "cost_usd": fields.get("cost_usd", known.cost_usd), "credits": fields.get("credits", known.credits),
                "credit_unit": fields.get("credit_unit", known.credit_unit),
                "cost_estimated": fields.get("cost_estimated", known.cost_estimated),
                "compute_seconds": fields.get("compute_seconds")}
        self.stem_cache.put(key, sep.stems, meta={"provider": job.label, "track": job.track.name, **info, "paid": paid})
        self.ledger.merge_json(key, "info_json", info)
        self.ledger.merge_json(key, "phases_json", phases)
        self.ledger.update(key, state="separated", remote_id=sep.remote_id, **fields)

    async def _run_local(self, job: Job, timeout: float) -> Separation:
        if self._executor is not None:
            return await asyncio.wait_for(self._executor.separate(job.provider, job.track), timeout)
        return await asyncio.wait_for(asyncio.to_thread(job.provider.separate, job.track), timeout)  # pragma: no cover

    def _check_output(self, job: Job, sep: Separation) -> None:
        from ..errors import ProviderOutputError

        arr_ok = all(np.isfinite(a).all() for _, a in sep.stems.items())
        if not arr_ok:
            raise ProviderOutputError(f"{job.label}: output contains NaN/Inf samples", provider=job.label)
        missing = [s for s in job.provider.stems if s not in sep.stems]
        if missing:
            raise ProviderOutputError(f"{job.label}: output lacks stems {missing}", provider=job.label)

    async def _score(self, job: Job, stems: Stems) -> None:
        key = job.key
        mh = self.spec.metrics_hash
        if self.score_cache.get(key, mh, job.refs_id) is not None:
            return
        if not job.track.has_references:
            self.score_cache.put(key, mh, {"rows": [], "frames": [], "museval": None, "corrections": {},
                                           "note": "track has no references: separation only"}, job.refs_id)
            return
        async with self._score_sem:
            crashpoint("run.before_score")
            t0 = time.perf_counter()
            payload = await asyncio.to_thread(score_stems, stems, job.track, self.spec, job.provider.kind)
            payload["scoring_seconds"] = time.perf_counter() - t0
        self.score_cache.put(key, mh, payload, job.refs_id)
        crashpoint("run.after_score")
        assert self.ledger is not None
        self.ledger.merge_json(key, "phases_json", {"scoring": payload["scoring_seconds"]})
        if payload.get("corrections"):
            self.ledger.merge_json(key, "info_json", {"corrections": payload["corrections"]})

    # --------------------------------------------------------------- results
    def _empty_frames(self):
        import pandas as pd

        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()

    def _write_results(self, jobs: list[Job], meta: dict[str, Any], plan_rows: list[dict[str, Any]]) -> RunResult:
        from .results import write_results

        assert self.ledger is not None
        return write_results(self, jobs, meta, plan_rows)


def score_stems(stems: Stems | SourceStems, track: Track, spec: RunSpec, kind: str) -> dict[str, Any]:
    """Align (when needed) and score one separation against the track's
    references; returns the payload stored in the score cache. References
    on disk in a block-readable format are read a block at a time, like the
    cached stems, so scoring memory does not grow with the track's length."""
    from ..metrics.scoring import score_stems as _score
    from ..metrics.sources import lazy_references

    alignment = dict(spec.alignment)
    if kind == "remote":
        # a service's output may be shifted even when its length is right
        # (encoder delay trimmed at one end, padded at the other): always check
        alignment.setdefault("force", True)
    refs = lazy_references(track)
    try:
        return _score(stems, track, metrics=spec.metrics, metric_options=dict(spec.metric_options),
                      alignment=alignment, targets=spec.targets, references=refs)
    finally:
        if refs is not None:
            refs.close()


def run(
    spec: RunSpec | Mapping[str, Any] | str | Path,
    *,
    output: str | Path | None = None,
    dry_run: bool = False,
    **kwargs: Any,
) -> RunResult:
    """Run an experiment spec (file path, dict or :class:`RunSpec`).

    >>> stemlab.run({"datasets": ["demo"], "providers": ["baseline:mixture", "oracle:irm"]})
    """
    return Runner(spec, output=output, **kwargs).run(dry_run=dry_run)
