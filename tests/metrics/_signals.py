"""Test signals shared by the BSSEval tests (importable without museval):
structured sources and a deterministic "separation" of them."""

from __future__ import annotations

import numpy as np


def structured(rng: np.random.RandomState, nsrc: int, C: int, T: int, sr: int = 8000) -> np.ndarray:
    """Tones, chirps, filtered noise and bursts; each source's channels are
    scaled copies of one signal (stereo panning)."""
    t = np.arange(T) / sr
    out = np.zeros((nsrc, C, T))
    for j in range(nsrc):
        kind = j % 4
        if kind == 0:
            x = np.sin(2 * np.pi * (110 * (j + 1)) * t) + 0.3 * np.sin(2 * np.pi * (330 * (j + 1)) * t)
        elif kind == 1:
            x = np.sin(2 * np.pi * (200 + 600 * t / t[-1]) * t)
        elif kind == 2:
            x = np.convolve(rng.randn(T), np.hanning(31), mode="same")
        else:
            x = rng.randn(T) * (np.sin(2 * np.pi * 3 * t) > 0.3)
        x = x + 1e-3 * rng.randn(T)  # full-rank Gram matrix, like real recordings
        for c in range(C):
            out[j, c] = x * (0.5 + 0.5 * c / max(C - 1, 1)) * (1.0 if c % 2 == 0 else 0.8)
    return out


def estimate(rng: np.random.RandomState, refs: np.ndarray, leak: float = 0.2, noise: float = 0.1) -> np.ndarray:
    """Each estimate = its source + leakage of the others + noise + a small delay."""
    n = refs.shape[0]
    mix = refs.sum(axis=0)
    est = np.empty_like(refs)
    for j in range(n):
        est[j] = 0.8 * np.roll(refs[j], 3, axis=-1) + leak * (mix - refs[j]) / max(n - 1, 1)
    return est + noise * refs.std() * rng.randn(*refs.shape)
