"""Tidy result tables and their files.

An output directory holds:

* ``scores.parquet`` / ``scores.csv`` — one row per (track, provider, params,
  target, metric): ``value`` with its ``aggregation`` and ``unit``;
* ``frames.parquet`` — per-frame values of framewise metrics (museval);
* ``jobs.parquet`` / ``jobs.csv`` — one row per job: status and reason,
  latency phases (seconds), cost (USD, credits), device, RTF, peak RAM …;
* ``museval/<provider>/<track>.json`` — museval's JSON schema, readable by
  sigsep tools;
* ``run.json`` — versions, git commit, host, spec and its hash.

:func:`load_results` reads them back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .runner import Job, Runner, RunResult

__all__ = ["Results", "load_results", "write_results", "PHASES"]

PHASES = ("upload", "queue", "processing", "download", "load", "separate", "scoring", "total", "wall")


@dataclass
class Results:
    path: Path
    scores: "pd.DataFrame"
    frames: "pd.DataFrame"
    jobs: "pd.DataFrame"
    meta: dict[str, Any]

    def track(self, name: str):
        """The dataset track ``name`` (with references), re-opened from the spec."""
        from .spec import _check_dataset, _Errors

        spec = self.meta.get("spec") or {}
        entries = spec.get("datasets", spec.get("dataset")) or []
        for i, e in enumerate(entries if isinstance(entries, list) else [entries]):
            sel = _check_dataset(_Errors(), f"datasets[{i}]", e)
            if sel is None:
                continue
            ds = sel.open()
            if name in ds.track_names():
                return ds[name]
        raise RunError(f"{self.path}: no track {name!r} in the run's datasets")

    def stems(self, provider: str, track: str):
        """The cached separation of ``track`` by ``provider`` (None if absent)."""
        from .cache import StemCache

        j = self.jobs
        hit = j[(j["provider"] == provider) & (j["track"] == track)]
        if hit.empty:
            raise RunError(f"{self.path}: no job for provider {provider!r} on track {track!r}")
        return StemCache(self.path / "cache").get(str(hit["job_key"].iloc[0]))

    def leaderboard(self, metric: str = "sdr_bsseval_v4", agg: str = "median", *, frames: str | None = None,
                    tidy: bool = False) -> "pd.DataFrame":
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


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_results(runner: "Runner", jobs: list["Job"], meta: dict[str, Any], plan_rows: list[dict[str, Any]]) -> "RunResult":
    import pandas as pd

    from .runner import RunResult, _slug

    assert runner.ledger is not None
    out = runner.output
    mh = runner.spec.metrics_hash
    # museval/ is rebuilt whole each time: no file of a job that is no longer
    # part of the run stays behind
    museval_tmp = out / f".museval.{os.getpid()}.tmp"
    shutil.rmtree(museval_tmp, ignore_errors=True)
    score_rows: list[dict[str, Any]] = []
    frame_rows: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    for j in jobs:
        row = runner.ledger.get(j.key)
        if row is None:
            continue
        info = row.info
        phases = row.phases
        base = {
            "dataset": j.dataset,
            "track": j.track.name,
            "provider": j.label,
            "family": j.provider.family,
            "variant": j.provider.variant,
            "kind": j.provider.kind,
            "params_hash": j.provider.params_hash,
        }
        payload = runner.score_cache.get(j.key, mh, j.refs_id) if row.state == "done" else None
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
        for ph in PHASES:
            jr[f"{ph}_s"] = phases.get(ph)
        job_rows.append(jr)
        if payload:
            for r in payload.get("rows", []):
                score_rows.append({**base, **r})
            for r in payload.get("frames", []):
                frame_rows.append({**base, **r})
            mj = payload.get("museval")
            if mj:
                d = museval_tmp / _slug(j.label)
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{_slug(j.track.name)}.json").write_text(json.dumps(mj, indent=1))
    scores = pd.DataFrame(score_rows)
    frames = pd.DataFrame(frame_rows)
    jobs_df = pd.DataFrame(job_rows)
    meta = dict(meta)
    meta["finished_at"] = __import__("time").strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["jobs"] = {
        "total": len(job_rows),
        "done": int(sum(r["status"] == "done" for r in job_rows)),
        "failed": int(sum(r["status"] == "failed" for r in job_rows)),
        "budget": int(sum(r["status"] == "budget" for r in job_rows)),
    }
    meta["plan"] = plan_rows
    try:
        _write_frame(scores, out / "scores")
        _write_frame(jobs_df, out / "jobs")
        _write_frame(frames, out / "frames", csv=False)
        _atomic_write(out / "run.json", lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
        _swap_dir(museval_tmp, out / "museval")
    except OSError as e:
        raise RunError(f"cannot write results to {out} ({e.strerror or e})", file=str(out)) from None
    return RunResult(out, meta.get("run_id", ""), jobs_df, scores, frames, meta, plan_rows)


def _swap_dir(new: Path, final: Path) -> None:
    """Replace ``final`` by ``new`` (removed when ``new`` does not exist)."""
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    if new.exists():
        os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_frame(df: "pd.DataFrame", stem: Path, csv: bool = True) -> None:
    _atomic_write(stem.with_suffix(".parquet"), lambda p: df.to_parquet(p, index=False))
    if csv:
        _atomic_write(stem.with_suffix(".csv"), lambda p: df.to_csv(p, index=False))


def load_results(path: str | Path) -> Results:
    """Read an output directory written by :func:`stemlab.run`."""
    import pandas as pd

    p = Path(path).expanduser()
    if not (p / "run.json").is_file():
        raise RunError(f"{p}: not a stemlab results directory (no run.json)", file=str(p))

    def _read(name: str) -> pd.DataFrame:
        f = p / f"{name}.parquet"
        if f.is_file():
            return pd.read_parquet(f)
        c = p / f"{name}.csv"
        return pd.read_csv(c) if c.is_file() else pd.DataFrame()

    meta = json.loads((p / "run.json").read_text())
    return Results(p, _read("scores"), _read("frames"), _read("jobs"), meta)
