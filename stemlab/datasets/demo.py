"""The bundled demo dataset: deterministic synthetic multitrack songs.

Four short songs (16–24 s, stereo, 44.1 kHz) with the MUSDB targets:

* **drums** — synthesized kick (pitch-swept sine), snare (band-passed noise +
  190 Hz body) and hi-hats (high-passed noise) on a 16th-note grid;
* **bass** — a band-limited saw bass line on chord roots, with octave jumps;
* **other** — a detuned stereo chord pad plus a plucked 16th-note arpeggio;
* **vocals** — a voice-like harmonic source following a melody, with vibrato
  (5.5 Hz, ±30 cents), five vowel formants and a short stereo slap-back. The
  first bar has no vocals, as many real intros.

Everything is drawn from ``numpy.random.RandomState(seed)`` (a frozen,
version-stable stream) and written as 16-bit WAV in the MUSDB18-HQ layout
under the cache directory on first use; the mixture is the exact integer sum
of the 16-bit stems. The files are byte-identical across runs and machines
(``manifest.json`` holds their sha256; the card ``datasets/demo.yaml`` pins
the default generation).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._hashing import file_sha256
from .._paths import cache_dir
from ..errors import DatasetError
from ..types import Track
from .base import Dataset, ValidationReport
from .cards import DatasetCard, load_card
from .folder import stem_folder_track

__all__ = ["DemoDataset", "SongSpec", "DEFAULT_SONGS", "synthesize", "generate"]

DEMO_VERSION = 2
SR = 44100
TARGETS = ("drums", "bass", "other", "vocals")


@dataclass(frozen=True)
class SongSpec:
    name: str
    seconds: float
    bpm: float
    key: int  # MIDI note of the bass root
    progression: tuple[int, ...]  # scale degrees (semitones above key) per bar


DEFAULT_SONGS: tuple[SongSpec, ...] = (
    SongSpec("demo-01-pop", 20.0, 112.0, 40, (0, 7, 9, 5)),
    SongSpec("demo-02-ballad", 24.0, 76.0, 43, (0, 9, 5, 7)),
    SongSpec("demo-03-funk", 16.0, 104.0, 38, (0, 0, 5, 7)),
    SongSpec("demo-04-rock", 18.0, 128.0, 45, (0, 5, 7, 5)),
)

_VOWELS = {  # formant centre frequencies (Hz) and bandwidths of an adult voice
    "a": ((800, 1150, 2900, 3900, 4950), (80, 90, 120, 130, 140)),
    "e": ((400, 1600, 2700, 3300, 4950), (60, 80, 120, 150, 200)),
    "i": ((350, 1700, 2700, 3700, 4950), (50, 100, 120, 150, 200)),
    "o": ((450, 800, 2830, 3500, 4950), (70, 80, 100, 130, 135)),
    "u": ((325, 700, 2530, 3500, 4950), (50, 60, 170, 180, 200)),
}
_FORMANT_GAIN = (1.0, 0.5, 0.25, 0.12, 0.06)


def _midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _env(n: int, attack: float, release: float, sr: int = SR) -> np.ndarray:
    """Linear attack / release envelope over ``n`` samples (seconds)."""
    e = np.ones(n)
    a = min(n, max(1, int(attack * sr)))
    r = min(n - a, max(1, int(release * sr))) if n > a else 0
    e[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r > 0:
        e[n - r :] *= np.linspace(1.0, 0.0, r)
    return e


def _add(dst: np.ndarray, src: np.ndarray, start: int) -> None:
    if start >= dst.shape[-1]:
        return
    end = min(dst.shape[-1], start + src.shape[-1])
    dst[..., start:end] += src[..., : end - start]


def _filtered_noise(rng: np.random.RandomState, n: int, lo: float, hi: float) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz by FFT masking (deterministic)."""
    x = rng.standard_normal(n)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / SR)
    spec[(f < lo) | (f > hi)] = 0.0
    y = np.fft.irfft(spec, n)
    return y / (np.abs(y).max() + 1e-12)


def _drums(spec: SongSpec, n: int, rng: np.random.RandomState) -> np.ndarray:
    out = np.zeros((2, n))
    beat = 60.0 / spec.bpm
    six = beat / 4.0
    # one-shot templates
    kl = int(0.45 * SR)
    tk = np.arange(kl) / SR
    f_k = 45.0 + 75.0 * np.exp(-tk / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(f_k) / SR) * np.exp(-tk / 0.22)
    sl = int(0.3 * SR)
    ts = np.arange(sl) / SR
    hl = int(0.09 * SR)
    th = np.arange(hl) / SR
    steps = int(np.ceil(spec.seconds / six))
    for i in range(steps):
        pos = int(round(i * six * SR))
        step = i % 16
        vel = 0.85 + 0.15 * rng.random_sample()
        if step in (0, 8) or (step == 10 and rng.random_sample() < 0.5):
            _add(out, np.stack([kick, kick]) * vel, pos)
        if step in (4, 12):
            body = np.sin(2 * np.pi * 190.0 * ts) * np.exp(-ts / 0.07)
            noise = _filtered_noise(rng, sl, 1200.0, 6000.0) * np.exp(-ts / 0.11)
            sn = 0.55 * body + 0.6 * noise
            _add(out, np.stack([sn * 0.95, sn * 1.0]) * vel, pos)
        if step % 2 == 0 or rng.random_sample() < 0.25:
            hat = _filtered_noise(rng, hl, 7000.0, 16000.0) * np.exp(-th / 0.025) * 0.35 * vel
            _add(out, np.stack([hat * 0.7, hat * 1.0]), pos)
    return out


def _tone(f0: np.ndarray, harmonics: int, rolloff: float) -> np.ndarray:
    """Band-limited harmonic tone with partial k weighted 1/k·exp(−k/rolloff)."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = np.zeros_like(f0)
    for k in range(1, harmonics + 1):
        alive = (k * f0) < 0.45 * SR
        y += alive * np.sin(k * phase) * (np.exp(-k / rolloff) / k)
    return y


def _bass(spec: SongSpec, n: int, rng: np.random.RandomState) -> np.ndarray:
    out = np.zeros(n)
    beat = 60.0 / spec.bpm
    bar = 4 * beat
    eighth = beat / 2
    steps = int(np.ceil(spec.seconds / eighth))
    for i in range(steps):
        t0 = i * eighth
        chord = spec.progression[int(t0 // bar) % len(spec.progression)]
        note = spec.key + chord + (12 if (i % 8 == 3 and rng.random_sample() < 0.6) else 0)
        if i % 8 == 7 and rng.random_sample() < 0.5:
            note += 7
        length = int(eighth * SR * 0.92)
        f0 = np.full(length, float(_midi_hz(note)))
        tone = _tone(f0, 12, 3.0) * _env(length, 0.004, 0.03) * (0.9 + 0.1 * rng.random_sample())
        _add(out, tone, int(round(t0 * SR)))
    return np.stack([out, out])


def _other(spec: SongSpec, n: int, rng: np.random.RandomState) -> np.ndarray:
    out = np.zeros((2, n))
    beat = 60.0 / spec.bpm
    bar = 4 * beat
    bars = int(np.ceil(spec.seconds / bar))
    for b in range(bars):
        root = spec.key + 24 + spec.progression[b % len(spec.progression)]
        minor = spec.progression[b % len(spec.progression)] in (9, 2, 4)
        triad = (0, 3 if minor else 4, 7)
        length = int(bar * SR)
        for iv in triad:
            f = float(_midi_hz(root + iv))
            for ch, cents in ((0, -4.0), (1, 4.0)):
                f0 = np.full(length, f * 2 ** (cents / 1200.0))
                v = _tone(f0, 6, 2.0) * _env(length, 0.08, 0.2) * 0.22
                _add(out[ch], v, int(round(b * bar * SR)))
        # plucked arpeggio, alternating pan
        six = beat / 4
        for s in range(16):
            if rng.random_sample() < 0.35:
                continue
            iv = triad[s % 3] + (12 if s % 6 >= 3 else 0)
            pl = int(0.25 * SR)
            tp = np.arange(pl) / SR
            f0 = np.full(pl, float(_midi_hz(root + 12 + iv)))
            p = _tone(f0, 8, 4.0) * np.exp(-tp / 0.09) * 0.18
            pan = 0.25 if s % 2 == 0 else 0.75
            start = int(round((b * bar + s * six) * SR))
            _add(out[0], p * np.sqrt(1 - pan), start)
            _add(out[1], p * np.sqrt(pan), start)
    return out


def _vocals(spec: SongSpec, n: int, rng: np.random.RandomState) -> np.ndarray:
    y = np.zeros(n)
    beat = 60.0 / spec.bpm
    bar = 4 * beat
    scale = (0, 2, 4, 5, 7, 9, 11, 12)
    t = bar  # first bar: no vocals
    vowels = list(_VOWELS)
    while t < spec.seconds - 0.3:
        dur = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random_sample() < 0.15:  # a breath
            t += dur
            continue
        chord = spec.progression[int(t // bar) % len(spec.progression)]
        note = spec.key + 24 + chord + scale[int(rng.randint(0, len(scale)))]
        length = min(int(dur * SR * 0.95), n - int(t * SR))
        if length <= 0:
            break
        tt = np.arange(length) / SR
        depth = np.clip((tt - 0.15) / 0.2, 0.0, 1.0) * 0.3  # semitones
        f0 = _midi_hz(note + depth * np.sin(2 * np.pi * 5.5 * tt))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        cf, bw = _VOWELS[vowels[int(rng.randint(0, len(vowels)))]]
        src = np.zeros(length)
        for k in range(1, 40):
            fk = k * f0
            alive = fk < 8000.0
            if not alive.any():
                break
            amp = np.zeros(length)
            for c, b, g in zip(cf, bw, _FORMANT_GAIN):
                amp += g / (1.0 + ((fk - c) / b) ** 2)
            src += alive * amp * np.sin(k * phase) / np.sqrt(k)
        breath = _filtered_noise(rng, length, 2000.0, 9000.0) * 0.02
        note_sig = (src + breath) * _env(length, 0.03, 0.06)
        _add(y, note_sig, int(round(t * SR)))
        t += dur
    left = y.copy()
    right = y.copy()
    _add(left, 0.18 * y, int(0.017 * SR))
    _add(right, 0.18 * y, int(0.023 * SR))
    return np.stack([left, right])


_TARGET_RMS_DB = {"drums": -17.0, "bass": -19.0, "other": -22.0, "vocals": -18.0}


def synthesize(spec: SongSpec, seed: int) -> dict[str, np.ndarray]:
    """Render one song: int16 stems ``(2, samples)`` keyed by target, plus
    ``mixture`` (their exact integer sum)."""
    n = int(round(spec.seconds * SR))
    digest = hashlib.sha256(f"{seed}|{spec.name}".encode()).digest()
    rng = np.random.RandomState(int.from_bytes(digest[:4], "little"))
    raw = {
        "drums": _drums(spec, n, rng),
        "bass": _bass(spec, n, rng),
        "other": _other(spec, n, rng),
        "vocals": _vocals(spec, n, rng),
    }
    scaled = {}
    for k, x in raw.items():
        rms = np.sqrt(np.mean(x**2)) + 1e-12
        scaled[k] = x * (10 ** (_TARGET_RMS_DB[k] / 20.0) / rms)
    mix = sum(scaled.values())
    g = min(1.0, 0.89 / (np.abs(mix).max() + 1e-12))
    # 16-bit with TPDF dither (±1 LSB), as a mastered recording would be: it
    # also gives every stem the white noise floor real recordings have —
    # without it the band-limited bass line is numerically rank-deficient and
    # BSSEval's 512-tap distortion filters become an ill-posed solve.
    # Dither only while a part plays: rests stay digitally silent.
    drng = np.random.RandomState(int.from_bytes(digest[4:8], "little"))
    out = {}
    for k, v in scaled.items():
        tpdf = drng.random_sample(v.shape) - drng.random_sample(v.shape)
        tpdf[v == 0.0] = 0.0  # digital silence stays silent (museval's silent frames)
        out[k] = np.clip(np.round(v * g * 32767.0 + tpdf), -32768, 32767).astype(np.int16)
    total = np.sum([v.astype(np.int32) for v in out.values()], axis=0)
    if np.abs(total).max() > 32767:  # pragma: no cover - guarded by the 0.89 peak
        raise DatasetError(f"demo {spec.name}: mixture would clip")
    out["mixture"] = total.astype(np.int16)
    return out


def _write_wav(path: Path, data: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), data.T, SR, format="WAV", subtype="PCM_16")


def generate(root: Path, songs: Sequence[SongSpec], seed: int) -> dict[str, dict[str, str]]:
    """Write every missing song under ``root`` (atomic per song); return the
    manifest ``{track: {file: sha256}}``."""
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest: dict[str, dict[str, str]] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
    changed = False
    for spec in songs:
        final = root / spec.name
        if final.is_dir() and spec.name in manifest and all((final / f).is_file() for f in manifest[spec.name]):
            continue
        tmp = root / f".{spec.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        stems = synthesize(spec, seed)
        hashes = {}
        for k, v in stems.items():
            _write_wav(tmp / f"{k}.wav", v)
            hashes[f"{k}.wav"] = file_sha256(tmp / f"{k}.wav")
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        manifest[spec.name] = hashes
        changed = True
    if changed:
        tmpm = manifest_path.with_suffix(f".{os.getpid()}.tmp")
        tmpm.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmpm, manifest_path)
    return manifest


class DemoDataset(Dataset):
    """Deterministic synthetic songs, generated into the cache on first use.

    ``tracks``: how many of the four songs (default all); ``seconds``: override
    every song's length (short variants for tests); ``seed``: generation seed;
    ``root``: where to write (default ``<cache>/datasets/demo-v2-<hash>``)."""

    name = "demo"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        tracks: int | None = None,
        seconds: float | None = None,
        seed: int = 0,
        names: Sequence[str] | None = None,
        card: DatasetCard | None = None,
        subset: str | None = None,
    ) -> None:
        super().__init__(card=card or load_card("demo"), names=names)
        if subset not in (None, "test"):
            raise DatasetError(f"demo: has a single subset 'test', got {subset!r}", field="subset")
        songs = list(DEFAULT_SONGS)
        if tracks is not None:
            if not 1 <= int(tracks) <= len(songs):
                raise DatasetError(f"demo: tracks must be 1..{len(songs)}, got {tracks}", field="tracks")
            songs = songs[: int(tracks)]
        if seconds is not None:
            if not 1.0 <= float(seconds) <= 600.0:
                raise DatasetError(f"demo: seconds must be in [1, 600], got {seconds}", field="seconds")
            songs = [SongSpec(s.name, float(seconds), s.bpm, s.key, s.progression) for s in songs]
        self.songs = tuple(songs)
        self.seed = int(seed)
        self.is_default = seconds is None and self.seed == 0
        key = hashlib.sha256(
            json.dumps(
                [DEMO_VERSION, self.seed, [s.__dict__ for s in DEFAULT_SONGS if seconds is None] or seconds]
            ).encode()
        ).hexdigest()[:10]
        self.root = Path(root) if root is not None else cache_dir("datasets", f"demo-v{DEMO_VERSION}-{key}")
        self.manifest = generate(self.root, self.songs, self.seed)

    def _all_names(self) -> list[str]:
        return [s.name for s in self.songs]

    def _make_track(self, name: str) -> Track:
        return stem_folder_track(
            self.root / name,
            dataset=self.name,
            subset="test",
            stems=TARGETS,
            metadata={"generator": f"stemlab demo v{DEMO_VERSION}", "seed": self.seed},
        )

    def validate(self, deep: bool = True) -> ValidationReport:
        """Check files against the manifest and, for the default generation,
        against the checksums pinned in the card."""
        report = ValidationReport(self.name, str(self.root))
        pinned = dict(self.card.checksums) if self.card and self.is_default else {}
        for name in self.track_names():
            report.tracks_checked += 1
            for fname, digest in self.manifest.get(name, {}).items():
                p = self.root / name / fname
                if not p.is_file():
                    report.add(name, fname, "missing")
                    continue
                actual = file_sha256(p)
                if actual != digest:
                    report.add(name, fname, f"sha256 {actual[:12]}… differs from manifest {digest[:12]}…")
                want = pinned.get(f"{name}/{fname}")
                if want and actual != want:
                    report.add(name, fname, f"sha256 {actual[:12]}… differs from the card's {want[:12]}…")
        return report
