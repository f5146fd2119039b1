"""Planning: the spec's providers, built once, × the datasets' tracks → jobs.

Each job has a key (mixture content hash, provider family and params, where
it runs, and for providers reading the references their identity): tracks
with identical mixtures share a key, so one separation is paid once. A track
that cannot be opened or read becomes a failed job of every provider instead
of stopping the plan. The plan also carries the cost estimate per provider
(what a dry run prints)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import DatasetError, InputError, RunError, StemlabError
from ..providers import create as create_provider
from ..providers.base import Provider
from ..types import Cost, Stems, Track
from .cost import PlanCost, summarize_costs
from .jobs import Job, PlannedProvider
from .kinds import kind_of
from .ledger import Ledger
from .spec import ProviderSel, RunSpec

__all__ = ["Plan", "Planner", "Sandboxes", "build_providers", "job_key"]

log = logging.getLogger("stemlab.runs")


class Sandboxes(Protocol):
    """What planning needs of a sandbox pool (:class:`stemlab.sandbox.SandboxPool`)."""

    def options_for(self, family: str) -> dict[str, Any]: ...
    def register(self, track: Any) -> None: ...
    def close(self) -> None: ...


@dataclass
class Plan:
    """The jobs of a run, in order, and the dry-run cost per provider label."""

    jobs: list[Job]
    costs: dict[str, PlanCost] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, object]]:
        """The cost table (one row per provider and a TOTAL row)."""
        return summarize_costs(self.costs)

    def budget_caps(self) -> dict[str, tuple[float | None, float | None]]:
        """Per-provider caps (USD, credits) that the spec sets."""
        return {j.label: (j.sel.budget_usd, j.sel.budget_credits) for j in self.jobs
                if j.sel.budget_usd is not None or j.sel.budget_credits is not None}

    def record(self, ledger: Ledger, run_id: str) -> None:
        """Enter every job in the ledger (rows already there keep their state)."""
        for j in self.jobs:
            ledger.plan(
                job_key=j.key, run_id=run_id, dataset=j.dataset, track=j.track.name, mixture_hash=j.mixture_hash,
                provider=j.label, family=j.provider.family, kind=j.provider.kind, params_hash=j.provider.params_hash,
                params=j.provider.config, estimate=j.estimate,
            )


def build_providers(spec: RunSpec, sandboxes: Sandboxes | None, *,
                    retry_in_doubt: bool = False) -> list[PlannedProvider]:
    """Each provider of ``spec`` built once from its parsed reference, with a
    unique label (``#2``, ``#3`` … for repeats); sandboxed ones point at
    their sandbox in ``sandboxes``; ``retry_in_doubt``: remote providers may
    resubmit a job whose submit is in doubt (the user checked the account)."""
    out = []
    seen: dict[str, int] = {}
    for sel in spec.providers:
        opts: dict[str, Any] = {}
        if retry_in_doubt and sel.ref.kind == "remote":
            opts["retry_in_doubt"] = True
        if sel.price is not None:  # the buyer's own price (what the service does not publish)
            from ..services import SERVICES, pricing_module

            if sel.ref.family in SERVICES:
                opts.update(pricing_module(sel.ref.family).SERVICE_PRICING.provider_options(sel.price.given()))
        if sel.sandbox:
            if sandboxes is None:  # never let a sandboxed provider reach the live service
                raise RunError(f"provider {sel.ref}: sandboxed, but the run has no sandbox pool")
            opts.update(sandboxes.options_for(sel.ref.family))
        prov = create_provider(sel.ref, **opts)
        label = sel.label or prov.id
        if sel.sandbox and not sel.label:
            label = f"{label} [sandbox]"
        n = seen.get(label, 0)
        seen[label] = n + 1
        if n:
            label = f"{label} #{n + 1}"
        out.append(PlannedProvider(sel, prov, label))
    return out


def job_key(mixture_hash: str, prov: Provider, sel: ProviderSel, refs_id: str = "") -> str:
    """The content address of a separation (24 hex)."""
    blob = f"{mixture_hash}|{prov.family}|{prov.params_hash}|{kind_of(prov).where(prov, sel)}"
    if prov.needs_references:  # an oracle's output depends on the references too
        blob += f"|refs:{refs_id}"
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class _TrackPlan:
    """A track as planning sees it: its mixture hash, its references' identity,
    or the error that makes it unreadable."""

    dataset: str
    track: Track
    mixture_hash: str
    refs_id: str = ""
    error: StemlabError | None = None


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


def _open_tracks(ds: Any) -> Iterator[tuple[str, Track | None, StemlabError | None]]:
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


class Planner:
    """Plans a spec's jobs against a ledger (its cached file hashes and the
    rows of earlier runs). ``force``: lower-case provider labels/families
    whose cached results are ignored; ``sandboxes``: the pool that sandboxed
    providers use and that learns every readable track."""

    def __init__(self, spec: RunSpec, ledger: Ledger, *, force: AbstractSet[str] = frozenset(),
                 sandboxes: Sandboxes | None = None, retry_in_doubt: bool = False) -> None:
        self.spec = spec
        self.ledger = ledger
        self.force = force
        self.sandboxes = sandboxes
        self.retry_in_doubt = retry_in_doubt

    def plan(self) -> Plan:
        """Build the providers and plan every (track, provider) job."""
        providers = build_providers(self.spec, self.sandboxes, retry_in_doubt=self.retry_in_doubt)
        plan = Plan([], {p.label: PlanCost(p.label) for p in providers})
        for dsel in self.spec.datasets:
            for tp in self._tracks(dsel.open()):
                for p in providers:
                    self._add(plan, tp, p)
        return plan

    def _add(self, plan: Plan, tp: _TrackPlan, p: PlannedProvider) -> None:
        est = p.provider.estimate_cost(tp.track) if tp.error is None else Cost(estimated=False)
        job = Job(job_key(tp.mixture_hash, p.provider, p.sel, tp.refs_id), tp.dataset, tp.track, tp.mixture_hash,
                  p.provider, p.sel, p.label, est, tp.refs_id, tp.error)
        if tp.error is None:
            row = self.ledger.get(job.key)
            if row is not None and row.state == "done" and not job.forced_by(self.force):
                plan.costs[p.label].cached += 1
            else:
                plan.costs[p.label].add(est, tp.track.seconds)
        plan.jobs.append(job)

    # ----------------------------------------------------------------- tracks
    def _tracks(self, ds: Any) -> Iterator[_TrackPlan]:
        """Every track of ``ds`` as planned; an unreadable one stands in with its error."""
        for name, track, error in _open_tracks(ds):
            if track is not None:
                tp = self._read(ds.name, name, track)
                if tp.error is None:
                    yield tp
                    continue
                error = tp.error
            log.warning("track %r of %s is skipped: %s", name, ds.name, error)
            unreadable = "unreadable:" + hashlib.sha256(f"{ds.name}|{name}".encode()).hexdigest()[:16]
            yield _TrackPlan(ds.name, _unreadable_track(ds.name, name), unreadable, "", error)

    def _read(self, dataset: str, name: str, track: Track) -> _TrackPlan:
        """Read what planning needs of an opened track; a readable one is
        registered with the sandboxes. The track's audio is released."""
        try:
            h, refs_id = self._check_track(track)
        except StemlabError as e:
            track.release()
            return _TrackPlan(dataset, track, "", "", e)
        except Exception as e:  # a decoder or loader bug: still one bad track, not a dead run
            track.release()
            return _TrackPlan(dataset, track, "", "",
                              InputError(f"track {name!r}: cannot be read ({type(e).__name__}: {e})"))
        if self.sandboxes is not None:
            self.sandboxes.register(track)
        track.release()
        return _TrackPlan(dataset, track, h, refs_id)

    def _check_track(self, track: Track) -> tuple[str, str]:
        """Its mixture hash and references identity, checking the track is
        usable; raises a StemlabError naming the file and the problem."""
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

    def _mixture_hash(self, track: Track) -> str:
        if track.path is not None and Path(track.path).is_file():
            return self.ledger.cached_hash(
                Path(track.path), f"{track.dataset}|{track.name}", lambda: track.content_hash
            )
        return track.content_hash

    def _refs_id(self, track: Track) -> str:
        """Identity of a track's references: the content hashes of their files
        (cached by path, size and mtime), else of their decoded PCM."""
        if not track.has_references:
            return "none"
        files = track.reference_files
        if files:
            parts = [f"{n}={self.ledger.cached_file_hash(Path(f))}" for n, f in sorted(files.items())]
            return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        refs = track.references
        if refs is None:
            raise InputError(f"track {track.name!r}: references could not be read", field="references")
        return _pcm_refs_id(refs)


def _pcm_refs_id(refs: Stems) -> str:
    """Hash of decoded references: names, rate, shapes and samples (24 hex)."""
    h = hashlib.sha256()
    for n in sorted(refs.names):
        h.update(f"{n}|{refs.sample_rate}|{refs[n].shape}|".encode())
        h.update(np.ascontiguousarray(refs[n]).tobytes())
    return h.hexdigest()[:24]
