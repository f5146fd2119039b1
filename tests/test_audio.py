"""Audio I/O: every format round-trips, resampling is band-limited, channel
policy is explicit, and bad files fail with InputError naming file and reason."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from stemlab import audio
from stemlab.errors import InputError

SR = 44100


def _music(seconds: float = 1.0, sr: int = SR, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1230 * t)
    right = 0.25 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 2700 * t)
    x = np.stack([left, right])[:channels]
    return x.astype(np.float32)


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return 10 * math.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - est).astype(np.float64) ** 2))


def _best_offset(ref: np.ndarray, est: np.ndarray, max_lag: int = 4096) -> int:
    """Lag of est relative to ref (est[n + lag] ≈ ref[n])."""
    a = ref[0].astype(np.float64)
    b = est[0].astype(np.float64)
    n = len(a)
    best, arg = -np.inf, 0
    for lag in range(0, max_lag):
        seg = b[lag : lag + n]
        if len(seg) < n // 2:
            break
        c = float(np.dot(a[: len(seg)], seg))
        if c > best:
            best, arg = c, lag
    return arg


@pytest.mark.parametrize(
    "fmt,subtype,max_err",
    [
        ("wav", "PCM_16", 1.0 / 32768),
        ("wav", "PCM_24", 1.0 / 2**23),
        ("wav", "FLOAT", 0.0),
        ("flac", "PCM_16", 1.0 / 32768),
        ("flac", "PCM_24", 1.0 / 2**23),
    ],
)
def test_lossless_roundtrip_exact_length_and_error(tmp_path: Path, fmt: str, subtype: str, max_err: float) -> None:
    x = _music(1.3)
    p = audio.encode(tmp_path / f"x.{fmt}", x, SR, subtype=subtype)
    y, sr = audio.decode(p)
    assert sr == SR
    assert y.shape == x.shape
    assert y.dtype == np.float32
    assert float(np.abs(y - x).max()) <= max_err * 1.0001


@pytest.mark.parametrize("fmt,min_snr", [("mp3", 25.0), ("ogg", 20.0), ("m4a", 25.0)])
def test_lossy_roundtrip(tmp_path: Path, fmt: str, min_snr: float) -> None:
    x = _music(2.0)
    p = audio.encode(tmp_path / f"x.{fmt}", x, SR, bitrate=192_000)
    y, sr = audio.decode(p)
    assert sr == SR and y.shape[0] == 2
    # lossy codecs may add encoder delay/padding: at most a few frames
    assert x.shape[1] <= y.shape[1] <= x.shape[1] + 4096
    lag = _best_offset(x, y)
    seg = y[:, lag : lag + x.shape[1]]
    n = seg.shape[1]
    assert _snr_db(x[:, 2048 : n - 2048], seg[:, 2048 : n - 2048]) > min_snr


def test_mp3_is_gapless_in_length(tmp_path: Path) -> None:
    """LAME writes its delay/padding header: PyAV returns the exact length."""
    x = _music(1.0)
    y, _ = audio.decode_bytes(audio.encode_bytes(x, SR, "mp3"))
    assert y.shape == x.shape


def test_multistream_stem_mp4(tmp_path: Path) -> None:
    streams = [_music(1.0) * (i + 1) / 6 for i in range(5)]
    p = audio.encode_multistream(tmp_path / "t.stem.mp4", streams, SR)
    info = audio.probe(p)
    assert len(info.streams) == 5 and info.sample_rate == SR and info.channels == 2
    arrays, sr = audio.decode_streams(p)
    assert sr == SR and len(arrays) == 5
    assert len({a.shape for a in arrays}) == 1
    # the louder streams stay louder: stream i has gain (i+1)/6
    rms = [float(np.sqrt(np.mean(a**2))) for a in arrays]
    assert all(rms[i] < rms[i + 1] for i in range(4))
    (s3,), _ = audio.decode_streams(p, [3])
    np.testing.assert_array_equal(s3, arrays[3])


def test_resample_is_band_limited_and_accurate() -> None:
    sr_in, sr_out = 44100, 48000
    t_in = np.arange(sr_in) / sr_in
    x = (0.5 * np.sin(2 * np.pi * 1000 * t_in))[None].astype(np.float32)
    y = audio.resample(x, sr_in, sr_out)
    assert y.shape == (1, 48000)
    t_out = np.arange(48000) / sr_out
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * t_out)
    core = slice(2000, 46000)  # away from the edges
    assert _snr_db(ideal[core], y[0, core]) > 80.0
    # a tone above the new Nyquist is removed, not aliased
    hi = (0.5 * np.sin(2 * np.pi * 30000 * np.arange(96000) / 96000))[None].astype(np.float32)
    z = audio.resample(hi, 96000, 44100)
    assert float(np.sqrt(np.mean(z[:, 1000:-1000] ** 2))) < 1e-3


def test_channel_policy() -> None:
    mono = _music(0.1, channels=1)
    st = audio.to_channels(mono, 2)
    assert st.shape == (2, mono.shape[1]) and np.array_equal(st[0], st[1])
    stereo = _music(0.1)
    np.testing.assert_allclose(audio.to_channels(stereo, 1)[0], stereo.mean(axis=0), rtol=1e-6)
    six = np.tile(stereo[:1], (6, 1))
    with pytest.raises(InputError, match="6 channels.*downmix"):
        audio.to_channels(six, 2)
    down = audio.to_channels(six, 2, downmix=True)
    assert down.shape == (2, six.shape[1])
    assert float(np.abs(down).max()) <= float(np.abs(six).max()) + 1e-6  # normalised: no clipping


def test_peak_report_counts_clipping() -> None:
    x = np.zeros((2, 100), np.float32)
    x[0, :5] = 1.0
    x[1, 10] = -1.2
    r = audio.peak_report(x)
    assert r.clipped_samples == 6 and r.clipping
    assert r.peak == pytest.approx(1.2, rel=1e-6)
    assert r.peak_dbfs == pytest.approx(20 * math.log10(1.2), rel=1e-6)


def test_fit_length() -> None:
    x = np.ones((2, 10), np.float32)
    assert audio.fit_length(x, 7).shape == (2, 7)
    y = audio.fit_length(x, 12)
    assert y.shape == (2, 12) and y[:, 10:].sum() == 0


# --------------------------------------------------------------- bad inputs

def _wav(tmp_path: Path, name: str = "ok.wav", seconds: float = 1.0) -> Path:
    return audio.encode(tmp_path / name, _music(seconds), SR)


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


BAD_CASES = [
    ("empty", lambda d: _write(d / "empty.wav", b""), "empty"),
    ("missing", lambda d: d / "nope.flac", "not found"),
    ("directory", lambda d: _mkdir(d / "adir.wav"), "directory"),
    ("garbage", lambda d: _write(d / "noise.mp3", np.random.RandomState(0).bytes(5000)), "decod"),
    ("text", lambda d: _write(d / "notes.wav", "this is not audio\n" * 50), "decodable"),
]


@pytest.mark.parametrize("case,make,needle", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_files_raise_input_error_naming_file(tmp_path: Path, case: str, make, needle: str) -> None:
    p = make(tmp_path)
    with pytest.raises(InputError) as ei:
        audio.decode(p)
    msg = str(ei.value)
    assert Path(p).name in msg
    assert needle in msg.lower()
    assert ei.value.details.get("file") == str(p)


def test_truncated_wav(tmp_path: Path) -> None:
    p = _wav(tmp_path, seconds=2.0)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"truncated: header declares 88200 samples"):
        audio.decode(p)


def test_header_only_wav_is_zero_length(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    p.write_bytes(audio.encode_bytes(np.zeros((2, 1), np.float32), SR, "wav")[:44])
    with pytest.raises(InputError) as ei:
        audio.decode(p)
    assert "zero.wav" in str(ei.value)
    assert ei.value.details["reason"] in {"zero_length", "truncated", "unsupported"}


def test_stream_index_out_of_range(tmp_path: Path) -> None:
    p = _wav(tmp_path)
    with pytest.raises(InputError, match="has 1 audio stream.*stream 3 requested"):
        audio.decode(p, stream=3)


def test_too_long_is_refused_before_decoding(tmp_path: Path) -> None:
    p = _wav(tmp_path, seconds=3.0)
    with pytest.raises(InputError, match="above the 0-min limit"):
        audio.decode(p, max_seconds=2.0)
    assert audio.decode(p, max_seconds=None)[0].shape[1] == 3 * SR


def test_unsupported_encodings_and_nonfinite_arrays(tmp_path: Path) -> None:
    x = _music(0.1)
    with pytest.raises(InputError, match="FLAC stores PCM_16/PCM_24 only"):
        audio.encode_bytes(x, SR, "flac", subtype="FLOAT")
    with pytest.raises(InputError, match="unsupported format 'opus'"):
        audio.encode_bytes(x, SR, "opus")
    bad = x.copy()
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match="1 NaN/Inf samples"):
        audio.encode_bytes(bad, SR, "wav")
    with pytest.raises(InputError, match="0 samples"):
        audio.encode_bytes(np.zeros((2, 0), np.float32), SR, "wav")


def test_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((InputError, OSError)):
        audio.encode(blocker / "sub" / "x.wav", _music(0.1), SR)
