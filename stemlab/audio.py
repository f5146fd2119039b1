"""Audio I/O without an ffmpeg binary.

* Decoding: WAV/AIFF/FLAC PCM through libsndfile (``soundfile``), everything
  else (MP3, AAC/M4A, multi-stream ``.stem.mp4``, Ogg …) through PyAV
  (libav* linked into the wheel), every stream of a container in one demux
  pass. Each stream is decoded straight into one preallocated float32
  ``(channels, samples)`` array — libsndfile reads blocks into it, PyAV frames
  are converted into it in place, the array sized from the header and grown
  geometrically (``realloc``) if the header is short — so a decode holds one
  copy of the signal. Values are exact and the same whichever library reads
  a file: the sample count is what the decoder produced (AAC priming samples
  are dropped by libavcodec's skip-samples side data: the MUSDB18 sample
  decodes to 300032 samples per stream, as museval's regression data expects).
* Resampling: libsoxr (``soxr``), "VHQ" quality by default — a linear-phase,
  band-limited polyphase resampler (−175 dB stop band, 0.95·Nyquist pass band),
  deterministic, multi-channel and ~50× faster than a naive FFT resampler.
  PyAV's swr is not used because its default filter is short (16 taps) and its
  output length depends on internal buffering.
* Encoding: WAV/FLAC through libsndfile (``soundfile``: 16/24-bit PCM, float),
  written block by block straight into the destination's temp file;
  MP3 (LAME) and M4A/AAC through PyAV for uploads and sandbox outputs.
  ``scale=`` divides by a gain per block (no scaled copy).

Every failure is an :class:`~stemlab.errors.InputError` naming the file and the
reason; decoder exceptions never escape bare.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import InputError

__all__ = [
    "AudioInfo",
    "StreamInfo",
    "PeakReport",
    "DECODABLE_EXTENSIONS",
    "ENCODE_FORMATS",
    "probe",
    "decode",
    "decode_streams",
    "decode_bytes",
    "resample",
    "to_channels",
    "fit_length",
    "check_audio",
    "peak_report",
    "encode",
    "encode_bytes",
    "encode_multistream",
    "decoder_versions",
]

PathLike = str | os.PathLike[str]
Source = PathLike | bytes | BinaryIO

DECODABLE_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".mp3",
        ".m4a",
        ".aac",
        ".mp4",
        ".ogg",
        ".oga",
        ".opus",
        ".aif",
        ".aiff",
        ".webm",
        ".mka",
    }
)
ENCODE_FORMATS = ("wav", "flac", "mp3", "m4a", "ogg")
_SF_SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}

#: Some sanity caps: decoding a 3-hour file into RAM is refused unless asked.
DEFAULT_MAX_SECONDS = 2 * 3600.0


# --------------------------------------------------------------------------- info

@dataclass(frozen=True)
class StreamInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds, from the container header (may be an estimate)
    frames: int | None  # samples per channel declared by the header, if any


@dataclass(frozen=True)
class AudioInfo:
    """What the container header says, before decoding."""

    path: str
    format: str
    streams: tuple[StreamInfo, ...]

    @property
    def sample_rate(self) -> int:
        return self.streams[0].sample_rate

    @property
    def channels(self) -> int:
        return self.streams[0].channels

    @property
    def duration(self) -> float | None:
        return self.streams[0].duration


@dataclass(frozen=True)
class PeakReport:
    """Level statistics of an array (dBFS relative to full scale 1.0)."""

    peak: float
    peak_dbfs: float
    rms_dbfs: float
    clipped_samples: int  # |x| >= 1.0
    clipped_fraction: float
    dc_offset: float

    @property
    def clipping(self) -> bool:
        return self.clipped_samples > 0


def decoder_versions() -> dict[str, str]:
    """PyAV and libav* versions (and libsndfile's, which reads WAV/AIFF/FLAC
    PCM): recorded with every decoded track, since decoder versions change
    sample counts (stempeg#2)."""
    import av
    import soundfile as sf

    out = {"pyav": av.__version__}
    for lib, ver in av.library_versions.items():
        out[lib] = ".".join(str(v) for v in ver)
    out["soundfile"] = sf.__version__
    out["libsndfile"] = str(sf.__libsndfile_version__)
    return out


def _name(src: Source) -> str:
    if isinstance(src, (bytes, bytearray)):
        return "<bytes>"
    if hasattr(src, "read"):
        return str(getattr(src, "name", "<stream>"))
    return str(src)


def _source(src: Source):
    """The checked input as PyAV/libsndfile take it: a path string, a
    ``BytesIO`` over the bytes, or the caller's file object. Missing, empty,
    unreadable inputs and directories are refused here, naming the file."""
    name = _name(src)
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise InputError(f"{name}: empty input (0 bytes), expected an audio file", file=name, reason="empty")
        return io.BytesIO(bytes(src))
    if hasattr(src, "read"):
        return src
    p = Path(src)
    if not p.exists():
        raise InputError(f"{name}: file not found", file=name, reason="missing")
    if p.is_dir():
        raise InputError(f"{name}: is a directory, expected an audio file", file=name, reason="directory")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"{name}: cannot stat file ({e.strerror})", file=name, reason="unreadable") from None
    if size == 0:
        raise InputError(f"{name}: empty file (0 bytes), expected an audio file", file=name, reason="empty")
    if not os.access(p, os.R_OK):
        raise InputError(f"{name}: permission denied", file=name, reason="unreadable")
    return str(p)


def _open(src: Source, checked=None):
    """PyAV container of ``src`` (``checked``: what :func:`_source` returned)."""
    import av

    name = _name(src)
    if checked is None:
        checked = _source(src)
    elif isinstance(checked, io.BytesIO):
        checked.seek(0)
    try:
        return av.open(checked, mode="r")
    except av.error.FFmpegError as e:
        raise InputError(
            f"{name}: not a decodable audio file ({_av_reason(e)})", file=name, reason="unsupported"
        ) from None
    except (OSError, ValueError, UnicodeError) as e:
        raise InputError(f"{name}: cannot open ({e})", file=name, reason="unreadable") from None


def _av_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).strip() or type(e).__name__


def probe(src: Source) -> AudioInfo:
    """Header information of every audio stream (no decoding)."""
    name = _name(src)
    with _open(src) as c:
        streams = []
        for s in c.streams.audio:
            cc = s.codec_context
            dur = None
            frames = None
            if s.duration is not None and s.time_base is not None:
                dur = float(s.duration * s.time_base)
            elif c.duration is not None:
                dur = c.duration / 1_000_000
            if dur is not None and cc.sample_rate:
                frames = int(round(dur * cc.sample_rate))
            streams.append(
                StreamInfo(
                    index=s.index,
                    codec=cc.name,
                    sample_rate=int(cc.sample_rate or 0),
                    channels=int(cc.channels or 0),
                    duration=dur,
                    frames=frames,
                )
            )
        if not streams:
            raise InputError(f"{name}: contains no audio stream", file=name, reason="no_audio")
        return AudioInfo(path=name, format=c.format.name, streams=tuple(streams))


# ------------------------------------------------------------------------ decode

#: Containers and sample encodings read through libsndfile (``soundfile``)
#: straight into the output buffer. For these, libsndfile's conversion to
#: float32 is exact and gives the very values libav's decoders plus the
#: integer scaling of :func:`_frame_into` give (``tests/test_audio_memory.py``
#: compares them). Ogg (Vorbis/Opus: other decoders, other channel order),
#: RF64/W64, compressed WAV and everything else decode through PyAV.
_SF_FORMATS = frozenset({"WAV", "WAVEX", "AIFF", "FLAC"})
_SF_EXACT_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}
)
_READ_FRAMES = 1 << 16  # frames per libsndfile read: a (65536, channels) float32 scratch
_PRIMING_MARGIN = 8192  # samples allocated beyond a compressed stream's declared length


class _Buffer:
    """A growable float32 ``(channels, samples)`` array that is the only copy
    of the signal being decoded.

    The rows live in one flat allocation of ``channels × capacity`` floats.
    Growing (a header that under-declares the length) and the final trim
    re-allocate it in place (``realloc``) and move the rows with ``memmove``:
    no second full-size array is ever made. :meth:`window` hands out a view
    of the next samples; it must be filled before the next call and not kept."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.channels = int(channels)
        self.capacity = max(1, int(capacity))
        self.size = 0
        self._flat: np.ndarray | None = np.empty(self.channels * self.capacity, np.float32)

    def _move_rows(self, old: int, new: int) -> None:
        # row c: [c·old, c·old + size) → [c·new, c·new + size); memmove handles overlap
        import ctypes

        assert self._flat is not None
        if self.size == 0 or old == new or self.channels == 1:
            return
        base = self._flat.ctypes.data
        item = self._flat.itemsize
        order = range(self.channels - 1, 0, -1) if new > old else range(1, self.channels)
        for c in order:
            ctypes.memmove(base + item * c * new, base + item * c * old, item * self.size)

    def _reserve(self, needed: int) -> None:
        assert self._flat is not None
        if needed <= self.capacity:
            return
        old, new = self.capacity, max(needed, self.capacity + self.capacity // 2)
        self._flat.resize(self.channels * new, refcheck=False)  # realloc; views are never kept
        self._move_rows(old, new)
        self.capacity = new

    def window(self, count: int) -> np.ndarray:
        """Writable ``(channels, count)`` view of the next samples; call
        :meth:`advance` once it is filled."""
        self._reserve(self.size + count)
        assert self._flat is not None
        return self._flat.reshape(self.channels, self.capacity)[:, self.size : self.size + count]

    def advance(self, count: int) -> None:
        self.size += int(count)

    def finish(self) -> np.ndarray:
        """The filled samples as a C-contiguous ``(channels, size)`` array,
        trimmed in place; the buffer is empty afterwards."""
        flat, n = self._flat, self.size
        assert flat is not None
        if n != self.capacity:
            self._move_rows(self.capacity, n)
            flat.resize(self.channels * n, refcheck=False)
        self._flat = None
        return flat.reshape(self.channels, n)


def _frame_into(frame, buf: _Buffer) -> None:
    """Convert one AudioFrame into the next samples of ``buf``: float32,
    exact, no resampling (int16 / 2¹⁵, int32 / 2³¹ rounded once, uint8
    centred, float64 rounded to float32)."""
    arr = frame.to_ndarray()
    if not frame.format.is_planar:
        arr = arr.reshape(-1, len(frame.layout.channels)).T
    if arr.shape[0] != buf.channels:
        raise ValueError(f"a frame has {arr.shape[0]} channel(s), the stream {buf.channels}")
    k = arr.shape[1]
    dst = buf.window(k)
    kind = arr.dtype
    if kind == np.int16:
        dst[...] = arr
        dst /= 32768.0
    elif kind == np.int32:
        np.divide(arr, 2147483648.0, out=dst, casting="unsafe")  # in float64, one rounding to float32
    elif kind == np.uint8:
        dst[...] = arr
        dst -= 128.0
        dst /= 128.0
    elif kind == np.int64:
        np.divide(arr, 9223372036854775808.0, out=dst, casting="unsafe")
    else:
        dst[...] = arr
    del dst
    buf.advance(k)


def _riff_truncation(src: Source) -> tuple[int, int] | None:
    """For RIFF/WAVE input: (declared frames from the data chunk header,
    frames actually present). None if not a WAV or size unknown. libav
    estimates a WAV's duration from the file size, so it cannot see this."""
    try:
        if isinstance(src, (bytes, bytearray)):
            head = bytes(src[:4096])
            total = len(src)
        elif hasattr(src, "read"):
            return None
        else:
            with open(src, "rb") as f:
                head = f.read(4096)
            total = Path(src).stat().st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 8 + 14 <= len(head):
            block_align = int.from_bytes(head[pos + 8 + 12 : pos + 8 + 14], "little")
        if cid == b"data":
            if block_align <= 0 or size in (0, 0xFFFFFFFF):
                return None
            present = max(0, total - (pos + 8))
            return size // block_align, present // block_align
        pos += 8 + size + (size & 1)
    return None


def _aiff_declared_frames(src: Source) -> int | None:
    """``numSampleFrames`` of an AIFF/AIFF-C ``COMM`` chunk (what libav
    reports as the stream's duration; libsndfile reports what is present)."""
    try:
        if isinstance(src, (bytes, bytearray)):
            head = bytes(src[:4096])
        elif hasattr(src, "read"):
            return None
        else:
            with open(src, "rb") as f:
                head = f.read(4096)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        size = int.from_bytes(head[pos + 4 : pos + 8], "big")
        if cid == b"COMM" and pos + 14 <= len(head):
            return int.from_bytes(head[pos + 10 : pos + 14], "big")
        pos += 8 + size + (size & 1)
    return None


def _too_long(name: str, seconds: float, max_seconds: float) -> InputError:
    return InputError(
        f"{name}: {seconds / 60:.1f} min long, above the {max_seconds / 60:.0f}-min limit "
        "(pass max_seconds=None to decode anyway)",
        file=name,
        reason="too_long",
    )


def _all_finite(a: np.ndarray) -> bool:
    """Whether ``a`` holds no NaN/Inf, without a full-size boolean temporary
    (min and max propagate NaN and reach ±Inf)."""
    if a.size == 0 or not np.issubdtype(a.dtype, np.inexact):
        return True
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _check_decoded(
    arr: np.ndarray, name: str, index: int, sr: int, declared: float | None, riff: tuple[int, int] | None,
) -> None:
    """The checks every decoded stream passes, in this order: not empty, not
    a truncated WAV, not much shorter than the header declares, finite."""
    if arr.shape[1] == 0:
        raise InputError(f"{name}: stream {index} decodes to 0 samples", file=name, reason="zero_length")
    if riff is not None and riff[1] < riff[0]:
        raise InputError(
            f"{name}: truncated: header declares {riff[0]} samples, only {riff[1]} present",
            file=name,
            reason="truncated",
        )
    # codecs pad/prime by up to a few frames; anything much shorter is truncated
    if declared is not None and declared > 0 and arr.shape[1] < 0.98 * declared - 4096:
        raise InputError(
            f"{name}: truncated: header declares {int(declared)} samples, only {arr.shape[1]} decodable",
            file=name,
            reason="truncated",
        )
    if not _all_finite(arr):
        raise InputError(f"{name}: stream {index} contains NaN/Inf samples", file=name, reason="nonfinite")


def _sf_read_mono(f: Any, buf: _Buffer, frames: int) -> None:
    """Read up to ``frames`` mono frames from the open SoundFile ``f`` straight into ``buf``."""
    while buf.size < frames:
        k = min(_READ_FRAMES, frames - buf.size)
        got = len(f.read(k, dtype="float32", out=buf.window(k)[0]))
        buf.advance(got)
        if got < k:
            break


def _sf_read_interleaved(f: Any, buf: _Buffer, nch: int, frames: int) -> None:
    """Read up to ``frames`` ``nch``-channel frames from the open SoundFile ``f``
    into ``buf``, block by block through one interleaved scratch block."""
    scratch = np.empty((min(_READ_FRAMES, max(frames, 1)), nch), np.float32)
    while buf.size < frames:
        k = min(_READ_FRAMES, frames - buf.size)
        got = f.read(k, dtype="float32", out=scratch[:k])
        n = len(got)
        buf.window(n)[...] = got.T
        buf.advance(n)
        if n < k:
            break
    del scratch


def _sf_declared(f: Any, src: Source, frames: int) -> float:
    """The length (samples) the header declares: libsndfile's frame count, an
    AIFF's own COMM count when it has one."""
    declared = float(frames)
    if f.format == "AIFF":
        declared = float(_aiff_declared_frames(src) or frames)
    return declared


def _decode_sf(
    src: Source, checked, name: str, max_seconds: float | None, check_truncation: bool
) -> tuple[np.ndarray, int] | None:
    """WAV/AIFF/FLAC PCM through libsndfile, read in blocks straight into
    one float32 ``(channels, samples)`` array. ``None`` when this input is
    for PyAV: libsndfile cannot open it, it is another format or encoding,
    or libsndfile reports a decoding error (libav then decides, as before:
    it raises, or skips what it cannot decode)."""
    if not isinstance(checked, (str, io.BytesIO)):
        return None
    import soundfile as sf

    try:
        f = sf.SoundFile(os.fsencode(checked) if isinstance(checked, str) else checked)
    except Exception:  # not libsndfile's: PyAV tries
        return None
    try:
        if f.format not in _SF_FORMATS or f.subtype not in _SF_EXACT_SUBTYPES:
            return None
        sr, nch, frames = int(f.samplerate), int(f.channels), int(f.frames)
        if sr <= 0 or nch <= 0 or frames < 0:
            return None
        if max_seconds is not None and frames / sr > max_seconds:
            raise _too_long(name, frames / sr, max_seconds)
        buf = _Buffer(nch, frames)
        try:
            if nch == 1:
                _sf_read_mono(f, buf, frames)
            else:
                _sf_read_interleaved(f, buf, nch, frames)
        except (RuntimeError, ValueError, OSError, MemoryError):
            return None  # libsndfile could not decode it all: libav decides
        arr = buf.finish()
        declared = _sf_declared(f, src, frames) if check_truncation else None
    finally:
        f.close()
    riff = _riff_truncation(src) if check_truncation else None
    _check_decoded(arr, name, 0, sr, declared, riff)
    return arr, sr


def _stream_capacity(s, c, sr: int, max_seconds: float | None) -> int:
    """Samples to allocate for a stream before decoding it: the declared
    length plus a margin for codec priming/padding (grown if it is short)."""
    seconds = None
    if s.duration is not None and s.time_base:
        seconds = float(s.duration * s.time_base)
    elif c.duration is not None:
        seconds = c.duration / 1_000_000
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        seconds = 30.0
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return int(math.ceil(seconds * sr)) + _PRIMING_MARGIN


def decode_streams(
    src: Source,
    streams: Sequence[int] | None = None,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    check_truncation: bool = True,
) -> tuple[list[np.ndarray], int]:
    """Decode several audio streams of one container in a single demux pass.

    Returns ``(arrays, sample_rate)``: one float32 ``(channels, samples)``
    array per requested stream (default: all audio streams, in file order).
    All requested streams must share one sample rate.

    Each stream is decoded into one preallocated array (no per-frame chunks
    to concatenate): WAV/AIFF/FLAC PCM through libsndfile, everything else
    (MP3, AAC/M4A, multi-stream ``.stem.mp4``, Ogg …) through PyAV with the
    array sized from the header and grown geometrically if that is short.
    """
    name = _name(src)
    checked = _source(src)
    if streams is None or list(streams) == [0]:
        got = _decode_sf(src, checked, name, max_seconds, check_truncation)
        if got is not None:
            return [got[0]], got[1]
    return _decode_av(src, checked, name, streams, max_seconds, check_truncation)


def _av_streams(c: Any, name: str, streams: Sequence[int] | None) -> list[Any]:
    """The requested audio streams of container ``c`` (all when ``streams`` is None)."""
    audio = list(c.streams.audio)
    if not audio:
        raise InputError(f"{name}: contains no audio stream", file=name, reason="no_audio")
    wanted = list(range(len(audio))) if streams is None else list(streams)
    for i in wanted:
        if not 0 <= i < len(audio):
            raise InputError(
                f"{name}: has {len(audio)} audio stream(s), stream {i} requested", file=name, reason="stream"
            )
    return [audio[i] for i in wanted]


def _av_sample_rate(chosen: list[Any], name: str) -> int:
    """The one sample rate the chosen streams share."""
    rates = {s.codec_context.sample_rate for s in chosen}
    if len(rates) != 1:
        raise InputError(f"{name}: streams have different sample rates {sorted(rates)}", file=name)
    sr = int(rates.pop() or 0)
    if sr <= 0:
        raise InputError(f"{name}: stream declares no sample rate", file=name, reason="unsupported")
    return sr


def _av_check_length(c: Any, first: Any, name: str, max_seconds: float | None) -> None:
    """Refuse, before decoding, a file whose declared length (stream, else container) is above ``max_seconds``."""
    if max_seconds is None:
        return
    d = first.duration
    seconds = float(d * first.time_base) if d is not None and first.time_base else None
    if seconds is None and c.duration is not None:
        seconds = c.duration / 1_000_000
    if seconds is not None and seconds > max_seconds:
        raise _too_long(name, seconds, max_seconds)


def _av_demux(c: Any, chosen: list[Any], capacity: dict[int, int], name: str) -> dict[int, _Buffer]:
    """Decode the chosen streams: stream index → its samples (absent for a stream with no frame)."""
    import av

    bufs: dict[int, _Buffer] = {}
    try:
        for packet in c.demux(*chosen):
            idx = packet.stream.index
            for frame in packet.decode():
                b = bufs.get(idx)
                if b is None:
                    b = bufs[idx] = _Buffer(len(frame.layout.channels), capacity[idx])
                _frame_into(frame, b)
    except av.error.FFmpegError as e:
        raise InputError(f"{name}: corrupt audio data ({_av_reason(e)})", file=name, reason="corrupt") from None
    except (ValueError, MemoryError) as e:
        raise InputError(f"{name}: cannot decode ({e})", file=name, reason="corrupt") from None
    return bufs


def _av_finish(s: Any, b: _Buffer | None, name: str, sr: int, check_truncation: bool,
               riff: tuple[int, int] | None) -> np.ndarray:
    """One stream's decoded array (empty if it had no frame), checked against its declared length."""
    if b is None:
        nch = int(s.codec_context.channels or 0)
        arr = np.zeros((max(nch, 1), 0), np.float32)
    else:
        arr = b.finish()
    declared = None
    if check_truncation and s.duration is not None and s.time_base is not None:
        declared = float(s.duration * s.time_base) * sr
    _check_decoded(arr, name, s.index, sr, declared, riff)
    return arr


def _decode_av(
    src: Source, checked, name: str, streams: Sequence[int] | None, max_seconds: float | None,
    check_truncation: bool,
) -> tuple[list[np.ndarray], int]:
    with _open(src, checked) as c:
        chosen = _av_streams(c, name, streams)
        sr = _av_sample_rate(chosen, name)
        _av_check_length(c, chosen[0], name, max_seconds)
        capacity = {s.index: _stream_capacity(s, c, sr, max_seconds) for s in chosen}
        bufs = _av_demux(c, chosen, capacity, name)
        riff = _riff_truncation(src) if check_truncation else None
        out = [_av_finish(s, bufs.pop(s.index, None), name, sr, check_truncation, riff) for s in chosen]
        return out, sr


def decode(
    src: Source,
    *,
    stream: int = 0,
    sample_rate: int | None = None,
    channels: int | None = None,
    downmix: bool = False,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode one stream to float32 ``(channels, samples)``.

    ``sample_rate``: resample to this rate (Hz) if given, else native.
    ``channels``: convert to this many channels (see :func:`to_channels`)."""
    (arr,), sr = decode_streams(src, [stream], max_seconds=max_seconds)
    if channels is not None:
        arr = to_channels(arr, channels, downmix=downmix, name=_name(src))
    if sample_rate is not None and sample_rate != sr:
        arr = resample(arr, sr, sample_rate)
        sr = sample_rate
    return arr, sr


def decode_bytes(data: bytes, **kwargs) -> tuple[np.ndarray, int]:
    """:func:`decode` for an in-memory file (downloads from services)."""
    return decode(bytes(data), **kwargs)


# ----------------------------------------------------------------- conversions

def check_audio(audio: np.ndarray, name: str = "audio", *, allow_empty: bool = False) -> np.ndarray:
    """Validate a float array ``(channels, samples)``: finite, 2-D, non-empty."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise InputError(f"{name}: expected (channels, samples), got shape {a.shape}", field=name)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{name}: expected float samples, got {a.dtype}", field=name)
    if a.shape[1] == 0 and not allow_empty:
        raise InputError(f"{name}: 0 samples", field=name, reason="zero_length")
    if not _all_finite(a):
        bad = int((~np.isfinite(a)).sum())
        raise InputError(f"{name}: {bad} NaN/Inf samples", field=name, reason="nonfinite")
    return a


def resample(audio: np.ndarray, sr_in: int, sr_out: int, quality: str = "VHQ") -> np.ndarray:
    """Band-limited resampling with libsoxr; output length is
    ``ceil(samples * sr_out / sr_in)``. float32 in, float32 out."""
    import soxr

    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"resample: sample rates must be positive, got {sr_in} -> {sr_out}", field="sample_rate")
    if sr_in == sr_out:
        return a
    if a.shape[1] == 0:
        return a
    out = soxr.resample(np.ascontiguousarray(a.T), sr_in, sr_out, quality=quality)
    out = np.asarray(out, dtype=np.float32)
    if out.ndim == 1:
        out = out[:, None]
    return np.ascontiguousarray(out.T)


# ITU-R BS.775 downmix weights for 5.1 (FL FR FC LFE BL BR); LFE dropped.
_DOWNMIX_51 = np.array(
    [[1.0, 0.0, 0.7071, 0.0, 0.7071, 0.0], [0.0, 1.0, 0.7071, 0.0, 0.0, 0.7071]], dtype=np.float32
)


def to_channels(audio: np.ndarray, channels: int, *, downmix: bool = False, name: str = "audio") -> np.ndarray:
    """Channel policy: mono → dual-mono; stereo → mono by averaging; more than
    two channels → :class:`InputError` unless ``downmix=True`` (5.1 uses the
    ITU-R BS.775 matrix normalised to avoid clipping, other layouts average)."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    n = a.shape[0]
    if channels not in (1, 2):
        raise InputError(f"{name}: can convert to 1 or 2 channels, asked for {channels}", field="channels")
    if n == channels:
        return a
    if n > 2:
        if not downmix:
            raise InputError(
                f"{name}: has {n} channels; stemlab separates mono/stereo. "
                "Pass downmix=True (CLI: --downmix) to mix down explicitly.",
                field="channels",
                reason="channels",
            )
        if n == 6:
            m = _DOWNMIX_51 / _DOWNMIX_51.sum(axis=1, keepdims=True)
            st = m @ a
        else:
            st = np.repeat(a.mean(axis=0, keepdims=True), 2, axis=0)
        return st if channels == 2 else st.mean(axis=0, keepdims=True)
    if n == 1 and channels == 2:
        return np.repeat(a, 2, axis=0)
    return a.mean(axis=0, keepdims=True)


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Zero-pad or truncate the end to exactly ``num_samples``."""
    a = np.asarray(audio)
    n = a.shape[-1]
    if n == num_samples:
        return a
    if n > num_samples:
        return a[..., :num_samples]
    pad = [(0, 0)] * (a.ndim - 1) + [(0, num_samples - n)]
    return np.pad(a, pad)


def peak_report(audio: np.ndarray) -> PeakReport:
    a = np.asarray(audio, dtype=np.float64)
    if a.size == 0:
        return PeakReport(0.0, -math.inf, -math.inf, 0, 0.0, 0.0)
    peak = float(np.abs(a).max())
    rms = float(np.sqrt(np.mean(a**2)))
    clipped = int((np.abs(a) >= 1.0).sum())
    return PeakReport(
        peak=peak,
        peak_dbfs=20 * math.log10(peak) if peak > 0 else -math.inf,
        rms_dbfs=20 * math.log10(rms) if rms > 0 else -math.inf,
        clipped_samples=clipped,
        clipped_fraction=clipped / a.size,
        dc_offset=float(a.mean()),
    )


# ------------------------------------------------------------------------ encode

_WRITE_FRAMES = 1 << 16  # samples per channel converted and written at a time


def _format_of(path: PathLike | None, fmt: str | None) -> str:
    if fmt:
        f = fmt.lower().lstrip(".")
    elif path is not None:
        f = Path(path).suffix.lower().lstrip(".")
    else:
        raise InputError("encode: give a format or a path with an extension", field="format")
    f = {"wave": "wav", "aac": "m4a", "mp4": "m4a", "oga": "ogg"}.get(f, f)
    if f not in ENCODE_FORMATS:
        raise InputError(f"encode: unsupported format {f!r}; expected one of {ENCODE_FORMATS}", field="format")
    return f


def _check_encode_args(audio: np.ndarray, sample_rate: int, fmt: str, subtype: str, scale) -> tuple[np.ndarray, str]:
    """The checked array and the libsndfile subtype (``""`` for PyAV formats);
    everything is refused before a byte is written."""
    a = check_audio(audio, "encode")
    if sample_rate <= 0:
        raise InputError(f"encode: sample_rate must be positive, got {sample_rate}", field="sample_rate")
    if scale is not None:
        try:
            ok = math.isfinite(float(scale)) and float(scale) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"encode: scale must be a finite number > 0, got {scale!r}", field="scale")
    st = ""
    if fmt in ("wav", "flac", "ogg"):
        st = subtype.upper()
        if fmt == "ogg":
            st = "VORBIS"
        elif st not in _SF_SUBTYPES:
            raise InputError(f"encode: subtype {subtype!r} not in {sorted(_SF_SUBTYPES)}", field="subtype")
        if fmt == "flac" and st in ("FLOAT", "DOUBLE", "PCM_32"):
            raise InputError(f"encode: FLAC stores PCM_16/PCM_24 only, not {st}", field="subtype")
    else:
        nch = a.shape[0]
        if nch not in (1, 2):
            raise InputError(f"encode {fmt}: 1 or 2 channels supported, got {nch}", field="channels")
    return a, st


def _write_sf(target, a: np.ndarray, sr: int, fmt: str, st: str, scale) -> None:
    """Write through libsndfile block by block: each block is divided by
    ``scale``, clipped for PCM and interleaved, as ``sf.write`` of the whole
    (scaled) array would do it — the same bytes, without a copy of the signal.
    Vorbis is the exception: libsndfile's Vorbis encoder output depends on
    how the samples are handed to it, so Ogg is written in one call, as before."""
    import soundfile as sf

    pcm = st.startswith("PCM")
    step = max(1, a.shape[1]) if st == "VORBIS" else _WRITE_FRAMES
    f = sf.SoundFile(target, "w", samplerate=sr, channels=a.shape[0], format=fmt.upper(), subtype=st)
    try:
        for start in range(0, a.shape[1], step):
            block = a[:, start : start + step]
            if scale is not None:
                block = block / scale
            data = block.T
            if pcm:
                data = np.clip(data, -1.0, 1.0 - 2.0**-23)
            f.write(data)
    except RuntimeError as e:
        detail = _sf_reason(f, e)  # "System error : No space left on device." rather than "System error."
        try:
            f.close()
        except Exception:
            pass
        raise RuntimeError(detail) from None
    f.close()


def _sf_reason(f, e: Exception) -> str:
    """libsndfile's message for an open file, which names the OS error."""
    try:
        import soundfile as sf

        msg = sf._ffi.string(sf._snd.sf_strerror(f._file)).decode("utf-8", "replace").strip()
    except Exception:
        msg = ""
    return msg or str(e)


def _write_av(target, a: np.ndarray, sr: int, fmt: str, bitrate: int, scale) -> None:
    import av

    container_fmt, codec = {"mp3": ("mp3", "libmp3lame"), "m4a": ("ipod", "aac")}[fmt]
    layout = "mono" if a.shape[0] == 1 else "stereo"
    with av.open(target, mode="w", format=container_fmt) as out:
        st = out.add_stream(codec, rate=sr)
        st.layout = layout
        st.bit_rate = int(bitrate)
        block = 1 << 14
        for start in range(0, a.shape[1], block):
            chunk = a[:, start : start + block]
            if scale is not None:
                chunk = chunk / scale
            chunk = np.ascontiguousarray(np.clip(chunk, -1.0, 1.0).astype(np.float32))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


def encode_bytes(
    audio: np.ndarray,
    sample_rate: int,
    format: str,
    *,
    subtype: str = "PCM_16",
    bitrate: int = 192_000,
    scale: float | None = None,
) -> bytes:
    """Encode to an in-memory file.

    ``subtype`` (WAV/FLAC): ``PCM_16``, ``PCM_24``, ``PCM_32`` or ``FLOAT`` (WAV only).
    ``bitrate`` (MP3/M4A): bits per second. ``scale``: samples are divided by
    it (block by block) before encoding."""
    fmt = _format_of(None, format)
    a, st = _check_encode_args(audio, sample_rate, fmt, subtype, scale)
    buf = io.BytesIO()
    if st:
        _write_sf(buf, a, sample_rate, fmt, st, scale)
    else:
        _write_av(buf, a, sample_rate, fmt, bitrate, scale)
    return buf.getvalue()


def encode(
    path: PathLike,
    audio: np.ndarray,
    sample_rate: int,
    *,
    format: str | None = None,
    subtype: str = "PCM_16",
    bitrate: int = 192_000,
    scale: float | None = None,
) -> Path:
    """Encode ``audio`` to ``path`` (format from ``format`` or the extension).

    The file is written atomically (a temp file beside it, then renamed),
    block by block: no copy of the signal or of the file is held in memory.
    ``scale``: samples are divided by it before encoding — the bytes of
    ``encode(path, audio / scale)`` without the scaled copy."""
    p = Path(path)
    fmt = _format_of(p, format)
    a, st = _check_encode_args(audio, sample_rate, fmt, subtype, scale)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if st:
            _write_sf(str(tmp), a, sample_rate, fmt, st, scale)
        else:
            _write_av(str(tmp), a, sample_rate, fmt, bitrate, scale)
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{p}: cannot write ({e.strerror or e})", file=str(p), reason="unwritable") from None
    except Exception as e:  # libsndfile / libav write errors (disk full …)
        tmp.unlink(missing_ok=True)
        raise InputError(f"{p}: cannot write ({e})", file=str(p), reason="unwritable") from None
    return p


def encode_multistream(
    path: PathLike,
    streams: Sequence[np.ndarray],
    sample_rate: int,
    *,
    bitrate: int = 256_000,
) -> Path:
    """Write several stereo/mono arrays as AAC streams of one MP4 container —
    the MUSDB18 ``.stem.mp4`` layout (stream 0 mixture, then the stems).
    Decoding it back yields each stream's samples (AAC is lossy)."""
    import av

    arrays = [check_audio(a, f"stream {i}") for i, a in enumerate(streams)]
    if not arrays:
        raise InputError("encode_multistream: no streams given", field="streams")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            outs = []
            for a in arrays:
                st = out.add_stream("aac", rate=sample_rate)
                st.layout = "mono" if a.shape[0] == 1 else "stereo"
                st.bit_rate = int(bitrate)
                outs.append(st)
            block = 1 << 14
            n = max(a.shape[1] for a in arrays)
            for start in range(0, n, block):
                for a, st in zip(arrays, outs):
                    chunk = np.ascontiguousarray(np.clip(a[:, start : start + block], -1, 1).astype(np.float32))
                    if chunk.shape[1] == 0:
                        continue
                    fr = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=st.layout.name)
                    fr.sample_rate = sample_rate
                    fr.pts = start
                    for pkt in st.encode(fr):
                        out.mux(pkt)
            for st in outs:
                for pkt in st.encode(None):
                    out.mux(pkt)
        os.replace(tmp, p)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    return p
