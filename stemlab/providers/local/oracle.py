"""Oracle upper bounds: masks and filters computed from the reference stems.

They answer "how well could *any* method of this kind do on this track?" and
belong on every leaderboard. They read the references, so a track without
them is refused with :class:`~stemlab.errors.ProviderRejected`.

Settings follow sigsep-mus-oracle (``IRM.py``, ``IBM.py``, ``MWF.py``) so the
numbers are comparable with SiSEC18:

* ``scipy.signal.stft`` with ``nperseg = nfft`` (2048), periodic Hann window,
  hop ``nfft/2`` (1024), zero boundary padding, ``padded=True``,
  ``scaling='spectrum'``; ``scipy.signal.istft`` with the same defaults; the
  output is cut to the input length. Computed in float64.
* ``ε`` = float64 machine epsilon (2.22e-16).
* ``accompaniment`` = the sum of the non-vocal estimates.

Variants (``oracle:irm``, ``oracle:ibm``, ``oracle:mwf``):

* **irm** — ideal ratio mask ``M_j = |S_j|^α / (ε + Σ_k |S_k|^α)`` per
  channel, ``ŝ_j = istft(M_j · X)``. ``alpha`` defaults to 2 ("IRM2"; 1 is
  "IRM1").
* **ibm** — ideal binary mask ``M_j = [|S_j|^α / (ε + |X|^α) ≥ θ]`` — the
  denominator is the *mixture*, as in sigsep. ``alpha`` defaults to 1
  ("IBM1"; sisec18 also runs 2), ``theta`` to 0.5.
* **mwf** — multichannel Wiener filter of the local Gaussian model with a
  time-invariant spatial covariance per source and frequency. ``normalisation``:

  - ``frequency`` (default): each ``R_j(f)`` is scaled to trace ``I``
    (number of channels) per frequency — what the model intends;
  - ``sigsep``: the published code, for comparability with its numbers —
    ``np.trace`` on the ``(F, I, I)`` array sums over axes 0 and 1, so
    column ``k`` of every ``R_j(f)`` is divided by ``R_j(0)[0,k] + R_j(1)[1,k]``;
    its Wiener gains are also rounded to complex64 as there.

Memory: nothing of the size of a whole-track spectrogram is made. The STFT,
the masks and the overlap-add run a block of frames at a time
(:class:`~stemlab.providers.local._common.StftGrid`, about 6 s of signal per
block): masks are per time-frequency bin and an output sample depends only on
the frames covering it, so the estimates equal the whole-signal computation
(bit for bit for irm/ibm; mwf's covariances are sums over blocks, equal to
float rounding). The Wiener filter makes two passes: spatial covariances
accumulated over the whole track, then PSDs and gains per block. Memory is
the returned stems plus a constant working set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...types import MUSDB_TARGETS, Cost, Separation, Stems, Track
from ..base import Param, Provider, as_track
from ._common import (
    ACCOMPANIMENT,
    StftGrid,
    VariantParams,
    WholeSignal,
    block_frames,
    check_mixture,
    check_references,
    mask_sources,
    stft_grid,
    with_accompaniment,
)

__all__ = ["OracleProvider", "EPS", "oracle_stft", "oracle_istft", "ideal_ratio_mask", "ideal_binary_mask",
           "multichannel_wiener"]

#: float64 machine epsilon, sigsep's regulariser.
EPS: float = float(np.finfo(np.float64).eps)

def oracle_stft(x: np.ndarray, nfft: int = 2048) -> np.ndarray:
    """sigsep's STFT: ``(channels, samples)`` → complex ``(channels, F, T)``,
    ``F = nfft/2 + 1``, hop ``nfft/2``, periodic Hann, zero-padded boundaries.
    (Whole signal; the providers use the blocked :class:`StftGrid`.)"""
    from scipy.signal import stft

    return stft(np.asarray(x, dtype=np.float64), nperseg=nfft)[-1]


def oracle_istft(z: np.ndarray, num_samples: int) -> np.ndarray:
    """Inverse of :func:`oracle_stft`, cut to ``num_samples``; float32."""
    from scipy.signal import istft

    y = istft(z)[1]
    y = np.atleast_2d(y)[..., :num_samples]
    if y.shape[-1] < num_samples:  # pragma: no cover - istft of a padded STFT is never shorter
        y = np.pad(y, ((0, 0), (0, num_samples - y.shape[-1])))
    return y.astype(np.float32)


def _grid(mixture: np.ndarray, nfft: int) -> StftGrid | WholeSignal:
    return stft_grid(mixture.shape[-1], nfft, nfft // 2, lambda x: oracle_stft(x, nfft), oracle_istft)


def _outputs(mixture: np.ndarray, names: tuple[str, ...], grid) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    out = {name: np.empty(mixture.shape, np.float32) for name in names}
    return out, {name: grid.overlap_add(out[name]) for name in names}


def ideal_ratio_mask(
    mixture: np.ndarray, sources: Callable[[str], np.ndarray], names: tuple[str, ...], alpha: float = 2.0,
    nfft: int = 2048, block: int | None = None,
) -> dict[str, np.ndarray]:
    """IRM estimates for ``names``; ``sources(name)`` returns a reference
    ``(channels, samples)``. Computed a block of STFT frames at a time (``block``
    frames, default about 6 s): memory is the outputs plus one block of each
    source's spectrogram, whatever the length."""
    grid = _grid(mixture, nfft)
    refs = {name: sources(name) for name in names}
    out, inv = _outputs(mixture, names, grid)
    for t0, t1 in grid.blocks(block or block_frames(nfft // 2)):
        X = grid.stft(mixture, t0, t1)
        model = np.full(X.shape, EPS)
        P = {}
        for name in names:
            P[name] = np.abs(grid.stft(refs[name], t0, t1)) ** alpha
            model += P[name]
        for name in names:
            inv[name].add(X * (P.pop(name) / model))
    return out


def ideal_binary_mask(
    mixture: np.ndarray, sources: Callable[[str], np.ndarray], names: tuple[str, ...], alpha: float = 1.0,
    theta: float = 0.5, nfft: int = 2048, block: int | None = None,
) -> dict[str, np.ndarray]:
    """IBM estimates: keep a bin when ``|S_j|^α / (ε + |X|^α) ≥ θ`` (blocked as
    :func:`ideal_ratio_mask`)."""
    grid = _grid(mixture, nfft)
    refs = {name: sources(name) for name in names}
    out, inv = _outputs(mixture, names, grid)
    for t0, t1 in grid.blocks(block or block_frames(nfft // 2)):
        X = grid.stft(mixture, t0, t1)
        denom = EPS + np.abs(X) ** alpha
        for name in names:
            P = np.abs(grid.stft(refs[name], t0, t1)) ** alpha
            inv[name].add(X * ((P / denom) >= theta))
    return out


def _inv(M: np.ndarray, eps: float) -> np.ndarray:
    """Inverse of the trailing ``(I, I)`` matrices. ``I = 2`` uses sigsep's
    closed form with ``ε`` added to the determinant; ``I = 1`` is ``1/(ε+m)``."""
    I = M.shape[-1]
    if I == 1:
        return 1.0 / (eps + M)
    if I == 2:
        inv_det = 1.0 / (eps + M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0])
        out = np.empty(M.shape, dtype=np.complex128)
        out[..., 0, 0] = inv_det * M[..., 1, 1]
        out[..., 1, 0] = -inv_det * M[..., 1, 0]
        out[..., 0, 1] = -inv_det * M[..., 0, 1]
        out[..., 1, 1] = inv_det * M[..., 0, 0]
        return out
    return np.linalg.inv(M + eps * np.eye(I))


def multichannel_wiener(
    mixture: np.ndarray, sources: Callable[[str], np.ndarray], names: tuple[str, ...],
    normalisation: str = "frequency", nfft: int = 2048, block: int | None = None,
) -> dict[str, np.ndarray]:
    """Oracle multichannel Wiener filter (see the module docstring), in two
    passes over blocks of STFT frames: the first accumulates each source's
    spatial covariance over the whole track, the second recomputes the
    sources' PSDs block by block and applies the Wiener gains."""
    if normalisation not in ("frequency", "sigsep"):
        raise ConfigError(f"oracle mwf: normalisation must be 'frequency' or 'sigsep', got {normalisation!r}",
                          field="normalisation")
    grid = _grid(mixture, nfft)
    blocks = grid.blocks(block or block_frames(nfft // 2, minimum=16) // 2)
    refs = {name: sources(name) for name in names}
    I = mixture.shape[0]
    eye = np.eye(I, dtype=np.complex128)
    # pass 1: R_j(f) = mean over frames of y yᴴ / (ε + v), v = first PSD estimate (mean over channels of |y|²)
    acc: dict[str, np.ndarray] = {}
    T = 0
    for t0, t1 in blocks:
        frames = 0
        for name in names:
            Y = grid.stft(refs[name], t0, t1)  # (I, t, F)
            frames = Y.shape[1]
            v = np.mean(np.abs(Y) ** 2, axis=0)  # (t, F)
            part = np.einsum("atf,btf,tf->fab", Y, Y.conj(), 1.0 / (EPS + v))  # (F, I, I)
            if name in acc:
                acc[name] += part
            else:
                acc[name] = part
            del Y, v
        T += frames
    R: dict[str, np.ndarray] = {}
    Rinv: dict[str, np.ndarray] = {}
    for name in names:
        Rj = acc.pop(name) / T
        # normalise, regularise
        if normalisation == "sigsep":
            Rj = Rj * I / np.trace(Rj) + EPS * eye[None]
        else:
            tr = np.einsum("faa->f", Rj).real
            Rj = Rj * (I / np.where(tr > 0, tr, 1.0))[:, None, None] + EPS * eye[None]
        R[name] = Rj
        Rinv[name] = _inv(Rj, EPS)
    # pass 2: refined PSD (1/I) Re yᴴ R⁻¹ y, Wiener gains G_j = P_j R_j (Σ_k P_k R_k)⁻¹, ŝ_j = G_j x
    gain_dtype = np.complex64 if normalisation == "sigsep" else np.complex128
    out, inv = _outputs(mixture, names, grid)
    for t0, t1 in blocks:
        P = {}
        for name in names:
            Y = grid.stft(refs[name], t0, t1)
            P[name] = np.einsum("fab,btf,atf->tf", Rinv[name], Y, Y.conj()).real / I  # (t, F)
            del Y
        X = grid.stft(mixture, t0, t1)
        Cxx = sum(P[k][..., None, None] * R[k][None] for k in names)  # (t, F, I, I)
        inv_cxx = _inv(Cxx, EPS)
        del Cxx
        for name in names:
            SR = P[name][..., None, None] * R[name][None]
            G = np.matmul(SR, inv_cxx).astype(gain_dtype)
            del SR
            inv[name].add(np.einsum("tfab,btf->atf", G, X))
            del G
    return out


class OracleProvider(VariantParams, Provider):
    """Oracle upper bounds from the references: ideal ratio mask (irm), ideal
    binary mask (ibm), multichannel Wiener filter (mwf), with sigsep's STFT.

    Returns one estimate per reference stem of the track (MUSDB: vocals,
    drums, bass, other) plus ``accompaniment`` (sum of the non-vocal
    estimates) when vocals and another stem are present."""

    family = "oracle"
    kind = "local"
    description = "oracle upper bounds from the references (IRM, IBM, MWF; sigsep settings)"
    variants = ("irm", "ibm", "mwf")
    default_variant = "irm"
    needs_references = True
    deterministic = True
    bound = "upper"  # needs the ground-truth stems: a bound, never an option to buy
    params_schema = (
        Param("alpha", float, None, "mask exponent; default irm 2, ibm 1", unit="exponent", min=0.1, max=8.0,
              nullable=True),
        Param("theta", float, 0.5, "binary-mask threshold on |S|^α/|X|^α (ibm)", unit="ratio", min=0.0, max=1.0),
        Param("normalisation", str, "frequency",
              "spatial covariance normalisation (mwf): 'frequency' (trace I per frequency) or 'sigsep' "
              "(the published code's trace over axes 0,1)", choices=("frequency", "sigsep")),
        Param("nfft", int, 2048, "STFT size; hop is nfft/2 (sigsep: 2048)", unit="samples",
              choices=(256, 512, 1024, 2048, 4096, 8192)),
    )
    variant_params = {"irm": ("alpha", "nfft"), "ibm": ("alpha", "theta", "nfft"), "mwf": ("normalisation", "nfft")}
    variant_defaults = {"irm": {"alpha": 2.0}, "ibm": {"alpha": 1.0}}

    #: rough CPU real-time factor, for cost estimates (seconds per second of audio)
    _RTF = {"irm": 0.05, "ibm": 0.03, "mwf": 0.15}

    def validate(self) -> None:
        self._check_variant_params()

    @property
    def stems(self) -> tuple[str, ...]:
        """Nominal stems (MUSDB); :meth:`separate` returns the track's own
        reference names plus ``accompaniment``."""
        return tuple(MUSDB_TARGETS) + (ACCOMPANIMENT,)

    def estimate_cost(self, track: Track | float) -> Cost:
        seconds = track if isinstance(track, (int, float)) else track.seconds
        return Cost(compute_seconds=self._RTF[str(self.variant)] * float(seconds), estimated=True)

    def provenance(self) -> dict[str, Any]:
        import scipy

        out = super().provenance()
        out.update({"numpy": np.__version__, "scipy": scipy.__version__,
                    "method": f"sigsep-mus-oracle {str(self.variant).upper()} (restated)"})
        return out

    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        t0 = time.perf_counter()
        t = as_track(track, sample_rate)
        # scipy shortens the window of a shorter input, down to its overlap (nfft/2)
        mix = check_mixture(t, self.id, min_samples=int(self.used_params()["nfft"]) // 2 + 1)
        refs = check_references(t, self.id, mix.shape[1])
        if refs.num_channels != mix.shape[0]:
            from ...errors import InputError

            raise InputError(
                f"track {t.name!r}: references have {refs.num_channels} channels, mixture {mix.shape[0]}",
                field="references",
            )
        names = mask_sources(refs.names)
        p = self.used_params()

        def source(name: str) -> np.ndarray:
            return refs[name]

        t1 = time.perf_counter()
        if self.variant == "irm":
            est = ideal_ratio_mask(mix, source, names, alpha=p["alpha"], nfft=p["nfft"])
        elif self.variant == "ibm":
            est = ideal_binary_mask(mix, source, names, alpha=p["alpha"], theta=p["theta"], nfft=p["nfft"])
        else:
            est = multichannel_wiener(mix, source, names, normalisation=p["normalisation"], nfft=p["nfft"])
        with_accompaniment(est)
        t2 = time.perf_counter()
        prov = self.provenance()
        prov.update({"stft": {"nfft": p["nfft"], "hop": p["nfft"] // 2, "window": "hann (periodic)",
                              "library": "scipy.signal.stft"}, "mask_sources": list(names)})
        return Separation(
            Stems(est, t.sample_rate),
            self.id,
            params=p,
            timings={"prepare": t1 - t0, "separate": t2 - t1, "total": time.perf_counter() - t0},
            device="cpu",
            cost=Cost(compute_seconds=t2 - t0, estimated=False),
            provenance=prov,
        )
