"""What differs between local and remote providers in a run, in one place.

A :class:`JobKind` per :attr:`Provider.kind <stemlab.providers.base.Provider.kind>`
decides: the job key's "where" part, the concurrency slots, how a separation
runs (worker/executor vs the service's client, with a budget reservation), the
cost recorded after it, whether a failed job may have been paid for, and the
alignment its outputs are scored with. The planner, the scheduler and the
scorer ask :func:`kind_of` instead of branching on the kind themselves."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, InputError
from ..providers.base import Provider
from ..types import Cost, Separation
from .cost import Budget
from .executors import LocalExecutor
from .ledger import JobRow, Ledger

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import Job
    from .spec import ProviderSel, RunSpec

__all__ = ["KINDS", "JobContext", "JobKind", "LocalKind", "RemoteKind", "kind_of"]


@dataclass(frozen=True)
class JobContext:
    """What a separation may touch: the ledger, the budget and the executor
    of local providers."""

    ledger: Ledger
    budget: Budget
    executor: LocalExecutor


class JobKind(abc.ABC):
    """The run's policy for one provider kind."""

    name: ClassVar[str]
    #: whether its providers run through the local executor (threads or Ray)
    uses_executor: ClassVar[bool]

    @abc.abstractmethod
    def where(self, provider: Provider, sel: ProviderSel) -> str:
        """The job key's part saying where the separation happens ("" = here)."""

    @abc.abstractmethod
    def slots(self, spec: RunSpec) -> int:
        """How many jobs of this kind run at once (all its providers together)."""

    @abc.abstractmethod
    def provider_slots(self, spec: RunSpec) -> int:
        """How many jobs of one provider run at once, unless its ``max_concurrency`` says."""

    @abc.abstractmethod
    async def separate(self, job: Job, row: JobRow, ctx: JobContext, timeout: float) -> Separation:
        """Run the separation of ``job`` (``row``: its ledger row); ``timeout`` in seconds."""

    @abc.abstractmethod
    def recorded_cost(self, sep: Separation, phases: Mapping[str, float]) -> Cost:
        """The cost to record for a finished separation (``phases`` in seconds, with ``wall``)."""

    @abc.abstractmethod
    def records_charge(self, cost: Cost, known: JobRow) -> bool:
        """Whether ``cost``'s money and credits replace what the row ``known`` holds."""

    @abc.abstractmethod
    def may_have_paid(self, row: JobRow) -> bool:
        """Whether a failed job may have been charged (then it is retried only when asked)."""

    def score_alignment(self, alignment: Mapping[str, Any]) -> dict[str, Any]:
        """The alignment options its outputs are scored with (the spec's by default)."""
        return dict(alignment)


class LocalKind(JobKind):
    """Models run here, through the executor; cost is compute time."""

    name = "local"
    uses_executor = True

    def where(self, provider: Provider, sel: ProviderSel) -> str:
        return ""

    def slots(self, spec: RunSpec) -> int:
        return spec.local_concurrency

    def provider_slots(self, spec: RunSpec) -> int:
        return 1

    async def separate(self, job: Job, row: JobRow, ctx: JobContext, timeout: float) -> Separation:
        ctx.ledger.update(job.key, state="running", attempts=row.attempts + 1)
        return await asyncio.wait_for(ctx.executor.separate(job.provider, job.track), timeout)

    def recorded_cost(self, sep: Separation, phases: Mapping[str, float]) -> Cost:
        return Cost(compute_seconds=phases.get("separate", phases["wall"]), estimated=False)

    def records_charge(self, cost: Cost, known: JobRow) -> bool:
        return True

    def may_have_paid(self, row: JobRow) -> bool:
        return False


class RemoteKind(JobKind):
    """Services called through their async clients: budgeted, journalled in
    the ledger, never paid twice."""

    name = "remote"
    uses_executor = False

    def where(self, provider: Provider, sel: ProviderSel) -> str:
        return "sandbox" if sel.sandbox else "live:" + str(provider.options.get("base_url", "default"))

    def slots(self, spec: RunSpec) -> int:
        return spec.remote_concurrency

    def provider_slots(self, spec: RunSpec) -> int:
        return spec.remote_concurrency

    async def separate(self, job: Job, row: JobRow, ctx: JobContext, timeout: float) -> Separation:
        if not row.remote_id and not row.in_doubt:  # a new request may cost money: check, then reserve
            await asyncio.to_thread(check_before_paying, job)
            ctx.budget.reserve(job.key, job.label, job.estimate)
        journal = ctx.ledger.journal(job.key)
        return await asyncio.wait_for(job.provider.aseparate(job.track, journal), timeout)  # type: ignore[arg-type]

    def recorded_cost(self, sep: Separation, phases: Mapping[str, float]) -> Cost:
        return sep.cost

    def records_charge(self, cost: Cost, known: JobRow) -> bool:
        # the submission recorded the charge; only a final (not estimated) cost replaces it
        return not known.remote_id or not cost.estimated

    def may_have_paid(self, row: JobRow) -> bool:
        return bool(row.remote_id)

    def score_alignment(self, alignment: Mapping[str, Any]) -> dict[str, Any]:
        # a service's output may be shifted even when its length is right
        # (encoder delay trimmed at one end, padded at the other): always check
        out = dict(alignment)
        out.setdefault("force", True)
        return out


KINDS: dict[str, JobKind] = {k.name: k for k in (LocalKind(), RemoteKind())}


def kind_of(what: Provider | str) -> JobKind:
    """The :class:`JobKind` of a provider (or of a kind name)."""
    name = what if isinstance(what, str) else what.kind
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"provider kind must be one of {sorted(KINDS)}, got {name!r}", field="kind") from None


#: shortest track sent to a paid service (seconds)
MIN_PAID_SECONDS = 1.0


def check_before_paying(job: Job) -> None:
    """Everything about ``job``'s track that would make its scores fail,
    checked before a request that can cost money: references present,
    readable, of one shape with the mixture (the dataset's own checks, or
    :func:`~stemlab.metrics.sources.lazy_references`' on the files' headers)
    and finite. Raises a :class:`~stemlab.errors.StemlabError` naming the file
    or stem (a failed row, nothing paid)."""
    from ..metrics.sources import all_finite, lazy_references

    track = job.track
    if track.seconds < MIN_PAID_SECONDS:
        raise InputError(f"track {track.name!r} is {track.seconds:.4g} s long; a paid service is not sent tracks "
                         f"under {MIN_PAID_SECONDS:g} s (it would fail or charge for nothing)", field="mixture")
    if not track.has_references:
        return
    lazy = lazy_references(track)
    refs: Any = lazy if lazy is not None else track.references
    try:
        for name in refs:
            ok, bad = all_finite(refs[name])
            if not ok:
                where = track.reference_files.get(name, f"reference {name!r}")
                raise InputError(f"track {track.name!r}: {where} has {bad} NaN/Inf sample(s); the separation could "
                                 "not be scored, so it is not paid for", file=str(where))
    finally:
        if lazy is not None:
            lazy.close()
