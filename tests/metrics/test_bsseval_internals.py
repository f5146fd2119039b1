"""The fast BSSEval v4 kernels against plain dense formulas (no museval
needed): block correlations vs ``np.correlate``, the block Levinson solver vs
a dense solve, and the whole framewise computation vs a direct
implementation of museval's algorithm (Gram matrix, ``np.linalg.solve``,
per-frame ``np.convolve``)."""

from __future__ import annotations

import numpy as np
import pytest

from stemlab.metrics import bsseval as B


def _direct_corr(x: np.ndarray, y: np.ndarray, L: int) -> np.ndarray:
    """Σₙ x[n]·y[n + m] for m = −(L−1) … L−1."""
    T = x.size
    full = np.correlate(y, x, mode="full")  # index k ↔ lag k − (T − 1)
    out = np.zeros(2 * L - 1)
    for i, m in enumerate(range(-(L - 1), L)):
        k = m + T - 1
        if 0 <= k < full.size:
            out[i] = full[k]
    return out


@pytest.mark.parametrize("T,L,block,group", [
    (1, 8, 16, 1),          # a single sample
    (500, 64, 100, 3),      # several groups, the last one partial
    (1000, 64, 100, 1),     # exact multiple of the block: interior blocks are views
    (1001, 64, 100, 2),     # one sample into an extra block
    (3000, 300, 200, 4),    # lags longer than a block
])
def test_block_correlations_equal_direct_correlation(T, L, block, group):
    rng = np.random.default_rng(T + L)
    refs = rng.standard_normal((3, T))
    ests = rng.standard_normal((2, T))
    got = B._block_correlations(refs, ests, L, block=block, group=group)
    assert got.shape == (5, 3, 2 * L - 1)
    sig = np.concatenate([refs, ests])
    scale = np.linalg.norm(sig, axis=1)
    for p in range(5):
        for q in range(3):
            want = _direct_corr(sig[p], refs[q], L)
            err = np.abs(got[p, q] - want).max() / (scale[p] * scale[q])
            assert err < 1e-13, (p, q, err)


@pytest.mark.parametrize("R,L,batch", [(1, 40, ()), (2, 33, (3,)), (3, 17, (2,))])
def test_block_levinson_equals_dense_solve(R, L, batch):
    rng = np.random.default_rng(R * 10 + L)
    T = 4 * L * R
    x = rng.standard_normal(batch + (R, T))
    x[..., 1:] += 0.6 * x[..., :-1]  # coloured, like audio
    # Γ(m)[p, q] = Σₙ x_p[n] x_q[n + m]: a positive definite block-Toeplitz Gram
    flat = x.reshape(-1, R, T)
    gamma = np.stack([
        np.stack([[_direct_corr(b[p], b[q], L) for q in range(R)] for p in range(R)]).transpose(2, 0, 1)
        for b in flat
    ]).reshape(batch + (2 * L - 1, R, R))
    rhs = rng.standard_normal(batch + (L, R, 2))
    got = B.block_levinson(gamma, rhs)
    for idx in np.ndindex(*batch) if batch else [()]:
        g = gamma[idx]
        G = np.block([[g[a - b + L - 1] for b in range(L)] for a in range(L)])  # block (a, b) = Γ(a − b)
        want = np.linalg.solve(G, rhs[idx].reshape(L * R, 2)).reshape(L, R, 2)
        np.testing.assert_allclose(got[idx], want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


def _direct_bss_eval(refs: np.ndarray, ests: np.ndarray, win: int, hop: int, L: int) -> dict:
    """museval's algorithm written out densely (images mode, global filters)."""
    nsrc, C, T = refs.shape
    R = nsrc * C
    s = refs.reshape(R, T)
    e = ests.reshape(R, T)
    # G[(p,a),(q,b)] = Σ s_p[n−a] s_q[n−b];  D[(p,a), e] = Σ ŝ_e[n] s_p[n−a]
    G = np.zeros((R * L, R * L))
    D = np.zeros((R * L, R))
    for p in range(R):
        for q in range(R):
            r = _direct_corr(s[p], s[q], L)  # r[m + L − 1] = Σ s_p[n] s_q[n + m]
            for a in range(L):
                for b in range(L):
                    G[p * L + a, q * L + b] = r[a - b + L - 1]
        for k in range(R):
            c = _direct_corr(e[k], s[p], L)  # Σ ŝ_k[n] s_p[n + m]
            D[p * L : (p + 1) * L, k] = c[L - 1 - np.arange(L)]
    eps = np.finfo(float).eps
    Call = np.linalg.solve(G + eps * np.eye(R * L), D).reshape(R, L, R)
    Cown = np.zeros((R, L, R))
    for j in range(nsrc):
        idx = np.concatenate([np.arange((j * C + c) * L, (j * C + c + 1) * L) for c in range(C)])
        sol = np.linalg.solve(G[np.ix_(idx, idx)] + eps * np.eye(C * L), D[idx][:, j * C : (j + 1) * C])
        Cown[j * C : (j + 1) * C, :, j * C : (j + 1) * C] = sol.reshape(C, L, C)
    starts, stops = B.framing(T, win, hop)
    out = {k: np.zeros((nsrc, starts.size)) for k in ("SDR", "ISR", "SIR", "SAR")}
    for t, (a0, b0) in enumerate(zip(starts, stops)):
        n = b0 - a0 + L - 1
        en = {k: np.zeros(nsrc) for k in ("true", "err", "spat", "interf", "art", "pj", "pall")}
        for k in range(R):
            j = k // C
            sf = np.zeros(n)
            sf[: b0 - a0] = s[k, a0:b0]
            ef = np.zeros(n)
            ef[: b0 - a0] = e[k, a0:b0]
            pall = sum(np.convolve(s[p, a0:b0], Call[p, :, k]) for p in range(R))
            pown = sum(np.convolve(s[p, a0:b0], Cown[p, :, k]) for p in range(j * C, (j + 1) * C))
            en["true"][j] += sf @ sf
            en["err"][j] += (ef - sf) @ (ef - sf)
            en["spat"][j] += (pown - sf) @ (pown - sf)
            en["interf"][j] += (pall - pown) @ (pall - pown)
            en["art"][j] += (ef - pall) @ (ef - pall)
            en["pj"][j] += pown @ pown
            en["pall"][j] += pall @ pall
        out["SDR"][:, t] = 10 * np.log10(en["true"] / en["err"])
        out["ISR"][:, t] = 10 * np.log10(en["true"] / en["spat"])
        out["SIR"][:, t] = 10 * np.log10(en["pj"] / en["interf"])
        out["SAR"][:, t] = 10 * np.log10(en["pall"] / en["art"])
    return out


@pytest.mark.parametrize("nsrc,C,T,win,hop,L", [
    (2, 2, 1200, 400, 400, 16),   # frames tile the signal (strided views)
    (3, 1, 1111, 400, 400, 24),   # a trailing partial frame, dropped
    (2, 2, 1000, 400, 250, 16),   # overlapping frames (copied)
    (2, 1, 300, 400, 400, 32),    # shorter than one window
])
def test_fast_kernels_equal_direct_algorithm(nsrc, C, T, win, hop, L):
    rng = np.random.default_rng(T + win)
    refs = rng.standard_normal((nsrc, C, T))
    refs[..., 1:] += 0.5 * refs[..., :-1]
    ests = 0.8 * np.roll(refs, 2, axis=-1) + 0.2 * refs[::-1] + 0.1 * rng.standard_normal(refs.shape)
    want = _direct_bss_eval(refs, ests, win, hop, L)
    got = B.bss_eval_v4(refs, ests, win, hop, filters_len=L)
    assert got.info["solver"] == "levinson"
    for m, w in want.items():
        np.testing.assert_allclose(got.metrics()[m], w, atol=1e-8, err_msg=m)
    # stage timings are reported
    assert set(got.info["seconds"]) >= {"correlations", "filters", "frames"}


def test_rfft_into_without_numpy_out(monkeypatch):
    """numpy < 2 has no ``out=`` on rfft: the copy fallback gives the same spectra."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 50))
    a = np.empty((33, 3, 2), dtype=np.complex128)
    B._rfft_into(x, 64, a)
    real = np.fft.rfft

    def no_out(*args, out=None, **kw):
        if out is not None:
            raise TypeError("rfft() got an unexpected keyword argument 'out'")
        return real(*args, **kw)

    monkeypatch.setattr(np.fft, "rfft", no_out)
    b = np.empty_like(a)
    B._rfft_into(x, 64, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, real(x, n=64, axis=-1).transpose(2, 0, 1), rtol=1e-12)


def test_whole_silence_is_exact_zero_not_underflow():
    """A source whose samples square to 0 (|x| < 1e-162) is not silent."""
    import warnings

    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 1, 3000))
    ests = refs + 0.1 * rng.standard_normal(refs.shape)
    tiny = refs.copy()
    tiny[1] *= 1e-170
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "silent over the whole signal" warning
        res = B.bss_eval_v4(tiny, ests, 1000, 1000, filters_len=16)
    assert np.isfinite(res.sdr[0]).all()
    zero = refs.copy()
    zero[1] = 0.0
    with pytest.warns(RuntimeWarning, match="silent over the whole signal"):
        B.bss_eval_v4(zero, ests, 1000, 1000, filters_len=16)
