"""stemlab's BSSEval v4 against museval 0.4.1 on the same input.

Cases: the shared 7-s MUSDB18 sample (4 stereo stems, PyAV-decoded and
rounded to 16-bit PCM as musdb/stempeg hand it to museval, with a
deterministic "separation": each stem + 10 % leakage of the others + noise +
a 2-sample delay) and a synthetic 4-stem stereo track (default 60 s).
museval is run in the same process on the same arrays (the anchor), then
stemlab's full v4 and its SDR-only path, ``--repeats`` times each (median
reported, and the first call's ratio too). Prints, per case::

    full_v4   speedup=…x max_abs_diff_db=…   (all frames, stems, 4 metrics)
    sdr_only  speedup=…x max_abs_diff_db=…   (vs museval's full run; SDR only)

``--evaluate SECONDS`` also times :func:`stemlab.metrics.evaluate` the way
the harness scores ``baseline:mixture`` (the mixture as every estimate,
metrics ``bsseval_v4, usdr, si_sdr``, targets drums, bass, other, vocals,
accompaniment) on a demo song of that length, and its peak traced memory
(tracemalloc: numpy's allocations; the inputs are allocated before).

Usage: ``python benchmarks/bsseval_vs_museval.py [--seconds 60] [--skip-sample] [--evaluate 240]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemlab.metrics import bsseval as B  # noqa: E402

SR = 44100


def shared_sample() -> Path:
    env = os.environ.get("STEMLAB_SHARED_DATA")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", Path("/work/shared/data")]:
        if (p / "musdb18-7s-sample" / "train").is_dir():
            return p / "musdb18-7s-sample"
    raise SystemExit("shared MUSDB18 sample not found (set STEMLAB_SHARED_DATA)")


def separation_like(refs: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    mix = refs.sum(axis=0)
    est = np.empty_like(refs)
    for j in range(refs.shape[0]):
        est[j] = 0.9 * np.roll(refs[j], 2, axis=-1) + 0.1 * (mix - refs[j])
    return est + 0.02 * refs.std() * rng.randn(*refs.shape)


def synthetic(seconds: float, seed: int = 1) -> np.ndarray:
    """4 stereo stems: drum-like bursts, a bass line, chords, a vibrato voice;
    each channel gets its own small room noise (full-rank, like recordings)."""
    from scipy.signal import lfilter

    rng = np.random.RandomState(seed)
    T = int(seconds * SR)
    t = np.arange(T) / SR
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(float)
    drums = lfilter([1.0], [1.0, -0.97], beat * rng.randn(T)) * 0.3
    f_bass = 55 * 2 ** (np.floor(t / 2) % 4 / 12)
    bass = 0.5 * np.sin(2 * np.pi * np.cumsum(f_bass) / SR)
    other = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) * (
        0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t)
    )
    f_voc = 440 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)) * 2 ** (np.floor(t) % 5 / 12)
    vocals = 0.3 * np.sin(2 * np.pi * np.cumsum(f_voc) / SR) * (np.sin(2 * np.pi * 0.5 * t) > -0.3)
    out = np.empty((4, 2, T))
    for j, (x, pan) in enumerate(((vocals, 0.5), (drums, 0.4), (bass, 0.5), (other, 0.7))):
        for c, g in enumerate((1 - pan, pan)):
            out[j, c] = g * x + 1e-3 * lfilter([1.0], [1.0, -0.5], rng.randn(T))
    return out


def run_case(name: str, refs: np.ndarray, ests: np.ndarray, repeats: int = 3) -> None:
    import museval

    seconds = refs.shape[-1] / SR
    print(f"\n== {name}: {refs.shape[0]} stems × {refs.shape[1]} ch × {seconds:.1f} s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        sdr, isr, sir, sar = museval.evaluate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1))
        t_mus = time.perf_counter() - t0
    print(f"museval    {t_mus:8.2f} s  ({t_mus / seconds:.3f} s per audio second)", flush=True)
    # stemlab: the first call, then the median of `repeats` calls (a dataset
    # scoring run makes many calls; museval's single long run is its own median)
    def timed(fn):
        times, out = [], None
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            out = fn(refs, ests)
            times.append(time.perf_counter() - t0)
        return out, times

    res, times = timed(B.bss_eval_v4)
    fast, sdr_times = timed(B.sdr_frames)
    t_full = float(np.median(times))
    t_sdr = float(np.median(sdr_times))

    def diff(a, b):
        ok = np.isfinite(a) & np.isfinite(b)
        assert (np.isnan(a) == np.isnan(b)).all(), "NaN frames differ"
        return float(np.abs(a[ok] - b[ok]).max()) if ok.any() else 0.0

    d_full = max(diff(x, y) for x, y in zip((sdr, isr, sir, sar), (res.sdr, res.isr, res.sir, res.sar)))
    d_sdr = diff(sdr, fast.sdr)
    stages = " ".join(f"{k}={v:.2f}" for k, v in res.info.get("seconds", {}).items())
    print(f"stemlab    {t_full:8.2f} s  median of {repeats} (first call {times[0]:.2f} s; solver: "
          f"{res.info.get('solver')}; stages of the last call, s: {stages})")
    print(f"full_v4   speedup={t_mus / t_full:.1f}x max_abs_diff_db={d_full:.2e}  "
          f"(first call: {t_mus / times[0]:.1f}x)")
    print(f"sdr_only  speedup={t_mus / t_sdr:.1f}x max_abs_diff_db={d_sdr:.2e}  ({t_sdr * 1000:.0f} ms)", flush=True)


def evaluate_case(seconds: float, repeats: int = 3) -> None:
    import tracemalloc

    from stemlab.datasets.demo import SongSpec, synthesize
    from stemlab.metrics import evaluate
    from stemlab.types import Stems

    song = synthesize(SongSpec("bench", seconds, 112.0, 40, (0, 7, 9, 5)), 0)
    refs = Stems({k: song[k].astype(np.float32) / np.float32(32768) for k in ("vocals", "drums", "bass", "other")}, SR)
    mix = song["mixture"].astype(np.float32) / np.float32(32768)
    ests = Stems({k: mix for k in ("vocals", "drums", "bass", "other", "accompaniment")}, SR)
    targets = ("drums", "bass", "other", "vocals", "accompaniment")
    kw = {"metrics": ("bsseval_v4", "usdr", "si_sdr"), "targets": targets}
    print(f"\n== evaluate(): demo song {seconds:.0f} s, 4 stereo stems + accompaniment, baseline:mixture, "
          f"metrics {kw['metrics']}", flush=True)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            ev = evaluate(refs, ests, **kw)
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        evaluate(refs, ests, **kw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    inputs = sum(a.nbytes for a in refs.audio.values()) + mix.nbytes
    print(f"evaluate   {float(np.median(times)):8.2f} s  median of {len(times)} (first call {times[0]:.2f} s); "
          f"peak traced memory {peak / 1e6:.0f} MB (inputs {inputs / 1e6:.0f} MB); shared accompaniment group: "
          f"{bool(ev.info.get('bsseval_shared'))}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic track (s)")
    ap.add_argument("--skip-sample", action="store_true", help="skip the shared MUSDB18 sample")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="stemlab calls per case (median reported)")
    ap.add_argument("--evaluate", type=float, default=0.0, metavar="SECONDS",
                    help="also time evaluate() on a demo song of this length (e.g. 240)")
    ap.add_argument("--float-refs", action="store_true",
                    help="score the sample against PyAV's float decode instead of 16-bit PCM")
    args = ap.parse_args(argv)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} numpy={np.__version__}")
    if not args.skip_sample:
        import stemlab.datasets as D
        from stemlab.metrics.evaluation import quantize

        track = D.load("musdb18", shared_sample())[0]
        refs = track.references.to_array(("vocals", "drums", "bass", "other")).astype(np.float64)
        if args.float_refs:
            label = "float references (ill-conditioned: see docs/metrics.md)"
        else:  # what museval gets from musdb/stempeg: 16-bit PCM
            refs, label = quantize(refs, 16), "16-bit references"
        run_case(f"MUSDB18 sample '{track.name}', {label}", refs, separation_like(refs), args.repeats)
    if not args.skip_synthetic:
        refs = synthetic(args.seconds)
        run_case(f"synthetic {args.seconds:.0f}-s track", refs, separation_like(refs, seed=2), args.repeats)
    if args.evaluate:
        evaluate_case(args.evaluate, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
