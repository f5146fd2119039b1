"""In-test providers and a simple scorer, shared by runner and report tests.

They exercise the harness's bookkeeping without model weights; the real
providers and metrics have their own tests."""

from __future__ import annotations

import threading

import numpy as np

import stemlab.providers as P
from stemlab import Separation, Stems
from stemlab.errors import ProviderUnavailable
from stemlab.providers.base import Param, Provider, Status, as_track

CALLS: dict[str, int] = {}
_lock = threading.Lock()


def count(key: str) -> None:
    with _lock:
        CALLS[key] = CALLS.get(key, 0) + 1


class Scaled(Provider):
    """Returns references × gain (needs references): a controllable quality."""

    family = "t_scaled"
    needs_references = True
    params_schema = (Param("gain", float, 0.5, min=0.0, max=2.0),)

    @property
    def stems(self):
        return ("drums", "bass", "other", "vocals")

    def separate(self, track, sample_rate=None):
        t = as_track(track, sample_rate)
        count(self.id)
        refs = t.references
        g = self.config["gain"]
        rng = np.random.RandomState(len(t.name))
        # a little track-dependent noise (−60 dB re the stem) so statistics are not degenerate
        out = {}
        for n in self.stems:
            r = refs[n]
            rms = float(np.sqrt(np.mean(r.astype(np.float64) ** 2)))
            out[n] = r * g + (rng.randn(*r.shape) * rms * 1e-3).astype(np.float32)
        return Separation(Stems(out, t.sample_rate), self.id, params=self.config, timings={"separate": 0.01})


class Broken(Provider):
    family = "t_broken"

    @property
    def stems(self):
        return ("vocals",)

    def separate(self, track, sample_rate=None):
        raise ProviderUnavailable("weights missing: expected /nowhere/model.th", provider=self.id)


class Offline(Provider):
    family = "t_offline"

    @property
    def stems(self):
        return ("vocals",)

    def status(self):
        return Status(False, "key missing")

    def separate(self, track, sample_rate=None):
        raise ProviderUnavailable("no key ($X_API_KEY)", provider=self.id)


class Halves(Provider):
    """Mixture/2 as vocals and accompaniment (works without references)."""

    family = "t_halves"

    @property
    def stems(self):
        return ("vocals", "accompaniment")

    def separate(self, track, sample_rate=None):
        t = as_track(track, sample_rate)
        count(self.id)
        return Separation(Stems({"vocals": t.mixture * 0.5, "accompaniment": t.mixture * 0.5}, t.sample_rate), self.id)


def register_all() -> None:
    for cls in (Scaled, Broken, Offline, Halves):
        P.register(cls)


def fake_score(stems, track, spec, kind):
    """uSDR per target and a framewise SNR per 1-s frame; counts calls."""
    count("score")
    rows, frames = [], []
    sr = stems.sample_rate
    for n in stems.names:
        if n not in track.references:
            continue
        s = track.references[n].astype(np.float64)
        e = np.asarray(stems[n][:, :], dtype=np.float64)  # an array or a lazy source
        v = 10 * np.log10((np.sum(s**2) + 1e-8) / (np.sum((s - e) ** 2) + 1e-8))
        rows.append({"target": n, "metric": "usdr", "value": float(v), "aggregation": "track", "unit": "dB"})
        for i in range(s.shape[1] // sr):
            seg = slice(i * sr, (i + 1) * sr)
            fv = 10 * np.log10((np.sum(s[:, seg] ** 2) + 1e-8) / (np.sum((s[:, seg] - e[:, seg]) ** 2) + 1e-8))
            frames.append({"target": n, "metric": "SNR", "frame": i, "time": float(i), "value": float(fv)})
    return {"rows": rows, "frames": frames, "museval": None, "corrections": {}}
