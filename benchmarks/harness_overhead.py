"""Harness overhead, cache effectiveness and remote concurrency.

Three ratios, each against an anchor measured in the same run:

1. ``overhead`` — a run of the demo set through local providers: total wall
   time vs the sum of the providers' own separation time and the scoring
   time (what the harness adds: planning, hashing, ledger, caches, results).
   Goal ≤ 5 %.
2. ``cached_rerun`` — the same spec again (everything cached) vs the first
   run. Goal ≤ 5 %.
3. ``concurrency_speedup`` — N sandbox jobs (AI Stem Splitter emulator,
   scaled clock) at concurrency 10 vs 1. Goal ≥ 8×.

    python benchmarks/harness_overhead.py [--jobs 100] [--scale 0.01]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def bench_overhead(work: Path) -> None:
    from stemlab.runs import run

    spec = {
        "datasets": ["demo"],
        "providers": ["oracle:irm", "oracle:mwf", "baseline:hpss", "baseline:mixture"],
        "metrics": ["usdr", "si_sdr"],
        "concurrency": {"local": 1},
    }
    t0 = time.perf_counter()
    r = run({**spec, "output": str(work / "overhead")}, quiet=True)
    wall = time.perf_counter() - t0
    jobs = r.jobs
    sep = float(jobs["separate_s"].fillna(jobs["wall_s"]).sum())
    score = float(jobs["scoring_s"].fillna(0).sum())
    overhead = (wall - sep - score) / (sep + score)
    print(f"demo set: {len(jobs)} jobs, wall={wall:.2f}s provider={sep:.2f}s scoring={score:.2f}s")
    print(f"overhead={overhead * 100:.1f}% (goal <= 5%)")
    t0 = time.perf_counter()
    run({**spec, "output": str(work / "overhead")}, quiet=True)
    again = time.perf_counter() - t0
    print(f"cached_rerun={again / wall * 100:.1f}% of the first run ({again:.2f}s vs {wall:.2f}s; goal <= 5%)")


def bench_concurrency(work: Path, n_jobs: int, scale: float) -> None:
    from stemlab.runs import runner as runner_mod
    from stemlab.sandbox import get_sandbox_class
    from stemlab.testing import synthetic_folder_dataset

    data = work / "songs"
    synthetic_folder_dataset(data, n_jobs, seconds=1.0)
    import stemlab.datasets as D

    tracks = list(D.load("folder", root=str(data)))

    # a long (virtual) processing time, so that waiting dominates as with a real service
    sb = get_sandbox_class("aistemsplitter")(scale=scale, seed=0, queue_seconds=20.0, processing_seconds=60.0).start()
    for t in tracks:
        sb.register_track(t)

    class _Pool:
        def options_for(self, family: str) -> dict:
            return sb.provider_options()

        def register(self, track) -> None:
            pass

        def close(self) -> None:
            pass

    def one(conc: int) -> float:
        spec = {
            "datasets": [{"name": "folder", "root": str(data)}],
            "providers": [{"provider": "aistemsplitter:htdemucs", "sandbox": True, "max_concurrency": conc,
                           "rate_limit": 1000}],
            "metrics": ["usdr"],
            "concurrency": {"remote": conc},
            "output": str(work / f"conc{conc}"),
        }
        t0 = time.perf_counter()
        r = runner_mod.Runner(spec, quiet=True, sandboxes=_Pool()).run()
        dt = time.perf_counter() - t0
        assert (r.jobs.status == "done").all(), r.jobs[r.jobs.status != "done"][["track", "error"]]
        return dt

    try:
        t1 = one(1)
        t10 = one(10)
    finally:
        sb.stop()
    print(f"{n_jobs} sandbox jobs: concurrency 1 {t1:.1f}s, concurrency 10 {t10:.1f}s")
    print(f"concurrency_speedup={t1 / t10:.1f}x (goal >= 8x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--scale", type=float, default=0.01, help="sandbox clock scale (real s per virtual s)")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-concurrency", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="stemlab-bench-") as tmp:
        work = Path(tmp)
        if not a.skip_overhead:
            bench_overhead(work)
        if not a.skip_concurrency:
            bench_concurrency(work, a.jobs, a.scale)


if __name__ == "__main__":
    main()
