"""Helpers for users' CI and for stemlab's own tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = ["synthetic_folder_dataset", "musdb_like_track", "run_cli_measured", "CliRun", "traced_peak"]


def synthetic_folder_dataset(root: str | Path, n: int, seconds: float = 1.0, sample_rate: int = 44100,
                             seed: int = 0) -> Path:
    """Write ``n`` short, distinct synthetic songs (stereo, 4 stems as float
    WAV) in the stem-folder layout that ``stemlab.datasets.load("folder",
    root=…)`` reads; returns ``root``. Deterministic for a given seed."""
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    for i in range(n):
        d = root / f"song-{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        f0 = 110.0 * 2 ** (int(rng.integers(0, 24)) / 12)
        stems = {
            "vocals": 0.2 * np.sin(2 * np.pi * 2 * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)),
            "bass": 0.3 * np.sin(2 * np.pi * f0 / 2 * t),
            "drums": 0.2 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9),
            "other": 0.1 * np.sin(2 * np.pi * 1.5 * f0 * t + i),
        }
        for k, v in stems.items():
            sf.write(d / f"{k}.wav", np.stack([v, 0.9 * v]).T.astype(np.float32), sample_rate, subtype="FLOAT")
    return root


def musdb_like_track(root: str | Path, minutes: float, *, name: str | None = None, seed: int = 0) -> Path:
    """Write one full-length, MUSDB18-HQ-like song (stereo 44.1 kHz 16-bit
    WAV: ``mixture`` + drums, bass, other, vocals, the mixture their exact
    sum) with the demo set's synthesiser — music-like spectra (drum kit,
    harmonic bass, chords, formant vocals, dither), not sines. Returns the
    song's folder ``root/name``. Deterministic for a given seed."""
    import soundfile as sf

    from .datasets.demo import SR, SongSpec, synthesize

    name = name or f"song-{minutes:g}min"
    rng = np.random.default_rng(seed)
    spec = SongSpec(name, float(minutes) * 60.0, float(rng.integers(76, 132)), int(rng.integers(36, 46)),
                    tuple(int(x) for x in rng.choice([0, 5, 7, 9], size=4)))
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    for k, v in synthesize(spec, seed).items():
        sf.write(str(d / f"{k}.wav"), v.T, SR, subtype="PCM_16")
    return d


#: runs the CLI and, at exit, writes the process's peak RSS (VmHWM, KiB) to
#: $STEMLAB_HWM_FILE. VmHWM belongs to the process's own address space: unlike
#: a child's ``ru_maxrss`` it does not inherit the parent's size at fork.
_CHILD = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f:
        kib = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    with open(os.environ["STEMLAB_HWM_FILE"], "w") as out:
        out.write(str(kib))
atexit.register(_hwm)
from stemlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


class CliRun(NamedTuple):
    wall_s: float
    peak_rss_gib: float  # NaN where /proc is unavailable
    returncode: int
    stderr: str


def run_cli_measured(args: Sequence[str], env: Mapping[str, str] | None = None,
                     timeout: float | None = None) -> CliRun:
    """Run ``stemlab ARGS`` in a fresh Python process and measure its wall
    time (s) and peak resident memory (GiB, the process's VmHWM: Python,
    numpy and torch included)."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        full_env = {**os.environ, **(env or {}), "STEMLAB_HWM_FILE": str(hwm)}
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _CHILD, *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=full_env, text=True, timeout=timeout)
        wall = time.perf_counter() - t0
        peak = int(hwm.read_text()) / 2**20 if hwm.is_file() else float("nan")
    return CliRun(wall, peak, p.returncode, p.stderr[-4000:])


def traced_peak(fn: Callable[[], T]) -> tuple[T, int]:
    """``(fn(), peak bytes of Python/numpy allocations during the call above
    what was traced before it)`` (tracemalloc). Run ``fn`` once untraced
    first when imports and caches of a first call must not count."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak
