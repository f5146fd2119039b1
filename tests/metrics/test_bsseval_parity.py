"""BSSEval v4 parity with museval 0.4.1, which runs inside these tests.

Signals are short (and often at a low rate with short windows) because
museval is slow; the code paths are the same as for full tracks. Every
frame, stem and metric must agree within 0.01 dB (observed: ~1e-10 dB)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stemlab.metrics import bsseval as B

from ._signals import estimate, structured

museval = pytest.importorskip("museval", reason="museval (test oracle) not importable")
from museval import metrics as MM  # noqa: E402

pytestmark = pytest.mark.museval
TOL = 0.01  # dB, the bound


def _museval(refs: np.ndarray, ests: np.ndarray, win: int, hop: int, filters_len: int = 512):
    """museval's evaluate() path (images mode, time-invariant filters) on
    (nsrc, C, T) arrays."""
    r = refs.transpose(0, 2, 1)
    e = ests.transpose(0, 2, 1)
    r, e = museval.pad_or_truncate(r, e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdr, isr, sir, sar, _ = MM.bss_eval(r, e, window=win, hop=hop, compute_permutation=False,
                                            filters_len=filters_len, framewise_filters=False,
                                            bsseval_sources_version=False)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


def _assert_parity(refs, ests, win, hop, filters_len=512):
    want = _museval(refs, ests, win, hop, filters_len)
    got = B.bss_eval_v4(refs, ests, win, hop, filters_len=filters_len).metrics()
    for m, w in want.items():
        g = got[m]
        assert g.shape == w.shape, (m, g.shape, w.shape)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{m}: NaN frames differ")
        ok = np.isfinite(w)
        np.testing.assert_array_equal(np.isposinf(g), np.isposinf(w), err_msg=f"{m}: inf frames differ")
        diff = np.abs(g[ok] - w[ok])
        assert diff.size == 0 or diff.max() <= TOL, f"{m}: max |diff| {diff.max():.3g} dB"
    # the SDR-only path: museval's SDR, NaN frames included
    sdr = B.sdr_frames(refs, ests, win, hop).sdr
    ok = np.isfinite(want["SDR"])
    np.testing.assert_array_equal(np.isnan(sdr), np.isnan(want["SDR"]))
    assert np.abs(sdr[ok] - want["SDR"][ok]).max() <= 1e-9
    return want




@pytest.mark.parametrize(
    "nsrc,C,T,win,L",
    [
        (2, 1, 12000, 4000, 512),  # exact multiple of the window
        (3, 2, 13001, 4000, 512),  # trailing partial frame dropped
        (4, 2, 9500, 3000, 256),  # (shorter filters keep museval's solve quick)
        (2, 2, 3000, 4000, 512),  # shorter than one window: one frame
    ],
)
def test_random_signals(nsrc, C, T, win, L):
    rng = np.random.RandomState(nsrc * 100 + C + T)
    refs = rng.randn(nsrc, C, T)
    ests = estimate(rng, refs)
    _assert_parity(refs, ests, win, win, filters_len=L)


@pytest.mark.parametrize("nsrc,C", [(2, 2), (3, 1), (5, 1)])
def test_structured_signals(nsrc, C):
    rng = np.random.RandomState(7 + nsrc)
    T = 14123
    refs = structured(rng, nsrc, C, T)
    ests = estimate(rng, refs, leak=0.3, noise=0.05)
    _assert_parity(refs, ests, 4000, 4000)


def test_six_stereo_sources_short_filters():
    # 6 stereo sources: museval's 6144² Gram solve is slow, so 128 taps here
    rng = np.random.RandomState(6)
    refs = structured(rng, 6, 2, 9000)
    ests = estimate(rng, refs)
    _assert_parity(refs, ests, 3000, 3000, filters_len=128)


def test_overlapping_windows():
    rng = np.random.RandomState(3)
    refs = rng.randn(2, 2, 11000)
    ests = estimate(rng, refs)
    _assert_parity(refs, ests, 4000, 2500)


def test_silent_frames_in_a_reference_and_an_estimate():
    rng = np.random.RandomState(11)
    T, win = 16000, 4000
    refs = structured(rng, 3, 1, T)
    ests = estimate(rng, refs)
    refs[1, :, 4000:8000] = 0.0  # reference silent in frame 1
    ests[2, :, 12000:16000] = 0.0  # estimate silent in frame 3
    want = _assert_parity(refs, ests, win, win)
    # museval's rule: those frames are NaN for every source and metric
    for m in want.values():
        assert np.isnan(m[:, [1, 3]]).all() and np.isfinite(m[:, [0, 2]]).all()


def test_estimate_length_differs_padding_as_museval():
    rng = np.random.RandomState(5)
    refs = rng.randn(2, 2, 12000)
    ests = estimate(rng, refs)
    _assert_parity(refs, ests[:, :, :10500], 4000, 4000)  # zero-padded
    longer = np.concatenate([ests, rng.randn(2, 2, 700)], axis=-1)
    _assert_parity(refs, longer, 4000, 4000)  # truncated


def test_perfect_estimate_is_inf_like_museval():
    rng = np.random.RandomState(2)
    refs = rng.randn(2, 1, 8000)
    ests = refs.copy()
    ests[1] += 0.1 * rng.randn(1, 8000)
    want = _museval(refs, ests, 4000, 4000)
    got = B.bss_eval_v4(refs, ests, 4000, 4000).metrics()
    # exact estimate: SDR = +inf in both (ISR/SIR/SAR sit at the rounding-noise
    # floor, ~300 dB, where no two implementations agree)
    assert np.isposinf(want["SDR"][0]).all() and np.isposinf(got["SDR"][0]).all()
    assert (got["ISR"][0] > 150).all() and (want["ISR"][0] > 150).all()
    for m in want:
        assert np.abs(got[m][1] - want[m][1]).max() <= TOL


def test_whole_silent_reference_museval_refuses_stemlab_defines():
    rng = np.random.RandomState(4)
    refs = rng.randn(3, 2, 12000)
    ests = estimate(rng, refs)
    refs[1] = 0.0
    with pytest.raises(ValueError, match="non-silent"):
        _museval(refs, ests, 4000, 4000)
    with pytest.warns(RuntimeWarning, match="silent over the whole signal"):
        res = B.bss_eval_v4(refs, ests, 4000, 4000)
    assert np.isnan(res.sdr).all()  # museval's frame rule, applied to every frame
    res_t = B.bss_eval_v4(refs, ests, 4000, 4000, nan_policy="target")
    assert np.isnan(res_t.sdr[1]).all() and np.isfinite(res_t.sdr[[0, 2]]).all()
    # the other sources' scores equal the scores without the silent source
    # (its reference is zero, so it adds nothing to the projections)
    alone = B.bss_eval_v4(refs[[0, 2]], ests[[0, 2]], 4000, 4000)
    for m in ("SDR", "ISR", "SIR", "SAR"):
        np.testing.assert_allclose(res_t.metrics()[m][[0, 2]], alone.metrics()[m], atol=1e-6)
