"""What a run is made of: providers as the spec names them, and jobs.

A :class:`Job` is one (track, provider) pair. Planning
(:mod:`stemlab.runs.planning`) makes them, execution
(:mod:`stemlab.runs.execution`) runs them, :mod:`stemlab.runs.results`
writes their rows."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from ..errors import StemlabError
from ..providers.base import Provider
from ..types import Cost, Track
from .spec import ProviderSel

__all__ = ["Job", "PlannedProvider", "group_by_key"]


@dataclass(frozen=True)
class PlannedProvider:
    """A provider of the spec, built once: its selection, the provider and
    the label its rows carry (unique within the run)."""

    sel: ProviderSel
    provider: Provider
    label: str


@dataclass
class Job:
    """One (track, provider) pair. Jobs of tracks with identical mixtures share
    a ``key`` (one separation, paid once) unless the provider reads the
    references; each job is scored against its own track's references
    (``refs_id``). ``error`` marks a track that could not be read: its job
    becomes a failed row without running. ``estimate``: the expected cost
    (USD, credits, compute seconds)."""

    key: str
    dataset: str
    track: Track
    mixture_hash: str
    provider: Provider
    sel: ProviderSel
    label: str
    estimate: Cost
    refs_id: str = ""
    error: StemlabError | None = None

    def forced_by(self, force: AbstractSet[str]) -> bool:
        """Whether ``force`` (lower-case labels and families) names this job's provider."""
        return self.label.lower() in force or self.provider.family in force


def group_by_key(jobs: list[Job]) -> dict[str, list[Job]]:
    """Jobs by key, in plan order: tracks with identical mixtures share one
    separation."""
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        groups.setdefault(j.key, []).append(j)
    return groups
