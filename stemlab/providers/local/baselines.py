"""Floors and weight-free DSP baselines (``baseline:<variant>``).

Floors — what "no separation at all" scores, the bottom line of a leaderboard:

* ``mixture`` — the mixture as every estimate (``mode=copy``), or sigsep's
  MIX baseline (``mode=equal``): mixture / n for each of the n target stems,
  ``accompaniment`` = the sum of the non-vocal shares (3/4 of the mixture for
  MUSDB).
* ``silence`` — zeros for every target.

Both return the track's reference stems when it has them (``targets=""``,
the default), else the MUSDB targets; ``targets=vocals,accompaniment`` fixes
the list. ``accompaniment`` is added whenever ``vocals`` and another stem are
returned.

DSP baselines — classic signal processing, no weights, no references:

* ``hpss`` — harmonic/percussive separation by median filtering
  (Fitzgerald 2010) with soft masks (Driedger et al. 2014 margin): returns
  ``drums`` (percussive part) and ``no_drums`` (the rest; demucs'
  ``--two-stems`` naming).
* ``centre`` — mid/side centre extraction in the STFT domain: returns
  ``vocals`` (the centre-panned, in-phase part inside a vocal band) and
  ``accompaniment`` (the rest). Needs stereo input.

Every DSP parameter is a provider parameter (see :class:`BaselineProvider`);
the STFT is ``scipy.signal.stft`` with a periodic Hann window, computed a
block of frames at a time (:class:`~stemlab.providers.local._common.StftGrid`):
the estimates equal the whole-signal computation and memory is the returned
stems plus a constant working set.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ...errors import ProviderRejected
from ...types import MUSDB_TARGETS, Cost, Separation, Stems, Track
from ..base import Param, Provider, as_track
from ._common import (
    ACCOMPANIMENT,
    VariantParams,
    block_frames,
    check_mixture,
    mask_sources,
    stft_grid,
    with_accompaniment,
)

__all__ = ["BaselineProvider", "hpss_masks", "centre_mask", "NO_DRUMS"]

#: Name of "everything but drums" (as demucs ``--two-stems=drums`` writes it).
NO_DRUMS = "no_drums"


def _stft(x: np.ndarray, nfft: int, hop: int) -> np.ndarray:
    from scipy.signal import stft

    return stft(np.asarray(x, dtype=np.float64), nperseg=nfft, noverlap=nfft - hop)[-1]


def _istft(z: np.ndarray, nfft: int, hop: int, n: int) -> np.ndarray:
    from scipy.signal import istft

    y = np.atleast_2d(istft(z, nperseg=nfft, noverlap=nfft - hop)[1])[..., :n]
    if y.shape[-1] < n:  # pragma: no cover - a padded STFT inverts to ≥ n samples
        y = np.pad(y, ((0, 0), (0, n - y.shape[-1])))
    return y.astype(np.float32)


def hpss_masks(
    mag: np.ndarray, kernel_time: int = 31, kernel_freq: int = 31, power: float = 1.0, margin: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Soft harmonic and percussive masks of a magnitude spectrogram ``(F, T)``.

    ``H`` = median over ``kernel_time`` frames (horizontal), ``P`` = median
    over ``kernel_freq`` bins (vertical), ``M_p = P^p / (P^p + (margin·H)^p)``
    with ``p = power`` and ``M_h = H^p / (H^p + (margin·P)^p)``. With
    ``margin = 1`` the masks sum to 1; larger margins leave a residual that
    belongs to neither (it goes to ``no_drums``)."""
    from scipy.ndimage import median_filter

    H = median_filter(mag, size=(1, int(kernel_time)), mode="reflect")
    P = median_filter(mag, size=(int(kernel_freq), 1), mode="reflect")
    return _soft_mask(H, P, power, margin), _soft_mask(P, H, power, margin)


def _soft_mask(A: np.ndarray, B: np.ndarray, power: float, margin: float) -> np.ndarray:
    """``A^p / (A^p + (margin·B)^p)`` (floored at the smallest normal float)."""
    Ap = A**power
    return Ap / np.maximum(Ap + (margin**power) * B**power, np.finfo(np.float64).tiny)


def centre_mask(
    Z: np.ndarray, freqs: np.ndarray, low_hz: float = 150.0, high_hz: float = 9000.0, sharpness: float = 2.0
) -> np.ndarray:
    """Soft centre mask ``(F, T)`` of a stereo STFT ``Z`` ``(2, F, T)``.

    Per bin, ``c = 2·Re(L·R*) / (|L|² + |R|²)`` is 1 for a bin identical in
    both channels (centre-panned, in phase), ``2ab/(a²+b²)`` for a source with
    channel gains a, b, and ≤ 0 for out-of-phase content; the mask is
    ``clip(c, 0, 1) ** sharpness`` inside ``[low_hz, high_hz]`` and 0 outside,
    so bass and kick (centred but below the band) stay in the accompaniment."""
    L, R = Z[0], Z[1]
    num = 2.0 * np.real(L * np.conj(R))
    den = np.abs(L) ** 2 + np.abs(R) ** 2
    c = np.clip(num / np.maximum(den, np.finfo(np.float64).tiny), 0.0, 1.0) ** sharpness
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return c * band[:, None]


class BaselineProvider(VariantParams, Provider):
    """Floors (mixture, silence) and DSP baselines without weights (hpss:
    drums vs the rest by median filtering; centre: vocals vs accompaniment
    by mid/side centre extraction)."""

    family = "baseline"
    kind = "local"
    description = "floors (mixture, silence) and weight-free DSP baselines (hpss drums, centre vocals)"
    variants = ("mixture", "silence", "hpss", "centre")
    default_variant = "mixture"
    deterministic = True
    bound_variants = {"mixture": "lower", "silence": "lower"}  # floors; hpss and centre are usable baselines
    params_schema = (
        Param("targets", str, "", "comma-separated stems of a floor; '' = the track's references "
              "(else the MUSDB targets)", unit="stem names"),
        Param("mode", str, "copy", "mixture floor: 'copy' (mixture as every stem) or 'equal' "
              "(sigsep MIX: mixture/n per stem)", choices=("copy", "equal")),
        Param("nfft", int, 4096, "STFT size (93 ms at 44.1 kHz)", unit="samples",
              choices=(512, 1024, 2048, 4096, 8192)),
        Param("hop", int, 1024, "STFT hop (23 ms at 44.1 kHz); at most nfft/2", unit="samples", min=64, max=4096),
        Param("kernel_time", int, 31, "hpss: median length along time (harmonic filter); "
              "31 frames ≈ 0.72 s at the default hop", unit="frames", min=3, max=255),
        Param("kernel_freq", int, 31, "hpss: median length along frequency (percussive filter); "
              "31 bins ≈ 334 Hz at the default nfft", unit="bins", min=3, max=255),
        Param("power", float, 1.0, "hpss: soft-mask exponent (1: ratio mask; 2: Wiener-like, "
              "librosa's default, measured 0.7 dB worse for drums on the demo set)", unit="exponent",
              min=0.5, max=8.0),
        Param("margin", float, 1.0, "hpss: separation margin; > 1 keeps only clearly percussive bins as drums",
              unit="ratio", min=1.0, max=8.0),
        Param("low_hz", float, 150.0, "centre: lowest frequency given to vocals (a usual vocal high-pass; "
              "keeps centred bass and kick in the accompaniment)", unit="Hz", min=0.0, max=2000.0),
        Param("high_hz", float, 9000.0, "centre: highest frequency given to vocals (as Audacity's vocal "
              "isolation)", unit="Hz", min=1000.0, max=24000.0),
        Param("sharpness", float, 2.0, "centre: exponent on the inter-channel similarity; higher keeps "
              "only tightly centred bins (reverb and slap-back make real vocals less than perfectly "
              "centred)", unit="exponent", min=1.0, max=64.0),
    )
    variant_params = {
        "mixture": ("targets", "mode"),
        "silence": ("targets",),
        "hpss": ("nfft", "hop", "kernel_time", "kernel_freq", "power", "margin"),
        "centre": ("nfft", "hop", "low_hz", "high_hz", "sharpness"),
    }
    _FIXED_STEMS = {"hpss": ("drums", NO_DRUMS), "centre": ("vocals", ACCOMPANIMENT)}
    _RTF = {"mixture": 0.001, "silence": 0.001, "hpss": 0.2, "centre": 0.05}

    def validate(self) -> None:
        self._check_variant_params()
        c = self.config
        if c["hop"] > c["nfft"] // 2:
            from ...errors import ConfigError

            raise ConfigError(
                f"provider baseline:{self.variant}: hop must be at most nfft/2 = {c['nfft'] // 2}, got {c['hop']}",
                field="baseline.params.hop",
            )
        if c["low_hz"] >= c["high_hz"]:
            from ...errors import ConfigError

            raise ConfigError(
                f"provider baseline:{self.variant}: low_hz ({c['low_hz']}) must be below high_hz ({c['high_hz']})",
                field="baseline.params.low_hz",
            )

    # -- stems ---------------------------------------------------------------
    def _fixed_targets(self) -> tuple[str, ...] | None:
        raw = [s.strip() for s in str(self.config["targets"]).split(",") if s.strip()]
        return tuple(dict.fromkeys(raw)) or None

    @property
    def stems(self) -> tuple[str, ...]:
        """hpss: drums, no_drums; centre: vocals, accompaniment; floors: the
        ``targets`` list, or nominally the MUSDB targets + accompaniment
        (the track's reference names at run time)."""
        if self.variant in self._FIXED_STEMS:
            return self._FIXED_STEMS[str(self.variant)]
        fixed = self._fixed_targets()
        names = fixed if fixed else tuple(MUSDB_TARGETS)
        return tuple(with_accompaniment({n: np.zeros((1, 1), np.float32) for n in names}))

    def _floor_targets(self, track: Track) -> tuple[str, ...]:
        fixed = self._fixed_targets()
        if fixed:
            return fixed
        if track.has_references:
            return tuple(track.target_names)
        return tuple(MUSDB_TARGETS)

    def estimate_cost(self, track: Track | float) -> Cost:
        seconds = track if isinstance(track, (int, float)) else track.seconds
        return Cost(compute_seconds=self._RTF[str(self.variant)] * float(seconds), estimated=True)

    def provenance(self) -> dict[str, Any]:
        import scipy

        out = super().provenance()
        out.update({"numpy": np.__version__, "scipy": scipy.__version__})
        return out

    # -- running ---------------------------------------------------------------
    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        t0 = time.perf_counter()
        t = as_track(track, sample_rate)
        p = self.used_params()
        # scipy shortens the window of a shorter input, down to its overlap (nfft − hop)
        stft = self.variant in ("hpss", "centre")
        mix = check_mixture(t, self.id, min_samples=int(p["nfft"]) - int(p["hop"]) + 1 if stft else 1)
        v = self.variant
        warnings: list[str] = []
        t1 = time.perf_counter()
        if v in ("mixture", "silence"):
            est = self._floor(mix, self._floor_targets(t), str(v), p.get("mode", "copy"))
        elif v == "hpss":
            est = self._hpss(mix, p)
        else:
            if mix.shape[0] != 2:
                raise ProviderRejected(
                    f"{self.id}: centre extraction needs stereo input, track {t.name!r} has {mix.shape[0]} channel(s)",
                    provider=self.id, track=t.name,
                )
            est = self._centre(mix, p, t.sample_rate)
            nyq = t.sample_rate / 2
            if p["low_hz"] >= nyq:
                warnings.append(f"low_hz {p['low_hz']} Hz is above Nyquist ({nyq} Hz): vocals are silent")
        t2 = time.perf_counter()
        return Separation(
            Stems(est, t.sample_rate),
            self.id,
            params=p,
            timings={"prepare": t1 - t0, "separate": t2 - t1, "total": time.perf_counter() - t0},
            device="cpu",
            warnings=tuple(warnings),
            cost=Cost(compute_seconds=t2 - t0, estimated=False),
            provenance=self.provenance(),
        )

    @staticmethod
    def _floor(mix: np.ndarray, targets: tuple[str, ...], variant: str, mode: str) -> dict[str, np.ndarray]:
        """At most one array per returned stem and nothing else of the track's
        size (``mixture``: the mixture's own buffer, read-only, for all)."""
        out: dict[str, np.ndarray] = {}
        if variant == "silence":
            for n in targets:
                out[n] = np.zeros_like(mix)
            if "vocals" in out and ACCOMPANIMENT not in out and len(out) > 1:
                out[ACCOMPANIMENT] = np.zeros_like(mix)  # the sum of silent stems
            return out
        share = 1.0
        if mode == "equal":
            share = 1.0 / max(1, len(mask_sources(targets)))
        whole = mix.view()  # every stem is the mixture itself: one read-only buffer, no copies
        whole.flags.writeable = False
        for n in targets:
            out[n] = mix * np.float32(share) if share != 1.0 else whole
        if mode == "equal":
            return with_accompaniment(out)
        if "vocals" in out and ACCOMPANIMENT not in out and len(out) > 1:
            out[ACCOMPANIMENT] = whole  # the mixture is the floor for every target
        return out

    @staticmethod
    def _grid(mix: np.ndarray, p: dict[str, Any]):
        nfft, hop = int(p["nfft"]), int(p["hop"])
        return stft_grid(mix.shape[1], nfft, hop, lambda x: _stft(x, nfft, hop), lambda z, n: _istft(z, nfft, hop, n))

    @staticmethod
    def _hpss(mix: np.ndarray, p: dict[str, Any]) -> dict[str, np.ndarray]:
        """Blocks of STFT frames; the harmonic (time) median of a block also
        reads ``kernel_time // 2 + 1`` frames of the blocks on either side, so
        every median sees the frames it sees on the whole spectrogram (and the
        same reflection at the track's ends)."""
        from scipy.ndimage import median_filter

        grid = BaselineProvider._grid(mix, p)
        kt, kf = int(p["kernel_time"]), int(p["kernel_freq"])
        power, margin = p["power"], p["margin"]
        halo = kt // 2 + 1
        drums = np.empty(mix.shape, np.float32)
        inv = grid.overlap_add(drums)

        def spectra(block):
            if block is None:
                return None
            Z = grid.stft(mix, *block)  # (C, t, F)
            return Z, np.mean(np.abs(Z), axis=0)  # one mask for all channels keeps the stereo image

        blocks = iter(grid.blocks(max(block_frames(int(p["hop"])), 8 * halo)))  # halo overhead ≤ 25 %
        nxt = spectra(next(blocks, None))
        left = None  # magnitudes of the (up to) `halo` frames before the current block
        while nxt is not None:
            Z, mag = nxt
            nxt = spectra(next(blocks, None))
            parts = [m for m in (left, mag, None if nxt is None else nxt[1][:halo]) if m is not None]
            ext = np.concatenate(parts, axis=0) if len(parts) > 1 else mag
            off = 0 if left is None else left.shape[0]
            H = median_filter(ext, size=(kt, 1), mode="reflect")[off : off + mag.shape[0]]
            P = median_filter(mag, size=(1, kf), mode="reflect")
            inv.add(Z * _soft_mask(P, H, power, margin)[None])
            if left is None or mag.shape[0] >= halo:
                left = mag[-halo:].copy()
            else:
                left = np.concatenate([left, mag], axis=0)[-halo:]
            del Z, ext, H, P
        return {"drums": drums, NO_DRUMS: np.subtract(mix, drums)}

    @staticmethod
    def _centre(mix: np.ndarray, p: dict[str, Any], sr: int) -> dict[str, np.ndarray]:
        grid = BaselineProvider._grid(mix, p)
        vocals = np.empty(mix.shape, np.float32)
        inv = grid.overlap_add(vocals)
        for block in grid.blocks(block_frames(int(p["hop"]))):
            Z = grid.stft(mix, *block)  # (C, t, F)
            freqs = np.arange(Z.shape[-1]) * sr / p["nfft"]
            m = centre_mask(np.swapaxes(Z, 1, 2), freqs, p["low_hz"], p["high_hz"], p["sharpness"])  # (F, t)
            inv.add(Z * m.T[None])
            del Z, m
        return {"vocals": vocals, ACCOMPANIMENT: np.subtract(mix, vocals)}
