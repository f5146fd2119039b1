"""The whole-signal implementations stemlab used before decoding, encoding
and the oracle/baseline providers were made to hold one copy of each signal
(kept verbatim, as the reference the memory-lean code is compared with).

* :func:`decode_streams` — PyAV only, per-frame chunks concatenated;
* :func:`encode_bytes` — the whole file built in memory by ``sf.write``;
* :func:`ideal_ratio_mask`, :func:`ideal_binary_mask`,
  :func:`multichannel_wiener` — whole-track ``scipy.signal.stft``/``istft``;
* :func:`hpss`, :func:`centre` — the baselines' whole-track STFT paths;
* :func:`with_accompaniment` — float64 sum of the non-vocal stems.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

EPS: float = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------- decode

def _frame_to_array(frame) -> np.ndarray:
    arr = frame.to_ndarray()
    fmt = frame.format
    nch = len(frame.layout.channels)
    if not fmt.is_planar:
        arr = arr.reshape(-1, nch).T
    kind = arr.dtype
    if kind == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif kind == np.int32:
        arr = (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif kind == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif kind == np.int64:
        arr = (arr.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    else:
        arr = arr.astype(np.float32, copy=False)
    return arr


def decode_streams(src, streams=None) -> tuple[list[np.ndarray], int]:
    """The former decoder (no max_seconds / truncation checks: values only)."""
    import av

    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(bytes(src))
    with av.open(str(src) if not hasattr(src, "read") else src, mode="r") as c:
        audio = list(c.streams.audio)
        wanted = list(range(len(audio))) if streams is None else list(streams)
        chosen = [audio[i] for i in wanted]
        sr = int(chosen[0].codec_context.sample_rate)
        chunks: dict[int, list[np.ndarray]] = {s.index: [] for s in chosen}
        for packet in c.demux(*chosen):
            for frame in packet.decode():
                chunks[packet.stream.index].append(_frame_to_array(frame))
        return [np.ascontiguousarray(np.concatenate(chunks[s.index], axis=1)) for s in chosen], sr


# --------------------------------------------------------------------- encode

def encode_bytes(a: np.ndarray, sample_rate: int, fmt: str, subtype: str = "PCM_16") -> bytes:
    """The former WAV/FLAC/OGG encoder (one ``sf.write`` of the whole array)."""
    import soundfile as sf

    st = "VORBIS" if fmt == "ogg" else subtype.upper()
    buf = io.BytesIO()
    data = np.asarray(a).T
    if st.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0 - 2.0**-23)
    sf.write(buf, data, sample_rate, format=fmt.upper(), subtype=st)
    return buf.getvalue()


# --------------------------------------------------------------------- oracle

def oracle_stft(x: np.ndarray, nfft: int = 2048) -> np.ndarray:
    from scipy.signal import stft

    return stft(np.asarray(x, dtype=np.float64), nperseg=nfft)[-1]


def oracle_istft(z: np.ndarray, num_samples: int) -> np.ndarray:
    from scipy.signal import istft

    y = istft(z)[1]
    y = np.atleast_2d(y)[..., :num_samples]
    if y.shape[-1] < num_samples:
        y = np.pad(y, ((0, 0), (0, num_samples - y.shape[-1])))
    return y.astype(np.float32)


def ideal_ratio_mask(mixture, sources: Callable[[str], np.ndarray], names, alpha=2.0, nfft=2048):
    n = mixture.shape[-1]
    X = oracle_stft(mixture, nfft)
    model = np.full(X.shape, EPS)
    for name in names:
        model += np.abs(oracle_stft(sources(name), nfft)) ** alpha
    out = {}
    for name in names:
        P = np.abs(oracle_stft(sources(name), nfft)) ** alpha
        out[name] = oracle_istft(X * (P / model), n)
    return out


def ideal_binary_mask(mixture, sources, names, alpha=1.0, theta=0.5, nfft=2048):
    n = mixture.shape[-1]
    X = oracle_stft(mixture, nfft)
    denom = EPS + np.abs(X) ** alpha
    out = {}
    for name in names:
        P = np.abs(oracle_stft(sources(name), nfft)) ** alpha
        out[name] = oracle_istft(X * ((P / denom) >= theta), n)
    return out


def _inv(M: np.ndarray, eps: float) -> np.ndarray:
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


def multichannel_wiener(mixture, sources, names, normalisation="frequency", nfft=2048):
    n = mixture.shape[-1]
    X = oracle_stft(mixture, nfft)
    I, F, T = X.shape
    eye = np.eye(I, dtype=np.complex128)
    R, P = {}, {}
    for name in names:
        Y = oracle_stft(sources(name), nfft)
        v = np.mean(np.abs(Y) ** 2, axis=0)
        Rj = np.einsum("aft,bft,ft->fab", Y, Y.conj(), 1.0 / (EPS + v)) / T
        if normalisation == "sigsep":
            Rj = Rj * I / np.trace(Rj) + EPS * eye[None]
        else:
            tr = np.einsum("faa->f", Rj).real
            Rj = Rj * (I / np.where(tr > 0, tr, 1.0))[:, None, None] + EPS * eye[None]
        Rinv = _inv(Rj, EPS)
        P[name] = np.einsum("fab,bft,aft->ft", Rinv, Y, Y.conj()).real / I
        R[name] = Rj
    gain_dtype = np.complex64 if normalisation == "sigsep" else np.complex128
    out = {}
    for name in names:
        Yj = np.empty_like(X)
        for t0 in range(0, T, 512):
            t1 = min(T, t0 + 512)
            Cxx = sum(P[k][:, t0:t1, None, None] * R[k][:, None] for k in names)
            inv_cxx = _inv(Cxx, EPS)
            SR = P[name][:, t0:t1, None, None] * R[name][:, None]
            G = np.matmul(SR, inv_cxx).astype(gain_dtype)
            Yj[:, :, t0:t1] = np.einsum("ftab,bft->aft", G, X[:, :, t0:t1])
        out[name] = oracle_istft(Yj, n)
    return out


def with_accompaniment(stems: dict) -> dict:
    if "vocals" in stems and "accompaniment" not in stems:
        rest = [v for k, v in stems.items() if k != "vocals"]
        if rest:
            acc = np.zeros_like(rest[0], dtype=np.float64)
            for r in rest:
                acc += r
            stems["accompaniment"] = acc.astype(np.float32)
    return stems


# ------------------------------------------------------------------ baselines

def _stft(x, nfft, hop):
    from scipy.signal import stft

    return stft(np.asarray(x, dtype=np.float64), nperseg=nfft, noverlap=nfft - hop)[-1]


def _istft(z, nfft, hop, n):
    from scipy.signal import istft

    y = np.atleast_2d(istft(z, nperseg=nfft, noverlap=nfft - hop)[1])[..., :n]
    if y.shape[-1] < n:
        y = np.pad(y, ((0, 0), (0, n - y.shape[-1])))
    return y.astype(np.float32)


def hpss(mix, nfft=4096, hop=1024, kernel_time=31, kernel_freq=31, power=1.0, margin=1.0):
    from stemlab.providers.local.baselines import hpss_masks

    n = mix.shape[1]
    Z = _stft(mix, nfft, hop)
    mag = np.mean(np.abs(Z), axis=0)
    mh, mp = hpss_masks(mag, kernel_time, kernel_freq, power, margin)
    drums = _istft(Z * mp[None], nfft, hop, n)
    return {"drums": drums, "no_drums": (mix - drums).astype(np.float32)}


def centre(mix, sr, nfft=4096, hop=1024, low_hz=150.0, high_hz=9000.0, sharpness=2.0):
    from stemlab.providers.local.baselines import centre_mask

    n = mix.shape[1]
    Z = _stft(mix, nfft, hop)
    freqs = np.arange(Z.shape[1]) * sr / nfft
    m = centre_mask(Z, freqs, low_hz, high_hz, sharpness)
    vocals = _istft(Z * m[None], nfft, hop, n)
    return {"vocals": vocals, "accompaniment": (mix - vocals).astype(np.float32)}


__all__ = ["decode_streams", "encode_bytes", "ideal_ratio_mask", "ideal_binary_mask", "multichannel_wiener",
           "with_accompaniment", "hpss", "centre", "oracle_stft", "oracle_istft"]
