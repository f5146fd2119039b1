"""Real scale: peak memory and wall time per audio minute on full-length songs.

For each length (default 2, 4 and 10 minutes) a MUSDB18-HQ-like song is
written (:func:`stemlab.testing.musdb_like_track`: stereo, 44.1 kHz, 4 stems,
music-like spectra) — or the tracks of a real dataset are used (``--root``) —
and the real CLI path runs on it in a fresh process, once per provider and
once with all of them (unless ``--separately``)::

    stemlab run --dataset folder --root <one song> --provider P [--provider Q] -o <out> -q

One line per (length, run)::

    minutes=4.0 provider=baseline:mixture peak_rss_gb=… footprint_gb=… rss/footprint=… s_per_audio_min=…

``footprint_gb`` is the song's float32 audio (mixture + 4 references + 4
estimates); ``peak_rss_gb`` the process's peak RSS (its VmHWM), Python, numpy
and torch included (both in GiB). Then the projected wall time of the MUSDB18 test set
(50 tracks, 3.5 h of audio) on this machine, from the longest length.

    python benchmarks/scale.py [--minutes 2 4 10] [--provider baseline:mixture --provider oracle:irm]
    python benchmarks/scale.py --root ~/data/musdb18hq --dataset musdb18hq --split test --tracks 'A*'
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MUSDB_TEST_MINUTES = 3.5 * 60  # 50 tracks, ~3.5 h of audio
DEFAULT_PROVIDERS = ("baseline:mixture", "oracle:irm")


def run_cli(args: list[str]) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS GiB, exit code, stderr tail) of one ``stemlab`` process."""
    from stemlab.testing import run_cli_measured

    r = run_cli_measured(args)
    return r.wall_s, r.peak_rss_gib, r.returncode, r.stderr


def write_song(root: Path, minutes: float) -> None:
    """:func:`stemlab.testing.musdb_like_track` in a child process (the
    synthesis needs several GB for long songs; this process stays small)."""
    code = "import sys; from stemlab.testing import musdb_like_track; musdb_like_track(sys.argv[1], float(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, str(root), str(minutes)], check=True)


def footprint_gb(seconds: float, sample_rate: int = 44100, channels: int = 2, stems: int = 4) -> float:
    """float32 bytes of mixture + references + estimates, in GB (2^30)."""
    return (1 + 2 * stems) * channels * seconds * sample_rate * 4 / 2**30


def measure(song_root: Path, minutes: float, providers: list[str], work: Path, metrics: str | None,
            dataset_args: list[str]) -> dict[str, float]:
    out = work / f"out-{minutes:g}-{'+'.join(providers).replace(':', '_')}"
    shutil.rmtree(out, ignore_errors=True)
    args = ["run", *dataset_args, *[a for p in providers for a in ("--provider", p)], "-o", str(out), "-q"]
    if metrics:
        args += ["--metrics", metrics]
    wall, peak, rc, err = run_cli(args)
    if rc != 0:
        raise SystemExit(f"stemlab run failed on {song_root} with {providers} (exit {rc}):\n{err}")
    fp = footprint_gb(minutes * 60)
    return {"minutes": minutes, "peak_rss_gb": peak, "footprint_gb": fp, "ratio": peak / fp,
            "s_per_audio_min": wall / minutes, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[2.0, 4.0, 10.0], help="synthetic song lengths")
    ap.add_argument("--provider", action="append", help="provider (repeatable; default baseline:mixture, oracle:irm)")
    ap.add_argument("--metrics", help="comma-separated metrics (default: the run default)")
    ap.add_argument("--separately", action="store_true", help="skip the run of all providers in one process")
    ap.add_argument("--root", help="a real dataset root instead of synthetic songs")
    ap.add_argument("--dataset", default="musdb18hq", help="dataset name with --root")
    ap.add_argument("--split", help="dataset split with --root")
    ap.add_argument("--tracks", default="*", help="glob of track names with --root")
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)
    providers = args.provider or list(DEFAULT_PROVIDERS)
    work = Path(args.work or tempfile.mkdtemp(prefix="stemlab-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[float, Path, list[str]]] = []
    if args.root:
        import stemlab.datasets as D

        kw = {"split": args.split} if args.split else {}
        ds = D.load(args.dataset, args.root, **kw).filter(pattern=args.tracks)
        for t in ds:
            extra = ["--split", args.split] if args.split else []
            cases.append((t.seconds / 60, Path(args.root),
                          ["--dataset", args.dataset, "--root", args.root, "--tracks", t.name, *extra]))
    else:
        for m in args.minutes:
            root = work / f"songs-{m:g}min"
            if not (root / f"song-{m:g}min" / "mixture.wav").is_file():
                t0 = time.perf_counter()
                write_song(root, m)
                print(f"# wrote a {m:g}-min song in {time.perf_counter() - t0:.1f} s", flush=True)
            cases.append((m, root, ["--dataset", "folder", "--root", str(root)]))
    per_min: dict[str, float] = {}
    longest: dict[str, float] = {}
    runs = [[p] for p in providers] + ([providers] if len(providers) > 1 and not args.separately else [])
    for minutes, root, ds_args in cases:
        for provs in runs:
            r = measure(root, minutes, provs, work, args.metrics, ds_args)
            label = "+".join(provs)
            print(f"minutes={minutes:g} provider={label} peak_rss_gb={r['peak_rss_gb']:.3f} "
                  f"footprint_gb={r['footprint_gb']:.3f} rss/footprint={r['ratio']:.2f} "
                  f"s_per_audio_min={r['s_per_audio_min']:.2f} wall_s={r['wall_s']:.1f}", flush=True)
            if len(provs) == 1 and minutes >= longest.get(label, 0.0):
                longest[label] = minutes
                per_min[label] = r["s_per_audio_min"]
    total = sum(per_min.values())
    print(f"projected MUSDB18 test set ({MUSDB_TEST_MINUTES / 60:.1f} h of audio) through "
          f"{' + '.join(providers)}: {total * MUSDB_TEST_MINUTES / 60:.1f} min on this machine "
          f"({total:.2f} s per audio minute, from the {max(longest.values()):g}-min runs)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
