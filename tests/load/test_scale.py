"""Real scale, small: the real CLI path on a 1-minute and a 4-minute
MUSDB-like song (stereo 44.1 kHz, 4 stems, music-like spectra), each run in a
fresh process whose peak RSS (VmHWM) is read at exit.

Asserted as ratios, never absolutes: the harness + metrics path
(``baseline:mixture``, whose stems are the mixture's own buffer) does not grow
with the track's length, and an oracle — which must hold the mixture, the
references and its estimates — grows by less than 1.5× the audio it holds.
(Before streaming: 3.9 GB at 2 min, 7.6 GB at 4 min, ×2 per ×2 of length.)
The full figures (2, 4, 10 minutes) come from ``benchmarks/scale.py``."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from stemlab.testing import run_cli_measured

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux) for VmHWM")

MINUTES = (1.0, 4.0)


def _footprint_gib(minutes: float) -> float:
    """float32 mixture + 4 references + 4 estimates, stereo 44.1 kHz (GiB)."""
    return 9 * 2 * minutes * 60 * 44100 * 4 / 2**30


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[float, Path]:
    base = tmp_path_factory.mktemp("scale")
    out = {}
    for m in MINUTES:
        root = base / f"songs-{m:g}"
        code = ("import sys; from stemlab.testing import musdb_like_track; "
                "musdb_like_track(sys.argv[1], float(sys.argv[2]))")
        subprocess.run([sys.executable, "-c", code, str(root), str(m)], check=True, timeout=300)
        out[m] = root
    return out


def _peak(root: Path, provider: str, out: Path) -> float:
    r = run_cli_measured(["run", "--dataset", "folder", "--root", str(root), "--provider", provider, "-o", str(out),
                          "-q", "--strict"], timeout=600)
    assert r.returncode == 0, r.stderr
    assert math.isfinite(r.peak_rss_gib)
    return r.peak_rss_gib


def test_harness_and_metrics_memory_is_flat_in_track_length(songs, tmp_path):
    p1, p4 = (_peak(songs[m], "baseline:mixture", tmp_path / f"b{m:g}") for m in MINUTES)
    # 4× the audio, default metrics (full BSSEval v4, uSDR, SI-SDR): the same peak
    assert p4 / p1 <= 1.2, (p1, p4)


def test_an_oracle_grows_only_by_the_audio_it_holds(songs, tmp_path):
    p1, p4 = (_peak(songs[m], "oracle:irm", tmp_path / f"o{m:g}") for m in MINUTES)
    grown = (p4 - p1) / (_footprint_gib(4.0) - _footprint_gib(1.0))
    assert grown <= 1.5, (p1, p4, grown)
