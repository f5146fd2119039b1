"""BSSEval v4 in torch: :mod:`stemlab.metrics.bsseval`'s algorithm on CPU or
CUDA tensors, batched over items (tracks or chunks) of equal shape.

The same definitions as the numpy module (museval 0.4.1, images mode,
time-invariant filters) in the same three steps, each a few batched tensor
operations:

1. correlations at lags ``|m| < L`` from block cross-spectra (each signal's
   blocks FFT'd once, per-bin products summed over blocks by one batched
   matrix product, one inverse FFT per pair) — always in float64 (they set
   the filters; see *Precision*);
2. the distortion filters ``(G + ε·I)⁻¹ D`` in float64, for every item at
   once: block Levinson (the numpy path's solver; ``solver="levinson"``),
   Cholesky of the block-Toeplitz Gram matrix (``"cholesky"``) or LU, which
   is museval's own ``np.linalg.solve`` (``"lu"``). Levinson and Cholesky
   fall back as the numpy path does (Levinson → Cholesky → symmetric solve
   → least squares) for the items where they break down, which needs one
   read of a device flag; ``"lu"`` has no fallback and never reads the
   device (an exactly singular system gives non-finite filters, flagged in
   ``info["failed"]``, and NaN ISR/SIR/SAR). ``"auto"``: Levinson on CPU,
   LU on CUDA (hundreds of small sequential steps are slow to launch on a
   GPU; one batched LU of the ``RL × RL`` Gram matrix is fast). On CPU
   ``"lu"`` solves the items one at a time: torch 2.13's batched CPU LU
   (oneMKL) hangs once ``torch.set_num_threads`` has changed in the process;
3. per frame, the projections' energies by Parseval from the frames'
   spectra and the filters' spectra (one batched complex matrix product per
   chunk of frames) and the time-domain terms (‖s‖², ‖ŝ − s‖², silence).

*Precision.* ``dtype`` is the frames' dtype (step 3): float64 gives the
numpy path's numbers (≤ 1e-9 dB observed); float32 halves the memory and
runs at float32 speed — SDR is still computed from float64 sums of the
float32 samples (exact for float32 inputs), and ISR/SIR/SAR carry the
float32 rounding of the projections (see ``docs/metrics.md`` for the
measured differences against float64 and against museval's own
sensitivity). Steps 1 and 2 are float64 in both: the Gram matrix of real
music is ill-conditioned and float32 correlations would move SIR by tenths
of a dB. TF32 is disabled inside the calls (``allow_tf32`` restores the
global flags after): its 10-bit mantissa would set ISR/SIR/SAR by rounding.

Nothing here copies to the host: inputs stay on their device, results are
tensors on it; the frame layout (starts, lengths) is computed from shapes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
import torch

from ...errors import InputError
from .. import bsseval as NB

__all__ = ["SOLVERS", "TorchBssEval", "block_levinson", "bss_eval_v4", "correlations", "sdr_frames"]

EPS = float(np.finfo(float).eps)
SOLVERS = ("auto", "levinson", "cholesky", "lu")
#: bytes of complex intermediates per batch of blocks / frames (bounded
#: memory for any signal length); larger on a GPU, where bigger batches pay
_BUDGET = {"cpu": 64 << 20, "cuda": 1 << 30}


def _budget(device: torch.device) -> int:
    return _BUDGET.get(device.type, _BUDGET["cuda"])


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@contextlib.contextmanager
def no_tf32(device: torch.device, allow_tf32: bool = False) -> Iterator[None]:
    """TF32 off for float32/complex64 matrix products on CUDA during the
    block (the global flags are restored after); a no-op on CPU."""
    if device.type != "cuda" or allow_tf32:
        yield
        return
    mm, cd = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = mm
        torch.backends.cudnn.allow_tf32 = cd


@dataclass
class TorchBssEval:
    """Framewise values ``(batch, nsrc, nwin)`` in dB (tensors on the inputs'
    device, float64); ``silent`` marks the frames the NaN policy excluded.
    ``info``: ``solver`` (per call), ``failed`` ((batch,) bool tensor: the
    filter solve broke down for that item — its ISR/SIR/SAR are NaN), and
    ``Call`` (batch, R, L, E) the all-sources filters (float64)."""

    sdr: torch.Tensor
    isr: torch.Tensor | None
    sir: torch.Tensor | None
    sar: torch.Tensor | None
    silent: torch.Tensor
    starts: np.ndarray
    stops: np.ndarray
    win: int
    hop: int
    info: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, torch.Tensor]:
        out = {"SDR": self.sdr}
        for k, v in (("ISR", self.isr), ("SIR", self.sir), ("SAR", self.sar)):
            if v is not None:
                out[k] = v
        return out


# ----------------------------------------------------------- correlations

def correlations(xr: torch.Tensor, xe: torch.Tensor, L: int, block: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``r[b, p, q, m + L − 1] = Σₙ x_p[n] · s_q[n + m]`` for ``x_p`` over the
    references (R rows) then the estimates (E rows), ``s_q`` over the
    references, ``|m| < L``: shape (batch, R + E, R, 2L − 1), float64; and
    the rows' energies ``Σₙ x[n]²`` (batch, R + E).

    ``xr`` (batch, R, T), ``xe`` (batch, E, T), float64. Block
    cross-spectra as in :func:`stemlab.metrics.bsseval._correlations`: the
    length-``block`` blocks of every row and the references' blocks
    extended by ``L − 1`` samples on both sides are FFT'd (size ``N ≥ block
    + 2(L − 1)``), ``Σ_blocks conj(X)·W`` per bin is one batched matrix
    product per batch of blocks, and one inverse FFT gives the lags."""
    nb_, R, T = xr.shape
    E = xe.shape[1]
    P = R + E
    ext = L - 1
    block = int(block or NB._block_size(T, L))
    N = sfft.next_fast_len(block + 2 * ext, real=True)
    F = N // 2 + 1
    nb = -(-T // block)
    span = nb * block
    rp = torch.nn.functional.pad(xr, (ext, span - T + ext))  # (batch, R, span + 2 ext)
    ep = torch.nn.functional.pad(xe, (0, span - T))
    rb = rp[..., ext : ext + span].unflatten(-1, (nb, block))  # (batch, R, nb, block): views
    eb = ep.unflatten(-1, (nb, block))
    wv = rp.unfold(-1, block + 2 * ext, block)  # (batch, R, nb, block + 2 ext): overlapping views
    energy = torch.cat([torch.einsum("bpt,bpt->bp", xr, xr), torch.einsum("bpt,bpt->bp", xe, xe)], 1)
    acc = torch.zeros((nb_, F, P, R), dtype=torch.complex128, device=xr.device)
    per_block = nb_ * (P + R) * F * 16 * 2  # spectra + their bins-first copies
    step = max(1, min(nb, _budget(xr.device) // max(per_block, 1)))
    for k0 in range(0, nb, step):
        k1 = min(nb, k0 + step)
        # bins first, contiguous: one batched matrix product per bin (a strided or
        # conjugate-view operand makes CPU bmm copy every matrix)
        W = torch.fft.rfft(wv[:, :, k0:k1], n=N).permute(0, 3, 2, 1).contiguous()  # (batch, F, k, R)
        for rows, src in ((slice(0, R), rb), (slice(R, P), eb)):
            X = torch.conj_physical_(torch.fft.rfft(src[:, :, k0:k1], n=N).permute(0, 3, 1, 2).contiguous())
            acc[:, :, rows] += torch.matmul(X, W)  # (batch, F, rows, R): Σ_blocks conj(X)·W
        del W, X
    c = torch.fft.irfft(acc.permute(0, 2, 3, 1), n=N)  # (batch, P, R, N)
    # conj(X)·W ↔ Σₙ x[n] w[n + k], w starting ext samples before x: m = k − ext
    return c[..., : 2 * ext + 1].contiguous(), energy


# ------------------------------------------------------------------ solve

def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve_ex(a, b, check_errors=False)[0]


def block_levinson(gamma: torch.Tensor, rhs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stemlab.metrics.bsseval.block_levinson` for a batch of
    systems, without raising: ``gamma`` (n, 2L − 1, R, R), ``rhs`` (n, L,
    R, E) → X (n, L, R, E) and ``bad`` (n,) bool — a prediction error
    covariance stopped being positive definite at some order or X is not
    finite; the numpy path raises there and falls back to Cholesky."""
    n, L, R, E = rhs.shape
    off = L - 1
    dev, dt = rhs.device, rhs.dtype
    pos = gamma[:, off:]  # Γ(m), m = 0 … L−1
    neg = gamma[:, : off + 1].flip(1)  # Γ(−m)
    hrow = pos[:, 1:].flip(1).permute(0, 2, 1, 3).reshape(n, R, (L - 1) * R)  # [Γ(L−1) … Γ(1)]
    nrow = neg[:, 1:].permute(0, 2, 1, 3).reshape(n, R, (L - 1) * R)  # [Γ(−1) … Γ(−(L−1))]
    eye = torch.eye(R, dtype=dt, device=dev)
    Fw = torch.zeros((n, L * R, R), dtype=dt, device=dev)
    Bbuf = torch.zeros((n, 2 * L * R, R), dtype=dt, device=dev)
    s0 = L * R
    X = torch.zeros((n, L * R, E), dtype=dt, device=dev)
    Fw[:, :R] = eye
    Bbuf[:, s0 : s0 + R] = eye
    ef = pos[:, 0].clone()
    eb = pos[:, 0].clone()
    bad = torch.zeros(n, dtype=torch.bool, device=dev)
    dflat = rhs.reshape(n, L * R, E)
    X[:, :R] = _solve(pos[:, 0], rhs[:, 0])
    for k in range(L - 1):
        m = (k + 1) * R
        h = hrow[:, :, (L - 2 - k) * R :]  # Γ(k+1) … Γ(1)
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
        # positive definite at every order (Cholesky), as the numpy recursion checks
        bad |= (torch.linalg.cholesky_ex(ef)[1] != 0) | (torch.linalg.cholesky_ex(eb)[1] != 0)
        theta = h @ X[:, :m]
        X[:, : m + R] += b_new @ _solve(eb, dflat[:, m : m + R] - theta)
    bad |= ~torch.isfinite(X).flatten(1).all(1)
    return X.reshape(n, L, R, E), bad


def _toeplitz_gram(corr: torch.Tensor, R: int, L: int) -> torch.Tensor:
    """G[b, (p,a), (q,c)] = r[b, p, q, a − c] (batch, RL, RL)."""
    ext = L - 1
    a = torch.arange(L, device=corr.device)
    lag = (a[:, None] - a[None, :]) + ext
    G = corr[:, :R, :R][..., lag]  # (batch, R, R, L, L)
    return G.permute(0, 1, 3, 2, 4).reshape(corr.shape[0], R * L, R * L)


def _dense_solve(G: torch.Tensor, D: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G + ε·I)⁻¹ D`` per item by ``cholesky`` or ``lu``; and per item
    whether it failed (factorization info ≠ 0 or a non-finite solution)."""
    A = G + EPS * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    if method == "cholesky":
        Lc, info = torch.linalg.cholesky_ex(A, check_errors=False)
        X = torch.cholesky_solve(D, Lc)
    elif A.device.type == "cpu" and A.shape[0] > 1:
        # item by item on CPU: torch's batched LU through oneMKL (torch 2.13)
        # hangs ('Parameter 6 was incorrect on entry to DLASWP') once
        # torch.set_num_threads has been changed in the process; one item at a
        # time is unaffected and costs nothing on a CPU
        parts = [torch.linalg.solve_ex(A[i], D[i], check_errors=False) for i in range(A.shape[0])]
        X = torch.stack([x for x, _ in parts])
        info = torch.stack([i for _, i in parts])
    else:
        X, info = torch.linalg.solve_ex(A, D, check_errors=False)
    bad = (info != 0) | ~torch.isfinite(X).flatten(1).all(1)
    return X, bad


def _fallback(G: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The numpy path's ladder (``_solve_filters``) for items known to be
    hard: Cholesky, then a symmetric (LDLᵀ) solve, then least squares."""
    X, bad = _dense_solve(G, D, "cholesky")
    if bool(bad.any()):
        A = G + EPS * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
        LD, piv, info = torch.linalg.ldl_factor_ex(A, hermitian=False, check_errors=False)
        X2 = torch.linalg.ldl_solve(LD, piv, D)
        bad2 = (info != 0) | ~torch.isfinite(X2).flatten(1).all(1)
        X = torch.where(bad[:, None, None], X2, X)
        if bool((bad & bad2).any()):
            if G.device.type == "cpu":
                X3 = torch.linalg.lstsq(G, D, driver="gelsd").solution
            else:  # lstsq on CUDA needs full rank ('gels'); the pseudo-inverse does not
                X3 = torch.linalg.pinv(G, hermitian=True) @ D
            X = torch.where((bad & bad2)[:, None, None], X3, X)
    return X


def filters(corr: torch.Tensor, nsrc: int, C: int, L: int, solver: str = "levinson"
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Distortion filters from the correlations (batch, 2R, R, 2L − 1):
    ``Call`` (batch, ref p, tap, est e), ``Cown`` (batch, nsrc, c_in, tap,
    c_out), per item whether the solve failed (only for ``lu``, which has no
    fallback), and the solver used (``levinson``/``cholesky``/``lu``, with
    ``+fallback`` when some item needed it)."""
    nb = corr.shape[0]
    R = nsrc * C
    ext = L - 1
    gamma = corr[:, :R, :R].permute(0, 3, 1, 2).clone()  # Γ(m)[p, q] = r[p, q, m]
    gamma[:, ext] += EPS * torch.eye(R, dtype=corr.dtype, device=corr.device)
    k = torch.arange(L, device=corr.device)
    rhs = corr[:, R:][..., ext - k].permute(0, 3, 2, 1)  # (batch, L, ref p, est e): Σₙ ŝ_e[n] s_p[n − k]
    own = [slice(j * C, (j + 1) * C) for j in range(nsrc)]
    none = torch.zeros(nb, dtype=torch.bool, device=corr.device)
    if solver == "levinson":
        Call, bad_all = block_levinson(gamma, rhs)
        g_own = torch.stack([gamma[:, :, o, o] for o in own], 1).reshape(nb * nsrc, 2 * L - 1, C, C)
        r_own = torch.stack([rhs[:, :, o, o] for o in own], 1).reshape(nb * nsrc, L, C, C)
        Cown, bad_own = block_levinson(g_own, r_own)
        Call = Call.permute(0, 2, 1, 3)  # (batch, ref p, tap, est e)
        Cown = Cown.reshape(nb, nsrc, L, C, C).permute(0, 1, 3, 2, 4)  # (batch, nsrc, c_in, tap, c_out)
        bad = bad_all | bad_own.reshape(nb, nsrc).any(1)
        if not bool(bad.any()):  # one read of a device flag: is any item's fallback needed?
            return Call, Cown, none, "levinson"
        Ca, Co = _dense_filters(corr, rhs, nsrc, C, L, "fallback", items=bad)
        sel = bad[:, None, None, None]
        return torch.where(sel, Ca, Call), torch.where(sel[..., None], Co, Cown), none, "levinson+fallback"
    Ca, Co, failed = _dense_filters(corr, rhs, nsrc, C, L, solver)
    return Ca, Co, failed, solver


def _dense_filters(corr: torch.Tensor, rhs: torch.Tensor, nsrc: int, C: int, L: int, method: str,
                   items: torch.Tensor | None = None) -> Any:
    """Filters from the dense Gram matrix (batch, RL, RL): ``method``
    ``lu``/``cholesky`` for every item (``cholesky`` falling back, which
    reads a device flag) or ``fallback`` — the numpy ladder for ``items``
    (the others are zeros)."""
    nb = corr.shape[0]
    R = nsrc * C
    if items is not None:  # only the items that need it (index on the host: the fallback path reads flags anyway)
        idx = torch.nonzero(items).flatten()
        corr, rhs = corr[idx], rhs[idx]
    G = _toeplitz_gram(corr, R, L)
    D = rhs.permute(0, 2, 1, 3).reshape(corr.shape[0], R * L, R)  # rows (ref p, tap)
    Gown = torch.stack([G[:, j * C * L : (j + 1) * C * L, j * C * L : (j + 1) * C * L] for j in range(nsrc)], 1)
    Down = torch.stack([D[:, j * C * L : (j + 1) * C * L, j * C : (j + 1) * C] for j in range(nsrc)], 1)
    Gown = Gown.reshape(-1, C * L, C * L)
    Down = Down.reshape(-1, C * L, C)
    if method == "fallback":
        Ca, Co = _fallback(G, D), _fallback(Gown, Down)
        failed = None
    elif method == "cholesky":
        Ca, bad_a = _dense_solve(G, D, "cholesky")
        Co, bad_o = _dense_solve(Gown, Down, "cholesky")
        if bool(bad_a.any()) or bool(bad_o.any()):
            Ca = torch.where(bad_a[:, None, None], _fallback(G, D), Ca)
            Co = torch.where(bad_o[:, None, None], _fallback(Gown, Down), Co)
        failed = torch.zeros(nb, dtype=torch.bool, device=corr.device)
    else:  # lu: museval's own solve, no fallback, no host read
        Ca, bad_a = _dense_solve(G, D, "lu")
        Co, bad_o = _dense_solve(Gown, Down, "lu")
        failed = bad_a | bad_o.reshape(nb, nsrc).any(1)
    n = corr.shape[0]
    Ca = Ca.reshape(n, R, L, R)
    Co = Co.reshape(n, nsrc, C, L, C)
    if items is not None:
        full_a = torch.zeros((nb, R, L, R), dtype=Ca.dtype, device=Ca.device)
        full_o = torch.zeros((nb, nsrc, C, L, C), dtype=Co.dtype, device=Co.device)
        full_a[idx], full_o[idx] = Ca, Co
        return full_a, full_o
    return Ca, Co, failed


def _spectra(Call: torch.Tensor, Cown: torch.Tensor, nsrc: int, C: int, N: int, cdtype: torch.dtype) -> torch.Tensor:
    """The filters' spectra (batch, F, 2R, R): [all-sources filter;
    own-source filter (block diagonal)] per bin."""
    nb, R = Call.shape[0], nsrc * C
    F = N // 2 + 1
    H = torch.zeros((nb, F, 2 * R, R), dtype=torch.complex128, device=Call.device)
    H[:, :, :R] = torch.fft.rfft(Call, n=N, dim=2).permute(0, 2, 3, 1)  # (batch, F, E, R)
    Hown = torch.fft.rfft(Cown, n=N, dim=3)  # (batch, nsrc, c_in, F, c_out)
    for j in range(nsrc):
        H[:, :, R + j * C : R + (j + 1) * C, j * C : (j + 1) * C] = Hown[:, j].permute(0, 2, 3, 1)
    return H.to(cdtype)


# ------------------------------------------------------------------ frames

def _frames(x: torch.Tensor, starts: np.ndarray, win: int, hop: int, flen: int) -> torch.Tensor:
    """(batch, rows, nwin, flen) views of ``x`` (batch, rows, T) at museval's frames."""
    T = x.shape[-1]
    nwin = int(starts.size)
    if flen >= T or win >= T:  # one frame of the whole signal
        return x[..., None, :T]
    return x.unfold(-1, win, hop)[:, :, :nwin]


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``10·log10(num/den)``, +inf where ``den`` is 0 (numpy path's ``_db``)."""
    inf = torch.full_like(num, math.inf)
    return torch.where(den == 0, inf, 10.0 * torch.log10(num / den))


def _energy(z: torch.Tensor, w: torch.Tensor, N: int) -> torch.Tensor:
    """Parseval: ‖y‖² of the real signals whose one-sided spectra are ``z``
    (batch, F, rows, frames) → (batch, rows, frames), float64. ``w``: the
    bins' weights (2, DC and Nyquist 1) in z's real dtype."""
    zr = torch.view_as_real(z)  # (batch, F, rows, frames, 2)
    nb, F = zr.shape[:2]
    a = (zr * zr).reshape(nb, F, -1)
    e = torch.matmul(w, a).reshape(zr.shape[0], zr.shape[2], zr.shape[3], 2).sum(-1)
    return e.to(torch.float64) / N


def _frame_pass(xr: torch.Tensor, xe: torch.Tensor, nsrc: int, C: int, starts: np.ndarray, stops: np.ndarray,
                win: int, hop: int, H: torch.Tensor | None, N: int) -> dict[str, torch.Tensor]:
    """Per frame (batch, nsrc, nwin): ‖s‖², ‖ŝ − s‖², silence of references
    and estimates and, with the filters' spectra ``H``, the projections'
    energies ‖P‖², ‖Pⱼ‖², ‖ŝ − P‖², ‖P − Pⱼ‖², ‖Pⱼ − s‖²."""
    nb, R, _ = xr.shape
    nwin = int(starts.size)
    flen = int((stops - starts).max())
    fr, fe = _frames(xr, starts, win, hop, flen), _frames(xe, starts, win, hop, flen)
    keys = ("true", "err", "pall", "pj", "art", "interf", "spat") if H is not None else ("true", "err")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys + ("silent_r", "silent_e")}
    F = N // 2 + 1 if H is not None else 0
    per_frame = nb * (flen * 2 * R * 8 * 3 + F * R * 16 * 14)
    step = max(1, min(nwin, _budget(xr.device) // max(per_frame, 1)))
    if H is not None:
        w = torch.full((F,), 2.0, dtype=xr.dtype, device=xr.device)
        w[0] = 1.0
        if N % 2 == 0:
            w[-1] = 1.0  # Nyquist's bin counts once, like DC
    for t0 in range(0, nwin, step):
        t1 = min(nwin, t0 + step)
        r, e = fr[:, :, t0:t1], fe[:, :, t0:t1]  # (batch, R, nt, flen)
        nt = t1 - t0
        r64, e64 = r.to(torch.float64), e.to(torch.float64)
        # time-domain terms as the numpy path (museval): per channel, then over channels
        d64 = e64 - r64
        out["true"].append(torch.einsum("brtn,brtn->brt", r64, r64).reshape(nb, nsrc, C, nt).sum(2))
        out["err"].append(torch.einsum("brtn,brtn->brt", d64, d64).reshape(nb, nsrc, C, nt).sum(2))
        out["silent_r"].append((r64.reshape(nb, nsrc, C, nt, -1).sum(2) == 0).all(-1))
        out["silent_e"].append((e64.reshape(nb, nsrc, C, nt, -1).sum(2) == 0).all(-1))
        del r64, e64, d64
        if H is None:
            continue
        Xr = torch.fft.rfft(r, n=N).permute(0, 3, 1, 2).contiguous()  # (batch, F, R, nt)
        Xe = torch.fft.rfft(e, n=N).permute(0, 3, 1, 2).contiguous()
        PP = torch.matmul(H, Xr)  # (batch, F, 2R, nt): [P; Pⱼ]
        P, Pj = PP[:, :, :R], PP[:, :, R:]
        for key, z in (("pall", P), ("pj", Pj), ("art", Xe - P), ("interf", P - Pj), ("spat", Pj - Xr)):
            out[key].append(_energy(z, w, N).reshape(nb, nsrc, C, nt).sum(2))
        del Xr, Xe, PP, P, Pj
    return {k: torch.cat(v, -1) for k, v in out.items()}


# ------------------------------------------------------------------- API

def _check(references: torch.Tensor, estimates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(batch, nsrc, C, T) tensors of both (a batch of one added for 3-D
    inputs), and whether it was added."""
    if not isinstance(references, torch.Tensor) or not isinstance(estimates, torch.Tensor):
        raise InputError("torch bsseval: references and estimates must be torch tensors", field="references")
    if references.dim() not in (3, 4) or references.shape != estimates.shape:
        raise InputError(f"torch bsseval: expected equal (batch, sources, channels, samples) or (sources, "
                         f"channels, samples) shapes, got references {tuple(references.shape)}, estimates "
                         f"{tuple(estimates.shape)}", field="estimates")
    if references.device != estimates.device:
        raise InputError(f"torch bsseval: references on {references.device}, estimates on {estimates.device}",
                         field="estimates")
    if not (references.is_floating_point() and estimates.is_floating_point()):
        raise InputError("torch bsseval: expected floating-point samples", field="references")
    if references.shape[-1] == 0 or references.shape[-3] == 0:
        raise InputError(f"torch bsseval: empty input {tuple(references.shape)}", field="references")
    added = references.dim() == 3
    if added:
        references, estimates = references[None], estimates[None]
    return references, estimates, added


def _resolve_dtype(dtype: Any, x: torch.Tensor) -> torch.dtype:
    if dtype is None:
        dtype = x.dtype
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"torch bsseval: dtype must be float32 or float64, got {dtype}", field="dtype")
    return dtype


def resolve_solver(solver: str, device: torch.device) -> str:
    if solver not in SOLVERS:
        raise InputError(f"torch bsseval: solver must be one of {SOLVERS}, got {solver!r}", field="solver")
    if solver == "auto":
        return "levinson" if device.type == "cpu" else "lu"
    return solver


def _policy(sr: torch.Tensor, se: torch.Tensor, policy: str) -> torch.Tensor:
    if policy == "museval":
        return (sr.any(1, keepdim=True) | se.any(1, keepdim=True)).expand_as(sr)
    if policy == "target":
        return sr | se
    raise InputError(f"nan_policy must be 'museval' or 'target', got {policy!r}", field="nan_policy")


def bss_eval_v4(
    references: torch.Tensor,
    estimates: torch.Tensor,
    win: int = 44100,
    hop: int = 44100,
    *,
    filters_len: int = 512,
    nan_policy: str = "museval",
    full: bool = True,
    dtype: Any = None,
    solver: str = "auto",
    allow_tf32: bool = False,
) -> TorchBssEval:
    """Framewise SDR/ISR/SIR/SAR of each item: ``references``/``estimates``
    ``(batch, nsrc, channels, samples)`` (or ``(nsrc, channels, samples)``,
    then the results have no batch axis) on any device; each item's sources
    are evaluated jointly (one museval group). Results are float64 tensors
    ``(batch, nsrc, nwin)`` on the inputs' device, +inf where a denominator
    is 0, NaN on frames excluded by ``nan_policy`` — the numpy path's
    :func:`stemlab.metrics.bsseval.bss_eval_v4` per item. ``full=False``: SDR
    only (no filters). ``dtype``: the frames' precision (default: the
    inputs'); ``solver``: see the module doc."""
    refs, ests, added = _check(references, estimates)
    if nan_policy not in ("museval", "target"):
        _policy(refs.new_zeros((1, 1, 1), dtype=torch.bool), refs.new_zeros((1, 1, 1), dtype=torch.bool), nan_policy)
    dt = _resolve_dtype(dtype, refs)
    solver = resolve_solver(solver, refs.device)
    nb, nsrc, C, T = refs.shape
    R = nsrc * C
    L = int(filters_len)
    win, hop = int(win), int(hop)
    if win < 1 or hop < 1 or L < 1:
        raise InputError(f"torch bsseval: win/hop/filters_len must be positive, got {win}/{hop}/{L}", field="win")
    starts, stops = NB.framing(T, win, hop)
    xr = refs.reshape(nb, R, T)
    xe = ests.reshape(nb, R, T)
    info: dict[str, Any] = {"filters_len": L}
    with no_tf32(refs.device, allow_tf32), torch.no_grad():
        H = None
        N = 0
        if full:
            corr, energy = correlations(xr.to(torch.float64), xe.to(torch.float64), L)
            Call, Cown, failed, used = filters(corr, nsrc, C, L, solver)
            flen = int((stops - starts).max())
            N = sfft.next_fast_len(flen + L - 1, real=True)
            H = _spectra(Call, Cown, nsrc, C, N, _complex(dt))
            info.update(solver=used, failed=failed, Call=Call, energy=energy, fft_frames=N)
        o = _frame_pass(xr.to(dt), xe.to(dt), nsrc, C, starts, stops, win, hop, H, N)
        silent = _policy(o["silent_r"], o["silent_e"], nan_policy)
        nan = torch.tensor(math.nan, dtype=torch.float64, device=refs.device)

        def masked(v: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
            m = silent if extra is None else silent | extra[:, None, None]
            return torch.where(m, nan, v)

        sdr = masked(_db(o["true"], o["err"]))
        isr = sir = sar = None
        if full:
            isr = masked(_db(o["true"], o["spat"]), failed)
            sir = masked(_db(o["pj"], o["interf"]), failed)
            sar = masked(_db(o["pall"], o["art"]), failed)
    res = TorchBssEval(sdr, isr, sir, sar, silent, starts, stops, win, hop, info)
    if added:
        res.sdr, res.silent = res.sdr[0], res.silent[0]
        res.isr, res.sir, res.sar = (None if v is None else v[0] for v in (res.isr, res.sir, res.sar))
    return res


def sdr_frames(references: torch.Tensor, estimates: torch.Tensor, win: int = 44100, hop: int = 44100,
               nan_policy: str = "museval", dtype: Any = None) -> TorchBssEval:
    """museval's framewise SDR without the filters (the frame SNR)."""
    return bss_eval_v4(references, estimates, win, hop, nan_policy=nan_policy, full=False, dtype=dtype)
