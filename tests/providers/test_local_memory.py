"""The oracle and DSP-baseline providers run a block of STFT frames at a
time and give the estimates of the former whole-signal code
(``tests/_reference_impl.py``), while their memory beyond inputs and
outputs stays constant as the track gets longer."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from stemlab.datasets.demo import SongSpec, synthesize
from stemlab.providers.local import _common
from stemlab.providers.local.baselines import BaselineProvider
from stemlab.providers.local.oracle import (
    OracleProvider,
    ideal_binary_mask,
    ideal_ratio_mask,
    multichannel_wiener,
)
from stemlab.testing import traced_peak
from stemlab.types import Track
from tests import _reference_impl as ref

SR = 44100
TOL = 1e-6  # absolute, on audio in [-1, 1]
NAMES = ("vocals", "drums", "bass", "other")


@pytest.fixture(scope="module")
def song() -> dict[str, np.ndarray]:
    """9.37 s of the demo synthesizer (413217 samples: not a multiple of any hop)."""
    s = synthesize(SongSpec("mem", 9.37, 112.0, 40, (0, 7, 9, 5)), 0)
    return {k: v.astype(np.float32) / 32768.0 for k, v in s.items()}


def _maxdiff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == np.float32 and a[k].shape == b[k].shape, k
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ------------------------------------------------------------------ the grid

@pytest.mark.parametrize(
    "n,nfft,hop,block",
    [(413217, 2048, 1024, 37), (413217, 4096, 1024, 64), (44105, 4096, 1000, 13), (44100, 512, 128, 100),
     (2048, 2048, 1024, 1), (5000, 2048, 1024, 1000)],
)
def test_blocked_stft_and_overlap_add_match_scipy(n: int, nfft: int, hop: int, block: int) -> None:
    from scipy.signal import istft, stft

    rng = np.random.RandomState(n % 1000)
    x = rng.standard_normal((2, n)).astype(np.float32)
    Z = stft(x.astype(np.float64), nperseg=nfft, noverlap=nfft - hop)[-1]  # (C, F, T)
    g = _common.StftGrid(n, nfft, hop)
    assert g.frames == Z.shape[-1] and g.bins == Z.shape[1]
    blocks = g.blocks(block)
    Zb = np.concatenate([g.stft(x, t0, t1) for t0, t1 in blocks], axis=1)
    np.testing.assert_allclose(Zb, np.swapaxes(Z, 1, 2), rtol=0, atol=1e-12)
    Y = Z * rng.uniform(size=Z.shape)  # any per-bin modification
    want = np.atleast_2d(istft(Y, nperseg=nfft, noverlap=nfft - hop)[1])[..., :n].astype(np.float32)
    out = np.full((2, n), np.nan, np.float32)
    inv = g.overlap_add(out)
    Yt = np.swapaxes(Y, 1, 2)
    for t0, t1 in blocks:
        inv.add(Yt[:, t0:t1])
    assert inv.next_frame == g.frames
    assert float(np.abs(out - want).max()) <= TOL


# -------------------------------------------------------------------- oracle

@pytest.mark.parametrize("block", [None, 7])
@pytest.mark.parametrize(
    "fn,old,kw",
    [
        (ideal_ratio_mask, ref.ideal_ratio_mask, {}),
        (ideal_ratio_mask, ref.ideal_ratio_mask, {"alpha": 1.0, "nfft": 1024}),
        (ideal_binary_mask, ref.ideal_binary_mask, {}),
        (ideal_binary_mask, ref.ideal_binary_mask, {"alpha": 2.0, "theta": 0.3, "nfft": 4096}),
        (multichannel_wiener, ref.multichannel_wiener, {}),
        (multichannel_wiener, ref.multichannel_wiener, {"normalisation": "sigsep"}),
    ],
    ids=["irm2", "irm1-1024", "ibm1", "ibm2-4096", "mwf", "mwf-sigsep"],
)
def test_oracle_blocked_equals_whole_signal(song, fn, old, kw, block) -> None:
    refs = {k: song[k] for k in NAMES}
    mix = song["mixture"]
    new = fn(mix, refs.__getitem__, NAMES, block=block, **kw)
    want = old(mix, refs.__getitem__, NAMES, **kw)
    assert _maxdiff(new, want) <= TOL


@pytest.mark.parametrize("channels", [1, 3])
def test_oracle_mono_and_multichannel(channels: int) -> None:
    """I = 1 (the 1/(ε+m) inverse) and I = 3 (np.linalg.inv) covariances."""
    rng = np.random.RandomState(channels)
    refs = {k: (0.1 * rng.standard_normal((channels, 50_001))).astype(np.float32) for k in NAMES[:3]}
    mix = sum(refs.values()).astype(np.float32)
    for fn, old, kw in ((ideal_ratio_mask, ref.ideal_ratio_mask, {}), (ideal_binary_mask, ref.ideal_binary_mask, {}),
                        (multichannel_wiener, ref.multichannel_wiener, {}),
                        (multichannel_wiener, ref.multichannel_wiener, {"normalisation": "sigsep"})):
        new = fn(mix, refs.__getitem__, NAMES[:3], block=5, **kw)
        assert _maxdiff(new, old(mix, refs.__getitem__, NAMES[:3], **kw)) <= TOL


@pytest.mark.parametrize("variant", ["irm", "ibm", "mwf"])
def test_oracle_provider_equals_whole_signal(song, variant: str) -> None:
    refs = {k: song[k] for k in NAMES}
    track = Track.from_arrays("mem", song["mixture"], SR, references=refs)
    sep = OracleProvider(variant).separate(track)
    old = {"irm": ref.ideal_ratio_mask, "ibm": ref.ideal_binary_mask, "mwf": ref.multichannel_wiener}[variant]
    want = ref.with_accompaniment(old(song["mixture"], refs.__getitem__, NAMES))
    got = {k: a for k, a in sep.stems.items()}
    assert _maxdiff(got, want) <= TOL
    assert all(a.flags.c_contiguous for a in got.values())


@pytest.mark.filterwarnings("ignore:nperseg = 2048 is greater than input length")
@pytest.mark.parametrize("n", [1500, 2047, 2049])
def test_oracle_short_tracks_as_before(song, n: int) -> None:
    """Below nfft samples scipy shortens the window: the whole-signal path is kept."""
    refs = {k: song[k][:, 20000 : 20000 + n].copy() for k in NAMES}
    mix = song["mixture"][:, 20000 : 20000 + n].copy()
    for fn, old in ((ideal_ratio_mask, ref.ideal_ratio_mask), (ideal_binary_mask, ref.ideal_binary_mask),
                    (multichannel_wiener, ref.multichannel_wiener)):
        assert _maxdiff(fn(mix, refs.__getitem__, NAMES), old(mix, refs.__getitem__, NAMES)) <= TOL


def test_accompaniment_is_the_float64_sum(song) -> None:
    stems = {k: song[k] for k in NAMES}
    got = _common.with_accompaniment(dict(stems))
    want = ref.with_accompaniment(dict(stems))
    np.testing.assert_array_equal(got["accompaniment"], want["accompaniment"])
    assert got["accompaniment"].dtype == np.float32


# ----------------------------------------------------------------- baselines

HPSS = dict(nfft=4096, hop=1024, kernel_time=31, kernel_freq=31, power=1.0, margin=1.0)


@pytest.mark.parametrize(
    "kw",
    [{}, {"kernel_time": 255, "hop": 512}, {"kernel_time": 30, "kernel_freq": 8, "power": 2.0, "margin": 2.0},
     {"hop": 1000, "nfft": 2048}, {"nfft": 512, "hop": 64, "kernel_time": 3}],
    ids=["default", "kt255", "even-kernels", "hop1000", "small"],
)
def test_hpss_blocked_equals_whole_signal(song, kw) -> None:
    p = dict(HPSS, **kw)
    mix = song["mixture"]
    if p["kernel_time"] > 100 or p["hop"] < 128:  # slow medians: 4.7 s is still several blocks
        mix = np.ascontiguousarray(mix[:, : 207_000])
    assert _maxdiff(BaselineProvider._hpss(mix, p), ref.hpss(mix, **p)) <= TOL


@pytest.mark.parametrize("kw", [{}, {"hop": 1000, "nfft": 2048, "sharpness": 3.0, "low_hz": 500.0}])
def test_centre_blocked_equals_whole_signal(song, kw) -> None:
    p = dict(nfft=4096, hop=1024, low_hz=150.0, high_hz=9000.0, sharpness=2.0)
    p.update(kw)
    mix = song["mixture"]
    assert _maxdiff(BaselineProvider._centre(mix, p, SR), ref.centre(mix, SR, **p)) <= TOL


def test_baseline_providers_end_to_end(song) -> None:
    track = Track.from_arrays("mem", song["mixture"], SR)
    sep = BaselineProvider("hpss").separate(track)
    assert _maxdiff(dict(sep.stems.items()), ref.hpss(song["mixture"])) <= TOL
    sep = BaselineProvider("centre").separate(track)
    assert _maxdiff(dict(sep.stems.items()), ref.centre(song["mixture"], SR)) <= TOL


@pytest.mark.filterwarnings("ignore:nperseg = 4096 is greater than input length")
def test_baselines_short_tracks_as_before(song) -> None:
    """Shorter than nfft: the former whole-signal calls (and their errors)."""
    for n in (3000, 3500, 4095):
        mix = song["mixture"][:, 30000 : 30000 + n].copy()
        for run_new, run_old in ((lambda m: BaselineProvider._hpss(m, HPSS), lambda m: ref.hpss(m)),
                                 (lambda m: BaselineProvider._centre(m, dict(nfft=4096, hop=1024, low_hz=150.0,
                                                                             high_hz=9000.0, sharpness=2.0), SR),
                                  lambda m: ref.centre(m, SR))):
            try:
                want = run_old(mix)
            except Exception as e:  # noqa: BLE001 - the old code's own error
                with pytest.raises(type(e)):
                    run_new(mix)
            else:
                assert _maxdiff(run_new(mix), want) <= TOL


@pytest.mark.parametrize("variant,params", [("mixture", {}), ("mixture", {"mode": "equal"}), ("silence", {})])
def test_floors_make_only_their_stems(song, variant: str, params) -> None:
    refs = {k: song[k] for k in NAMES}
    track = Track.from_arrays("mem", song["mixture"], SR, references=refs)
    _ = track.mixture, track.references
    prov = BaselineProvider(variant, params=params)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sep = prov.separate(track)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    stems = dict(sep.stems.items())
    assert set(stems) == set(NAMES) | {"accompaniment"}
    out = sum(a.nbytes for a in stems.values())
    assert peak <= out + (4 << 20), (peak / 2**20, out / 2**20)  # + a constant block (accompaniment sum)
    mix = song["mixture"]
    if variant == "silence":
        assert all(not a.any() for a in stems.values())
    elif params.get("mode") == "equal":
        want = ref.with_accompaniment({k: mix * np.float32(0.25) for k in NAMES})
        assert _maxdiff(stems, want) == 0.0
    else:
        assert all(np.array_equal(a, mix) for a in stems.values())


# -------------------------------------------------------------------- memory

def _inputs(seconds: float, channels: int = 2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(int(seconds))
    n = int(seconds * SR) + 333  # not a multiple of any hop
    refs = {k: (0.1 * rng.standard_normal((channels, n), dtype=np.float32)) for k in NAMES}
    mix = np.zeros((channels, n), np.float32)
    for r in refs.values():
        mix += r
    return mix, refs


def _warm(make_provider) -> None:
    mix, refs = _inputs(1.0)
    make_provider().separate(Track.from_arrays("warm", mix, SR, references=refs))


def _extra_peak(make_provider, seconds: float) -> tuple[int, int]:
    """(traced peak during separate, bytes of the returned stems); the inputs
    exist (and the track's lazy fields are filled) before tracing starts."""
    mix, refs = _inputs(seconds)
    track = Track.from_arrays("long", mix, SR, references=refs)
    _ = track.mixture, track.references
    prov = make_provider()
    sep, peak = traced_peak(lambda: prov.separate(track))
    return peak, sum(a.nbytes for _, a in sep.stems.items())


def test_irm_extra_memory_does_not_grow_with_length() -> None:
    """OracleProvider('irm'): (traced peak − outputs) on 240 s is at most 1.3×
    that on 60 s (the whole-track STFTs made it grow 3.4× from 30 s to
    120 s: ~0.9 GB extra at 120 s). The provider's peak is either during the blocks (4 estimates +
    the working set) or while summing the accompaniment (5 stems + a block),
    so the working set itself is measured on ``ideal_ratio_mask``, whose four
    outputs are allocated first: it is a constant, a few tens of MB."""
    _warm(lambda: OracleProvider("irm"))
    p60, o60 = _extra_peak(lambda: OracleProvider("irm"), 60.0)
    p240, o240 = _extra_peak(lambda: OracleProvider("irm"), 240.0)
    e60, e240 = p60 - o60, p240 - o240
    assert o240 > 3.9 * o60
    assert e240 <= 1.3 * e60, (e60 / 2**20, e240 / 2**20)
    work = {}
    for seconds in (60.0, 240.0):
        mix, refs = _inputs(seconds)
        est, peak = traced_peak(lambda mix=mix, refs=refs: ideal_ratio_mask(mix, refs.__getitem__, NAMES))
        work[seconds] = peak - sum(a.nbytes for a in est.values())
        del est
    assert work[240.0] <= 1.3 * work[60.0], {k: v / 2**20 for k, v in work.items()}
    assert work[240.0] < (128 << 20), work[240.0] / 2**20


@pytest.mark.parametrize(
    "make",
    [lambda: OracleProvider("ibm"), lambda: OracleProvider("mwf"), lambda: BaselineProvider("hpss"),
     lambda: BaselineProvider("centre")],
    ids=["ibm", "mwf", "hpss", "centre"],
)
def test_other_blocked_providers_extra_memory_is_constant(make) -> None:
    _warm(make)
    p20, o20 = _extra_peak(make, 20.0)
    p80, o80 = _extra_peak(make, 80.0)
    assert p80 - o80 <= 1.3 * (p20 - o20), ((p20 - o20) / 2**20, (p80 - o80) / 2**20)
