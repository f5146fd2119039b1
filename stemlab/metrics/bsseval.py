"""BSSEval v4 exactly as museval 0.4.1 computes it — 25–35× faster.

Definitions (museval ``metrics.bss_eval`` with ``framewise_filters=False``,
images mode, no permutation; ``evaluate``/``eval_mus_track`` defaults):

* distortion filters of ``filters_len`` = 512 taps, computed once on the whole
  signal: the least-squares projection of each estimate onto all delayed
  references (``C = (G + ε·I)⁻¹ D``) and onto its own reference (``Cⱼ``);
* frames of ``win`` samples every ``hop`` samples; ``nwin = ⌊(T − win + hop)/hop⌋``
  (the trailing partial frame is dropped) or one frame if ``win ≥ T``;
* per frame, with the frame's own reference samples projected through the
  global filters (length ``win + L − 1``)::

      SDR = 10·log10(‖s‖² / ‖ŝ − s‖²)          (the plain frame SNR)
      ISR = 10·log10(‖s‖² / ‖Pⱼ − s‖²)
      SIR = 10·log10(‖Pⱼ‖² / ‖P − Pⱼ‖²)
      SAR = 10·log10(‖P‖² / ‖ŝ − P‖²)

  ``+inf`` when a denominator is 0;
* a frame in which *any* reference or estimate of the evaluated group is
  silent (channel sum all zero) is NaN for every source and metric.

Where museval spends its time — full-length complex FFTs per signal pair, one
``np.linalg.solve`` per estimate, per-frame ``fftconvolve`` — this module:

1. gets every reference/reference and reference/estimate correlation at lags
   ``|k| < L`` from *block cross-spectra*: each signal's blocks are FFT'd once,
   the per-bin products are summed over blocks as one batched matrix product,
   and one short inverse FFT per pair gives the lags (O(N) per pair);
2. factors the Gram matrix once (Cholesky, LU fallback) for all estimates;
3. evaluates the frame projections' energies in the frequency domain
   (Parseval) from the frames' spectra and the filters' spectra, bins first,
   so each bin's projection of a chunk of frames is one small matrix product.

Everything is float64. :func:`sdr_frames` is the SDR-only path (no filters),
identical to museval's SDR by construction.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla

from ..errors import InputError

__all__ = [
    "BssEvalResult",
    "framing",
    "bss_eval_v4",
    "sdr_frames",
    "silent_frames",
    "museval_round",
]

EPS = np.finfo(float).eps

try:  # the gufunc behind np.linalg.solve, without its per-call error-state setup
    from numpy.linalg import _umath_linalg as _ul

    _solve = _ul.solve
except (ImportError, AttributeError):  # pragma: no cover - other numpy layouts
    _solve = np.linalg.solve


@dataclass
class BssEvalResult:
    """Framewise BSSEval values, each ``(nsrc, nwin)`` in dB.

    ``silent[t]`` is True where museval's silence rule made frame ``t`` NaN
    (any reference or estimate silent in it); ``dropped`` counts NaN frames
    per source."""

    sdr: np.ndarray
    isr: np.ndarray | None
    sir: np.ndarray | None
    sar: np.ndarray | None
    win: int
    hop: int
    starts: np.ndarray
    silent: np.ndarray  # (nsrc, nwin) bool: frame excluded by the NaN policy
    info: dict = field(default_factory=dict)

    @property
    def nwin(self) -> int:
        return int(self.starts.size)

    def metrics(self) -> dict[str, np.ndarray]:
        out = {"SDR": self.sdr}
        for k, v in (("ISR", self.isr), ("SIR", self.sir), ("SAR", self.sar)):
            if v is not None:
                out[k] = v
        return out

    @property
    def dropped(self) -> np.ndarray:
        return self.silent.sum(axis=1)


# ------------------------------------------------------------------ helpers

def framing(length: int, win: float, hop: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame starts and stops exactly as museval's ``Framing``."""
    if win < length:
        nwin = int(np.floor((length - win + hop) / hop))
    else:
        nwin = 1
    starts, stops = [], []
    for t in range(nwin):
        start = t * hop
        if np.isnan(start) or np.isinf(start):
            start = 0
        stop = min(t * hop + win, length)
        if np.isnan(stop) or np.isinf(stop):
            stop = length
        starts.append(int(np.floor(start)))
        stops.append(int(np.floor(stop)))
    return np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)


def _tiled(starts: np.ndarray, stops: np.ndarray) -> int:
    """The frame length when the frames tile ``[0, nwin·W)`` back to back
    (hop = win, the museval default), else 0."""
    w = stops - starts
    if starts.size and (w == w[0]).all() and (starts == np.arange(starts.size) * w[0]).all():
        return int(w[0])
    return 0


def _frame_sums(x: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(…, nwin): sums of ``x`` (…, T) over each frame."""
    W = _tiled(starts, stops)
    if W:
        n = starts.size
        return x[..., : n * W].reshape(x.shape[:-1] + (n, W)).sum(axis=-1)
    return np.stack([x[..., a:b].sum(axis=-1) for a, b in zip(starts, stops)], axis=-1)


def _silent_per_frame(x: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """(nsrc, nwin): source is silent in the frame (channel sum all zero)."""
    csum = x.sum(axis=1)  # (nsrc, T) — museval sums over channels first
    nz = csum != 0
    W = _tiled(starts, stops)
    if W:
        n = starts.size
        return ~nz[:, : n * W].reshape(nz.shape[0], n, W).any(axis=2)
    cum = np.concatenate([np.zeros((nz.shape[0], 1), np.int64), np.cumsum(nz, axis=1)], axis=1)
    return (cum[:, stops] - cum[:, starts]) == 0


def silent_frames(
    references: np.ndarray, estimates: np.ndarray, starts: np.ndarray, stops: np.ndarray, policy: str = "museval"
) -> np.ndarray:
    """Frames excluded per source. ``museval``: any reference or estimate of
    the group silent → every source's frame is NaN. ``target``: only the
    source's own reference or estimate silent → that source's frame is NaN."""
    sr = _silent_per_frame(references, starts, stops)
    se = _silent_per_frame(estimates, starts, stops)
    if policy == "museval":
        anyf = sr.any(axis=0) | se.any(axis=0)
        return np.broadcast_to(anyf, sr.shape).copy()
    if policy == "target":
        return sr | se
    raise InputError(f"nan_policy must be 'museval' or 'target', got {policy!r}", field="nan_policy")


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(num / den)
    out = np.where(den == 0, np.inf, out)
    return out


def _check(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(references, dtype=np.float64)
    e = np.asarray(estimates, dtype=np.float64)
    if r.ndim == 2:
        r = r[:, None, :]
    if e.ndim == 2:
        e = e[:, None, :]
    if r.ndim != 3 or e.ndim != 3:
        raise InputError(
            f"bsseval: expected (n_sources, channels, samples) arrays, got references {r.shape}, estimates {e.shape}",
            field="references",
        )
    if r.shape[:2] != e.shape[:2]:
        raise InputError(
            f"bsseval: references {r.shape[:2]} and estimates {e.shape[:2]} differ in (n_sources, channels)",
            field="estimates",
        )
    if r.shape[2] == 0:
        raise InputError("bsseval: references have 0 samples", field="references")
    for name, a in (("references", r), ("estimates", e)):
        if not np.isfinite(a.sum()) and not np.isfinite(a).all():  # (a sum is finite ⇒ all are)
            raise InputError(f"bsseval: {name} contain NaN/Inf samples", field=name)
    # museval's pad_or_truncate: estimates follow the references' length
    T = r.shape[2]
    if e.shape[2] > T:
        e = e[:, :, :T]
    elif e.shape[2] < T:
        e = np.pad(e, ((0, 0), (0, 0), (0, T - e.shape[2])))
    return r, e


# ------------------------------------------------------------------ SDR only

def sdr_frames(
    references: np.ndarray,
    estimates: np.ndarray,
    win: int = 44100,
    hop: int = 44100,
    nan_policy: str = "museval",
) -> BssEvalResult:
    """museval's framewise SDR without computing the distortion filters: in
    images mode the SDR is the frame SNR, ``10·log10(Σ s² / Σ (ŝ − s)²)``."""
    r, e = _check(references, estimates)
    T = r.shape[2]
    starts, stops = framing(T, win, hop)
    s2 = np.einsum("jct,jct->jt", r, r)  # (nsrc, T): exact per-frame sums below, no cumsum drift
    d = e - r
    d2 = np.einsum("jct,jct->jt", d, d)
    del d
    num = _frame_sums(s2, starts, stops)
    den = _frame_sums(d2, starts, stops)
    sdr = _db(num, den)
    silent = silent_frames(r, e, starts, stops, nan_policy)
    sdr = np.where(silent, np.nan, sdr)
    return BssEvalResult(sdr, None, None, None, int(win), int(hop), starts, silent)


# ---------------------------------------------------------------- full v4

def _in_threads(fn, items: list, workers: int | None = None) -> list:
    """Run ``fn`` on interleaved shares of ``items`` in worker threads (numpy
    and pocketfft release the GIL); returns each share's result."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, min(len(items), workers or min(4, os.cpu_count() or 1)))
    if n == 1:
        return [fn(items)]
    shares = [items[i::n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, shares))


def _blocks(x: np.ndarray, b0: int, n: int, block: int, length: int, offset: int) -> np.ndarray:
    """(S, n, length) windows of ``x`` (S, T) starting at ``b·block + offset``
    for ``b = b0 … b0 + n − 1``, zero outside ``[0, T)``: a strided view when
    all windows lie inside, else a zero-padded copy of just this span."""
    S, T = x.shape
    start = b0 * block + offset
    end = (b0 + n - 1) * block + offset + length
    if start < 0 or end > T:
        buf = np.zeros((S, end - start))
        lo, hi = max(start, 0), min(end, T)
        if hi > lo:
            buf[:, lo - start : hi - start] = x[:, lo:hi]
        x, start = buf, 0
    return np.lib.stride_tricks.as_strided(
        x[:, start:], shape=(S, n, length), strides=(x.strides[0], block * x.strides[1], x.strides[1]),
        writeable=False,
    )


def _block_correlations(refs: np.ndarray, ests: np.ndarray, L: int, block: int = 8192 - 1022,
                        group: int = 8) -> np.ndarray:
    """Correlations ``r[p, q, m] = Σₙ x_p[n] · s_q[n + m]`` for ``x_p`` over the
    references (R, T) then the estimates (E, T), ``s_q`` over the references,
    ``|m| < L``; returned with ``m + L − 1`` as the last index (shape
    (R + E, R, 2L − 1)).

    Block cross-spectra: each signal's length-``block`` blocks, and each
    reference's blocks extended by ``L − 1`` samples on both sides, are FFT'd
    once (size ``N ≥ block + 2(L − 1)``), bins first; per bin, Xᴴ·W sums the
    products over a group of blocks in one small matrix product; one inverse
    FFT per pair at the end. The blocks are views of the inputs (no padded
    copy of the signals) and are processed ``group`` at a time, so memory
    stays bounded, and cache-sized, for any signal length."""
    R, T = refs.shape
    E = ests.shape[0]
    P = R + E
    ext = L - 1
    N = sfft.next_fast_len(block + 2 * ext, real=True)
    F = N // 2 + 1
    nb = int(math.ceil(T / block))

    def partial(groups: list[tuple[int, int]]) -> np.ndarray:
        acc = np.zeros((F, P, R), dtype=np.complex128)
        X = Wf = None
        for b0, b1 in groups:
            n = b1 - b0
            if X is None or X.shape[2] != n:
                X = np.empty((F, P, n), dtype=np.complex128)
                Wf = np.empty((F, R, n), dtype=np.complex128)
            _rfft_into(_blocks(refs, b0, n, block, block, 0), N, X[:, :R])
            _rfft_into(_blocks(ests, b0, n, block, block, 0), N, X[:, R:])
            _rfft_into(_blocks(refs, b0, n, block, block + 2 * ext, -ext), N, Wf)
            np.conjugate(X, out=X)
            acc += X @ Wf.transpose(0, 2, 1)  # (F, P, R): Σ_blocks conj(X)·W
        return acc

    groups = [(b0, min(nb, b0 + group)) for b0 in range(0, nb, group)]
    cross = sum(_in_threads(partial, groups))
    c = sfft.irfft(cross.transpose(1, 2, 0), n=N, axis=-1, workers=-1)  # (P, R, N)
    # conj(X)·W ↔ Σₙ x[n] w[n + k], w starting ext samples before x: m = k − ext
    return np.ascontiguousarray(c[:, :, : 2 * ext + 1])


def block_levinson(gamma: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve symmetric positive definite block-Toeplitz systems
    ``Σ_b Γ(a − b) X[b] = D[a]`` (a, b = 0 … L−1) in O(L²R³) with the
    multichannel Levinson (Whittle–Wiggins–Robinson) recursion, for a batch of
    independent systems at once.

    ``gamma``: (…, 2L − 1, R, R), ``gamma[..., m + L − 1, :, :] = Γ(m)``,
    ``Γ(−m) = Γ(m)ᵀ``; ``rhs``: (…, L, R, E). Returns X (…, L, R, E). Raises
    LinAlgError if a prediction error covariance stops being positive definite
    (numerically singular input) — callers then fall back to Cholesky."""
    batch = rhs.shape[:-3]
    L, R, E = rhs.shape[-3:]
    gamma = gamma.reshape((-1,) + gamma.shape[-3:])
    rhs = rhs.reshape((-1, L, R, E))
    nb = rhs.shape[0]
    off = L - 1
    pos = gamma[:, off:]  # Γ(m), m = 0 … L−1
    neg = gamma[:, off::-1]  # Γ(−m)
    # hrow = [Γ(L−1) … Γ(1)], nrow = [Γ(−1) … Γ(−(L−1))], each (nb, R, (L−1)R)
    hrow = np.ascontiguousarray(pos[:, 1:][:, ::-1].transpose(0, 2, 1, 3).reshape(nb, R, (L - 1) * R))
    nrow = np.ascontiguousarray(neg[:, 1:].transpose(0, 2, 1, 3).reshape(nb, R, (L - 1) * R))
    Fw = np.zeros((nb, L * R, R))
    # the backward predictor lives in a buffer whose start moves back by one
    # block per order, so "[0; B]" is a view, never a copy
    Bbuf = np.zeros((nb, 2 * L * R, R))
    s0 = L * R
    X = np.zeros((nb, L * R, E))
    Fw[:, :R] = np.eye(R)
    Bbuf[:, s0 : s0 + R] = np.eye(R)
    ef = pos[:, 0].copy()
    eb = pos[:, 0].copy()
    dflat = rhs.reshape(nb, L * R, E)
    with np.errstate(all="ignore"):  # a singular step gives non-finite values, caught below
        X[:, :R] = _solve(pos[:, 0], rhs[:, 0])
        _recursion(L, R, hrow, nrow, Fw, Bbuf, s0, X, ef, eb, dflat)
    if not np.isfinite(X).all():
        raise np.linalg.LinAlgError("block Levinson: non-finite solution")
    return X.reshape(batch + (L, R, E))


def _recursion(L: int, R: int, hrow: np.ndarray, nrow: np.ndarray, Fw: np.ndarray, Bbuf: np.ndarray, s0: int,
               X: np.ndarray, ef: np.ndarray, eb: np.ndarray, dflat: np.ndarray) -> None:
    """The order recursion of :func:`block_levinson`, in place on Fw, Bbuf, X."""
    for n in range(L - 1):
        m = (n + 1) * R
        h = hrow[:, :, (L - 2 - n) * R :]  # Γ(n+1) … Γ(1)
        b_old = Bbuf[:, s0 : s0 + m]
        delta = h @ Fw[:, :m]
        nabla = nrow[:, :, :m] @ b_old
        kf = -_solve(eb, delta)
        kb = -_solve(ef, nabla)
        tb = Fw[:, :m] @ kb  # from the old forward predictor
        Fw[:, R : m + R] += b_old @ kf
        s0 -= R
        b_new = Bbuf[:, s0 : s0 + m + R]  # = [0; B_old]
        b_new[:, :m] += tb
        ef = ef + nabla @ kf
        eb = eb + delta @ kb
        if n % 32 == 31:
            d_ef = np.diagonal(ef, axis1=1, axis2=2)
            d_eb = np.diagonal(eb, axis1=1, axis2=2)
            if not ((d_ef > 0).all() and (d_eb > 0).all()):
                raise np.linalg.LinAlgError("block Levinson: prediction error not positive definite")
        theta = h @ X[:, :m]
        X[:, : m + R] += b_new @ _solve(eb, dflat[:, m : m + R] - theta)


def _toeplitz_gram(r: np.ndarray, L: int) -> np.ndarray:
    """G[(p,a),(q,b)] = Σₙ s_p[n−a] s_q[n−b] = r[p, q, a − b] for references."""
    R = r.shape[1]
    ext = L - 1
    a = np.arange(L)
    lag = (a[:, None] - a[None, :]) + ext  # index of (a − b)
    G = r[:R, :R][:, :, lag]  # (R, R, L, L)
    return G.transpose(0, 2, 1, 3).reshape(R * L, R * L)


def _solve_filters(G: np.ndarray, D: np.ndarray) -> np.ndarray:
    A = G + EPS * np.eye(G.shape[0])
    try:
        c, low = sla.cho_factor(A, lower=True, check_finite=False)
        return sla.cho_solve((c, low), D, check_finite=False)
    except (np.linalg.LinAlgError, sla.LinAlgError):
        pass
    try:
        with warnings.catch_warnings():  # ill-conditioned is expected here (museval solves it silently)
            warnings.simplefilter("ignore", sla.LinAlgWarning)
            return sla.solve(A, D, assume_a="sym", check_finite=False)
    except (np.linalg.LinAlgError, sla.LinAlgError):  # museval's fallback
        return np.linalg.lstsq(G, D, rcond=None)[0]


def bss_eval_v4(
    references: np.ndarray,
    estimates: np.ndarray,
    win: int = 44100,
    hop: int = 44100,
    *,
    filters_len: int = 512,
    nan_policy: str = "museval",
    frame_chunk: int = 2,
) -> BssEvalResult:
    """Framewise SDR/ISR/SIR/SAR of ``estimates`` against ``references``, both
    ``(n_sources, channels, samples)`` (museval uses samples × channels — only
    the axis order differs). Estimates are zero-padded or truncated to the
    references' length, as museval does."""
    tick = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = round(now - tick[0], 4)
        tick[0] = now

    r, e = _check(references, estimates)
    nsrc, C, T = r.shape
    L = int(filters_len)
    starts, stops = framing(T, win, hop)
    nwin = starts.size
    silent = silent_frames(r, e, starts, stops, nan_policy)
    R = nsrc * C
    # energy per channel (0 if all zero, or if x² underflows: then look at the samples)
    ref_ch = np.einsum("pt,pt->p", r.reshape(R, T), r.reshape(R, T))
    est_ch = np.einsum("pt,pt->p", e.reshape(R, T), e.reshape(R, T))
    zero = [(x[j] == 0).all() for x, en in ((r, ref_ch), (e, est_ch))
            for j in np.flatnonzero(en.reshape(nsrc, C).sum(axis=1) == 0)]
    if any(zero):
        warnings.warn("bsseval: a reference or estimate is silent over the whole signal; "
                      "museval refuses this input, stemlab marks the affected frames NaN", RuntimeWarning, stacklevel=2)

    # 1. correlations at |lag| < L: reference/reference and estimate/reference
    lap("check")
    corr = _block_correlations(r.reshape(R, T), e.reshape(R, T), L, block=_block_size(T, L))  # (2R, R, 2L-1)
    lap("correlations")
    ext = L - 1
    # 2. filters: C = (G + ε·I)⁻¹ D with G block-Toeplitz in the lag → block
    #    Levinson (O(L²R³)); Cholesky of the full Gram matrix if it breaks down
    gamma = corr[:R, :R].transpose(2, 0, 1).copy()  # Γ(m)[p, q] = r[p, q, m]
    gamma[ext] += EPS * np.eye(R)
    k = np.arange(L)
    rhs = corr[R:, :, ext - k].transpose(2, 1, 0)  # (L, ref p, est e): Σₙ ŝ_e[n] s_p[n − k]
    solver = "levinson"
    try:
        Call = block_levinson(gamma, rhs).transpose(1, 0, 2)  # (ref p, tap, est e)
        # each source's own C-channel system, all sources in one batched recursion
        own = [slice(j * C, (j + 1) * C) for j in range(nsrc)]
        Cown = block_levinson(np.stack([gamma[:, o, o] for o in own]), np.stack([rhs[:, o, o] for o in own]))
        Cown = Cown.transpose(0, 2, 1, 3)  # (nsrc, c_in, tap, c_out)
    except np.linalg.LinAlgError:
        solver = "cholesky"
        G = _toeplitz_gram(corr, L)
        D = rhs.transpose(1, 0, 2).reshape(R * L, R)
        Call = _solve_filters(G, D).reshape(R, L, R)
        Cown = np.zeros((nsrc, C, L, C))
        for j in range(nsrc):
            rows = np.arange(j * C * L, (j + 1) * C * L)
            Cown[j] = _solve_filters(G[np.ix_(rows, rows)], D[rows][:, j * C : (j + 1) * C]).reshape(C, L, C)
        del G, D
    del corr
    lap("filters")
    # conditioning: how far the filters' coefficients exceed what projecting
    # ŝ (‖P‖ ≤ ‖ŝ‖) needs. Large values mean near-singular references (band-
    # limited lossy decodes, identical channels): the coefficients in the
    # null space are set by rounding and so are ISR/SIR/SAR — museval's too.
    ref_energy = float(ref_ch.sum())
    est_energy = est_ch
    coef = np.sqrt((Call**2).sum(axis=(0, 1)))  # per estimate channel
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(est_energy > 0, coef * math.sqrt(ref_energy) / np.sqrt(est_energy), 0.0)
    filter_gain = float(np.nanmax(gain)) if gain.size else 0.0

    # 3. frame projections in the frequency domain (linear convolution → N ≥ len + L − 1),
    #    bins first: per bin, P = H·X is one small matrix product over all frames
    flen = int((stops - starts).max())
    N = sfft.next_fast_len(flen + L - 1, real=True)
    F = N // 2 + 1
    Hall = np.ascontiguousarray(sfft.rfft(Call, n=N, axis=1).transpose(1, 2, 0))  # (F, E, R)
    Hown_f = sfft.rfft(Cown, n=N, axis=2)  # (nsrc, c_in, F, c_out)
    Hown = np.zeros((F, R, R), dtype=np.complex128)  # block diagonal: each source's own references
    for j in range(nsrc):
        Hown[:, j * C : (j + 1) * C, j * C : (j + 1) * C] = Hown_f[j].transpose(1, 2, 0)
    del Hown_f
    wts = np.full(F, 2.0 / N)  # Parseval: interior bins count twice
    wts[0] = 1.0 / N
    if N % 2 == 0:
        wts[-1] = 1.0 / N
    e_true = np.zeros((nsrc, nwin))
    e_err = np.zeros((nsrc, nwin))
    e_spat = np.zeros((nsrc, nwin))
    e_pj = np.zeros((nsrc, nwin))
    e_interf = np.zeros((nsrc, nwin))
    e_pall = np.zeros((nsrc, nwin))
    e_art = np.zeros((nsrc, nwin))
    rf = r.reshape(R, T)
    ef = e.reshape(R, T)
    W = _tiled(starts, stops)

    def energy(Y: np.ndarray) -> np.ndarray:
        """(F, R, nt) spectra → (nsrc, nt) energies, channels summed."""
        v = Y.view(np.float64).reshape(F, -1)  # re, im interleaved
        acc = np.einsum("f,fk->k", wts, v * v)  # (no BLAS: its threads would fight ours)
        return (acc[0::2] + acc[1::2]).reshape(nsrc, C, -1).sum(axis=1)

    def frames(chunks: list[int]) -> None:
        Xr = Xe = None
        for t0 in chunks:
            nt = min(frame_chunk, nwin - t0)
            if W:  # frames tile the signal: views, no copies
                fr = rf[:, t0 * W : (t0 + nt) * W].reshape(R, nt, W)
                fe = ef[:, t0 * W : (t0 + nt) * W].reshape(R, nt, W)
            else:
                fr = np.zeros((R, nt, flen))
                fe = np.zeros((R, nt, flen))
                for i in range(nt):
                    a, b = starts[t0 + i], stops[t0 + i]
                    fr[:, i, : b - a] = rf[:, a:b]
                    fe[:, i, : b - a] = ef[:, a:b]
            sl = slice(t0, t0 + nt)
            # time-domain SDR terms: exactly museval's sums
            frs = fr.reshape(nsrc, C, nt, -1)
            e_true[:, sl] = np.einsum("jctn,jctn->jt", frs, frs)
            d = (fe - fr).reshape(nsrc, C, nt, -1)
            e_err[:, sl] = np.einsum("jctn,jctn->jt", d, d)
            del d, frs
            if Xr is None or Xr.shape[2] != nt:
                Xr = np.empty((F, R, nt), dtype=np.complex128)
                Xe = np.empty((F, R, nt), dtype=np.complex128)
            _rfft_into(fr, N, Xr)
            _rfft_into(fe, N, Xe)
            Pall = Hall @ Xr  # (F, E, nt)
            Pown = Hown @ Xr
            e_pall[:, sl] = energy(Pall)
            e_pj[:, sl] = energy(Pown)
            np.subtract(Xe, Pall, out=Xe)  # ŝ − P
            e_art[:, sl] = energy(Xe)
            np.subtract(Pall, Pown, out=Pall)  # P − Pⱼ
            e_interf[:, sl] = energy(Pall)
            np.subtract(Pown, Xr, out=Pown)  # Pⱼ − s
            e_spat[:, sl] = energy(Pown)

    lap("filter_spectra")
    _in_threads(frames, list(range(0, nwin, frame_chunk)))
    lap("frames")
    sdr = _db(e_true, e_err)
    isr = _db(e_true, e_spat)
    sir = _db(e_pj, e_interf)
    sar = _db(e_pall, e_art)
    out = [np.where(silent, np.nan, m) for m in (sdr, isr, sir, sar)]
    return BssEvalResult(out[0], out[1], out[2], out[3], int(win), int(hop), starts, silent,
                         info={"filters_len": L, "fft_frames": N, "solver": solver, "filter_gain": filter_gain,
                               "seconds": seconds})


def _rfft_into(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """rfft of ``x`` (R, nt, len) zero-padded to ``n``, written bins first into
    ``out`` (F, R, nt)."""
    try:
        np.fft.rfft(x, n=n, axis=-1, out=out.transpose(1, 2, 0))  # numpy ≥ 2: no extra pass
    except TypeError:
        out[...] = sfft.rfft(x, n=n, axis=-1).transpose(2, 0, 1)


def _block_size(T: int, L: int) -> int:
    """Block length for the correlations: ~16k FFTs for long signals, one
    block for short ones."""
    ext = 2 * (L - 1)
    target = max(8192, sfft.next_fast_len(4 * ext, real=True)) - ext
    if T <= target:
        return max(1, sfft.next_fast_len(T + ext, real=True) - ext)
    return target


# ----------------------------------------------------------------- storage

def museval_round(x: float, precision: str = ".00001") -> float:
    """museval's TrackStore rounding: ±inf → NaN, else Decimal quantize (half-even)."""
    from decimal import Decimal

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return float("nan")
    if math.isinf(x):
        return float("nan")
    return float(Decimal(Decimal(float(x)).quantize(Decimal(precision))))
