"""Listening material for the report: the *same* excerpt of the mixture,
each target's reference and every provider's estimate, as short MP3 clips
with a spectrogram image each (one dB scale per track: the mixture's peak is
0 dB, so images compare at a glance).

Spectrograms are drawn here (numpy + a 40-line PNG writer): no plotting
library, no image dependency."""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Clip", "Listening", "excerpt_start", "spectrogram_png", "png_bytes", "listening"]

#: magma-like colour anchors (dark → bright), interpolated to 256 entries
_ANCHORS = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                     (251, 135, 97), (254, 194, 135), (252, 253, 191)], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)
DB_RANGE = 80.0  #: dB below the mixture's peak mapped to black


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an ``(height, width, 3)`` uint8 array."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _power_db(x: np.ndarray, sr: int, nfft: int = 2048, hop: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(dB power (freq, frames), freqs) of the channel mean of ``x``."""
    m = np.asarray(x, dtype=np.float64)
    m = m.mean(axis=0) if m.ndim == 2 else m
    if m.size < nfft:
        m = np.pad(m, (0, nfft - m.size))
    n = 1 + (m.size - nfft) // hop
    idx = np.arange(nfft)[None, :] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(m[idx] * np.hanning(nfft)[None, :], axis=1)).T ** 2
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(spec + 1e-20)
    return db, np.fft.rfftfreq(nfft, 1 / sr)


def spectrogram_png(x: np.ndarray, sr: int, ref_db: float, *, width: int = 320, height: int = 110,
                    fmin: float = 40.0, fmax: float = 16000.0) -> bytes:
    """A log-frequency spectrogram of ``x`` as PNG bytes: ``ref_db`` (the
    mixture's peak) is the top of the colour scale, :data:`DB_RANGE` below
    it is black."""
    db, freqs = _power_db(x, sr)
    fmax = min(fmax, sr / 2)
    edges = np.geomspace(fmin, fmax, height + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (freqs >= lo) & (freqs < hi)
        if not sel.any():
            sel = np.zeros_like(freqs, dtype=bool)
            sel[int(np.argmin(np.abs(freqs - (lo + hi) / 2)))] = True
        rows.append(db[sel].max(axis=0))
    img = np.array(rows[::-1])  # high frequencies on top
    cols = np.linspace(0, img.shape[1], width + 1).astype(int)
    img = np.stack([img[:, a:max(b, a + 1)].max(axis=1) for a, b in zip(cols[:-1], cols[1:])], axis=1)
    level = np.clip((img - (ref_db - DB_RANGE)) / DB_RANGE, 0.0, 1.0)
    return png_bytes(_LUT[(level * 255).astype(np.uint8)])


def excerpt_start(mixture: np.ndarray, sr: int, seconds: float) -> int:
    """The start sample of the loudest ``seconds`` of ``mixture`` (1-s steps)."""
    n = int(seconds * sr)
    total = mixture.shape[-1]
    if total <= n:
        return 0
    e = np.square(np.asarray(mixture, dtype=np.float64)).mean(axis=0)
    c = np.concatenate([[0.0], np.cumsum(e)])
    starts = np.arange(0, total - n + 1, sr)
    return int(starts[int(np.argmax(c[starts + n] - c[starts]))])


@dataclass
class Clip:
    """One player: ``label``, ``kind`` (mixture | reference | estimate |
    bound), MP3 and PNG as data URIs, or ``note`` instead (silent output,
    missing stem)."""

    label: str
    kind: str
    audio: str = ""
    image: str = ""
    note: str = ""


@dataclass
class Listening:
    track: str
    start_s: float
    seconds: float
    mixture: Clip | None
    #: target → clips (the reference first, then one per provider)
    targets: dict[str, list[Clip]] = field(default_factory=dict)
    note: str = ""


def _clip(label: str, kind: str, x: np.ndarray, sr: int, ref_db: float, bitrate: int) -> Clip:
    from .. import audio

    if not np.any(x):
        return Clip(label, kind, note="silent output (all samples zero): nothing to play or draw")
    data = audio.encode_bytes(np.clip(x, -1, 1).astype(np.float32), sr, "mp3", bitrate=bitrate)
    img = spectrogram_png(x, sr, ref_db)
    return Clip(label, kind, audio="data:audio/mpeg;base64," + base64.b64encode(data).decode(),
                image="data:image/png;base64," + base64.b64encode(img).decode())


@dataclass(frozen=True)
class _Excerpt:
    """The window every clip of a track shares, and how its clips are encoded."""

    sr: int
    sl: slice
    n: int  #: samples in the window
    ref_db: float  #: the mixture's peak power (0 dB of every spectrogram)
    bitrate: int

    def clip(self, label: str, kind: str, x: np.ndarray) -> Clip:
        """A clip of ``x``, already cut to the window."""
        return _clip(label, kind, x, self.sr, self.ref_db, self.bitrate)


def _pick_track(jobs: Any) -> tuple[str, Any] | None:
    """``(track, finished jobs)``: the first track (by name) among those most providers finished; None if none."""
    if jobs.empty or "job_key" not in jobs:
        return None
    done = jobs[jobs["status"] == "done"]
    if done.empty:
        return None
    counts = done.groupby("track")["provider"].nunique()
    return str(sorted(counts[counts == counts.max()].index)[0]), done


def _providers_in_order(done: Any, track: str, bounds: dict[str, str], max_providers: int) -> list[str]:
    """The providers that finished ``track``: estimates first, then upper bounds, then floors; at most
    ``max_providers``."""
    provs = list(dict.fromkeys(done[done["track"] == track]["provider"].astype(str)))
    return ([p for p in provs if p not in bounds] + [p for p in provs if bounds.get(p) == "upper"]
            + [p for p in provs if bounds.get(p) == "lower"])[:max_providers]


def _open_stems(res: Any, provs: list[str], track: str) -> dict[str, Any]:
    """provider → its stems of ``track``, for those whose stems can be opened."""
    stems = {}
    for p in provs:
        try:
            s = res.stems(p, track)
        except Exception:
            s = None
        if s is not None:
            stems[p] = s
    return stems


def _estimate_window(s: Any, tgt: str, ex: _Excerpt) -> np.ndarray:
    """A provider's estimate of ``tgt`` at the mixture's rate, cut to the window (zero-padded if short)."""
    from .. import audio

    x = s[tgt]
    if s.sample_rate != ex.sr:
        x = audio.resample(x, s.sample_rate, ex.sr)
    x = x[:, ex.sl]
    if x.shape[-1] < ex.n:
        x = np.pad(x, ((0, 0), (0, ex.n - x.shape[-1])))
    return x


def _estimate_label(p: str, bounds: dict[str, str]) -> tuple[str, str]:
    """``(label, kind)`` of a provider's clip: bounds are named as such."""
    if p not in bounds:
        return p, "estimate"
    return f"{p} ({'upper bound' if bounds.get(p) == 'upper' else 'floor'})", "bound"


def _target_clips(tgt: str, refs: Any, stems: dict[str, Any], bounds: dict[str, str], ex: _Excerpt) -> list[Clip]:
    """The reference of ``tgt`` (when there is one), then every provider's estimate of it."""
    clips = []
    if refs is not None and tgt in refs:
        clips.append(ex.clip(f"reference {tgt}", "reference", refs[tgt][:, ex.sl]))
    for p, s in stems.items():
        if tgt not in s:
            continue
        label, kind = _estimate_label(p, bounds)
        clips.append(ex.clip(label, kind, _estimate_window(s, tgt, ex)))
    return clips


def _close_all(stems: dict[str, Any]) -> None:
    """Close the stems that can be closed."""
    for s in stems.values():
        close = getattr(s, "close", None)
        if close is not None:
            close()


def listening(res: Any, targets: list[str], *, seconds: float = 5.0, bitrate: int = 96_000,
              bounds: dict[str, str] | None = None, max_providers: int = 16) -> Listening | None:
    """Clips of the first track every finished provider separated: the
    loudest ``seconds`` of its mixture, each target's reference and every
    provider's estimate of it — the same samples for all. None when no job
    finished."""
    bounds = bounds or {}
    picked = _pick_track(res.jobs)
    if picked is None:
        return None
    track, done = picked
    try:
        t = res.track(track)
        mix, refs, sr = t.mixture, t.references, t.sample_rate
    except Exception as e:  # the dataset is not where the run found it
        return Listening(track, 0.0, seconds, None, note=f"the mixture and references of {track!r} could not be "
                                                          f"opened ({type(e).__name__}: {e}); estimates only")
    start = excerpt_start(mix, sr, seconds)
    n = int(seconds * sr)
    sl = slice(start, start + n)
    with np.errstate(divide="ignore"):
        ref_db = float(_power_db(mix[:, sl], sr)[0].max())
    ex = _Excerpt(sr, sl, n, ref_db, bitrate)
    out = Listening(track, start / sr, seconds, ex.clip("mixture", "mixture", mix[:, sl]))
    stems = _open_stems(res, _providers_in_order(done, track, bounds, max_providers), track)
    for tgt in targets:
        clips = _target_clips(tgt, refs, stems, bounds, ex)
        if clips:
            out.targets[tgt] = clips
    _close_all(stems)
    return out
