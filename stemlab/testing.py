"""Helpers for users' CI and for stemlab's own tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["synthetic_folder_dataset", "musdb_like_track"]


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
