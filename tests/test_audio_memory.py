"""Decoding and encoding hold one copy of the signal.

* decoded values are bit-identical to the former per-frame-chunks decoder
  (``tests/_reference_impl.py``) on every format the tests can write, also
  when the preallocated buffer has to grow or be trimmed;
* the traced peak of a decode is the output plus a constant;
* :func:`stemlab.audio.encode` writes WAV/FLAC in blocks and gives the same
  bytes as the former whole-array ``encode_bytes`` (also with ``scale=``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stemlab import audio
from stemlab.errors import InputError
from stemlab.testing import traced_peak
from tests import _reference_impl as ref

SR = 44100


def _signal(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Music-like test signal with full-scale and tiny samples (all PCM code paths)."""
    rng = np.random.RandomState(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = np.stack([0.4 * np.sin(2 * np.pi * (220 + 37 * c) * t) + 0.1 * rng.standard_normal(n) for c in range(channels)])
    x[:, :8] = [1.0, -1.0, 0.999999, 2**-30, -(2**-24), 0.0, 1e-9, -0.5]
    return x.astype(np.float32)


def _write_sf(path: Path, x: np.ndarray, fmt: str, subtype: str) -> Path:
    import soundfile as sf

    sf.write(str(path), x.T, SR, format=fmt, subtype=subtype)
    return path


# (file name, writer) — every writer the project has: libsndfile formats, PyAV lossy, multi-stream MP4
FILES = {
    "pcm16.wav": lambda p, x: _write_sf(p, x, "WAV", "PCM_16"),
    "pcm24.wav": lambda p, x: _write_sf(p, x, "WAV", "PCM_24"),
    "pcm32.wav": lambda p, x: _write_sf(p, x, "WAV", "PCM_32"),
    "u8.wav": lambda p, x: _write_sf(p, x, "WAV", "PCM_U8"),
    "float.wav": lambda p, x: _write_sf(p, x, "WAV", "FLOAT"),
    "double.wav": lambda p, x: _write_sf(p, x, "WAV", "DOUBLE"),
    "six.wav": lambda p, x: _write_sf(p, np.tile(x, (3, 1)), "WAVEX", "PCM_24"),
    "mono.wav": lambda p, x: _write_sf(p, x[:1], "WAV", "PCM_16"),
    "ulaw.wav": lambda p, x: _write_sf(p, x, "WAV", "ULAW"),
    "pcm16.aiff": lambda p, x: _write_sf(p, x, "AIFF", "PCM_16"),
    "pcm24.aiff": lambda p, x: _write_sf(p, x, "AIFF", "PCM_24"),
    "pcm16.flac": lambda p, x: _write_sf(p, x, "FLAC", "PCM_16"),
    "pcm24.flac": lambda p, x: _write_sf(p, x, "FLAC", "PCM_24"),
    "x.rf64": lambda p, x: _write_sf(p, x, "RF64", "PCM_16"),
    "x.ogg": lambda p, x: audio.encode(p, x, SR),
    "x.mp3": lambda p, x: audio.encode(p, x, SR),
    "x.m4a": lambda p, x: audio.encode(p, x, SR),
    "x.stem.mp4": lambda p, x: audio.encode_multistream(p, [x * g for g in (0.9, 0.2, 0.3, 0.1, 0.25)], SR),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    x = _signal(3.3)
    out = {}
    for name, write in FILES.items():
        p = d / name
        write(p, np.clip(x, -1, 1))
        out[name] = p
    return out


def _assert_identical(new: list[np.ndarray], old: list[np.ndarray]) -> None:
    assert len(new) == len(old)
    for a, b in zip(new, old):
        assert a.dtype == np.float32 and a.flags.c_contiguous
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(FILES))
def test_decode_is_bit_identical_to_the_chunked_decoder(files, name: str) -> None:
    p = files[name]
    new, sr = audio.decode_streams(p)
    old, sr_old = ref.decode_streams(p)
    assert sr == sr_old == SR
    _assert_identical(new, old)
    # in-memory input takes the same paths
    new_b, _ = audio.decode_streams(p.read_bytes())
    _assert_identical(new_b, old)


@pytest.mark.parametrize("name", ["x.mp3", "x.m4a", "x.ogg", "x.stem.mp4", "x.rf64"])
@pytest.mark.parametrize("capacity", [1, 3000, 10**7])
def test_pyav_buffer_growth_and_trim_keep_values(files, name: str, capacity: int, monkeypatch) -> None:
    """A header that under-declares the length (the buffer grows by half many
    times) or over-declares it (trimmed in place) decodes the same samples."""
    monkeypatch.setattr(audio, "_stream_capacity", lambda *a, **k: capacity)
    new, _ = audio.decode_streams(files[name])
    old, _ = ref.decode_streams(files[name])
    _assert_identical(new, old)


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_buffer_grows_and_trims_in_place(channels: int) -> None:
    rng = np.random.RandomState(channels)
    want = rng.standard_normal((channels, 10_007)).astype(np.float32)
    b = audio._Buffer(channels, 10)
    pos = 0
    for k in (1, 7, 100, 3, 2000, 5000, 2896):
        b.window(k)[...] = want[:, pos : pos + k]
        b.advance(k)
        pos += k
    assert pos == want.shape[1]
    assert b.capacity >= pos
    out = b.finish()
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, want)
    # over-allocated, then trimmed
    b = audio._Buffer(channels, 50_000)
    b.window(pos)[...] = want
    b.advance(pos)
    np.testing.assert_array_equal(b.finish(), want)


@pytest.mark.parametrize("fill", ["zeros", "noise"])
@pytest.mark.parametrize("tone", [True, False])
def test_damaged_flac_is_left_to_libav(tmp_path: Path, fill: str, tone: bool) -> None:
    """libsndfile stops at a damaged FLAC frame; the decoder then lets libav
    decide as before: it skips the damaged frames (same samples as the old
    decoder) or raises, and then so does decode."""
    if tone:
        t = np.arange(5 * SR) / SR
        x = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    else:
        x = _signal(5.0)
    good = audio.encode_bytes(x, SR, "flac")
    bad = bytes(5000) if fill == "zeros" else np.random.RandomState(1).bytes(5000)
    p = tmp_path / "damaged.flac"
    p.write_bytes(good[:20000] + bad + good[25000:])
    try:
        old, _ = ref.decode_streams(p)
    except Exception:
        with pytest.raises(InputError, match="damaged.flac: corrupt audio data"):
            audio.decode_streams(p)
    else:
        new, _ = audio.decode_streams(p)
        _assert_identical(new, old)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(good[:30000])
    with pytest.raises(InputError, match="cut.flac: corrupt audio data"):
        audio.decode(cut)


def test_truncated_aiff_is_still_detected(tmp_path: Path) -> None:
    p = _write_sf(tmp_path / "x.aiff", _signal(2.0), "AIFF", "PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"x.aiff: truncated: header declares 88200 samples"):
        audio.decode(p)


def test_nonfinite_float_wav_is_refused(tmp_path: Path) -> None:
    x = _signal(0.5)
    x[1, 1234] = np.inf
    p = _write_sf(tmp_path / "inf.wav", x, "WAV", "FLOAT")
    with pytest.raises(InputError, match="inf.wav: stream 0 contains NaN/Inf samples"):
        audio.decode(p)




@pytest.mark.parametrize("name", ["pcm16.wav", "pcm24.flac", "mono.wav", "x.mp3", "x.m4a", "x.stem.mp4"])
def test_decode_holds_one_copy(tmp_path: Path, name: str) -> None:
    """Traced peak of a 20-s decode: the output arrays plus a constant (the
    old decoder needed the chunks and their concatenation: 2× and more)."""
    x = _signal(20.0, seed=3)
    p = tmp_path / name
    FILES[name](p, np.clip(x, -1, 1))
    arrays, peak = traced_peak(lambda: audio.decode_streams(p)[0])
    out = sum(a.nbytes for a in arrays)
    assert peak <= 1.05 * out + (2 << 20), (peak / 2**20, out / 2**20)


# ----------------------------------------------------------------------- encode

def _same_file(a: bytes, b: bytes) -> bool:
    """Byte equality, except the clock time libsndfile stamps into the PEAK
    chunk of float WAV files (it differs between any two writes a second apart)."""
    def strip(x: bytes) -> bytes:
        i = x.find(b"PEAK", 12, 512)
        return x if i < 0 else x[: i + 12] + bytes(4) + x[i + 16 :]

    return strip(a) == strip(b)


@pytest.mark.parametrize(
    "fmt,subtype", [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"), ("wav", "DOUBLE"),
                    ("flac", "PCM_16"), ("flac", "PCM_24")],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_in_blocks_writes_the_same_bytes(tmp_path: Path, fmt: str, subtype: str, dtype) -> None:
    x = (_signal(7.1, seed=5) * 1.2).astype(dtype)  # beyond full scale: the PCM clip is exercised
    p = audio.encode(tmp_path / f"x.{fmt}", x, SR, subtype=subtype)
    assert _same_file(p.read_bytes(), ref.encode_bytes(x, SR, fmt, subtype))
    assert _same_file(audio.encode_bytes(x, SR, fmt, subtype=subtype), ref.encode_bytes(x, SR, fmt, subtype))
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("scale", [1.0, 1.7, np.float32(2.5), np.float64(1.3)])
def test_encode_scale_equals_encoding_the_scaled_copy(tmp_path: Path, scale) -> None:
    """``scale=`` divides per block: the bytes of ``encode(arr / scale)``
    (the stem cache's call) without the scaled copy."""
    x = _signal(6.0, seed=9) * 2.0
    a = audio.encode(tmp_path / "a.flac", x, SR, subtype="PCM_24", scale=scale)
    b = audio.encode(tmp_path / "b.flac", x / scale, SR, subtype="PCM_24")
    assert a.read_bytes() == b.read_bytes()
    w = audio.encode(tmp_path / "a.wav", x, SR, subtype="FLOAT", scale=scale)
    assert _same_file(w.read_bytes(), ref.encode_bytes(x / scale, SR, "wav", "FLOAT"))


@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_encode_lossy_same_bytes_as_encode_bytes(tmp_path: Path, fmt: str) -> None:
    x = _signal(3.0, seed=2)
    p = audio.encode(tmp_path / f"x.{fmt}", x, SR)
    assert p.read_bytes() == audio.encode_bytes(x, SR, fmt)
    q = audio.encode(tmp_path / f"y.{fmt}", x * 3, SR, scale=3.0)
    assert q.read_bytes() == audio.encode_bytes((x * 3) / 3.0, SR, fmt)


def test_encode_ogg_in_blocks_same_audio(tmp_path: Path) -> None:
    """libsndfile gives every Ogg stream a random serial number, so Ogg bytes
    never repeat; the encoded audio does."""
    x = _signal(4.0, seed=2)
    p = audio.encode(tmp_path / "x.ogg", x, SR)
    q = tmp_path / "old.ogg"
    q.write_bytes(ref.encode_bytes(x, SR, "ogg"))
    _assert_identical(audio.decode_streams(p)[0], audio.decode_streams(q)[0])


def test_encode_scale_is_checked(tmp_path: Path) -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="scale"):
            audio.encode(tmp_path / "x.wav", _signal(0.1), SR, scale=bad)
    assert not list(tmp_path.iterdir())


def test_encode_holds_no_copy(tmp_path: Path) -> None:
    """Traced peak of writing a 30-s FLAC/WAV: blocks only, not the file."""
    x = _signal(30.0, seed=4)
    for fmt, subtype in (("flac", "PCM_24"), ("wav", "PCM_16"), ("wav", "FLOAT")):
        _, peak = traced_peak(
            lambda fmt=fmt, subtype=subtype: audio.encode(tmp_path / f"x.{fmt}", x, SR, subtype=subtype, scale=1.5)
        )
        assert peak <= (3 << 20), (fmt, subtype, peak / 2**20)  # the signal is 10 MiB


def test_encode_on_a_full_disk_names_the_reason(tmp_path: Path) -> None:
    """Blocks go straight to the file: a full disk fails mid-write with the OS
    reason (the stem cache turns "No space" into its "disk full" error) and
    leaves no temp file. Needs permission to mount a tmpfs; skipped otherwise."""
    import subprocess

    d = tmp_path / "small"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        x = _signal(10.0)  # each file is well above 64 kB
        for name, subtype in (("x.wav", "PCM_16"), ("x.flac", "PCM_24"), ("x.mp3", "PCM_16")):
            with pytest.raises(InputError, match=rf"{name}: cannot write \(.*No space left on device"):
                audio.encode(d / name, x, SR, subtype=subtype)
        assert list(d.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)
