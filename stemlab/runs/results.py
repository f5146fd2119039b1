"""Tidy result tables and their files.

An output directory holds:

* ``scores.parquet`` / ``scores.csv`` — one row per (track, provider, params,
  target, metric): ``value`` with its ``aggregation`` and ``unit``;
* ``frames.parquet`` — per-frame values of framewise metrics (museval);
* ``jobs.parquet`` / ``jobs.csv`` — one row per job: status and reason,
  time in two clocks that never share a column — ``<phase>_s`` *measured*
  here (wall seconds; local providers, live services) and ``sim_<phase>_s``
  *simulated* (a sandbox's virtual service seconds, ``clock == "simulated"``)
  — money in USD (``cost_usd``: NaN with ``cost_note`` when the service
  publishes no price and none was given; ``price_basis`` says where a known
  one comes from) and in the service's own unit (``native_units`` +
  ``native_unit``: seconds, credits, points, calls; compute seconds for local
  providers), ``bound`` (``upper``/``lower`` for oracles and floors), the
  ``stems`` the provider returns, device, RTF, peak RAM …;
* ``museval/<provider>/<track>.json`` — museval's JSON schema, readable by
  sigsep tools;
* ``run.json`` — versions, git commit, host, spec and its hash.

:func:`load_results` reads them back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._slug import slug
from ..errors import RunError
from ..types import Stems, Track
from .cache import ScoreCache, StemCache
from .jobs import Job
from .ledger import JobRow, Ledger

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .spec import DatasetSel

__all__ = ["NATIVE_UNITS", "PHASES", "SIM_PHASES", "Results", "load_results", "money_columns", "write_results"]

#: latency phases (seconds) with a ``<phase>_s`` column in ``jobs`` (measured here)
PHASES = ("upload", "queue", "processing", "download", "load", "separate", "scoring", "total", "wall")
#: phases a sandbox reports in its virtual (simulated service) seconds: ``sim_<phase>_s`` columns
SIM_PHASES = ("upload", "queue", "processing", "download", "total")
#: what ``native_unit`` says for each ``credit_unit`` a provider records
NATIVE_UNITS = {"seconds": "seconds", "mvsep_credits": "credits", "dango_points": "points", "calls": "calls"}


@dataclass
class Results:
    """A results directory: what :func:`stemlab.run` returns and
    :func:`load_results` reads back. ``plan``: the cost table of the run
    (dry runs: nothing else)."""

    path: Path
    run_id: str
    scores: pd.DataFrame
    frames: pd.DataFrame
    jobs: pd.DataFrame
    meta: dict[str, Any]
    plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Jobs that did not end ``done``."""
        return int((self.jobs["status"] != "done").sum()) if len(self.jobs) else 0

    def track(self, name: str) -> Track:
        """The dataset track ``name`` (with references), re-opened from the spec."""
        for sel in _dataset_sels(self.meta.get("spec") or {}):
            ds = sel.open()
            if name in ds.track_names():
                return ds[name]
        raise RunError(f"{self.path}: no track {name!r} in the run's datasets")

    def stems(self, provider: str, track: str) -> Stems | None:
        """The cached separation of ``track`` by ``provider`` (None if absent)."""
        j = self.jobs
        hit = j[(j["provider"] == provider) & (j["track"] == track)]
        if hit.empty:
            raise RunError(f"{self.path}: no job for provider {provider!r} on track {track!r}")
        return StemCache(self.path / "cache").get(str(hit["job_key"].iloc[0]))

    def leaderboard(self, metric: str = "sdr_bsseval_v4", agg: str = "median", *, frames: str | None = None,
                    tidy: bool = False) -> pd.DataFrame:
        """Provider × target table of ``metric``: ``agg`` (``median`` |
        ``mean``) over tracks of each track's value — for framewise metrics
        the ``frames`` rows (default ``median_frames``, museval's), for
        whole-track metrics the ``track`` rows — from
        :func:`stemlab.metrics.aggregate.aggregate`. The label (e.g.
        ``median_frames/median_tracks``) is in ``.attrs["aggregation"]``;
        ``tidy=True`` returns aggregate's long table (with ``n_tracks``,
        ``n_nan_tracks`` and ``aggregation`` columns) instead."""
        from ..metrics.aggregate import aggregate

        s = self.scores
        if s.empty:
            return s
        lb = aggregate(s, metric, frames=frames, tracks=agg, by=("provider", "target"))
        label = str(lb["aggregation"].iloc[0]) if len(lb) else ""
        if tidy:
            lb.attrs["aggregation"] = label
            return lb
        wide = lb.pivot(index="provider", columns="target", values="value")
        wide.attrs["aggregation"] = label
        return wide

    @classmethod
    def planned(cls, path: Path, run_id: str, meta: dict[str, Any], plan: list[dict[str, Any]]) -> Results:
        """The results of a dry run: its plan, no tables."""
        import pandas as pd

        return cls(path, run_id, scores=pd.DataFrame(), frames=pd.DataFrame(), jobs=pd.DataFrame(), meta=meta,
                   plan=plan)


def _dataset_sels(spec: dict[str, Any]) -> list[DatasetSel]:
    """The datasets of a run's (redacted) spec, each validated on its own:
    one that no longer validates is left out."""
    from pydantic import ValidationError

    from .spec import DatasetSel

    entries = spec.get("datasets", spec.get("dataset")) or []
    out = []
    for e in entries if isinstance(entries, list) else [entries]:
        try:
            out.append(DatasetSel.model_validate(e))
        except ValidationError:
            continue
    return out


# ------------------------------------------------------------------ writing

def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _job_row(j: Job, row: JobRow, payload: dict[str, Any] | None, base: dict[str, Any]) -> dict[str, Any]:
    """One row of ``jobs``: status and reason, cost, device, phases (seconds) …"""
    info = row.info
    phases = row.phases
    jr = {
        **base,
        "job_key": j.key,
        "status": row.state,
        "error_kind": row.error_kind,
        "error": row.error,
        "params": row.params_json,
        "remote_id": row.remote_id,
        "attempts": row.attempts,
        "audio_seconds": j.track.seconds,
        "cost_usd": row.cost_usd,
        "credits": row.credits,
        "credit_unit": row.credit_unit,
        "cost_estimated": bool(row.cost_estimated) if row.cost_estimated is not None else None,
        "est_usd": row.est_usd,
        "compute_seconds": row.compute_seconds,
        "device": info.get("device"),
        "rtf": info.get("rtf"),
        "peak_rss_mb": info.get("peak_rss_mb"),
        "warnings": "; ".join(info.get("warnings", []) or []),
        "corrections": json.dumps(info.get("corrections") or (payload or {}).get("corrections") or {}, default=str),
        "output_sample_rate": info.get("output_sample_rate"),
    }
    simulated = j.provider.kind == "remote" and bool(j.sel.sandbox)
    jr["clock"] = "simulated" if simulated else "measured"
    for ph in PHASES:
        jr[f"{ph}_s"] = phases.get(ph)
    for ph in SIM_PHASES:
        jr[f"sim_{ph}_s"] = None
    jr["sim_rtf"] = None
    if simulated:  # the sandbox's virtual seconds go to their own columns; total_s is what was measured here
        for ph in SIM_PHASES:
            jr[f"sim_{ph}_s"] = phases.get(ph)
            jr[f"{ph}_s"] = None
        jr["total_s"] = phases.get("wall")
        jr["sim_rtf"], jr["rtf"] = jr["rtf"], None
    jr["bound"] = _bound(j)
    jr["stems"] = _stems(j)
    jr.update(money_columns(j.provider.family, j.provider.kind, dict(j.provider.options), row.state, row.credits,
                            row.credit_unit, row.cost_usd, row.compute_seconds, j.track.seconds, row.remote_id))
    return jr


def _bound(j: Job) -> str:
    try:
        return j.provider.bound_kind() or ""
    except Exception:  # a third-party provider without the attribute
        return ""


def _stems(j: Job) -> str:
    try:
        return ",".join(j.provider.stems)
    except Exception:  # stems known only once a custom model is loaded
        return ""


def money_columns(family: str, kind: str, options: dict[str, Any], state: str, credits: float | None,
                  credit_unit: str | None, cost_usd: float | None, compute_seconds: float | None,
                  audio_seconds: float | None, remote_id: str | None = None) -> dict[str, Any]:
    """A job's money in USD and in the service's own unit:
    ``cost_usd`` (NaN when the price is unknown), ``usd_per_unit`` (USD per
    unit of the service's price table), ``price_basis``, ``cost_note`` (why
    USD is unknown and how to set it), ``native_units``/``native_unit``.
    Local providers: $0 (no service charge) and their compute seconds."""
    import math

    from ..services._pricing import price_of

    if kind != "remote":
        return {"cost_usd": 0.0, "usd_per_unit": 0.0, "price_basis": "local: no service charge (compute time only)",
                "cost_note": "", "native_units": compute_seconds, "native_unit": "compute seconds"}
    sp, quote = price_of(family, options)
    unit = NATIVE_UNITS.get(credit_unit or "", credit_unit or (NATIVE_UNITS.get(sp.native_unit, "") if sp else ""))
    out: dict[str, Any] = {"native_units": credits, "native_unit": unit,
                           "usd_per_unit": quote.usd_per_unit if quote.usd_per_unit is not None else math.nan}
    if sp is None:  # a third-party service: what its provider recorded
        out.update(cost_usd=cost_usd if cost_usd is not None else math.nan, price_basis="recorded by the provider",
                   cost_note="" if cost_usd is not None else "no cost recorded")
        return out
    if credits is None and cost_usd is None:
        if remote_id:  # submitted, charge not recorded
            out.update(cost_usd=math.nan, price_basis="", cost_note="charge not recorded (the job failed after its "
                       "submit); check the service's account")
        else:
            out.update(cost_usd=0.0, native_units=0.0, price_basis=f"not submitted ({state})", cost_note="")
        return out
    override, pack = sp.override_of(options)
    usd, basis, reason = sp.job_usd(credits, audio_seconds, override, pack=pack)
    out.update(cost_usd=usd, price_basis=basis, cost_note=reason)
    return out


@dataclass
class _Tables:
    """The rows of the three tables, gathered job by job."""

    scores: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, j: Job, row: JobRow, payload: dict[str, Any] | None, museval_dir: Path) -> None:
        base = {
            "dataset": j.dataset,
            "track": j.track.name,
            "provider": j.label,
            "family": j.provider.family,
            "variant": j.provider.variant,
            "kind": j.provider.kind,
            "params_hash": j.provider.params_hash,
        }
        self.jobs.append(_job_row(j, row, payload, base))
        if not payload:
            return
        notes = [str(n) for n in payload.get("notes") or []]
        self.scores.extend({**base, **r, "nan_reason": _nan_reason(r, notes)} for r in payload.get("rows", []))
        self.frames.extend({**base, **r} for r in payload.get("frames", []))
        mj = payload.get("museval")
        if mj:
            d = museval_dir / slug(j.label)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{slug(j.track.name)}.json").write_text(json.dumps(mj, indent=1))

    def count(self, status: str) -> int:
        return int(sum(r["status"] == status for r in self.jobs))


def _nan_reason(row: dict[str, Any], notes: list[str]) -> str:
    """Why a score is NaN (the scorer's notes about its target, else all of
    them); '' for a finite value."""
    import math

    v = row.get("value")
    if isinstance(v, (int, float)) and math.isfinite(v):
        return ""
    t = str(row.get("target", ""))
    mine = [n for n in notes if f"'{t}'" in n or f"{t!r}" in n]
    return "; ".join(mine or notes) or "not defined for this input"


def write_results(out: Path, jobs: Sequence[Job], *, ledger: Ledger, score_cache: ScoreCache, metrics_hash: str,
                  meta: dict[str, Any], plan: list[dict[str, Any]]) -> Results:
    """Write the tables, ``museval/`` and ``run.json`` of ``jobs`` (their
    ledger rows; scores of ``metrics_hash`` from ``score_cache``) to ``out``."""
    import pandas as pd

    # museval/ is rebuilt whole each time: no file of a job that is no longer
    # part of the run stays behind
    museval_tmp = out / f".museval.{os.getpid()}.tmp"
    shutil.rmtree(museval_tmp, ignore_errors=True)
    tables = _Tables()
    for j in jobs:
        row = ledger.get(j.key)
        if row is None:
            continue
        payload = score_cache.get(j.key, metrics_hash, j.refs_id) if row.state == "done" else None
        tables.add(j, row, payload, museval_tmp)
    scores = pd.DataFrame(tables.scores)
    frames = pd.DataFrame(tables.frames)
    jobs_df = pd.DataFrame(tables.jobs)
    meta = dict(meta)
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["jobs"] = {"total": len(tables.jobs), "done": tables.count("done"), "failed": tables.count("failed"),
                    "budget": tables.count("budget")}
    meta["plan"] = plan
    try:
        _write_frame(scores, out / "scores")
        _write_frame(jobs_df, out / "jobs")
        _write_frame(frames, out / "frames", csv=False)
        _atomic_write(out / "run.json", lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
        _swap_dir(museval_tmp, out / "museval")
    except OSError as e:
        raise RunError(f"cannot write results to {out} ({e.strerror or e})", file=str(out)) from None
    return Results(out, meta.get("run_id", ""), scores=scores, frames=frames, jobs=jobs_df, meta=meta, plan=plan)


def _swap_dir(new: Path, final: Path) -> None:
    """Replace ``final`` by ``new`` (removed when ``new`` does not exist)."""
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    if new.exists():
        os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_frame(df: pd.DataFrame, stem: Path, csv: bool = True) -> None:
    _atomic_write(stem.with_suffix(".parquet"), lambda p: df.to_parquet(p, index=False))
    if csv:
        _atomic_write(stem.with_suffix(".csv"), lambda p: df.to_csv(p, index=False))


# ------------------------------------------------------------------ reading

def load_results(path: str | Path) -> Results:
    """Read an output directory written by :func:`stemlab.run`."""
    import pandas as pd

    p = Path(path).expanduser()
    if not (p / "run.json").is_file():
        raise RunError(f"{p}: not a stemlab results directory (no run.json)", file=str(p))

    def _read(name: str) -> pd.DataFrame:
        for f, reader in ((p / f"{name}.parquet", pd.read_parquet), (p / f"{name}.csv", pd.read_csv)):
            if f.is_file():
                try:
                    return reader(f)
                except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types for a damaged file
                    raise RunError(f"{f}: unreadable ({type(e).__name__}: {e}); rerun 'stemlab run' on the same "
                                   "spec to rewrite it from the caches", file=str(f)) from None
        return pd.DataFrame()

    try:
        meta = json.loads((p / "run.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except (OSError, ValueError) as e:
        raise RunError(f"{p / 'run.json'}: unreadable ({e}); rerun 'stemlab run' on the same spec to rewrite it",
                       file=str(p / "run.json")) from None
    return Results(p, meta.get("run_id", ""), scores=_read("scores"), frames=_read("frames"), jobs=_read("jobs"),
                   meta=meta, plan=list(meta.get("plan") or []))
