"""Memory and wall time of audio I/O and the local (non-neural) providers on
one long track.

The track is the demo synthesizer's song ``SongSpec("x", seconds, 112, 40,
(0, 7, 9, 5))`` (seed 0, int16 stems, stereo 44.1 kHz), written once under
``--workdir`` as 16-bit WAV (mixture + 4 stems), FLAC and MP3 of the mixture
and a 5-stream ``.stem.mp4`` (MUSDB layout).

Every operation runs in a fresh interpreter, twice: once for wall time and
peak RSS (the kernel's high-water mark, reset after the inputs are loaded),
once under ``tracemalloc`` (peak of traced Python/numpy allocations during the
operation). Inputs (decoded stems for the providers, the float32 mixture for
encoding) are prepared before the measurement starts; ``extra`` columns are
the peak minus the memory held before the operation, ``out`` the size of what
the operation returns.

Usage::

    PYTHONPATH=<checkout> python benchmarks/sep_memory.py [--seconds 240] [--ops decode-wav,oracle-irm]

``PYTHONPATH`` picks the stemlab under test (run it once on the old checkout
and once on the new one to compare).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OPS = (
    "decode-wav", "decode-flac", "decode-mp3", "decode-stem-mp4", "folder-sum-mixture",
    "encode-wav", "encode-flac",
    "oracle-irm", "oracle-ibm", "oracle-mwf", "baseline-hpss", "baseline-centre", "baseline-mixture",
)
SR = 44100


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def make_files(workdir: Path, seconds: float) -> Path:
    d = workdir / f"track-{seconds:g}s"
    done = d / ".done"
    if done.exists():
        return d
    import soundfile as sf

    from stemlab import audio
    from stemlab.datasets.demo import SongSpec, synthesize

    d.mkdir(parents=True, exist_ok=True)
    song = synthesize(SongSpec("x", float(seconds), 112.0, 40, (0, 7, 9, 5)), 0)
    for name, a in song.items():
        sf.write(str(d / f"{name}.wav"), a.T, SR, subtype="PCM_16")
    mix = song["mixture"].astype(np.float32) / 32768.0
    sf.write(str(d / "mixture.flac"), song["mixture"].T, SR, subtype="PCM_16")
    audio.encode(d / "mixture.mp3", mix, SR, bitrate=192_000)
    order = ("mixture", "drums", "bass", "other", "vocals")
    audio.encode_multistream(d / "track.stem.mp4", [song[k].astype(np.float32) / 32768.0 for k in order], SR)
    (d / "nomix").mkdir(exist_ok=True)
    for k in ("drums", "bass", "other", "vocals"):
        os.link(d / f"{k}.wav", d / "nomix" / f"{k}.wav") if not (d / "nomix" / f"{k}.wav").exists() else None
    done.write_text("ok")
    return d


def _prepare(op: str, d: Path, tmp: Path):
    """(callable, inputs) for one operation; inputs are loaded here, before measuring."""
    from stemlab import audio
    from stemlab.types import Track

    if op == "decode-wav":
        return lambda: audio.decode(d / "mixture.wav")[0]
    if op == "decode-flac":
        return lambda: audio.decode(d / "mixture.flac")[0]
    if op == "decode-mp3":
        return lambda: audio.decode(d / "mixture.mp3")[0]
    if op == "decode-stem-mp4":
        return lambda: audio.decode_streams(d / "track.stem.mp4")[0]
    if op == "folder-sum-mixture":
        from stemlab.datasets.folder import stem_folder_track

        t = stem_folder_track(d / "nomix", dataset="bench", subset=None, stems=None)
        return lambda: t.mixture
    if op.startswith("encode-"):
        mix = audio.decode(d / "mixture.wav")[0]
        fmt = op.split("-")[1]
        subtype = "PCM_24" if fmt == "flac" else "PCM_16"
        return lambda: audio.encode(tmp / f"out.{fmt}", mix, SR, subtype=subtype)
    refs = {k: audio.decode(d / f"{k}.wav")[0] for k in ("vocals", "drums", "bass", "other")}
    mix = audio.decode(d / "mixture.wav")[0]
    track = Track.from_arrays("x", mix, SR, references=refs)
    _ = track.mixture, track.references
    family, variant = op.split("-")
    if family == "oracle":
        from stemlab.providers.local.oracle import OracleProvider

        prov = OracleProvider(variant)
    else:
        from stemlab.providers.local.baselines import BaselineProvider

        prov = BaselineProvider(variant)
    return lambda: prov.separate(track)


def _nbytes(x) -> int:
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    if hasattr(x, "stems"):
        return sum(a.nbytes for _, a in x.stems.items())
    return 0


def child(op: str, d: Path, trace: bool) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fn = _prepare(op, d, Path(tmp))
        gc.collect()
        out: dict = {"op": op}
        if trace:
            import tracemalloc

            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            res = fn()
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out.update(traced_peak_mib=(peak - base) / 2**20, out_mib=_nbytes(res) / 2**20)
        else:
            rss0 = _status_kib("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            t0 = time.perf_counter()
            res = fn()
            wall = time.perf_counter() - t0
            hwm = _status_kib("VmHWM")
            out.update(wall_s=wall, peak_rss_mib=hwm / 1024, rss_before_mib=rss0 / 1024,
                       extra_rss_mib=(hwm - rss0) / 1024, out_mib=_nbytes(res) / 2**20)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--workdir", default="/tmp/stemlab-sepmem")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--repeats", type=int, default=1, help="timing runs per op (min reported)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    d = make_files(Path(a.workdir), a.seconds)
    if a.child:
        print(json.dumps(child(a.child, d, a.trace)))
        return
    import stemlab

    print(f"stemlab from {Path(stemlab.__file__).parent}; track {a.seconds:g} s stereo {SR} Hz")
    print(f"{'op':20s} {'wall_s':>7s} {'peakRSS':>8s} {'extraRSS':>8s} {'traced':>8s} {'out':>7s}  (MiB)")
    for op in a.ops.split(","):
        runs = []
        for _ in range(max(1, a.repeats)):
            p = subprocess.run([sys.executable, __file__, "--seconds", str(a.seconds), "--workdir", a.workdir,
                                "--child", op], capture_output=True, text=True, check=True)
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        r = min(runs, key=lambda x: x["wall_s"])
        p = subprocess.run([sys.executable, __file__, "--seconds", str(a.seconds), "--workdir", a.workdir,
                            "--child", op, "--trace"], capture_output=True, text=True, check=True)
        t = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{op:20s} {r['wall_s']:7.2f} {r['peak_rss_mib']:8.0f} {r['extra_rss_mib']:8.0f} "
              f"{t['traced_peak_mib']:8.0f} {r['out_mib']:7.0f}", flush=True)


if __name__ == "__main__":
    main()
