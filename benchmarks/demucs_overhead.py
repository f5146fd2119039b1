"""Overhead of the Demucs provider over calling demucs directly.

    python benchmarks/demucs_overhead.py [--model htdemucs] [--seconds 20] [--repeats 5]

Times ``DemucsProvider.separate(track)`` (input checks, normalisation,
conversions, output stems, provenance, peak-memory bookkeeping) against a
bare ``demucs.apply.apply_model(model, wav[None], …)`` on the same input,
with the same model object, shifts, seed, split, overlap and torch threads.
``overhead_ratio`` is the median over calls of the provider's wall time
÷ the ``apply_model`` call inside that same provider call (its
``timings["separate"]``): the two share one run, so machine noise between
runs does not enter. As a cross-check that the wrapper adds nothing around
that call (locks, thread and seed scoping, memory tracking), bare
``apply_model`` calls are timed too, interleaved with the provider calls in
ABBA order (provider, direct, direct, provider, …) after one warm-up of
each, and the ratios of medians and of minima are printed (noisy on a
shared machine).

The model is the pretrained one when its weights are present (``--model``,
default ``htdemucs``), else the tiny HTDemucs of the test suite
(``tests/providers/conftest.py``), built in a temporary demucs repo. Prints
one ``key=value`` line per figure, ending with ``overhead_ratio=…`` (goal
≤ 1.05).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _provider(model: str, repo: str | None, shifts: int, threads: int, device: str = "cpu"):
    import stemlab.providers as P

    spec = f"demucs:{model}?shifts={shifts}"
    if repo:
        spec += f"&repo={repo}"
    return P.create(spec, threads=threads, device=device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="htdemucs", help="pretrained name to use when its weights are present")
    ap.add_argument("--repo", default=None, help="demucs local repo holding --model (default: caches / tiny model)")
    ap.add_argument("--seconds", type=float, default=20.0, help="input length (s)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each")
    ap.add_argument("--shifts", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides run there)")
    args = ap.parse_args(argv)

    import torch
    from demucs.apply import apply_model

    import stemlab.datasets as D
    from stemlab.types import Track

    prov = _provider(args.model, args.repo, args.shifts, args.threads, args.device)
    tmp = None
    if args.repo:
        print(f"model={args.model} (repo {args.repo})")
    elif not prov.status().ready:
        from tests.providers.conftest import build_tiny_repo

        tmp = tempfile.TemporaryDirectory(prefix="demucs-bench-")
        repo = build_tiny_repo(Path(tmp.name), {"tinyht": (["7e5a0001"], None)})
        print(f"model=tinyht (tiny HTDemucs; weights of {args.model!r} absent: {prov.status().detail[:60]}…)")
        prov = _provider("tinyht", str(repo), args.shifts, args.threads, args.device)
    else:
        print(f"model={args.model} ({prov.status().detail})")

    # a 4 s demo song, looped to the requested length
    song = next(iter(D.load("demo", tracks=1, seconds=4.0)))
    n = int(args.seconds * song.sample_rate)
    reps = -(-n // song.num_samples)
    mix = np.tile(song.mixture, (1, reps))[:, :n].copy()
    track = Track.from_arrays("bench", mix, song.sample_rate)

    model = prov.model()
    c = prov.config
    wav = torch.from_numpy(mix)

    def direct() -> float:
        old = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        random.seed(c["seed"])
        t = time.perf_counter()
        out = apply_model(model, wav[None], shifts=c["shifts"], split=c["split"], overlap=c["overlap"],
                          segment=c["segment"], device=args.device)
        dt = time.perf_counter() - t
        torch.set_num_threads(old)
        del out
        return dt

    within: list[float] = []  # per call: provider time ÷ the apply_model call inside it
    extra: list[float] = []  # per call: provider time outside apply_model

    def provider() -> float:
        t = time.perf_counter()
        sep = prov.separate(track)
        dt = time.perf_counter() - t
        within.append(dt / sep.timings["separate"])
        extra.append(dt - sep.timings["separate"])
        return dt

    provider(), direct()  # warm-up (first-call allocations, lazy imports)
    within.clear()
    extra.clear()
    tp, td = [], []
    for i in range(args.repeats):  # ABBA order: neither side always runs right after the other
        if i % 2 == 0:
            tp.append(provider())
            td.append(direct())
        else:
            td.append(direct())
            tp.append(provider())
    mp, md = statistics.median(tp), statistics.median(td)
    print(f"input_seconds={args.seconds:g} shifts={args.shifts} threads={args.threads} repeats={args.repeats}")
    print("provider_s=" + ",".join(f"{x:.3f}" for x in tp))
    print("direct_s=" + ",".join(f"{x:.3f}" for x in td))
    print(f"provider_median_s={mp:.3f} direct_median_s={md:.3f} rtf_direct={md / args.seconds:.3f}")
    print(f"provider_extra_median_s={statistics.median(extra):.4f} (checks, conversions, stems, bookkeeping)")
    # cross-checks against separately timed direct calls (noisy on a shared machine)
    print(f"ratio_vs_direct_median={mp / md:.3f} ratio_vs_direct_min={min(tp) / min(td):.3f}")
    print(f"overhead_ratio={statistics.median(within):.3f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
