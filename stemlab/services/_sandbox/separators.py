"""What a sandbox runs to separate: pluggable ``separator(audio, sr) -> {stem: array}``.

``audio`` is float32 ``(channels, samples)`` at ``sr`` Hz as the service
decoded it; the result maps stem names to arrays of the same shape. The
emulator derives the stems its API promises from whatever comes back
(``accompaniment``/``instrumental`` = sum of the non-vocal stems; a stem the
separator cannot produce, e.g. ``piano`` without a piano reference, is
silent).

The default, :class:`DegradedOracle`, gives scores that mean something:
tests and demos register reference stems with
:meth:`ReferenceLibrary.register`; an upload is matched to the registered
mixture with the highest normalised cross-correlation (±0.25 s alignment
search at 8 kHz), and the stems are an STFT ratio mask computed from the
references, degraded by ``quality`` (1 = the ideal ratio mask; lower leaks
more of the mixture into every stem), so two emulated services configured
with different qualities score differently. Unmatched audio falls back to
:func:`dsp_split` (centre-channel vocals, median-filter percussive drums,
low-pass bass, the rest as other).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from ...audio import resample, to_channels

__all__ = ["Separator", "ReferenceLibrary", "DegradedOracle", "dsp_split", "derive_stems"]

_MATCH_SR = 8000
_NFFT = 2048
_HOP = 512


class Separator(Protocol):
    def __call__(self, audio: np.ndarray, sr: int) -> Mapping[str, np.ndarray]: ...


@dataclass
class _Entry:
    name: str
    sr: int
    probe: np.ndarray  # mono 8 kHz over the first seconds
    load: Callable[[], dict[str, np.ndarray]]  # reference stems (ch, n) at sr, loaded when matched

    @property
    def stems(self) -> dict[str, np.ndarray]:
        return self.load()


def _mono8k(audio: np.ndarray, sr: int, seconds: float = 12.0) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=0)
    a = a[: int(seconds * sr)]
    return resample(a[None], sr, _MATCH_SR)[0] if sr != _MATCH_SR else a


class ReferenceLibrary:
    """Registered (mixture, reference stems) pairs to match uploads against."""

    def __init__(self, max_lag: float = 0.25, threshold: float = 0.8) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self.max_lag = max_lag  # seconds searched either side
        self.threshold = threshold  # normalised correlation needed for a match

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, mixture: np.ndarray | None, stems: Mapping[str, np.ndarray], sample_rate: int,
                 name: str = "") -> None:
        """Add a song held in memory. ``mixture`` None → the sum of ``stems``."""
        st = {k: np.asarray(v, dtype=np.float32) for k, v in stems.items()}
        st = {k: (v[None] if v.ndim == 1 else v) for k, v in st.items()}
        mix = np.asarray(mixture, dtype=np.float32) if mixture is not None else cast(np.ndarray, sum(st.values()))
        if mix.ndim == 1:
            mix = mix[None]
        self.register_lazy(mix, sample_rate, lambda: st, name)

    def register_lazy(self, mixture: np.ndarray, sample_rate: int,
                      load_stems: Callable[[], Mapping[str, np.ndarray]], name: str = "") -> None:
        """Add a song whose stems are loaded only when an upload matches it
        (only a short 8-kHz probe of ``mixture`` is kept)."""
        def load() -> dict[str, np.ndarray]:
            out = {}
            for k, v in load_stems().items():
                a = np.asarray(v, dtype=np.float32)
                out[k] = a[None] if a.ndim == 1 else a
            return out

        entry = _Entry(name or f"song{len(self._entries)}", int(sample_rate), _mono8k(mixture, sample_rate), load)
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def match(self, audio: np.ndarray, sr: int) -> tuple[_Entry, int, float] | None:
        """(entry, lag in samples at ``sr``, score) of the best match above the
        threshold. A positive lag means the query starts later than the
        reference (the query holds ``lag`` extra samples at its start)."""
        q = _mono8k(audio, sr)
        if q.size == 0 or not np.any(q):
            return None
        best: tuple[_Entry, int, float] | None = None
        L = int(self.max_lag * _MATCH_SR)
        with self._lock:
            entries = list(self._entries)
        for e in entries:
            r = e.probe
            n = min(q.size, r.size)
            if n < _MATCH_SR // 4:
                continue
            size = 1 << int(np.ceil(np.log2(q.size + r.size)))
            xc = np.fft.irfft(np.fft.rfft(q, size) * np.conj(np.fft.rfft(r, size)), size)
            lags = np.r_[np.arange(0, L + 1), np.arange(-L, 0)]
            vals = xc[lags % size]
            i = int(np.argmax(vals))
            lag = int(lags[i])
            # normalise by the energies of the overlapping parts
            if lag >= 0:
                qa, ra = q[lag:], r[: q.size - lag]
            else:
                qa, ra = q[: r.size + lag], r[-lag:]
            m = min(qa.size, ra.size)
            denom = float(np.linalg.norm(qa[:m]) * np.linalg.norm(ra[:m])) + 1e-12
            score = float(vals[i]) / denom
            if score >= self.threshold and (best is None or score > best[2]):
                best = (e, int(round(lag * sr / _MATCH_SR)), score)
        return best


def _stft(x: np.ndarray) -> np.ndarray:
    from scipy.signal import stft

    return stft(x, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary="even", padded=True)[2]


def _istft(X: np.ndarray, n: int) -> np.ndarray:
    from scipy.signal import istft

    y = istft(X, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary=True)[1]
    y = np.asarray(y, dtype=np.float32)
    if y.shape[-1] < n:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])
    return y[..., :n]


def _fit(ref: np.ndarray, sr_ref: int, sr: int, channels: int, n: int, lag: int) -> np.ndarray:
    r = resample(ref, sr_ref, sr) if sr_ref != sr else ref
    r = to_channels(r, channels) if r.shape[0] != channels else r
    if lag > 0:
        r = np.pad(r, ((0, 0), (lag, 0)))
    elif lag < 0:
        r = r[:, -lag:]
    if r.shape[1] < n:
        r = np.pad(r, ((0, 0), (0, n - r.shape[1])))
    return r[:, :n]


class DegradedOracle:
    """Ratio-mask oracle from registered references, degraded by ``quality``.

    mask_j = quality · |S_j|² / Σ|S_k|² + (1 − quality) / J — at quality 1 the
    ideal (Wiener-like) ratio mask, below it every stem leaks the mixture.
    Unmatched input goes to ``fallback`` (default :func:`dsp_split`)."""

    def __init__(self, library: ReferenceLibrary, quality: float = 0.85,
                 fallback: Callable[[np.ndarray, int], Mapping[str, np.ndarray]] | None = None) -> None:
        if not 0.0 <= quality <= 1.0:
            raise ValueError(f"DegradedOracle: quality must be in [0, 1], got {quality}")
        self.library = library
        self.quality = float(quality)
        self.fallback = fallback or dsp_split
        self.last_match: tuple[str, int, float] | None = None

    def __call__(self, audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        a = np.asarray(audio, dtype=np.float32)
        m = self.library.match(a, sr)
        if m is None:
            self.last_match = None
            return dict(self.fallback(a, sr))
        entry, lag, score = m
        self.last_match = (entry.name, lag, score)
        ch, n = a.shape
        refs = {k: _fit(v, entry.sr, sr, ch, n, lag) for k, v in entry.stems.items()}
        X = _stft(a)
        P = {k: np.abs(_stft(v)) ** 2 for k, v in refs.items()}
        total = sum(P.values()) + 1e-10
        J = len(P)
        q = self.quality
        return {k: _istft(X * (q * p / total + (1.0 - q) / J), n) for k, p in P.items()}


def dsp_split(audio: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """A crude but real 4-stem split without references: vocals from the
    centre (where left ≈ right) above 150 Hz and not percussive; drums from
    a median-filter percussive mask; bass below 150 Hz; other = the rest.
    The four masks sum to one, so the stems sum to the mixture."""
    from scipy.ndimage import median_filter

    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    n = a.shape[1]
    X = _stft(a)  # (ch, F, T)
    mag = np.abs(X).mean(axis=0)
    freqs = np.linspace(0, sr / 2, X.shape[1])
    if a.shape[0] >= 2:
        L, R = np.abs(X[0]), np.abs(X[1])
        centre = np.clip(1.0 - np.abs(L - R) / (L + R + 1e-10), 0.0, 1.0) ** 2
    else:
        centre = np.full(mag.shape, 0.5, dtype=np.float32)
    H = median_filter(mag, size=(1, 17))
    Pm = median_filter(mag, size=(17, 1))
    perc = Pm**2 / (H**2 + Pm**2 + 1e-10)
    low = (freqs < 150.0)[:, None].astype(np.float32)
    vocals = centre * (1.0 - perc) * (1.0 - low)
    rest = 1.0 - vocals
    bass = rest * low
    drums = rest * (1.0 - low) * perc
    other = 1.0 - vocals - bass - drums
    return {name: _istft(X * mask, n) for name, mask in
            (("vocals", vocals), ("drums", drums), ("bass", bass), ("other", other))}


_ACCOMP = ("accompaniment", "instrumental")


def derive_stems(result: Mapping[str, np.ndarray], wanted: Sequence[str], like: np.ndarray) -> dict[str, np.ndarray]:
    """The stems an API promises from what a separator returned: exact names
    first; ``accompaniment``/``instrumental`` = sum of the non-vocal stems;
    a returned stem that is not wanted is folded into ``other`` (or the
    accompaniment); anything else is silent."""
    out: dict[str, np.ndarray] = {}
    res = {k.lower(): np.asarray(v, dtype=np.float32) for k, v in result.items()}
    zeros = np.zeros_like(like, dtype=np.float32)
    for w in wanted:
        wl = w.lower()
        if wl in res:
            out[w] = res[wl]
        elif wl in _ACCOMP:
            rest = [v for k, v in res.items() if k != "vocals"]
            out[w] = np.sum(rest, axis=0).astype(np.float32) if rest else zeros.copy()
        else:
            out[w] = zeros.copy()
    leftovers = [k for k in res if k not in {x.lower() for x in wanted}]
    sink = next((w for w in wanted if w.lower() == "other"), None)
    if leftovers and sink is not None:
        for k in leftovers:
            if k not in ("vocals",) + _ACCOMP:
                out[sink] = out[sink] + res[k]
    return out
