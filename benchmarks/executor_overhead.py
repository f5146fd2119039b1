"""What the harness costs per job, with the thread executor and with Ray.

N synthetic 1-s songs through ``baseline:mixture`` (≈ no compute), so the
wall time is nearly all harness: planning, hashing, ledger writes, stem and
score caches, scheduling (and for Ray: task dispatch, object transfer to and
from actors). Prints seconds per job for each executor and their ratio.

    python benchmarks/executor_overhead.py [--songs 40] [--no-ray]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def per_job(root: Path, out: Path, executor: str) -> tuple[float, int]:
    from stemlab.runs import run

    spec = {
        "datasets": [{"name": "folder", "root": str(root)}],
        "providers": ["baseline:mixture", "baseline:silence"],
        "metrics": ["usdr"],
        "executor": executor,
        "concurrency": {"local": 2},
        "output": str(out),
    }
    if executor == "ray":
        spec["executor_options"] = {"num_cpus": 0.5, "actors_per_provider": 2}
    t0 = time.perf_counter()
    r = run(spec, quiet=True)
    wall = time.perf_counter() - t0
    sep = float(r.jobs["separate_s"].fillna(0).sum()) / 2  # two local workers
    n = len(r.jobs)
    assert (r.jobs.status == "done").all()
    return (wall - sep) / n, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=40)
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from stemlab.testing import synthetic_folder_dataset

    with tempfile.TemporaryDirectory(prefix="stemlab-bench-") as tmp:
        root = synthetic_folder_dataset(Path(tmp) / "songs", a.songs, seconds=1.0)
        th, n = per_job(root, Path(tmp) / "threads", "local")
        print(f"threads: {n} jobs, harness cost {th * 1000:.1f} ms/job")
        if not a.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                rt, _ = per_job(root, Path(tmp) / "ray", "ray")
            finally:
                ray.shutdown()
            print(f"ray: {n} jobs, harness cost {rt * 1000:.1f} ms/job")
            print(f"ray_vs_threads={rt / th:.2f}x per-job harness cost")


if __name__ == "__main__":
    main()
