"""The runner: tracks × providers → separations → scores, resumable.

:class:`Runner` coordinates the pieces of a run inside its output directory
(locked, owned by one spec: :mod:`stemlab.runs.output`):

1. :mod:`~stemlab.runs.planning` builds the providers once and turns tracks
   into keyed jobs with a cost estimate (all a dry run does);
2. :mod:`~stemlab.runs.execution` runs them — one asyncio task per key,
   separation then scoring, bounded per provider and per kind — against the
   ledger (:mod:`~stemlab.runs.ledger`), the budget and the stem and score
   caches; what differs between local and remote providers is theirs
   (:mod:`~stemlab.runs.kinds`);
3. :mod:`~stemlab.runs.results` writes the tables and ``run.json``.

A re-run of the same spec recomputes nothing; changing metric settings only
re-scores; ``force`` re-runs the named providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metrics.sources import SourceStems
from ..types import Stems, Track
from .cache import ScoreCache, StemCache
from .cost import Budget
from .execution import Policy, Stores, execute
from .executors import LocalExecutor, ThreadExecutor, make_executor
from .kinds import kind_of
from .ledger import Ledger
from .output import OWNER_FILE, claim_output, output_lock, run_meta
from .planning import Plan, Planner, Sandboxes
from .results import Results, write_results
from .spec import RunSpec, load_spec

__all__ = ["Runner", "run", "score_stems", "PROGRESS_EVERY"]

#: seconds between progress log lines when stderr is not a terminal
PROGRESS_EVERY = 15.0


class Runner:
    """Plan and execute a :class:`RunSpec`.

    ``force``: provider labels/families whose cached results are ignored;
    ``retry_failed``: also retry failed jobs that may have been paid for;
    ``retry_in_doubt``: resubmit jobs left in doubt (a submit whose answer was
    lost, on a service with no job list to check) — after checking the account;
    ``progress``: bars on stderr (default: when it is a terminal and not
    ``quiet``); ``progress_every``: seconds between progress log lines when
    there are no bars (default :data:`PROGRESS_EVERY`; none when ``quiet``);
    ``overwrite``: take over an output directory that holds another spec's
    results (they are removed; the stem cache and ledger are kept and reused);
    ``executor``: where local providers separate (default: the spec's —
    worker threads or Ray); ``sandboxes``: the pool sandboxed providers use
    (default: one of this run's own, when the spec has any)."""

    def __init__(
        self,
        spec: RunSpec | Mapping[str, Any] | str | Path,
        *,
        output: str | Path | None = None,
        force: Sequence[str] = (),
        retry_failed: bool = False,
        retry_in_doubt: bool = False,
        overwrite: bool = False,
        strict: bool = False,
        quiet: bool = False,
        progress: bool | None = None,
        progress_every: float | None = None,
        executor: LocalExecutor | None = None,
        sandboxes: Sandboxes | None = None,
    ) -> None:
        self.spec = spec if isinstance(spec, RunSpec) else load_spec(spec)
        self.output = Path(output or self.spec.output).expanduser()
        self.force = frozenset(f.lower() for f in force)
        self.retry_failed = retry_failed
        self.retry_in_doubt = retry_in_doubt
        self.overwrite = overwrite
        self.strict = strict
        self.quiet = quiet
        self.progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
        #: off a terminal (CI, papermill, nohup): a progress line every so many seconds instead of bars
        self.progress_every = None if quiet or self.progress else (progress_every or PROGRESS_EVERY)
        self.executor = executor
        self.sandboxes = sandboxes
        #: the ledger's id of the latest :meth:`run` ("" before)
        self.run_id = ""

    def run(self, dry_run: bool = False) -> Results:
        """Plan, execute (unless ``dry_run``) and write results. A dry run
        writes nothing (see :meth:`dry_run`)."""
        if dry_run:
            return self.dry_run()
        with output_lock(self.output):
            claim_output(self.output, self.spec, overwrite=self.overwrite, write=not dry_run)
            ledger = Ledger(self.output / "ledger.sqlite")
            try:
                with self._sandbox_pool() as sandboxes:
                    return self._run_locked(ledger, sandboxes, dry_run)
            finally:
                ledger.close()

    def dry_run(self) -> Results:
        """Plan without running or writing anything: no output directory,
        lock, owner file or ledger is created (an existing ledger is read
        from a private copy, so cached jobs show as cached). The budget is
        applied as the run would: each paid job's estimate is reserved in
        plan order against ``budget.usd`` (minus what the ledger already
        charged) and the per-provider caps; the jobs that would be refused
        are in ``meta["refused"]`` and the plan rows' ``refused`` counts.
        Jobs whose USD price is unknown count only against credit caps
        (``meta["unpriced"]`` names their providers)."""
        import tempfile

        if (self.output / OWNER_FILE).is_file():
            claim_output(self.output, self.spec, overwrite=self.overwrite, write=False)
        with tempfile.TemporaryDirectory(prefix="stemlab-dry-run-") as tmp:
            ledger = _ledger_copy(self.output / "ledger.sqlite", Path(tmp) / "ledger.sqlite")
            try:
                with self._sandbox_pool() as sandboxes:
                    meta = run_meta(self.spec)
                    meta["run_id"] = self.run_id = "dry-run"
                    plan = Planner(self.spec, ledger, force=self.force, sandboxes=sandboxes,
                                   retry_in_doubt=self.retry_in_doubt).plan()
                    rows = plan.rows
                    refused, unpriced = _simulate_budget(self.spec, plan, ledger, self.force)
                    for r in rows:
                        r["refused"] = sum(1 for x in refused if x["provider"] == r["provider"]) \
                            if r["provider"] != "TOTAL" else len(refused)
                    meta.update(dry_run=True, refused=refused, unpriced=unpriced,
                                budget_usd=self.spec.budget_usd)
                    return Results.planned(self.output, self.run_id, meta, rows)
            finally:
                ledger.close()

    @contextlib.contextmanager
    def _sandbox_pool(self) -> Iterator[Sandboxes | None]:
        """The given pool, or one of this run's own (closed after it) when a
        provider is sandboxed."""
        if self.sandboxes is not None or not any(sel.sandbox for sel in self.spec.providers):
            yield self.sandboxes
            return
        from ..sandbox import SandboxPool

        pool = SandboxPool()
        try:
            yield pool
        finally:
            pool.close()

    def _run_locked(self, ledger: Ledger, sandboxes: Sandboxes | None, dry_run: bool) -> Results:
        meta = run_meta(self.spec)
        self.run_id = ledger.begin_run(self.spec.spec_hash, meta)
        meta["run_id"] = self.run_id
        plan = Planner(self.spec, ledger, force=self.force, sandboxes=sandboxes,
                       retry_in_doubt=self.retry_in_doubt).plan()
        plan_rows = plan.rows
        if dry_run:
            ledger.end_run(self.run_id)
            return Results.planned(self.output, self.run_id, meta, plan_rows)
        plan.record(ledger, self.run_id)
        stores = Stores(ledger, StemCache(self.output / "cache"), ScoreCache(self.output / "cache"))
        interrupted = self._execute(plan, stores)
        ledger.end_run(self.run_id)
        result = write_results(self.output, plan.jobs, ledger=ledger, score_cache=stores.scores,
                               metrics_hash=self.spec.metrics_hash, meta=meta, plan=plan_rows)
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _execute(self, plan: Plan, stores: Stores) -> bool:
        """Run the plan's jobs; True when a signal interrupted them. The
        providers (and an executor of this run's own) are closed after."""
        budget = Budget(stores.ledger, self.spec.budget_usd, plan.budget_caps())
        executor, own_executor = self._local_executor(plan)
        policy = Policy(force=self.force, retry_failed=self.retry_failed, progress=self.progress,
                        progress_log=self.progress_every)
        try:
            asyncio.run(execute(self.spec, plan.jobs, stores=stores, budget=budget, executor=executor,
                                scorer=score_stems, policy=policy))
            return False
        except KeyboardInterrupt:
            return True
        finally:
            if own_executor:
                with contextlib.suppress(Exception):
                    executor.close()
            for j in {id(j.provider): j for j in plan.jobs}.values():
                with contextlib.suppress(Exception):
                    j.provider.close()

    def _local_executor(self, plan: Plan) -> tuple[LocalExecutor, bool]:
        """(executor, whether this run made it): the given one, else the
        spec's when a job needs one (a no-op thread executor otherwise)."""
        if self.executor is not None:
            return self.executor, False
        if any(kind_of(j.provider).uses_executor for j in plan.jobs):
            return make_executor(self.spec.executor, self.spec.executor_options), True
        return ThreadExecutor(), False


def _ledger_copy(src: Path, dst: Path) -> Ledger:
    """A private ledger for a dry run: a copy of ``src`` and its WAL (plain
    file copies: opening the original, even read-only, may create SQLite's
    shared-memory file beside it) when it exists, else empty."""
    import shutil

    for suffix in ("", "-wal"):
        f = Path(f"{src}{suffix}")
        if f.is_file():
            shutil.copyfile(f, Path(f"{dst}{suffix}"))
    return Ledger(dst)


def _simulate_budget(spec: RunSpec, plan: Plan, ledger: Ledger,
                     force: frozenset[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs a run would refuse for the budget: paid jobs that would be
    submitted, reserved in plan order as the run reserves them."""
    from ..errors import BudgetExceeded
    from ..services._pricing import price_of

    budget = Budget(ledger, spec.budget_usd, plan.budget_caps())
    refused: list[dict[str, Any]] = []
    unpriced: list[str] = []
    seen: set[str] = set()
    for j in plan.jobs:
        if j.key in seen or j.error is not None or kind_of(j.provider).name != "remote":
            continue
        seen.add(j.key)
        row = ledger.get(j.key)
        if row is not None and not j.forced_by(force) and (row.remote_id or row.state == "done"):
            continue  # cached, or submitted before: polled, never paid again
        if price_of(j.provider.family, dict(j.provider.options))[1].usd_per_unit is None \
                and j.estimate.credits > 0 and j.label not in unpriced:
            unpriced.append(j.label)
        try:
            budget.reserve(j.key, j.label, j.estimate)
        except BudgetExceeded as e:
            refused.append({"provider": j.label, "track": j.track.name, "est_usd": j.estimate.usd,
                            "est_credits": j.estimate.credits, "credit_unit": j.estimate.credit_unit,
                            "reason": str(e)})
    return refused, unpriced


def score_stems(stems: Stems | SourceStems, track: Track, spec: RunSpec, kind: str) -> dict[str, Any]:
    """Align (when needed: always for ``kind``'s that ask) and score one
    separation against the track's references; returns the payload stored
    in the score cache. References on disk in a block-readable format are
    read a block at a time, like the cached stems, so scoring memory does not
    grow with the track's length. (The runner's scorer: tests replace
    ``runner.score_stems``.)"""
    from ..metrics.scoring import score_stems as _score
    from ..metrics.sources import lazy_references

    alignment = kind_of(kind).score_alignment(spec.alignment)
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
) -> Results:
    """Run an experiment spec (file path, dict or :class:`RunSpec`).

    >>> stemlab.run({"datasets": ["demo"], "providers": ["baseline:mixture", "oracle:irm"]})
    """
    return Runner(spec, output=output, **kwargs).run(dry_run=dry_run)
