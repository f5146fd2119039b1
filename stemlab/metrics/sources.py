"""Lazy audio sources for the metrics: scoring reads blocks, never whole tracks.

A *source* is anything with ``.shape == (channels, samples)`` whose
``src[:, a:b]`` returns samples ``a … b−1`` of every channel as a numpy array
shaped ``(channels, b − a)`` (float or integer samples, in the audio's own
units: full scale ±1 for float audio). numpy arrays qualify. The metrics read
sources a block at a time and cast each block to float64, so the results are
those of the whole array upcast to float64, while the memory used does not
grow with the track's length.

Provided here:

* :class:`SumSource` — the float64 sum of sources (musdb's accompaniment =
  drums + bass + other), summed in order per block;
* :class:`PaddedSource` — a source zero-padded or truncated to a length
  (museval's ``pad_or_truncate``);
* :class:`QuantizedSource` — a source rounded to ``bits``-bit PCM per block
  (:func:`stemlab.metrics.evaluation.quantize`);
* :class:`AudioFileSource` — a WAV/FLAC/OGG file read through ``soundfile``
  (seek + read, float32), so a separation stored on disk is scored in
  O(block) memory.

Helpers: :func:`is_source`, :func:`read` (a float64 block, zero outside the
signal), :func:`blocks` (iterate over float64 blocks), :func:`materialize`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError

__all__ = [
    "BLOCK",
    "AudioFileSource",
    "PaddedSource",
    "QuantizedSource",
    "Source",
    "SumSource",
    "SourceStems",
    "all_finite",
    "lazy_references",
    "any_nonzero",
    "blocks",
    "is_source",
    "materialize",
    "read",
    "source_shape",
]

#: samples per block when a metric streams a source (2¹⁸ ≈ 6 s at 44.1 kHz:
#: a float64 stereo block is 4 MiB)
BLOCK = 1 << 18


@runtime_checkable
class Source(Protocol):
    """``shape == (channels, samples)``; ``src[:, a:b]`` → ``(channels, b − a)`` array."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


def is_source(x: Any) -> bool:
    """True for a 2-D numpy array or an object with a 2-tuple ``shape`` and
    ``__getitem__`` (lazy sources)."""
    if isinstance(x, np.ndarray):
        return x.ndim == 2
    shape = getattr(x, "shape", None)
    return isinstance(shape, tuple) and len(shape) == 2 and hasattr(x, "__getitem__")


def source_shape(x: Any) -> tuple[int, int]:
    """``(channels, samples)`` of a source."""
    c, t = x.shape
    return int(c), int(t)


def _span(key: Any, length: int) -> tuple[Any, int, int]:
    """Split a ``src[...]`` key into (channel index, start, stop) with the
    time slice clipped to ``[0, length]``; only step-1 time slices."""
    if not isinstance(key, tuple):
        key = (key, slice(None))
    if len(key) == 1:
        key = (key[0], slice(None))
    if len(key) != 2 or not isinstance(key[1], slice):
        raise TypeError(f"a source is indexed as src[channels, a:b], got {key!r}")
    a, b, step = key[1].indices(length)
    if step != 1:
        raise TypeError("a source supports time slices with step 1 only")
    return key[0], a, max(a, b)


def read(src: Any, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
    """Samples ``a … b−1`` of ``src`` as float64 ``(channels, b − a)``; zero
    where the span lies outside ``[0, samples)`` (``a`` may be negative).
    Written into ``out`` when given (shape ``(channels, b − a)``, float64)."""
    c, t = source_shape(src)
    n = b - a
    if out is None:
        out = np.empty((c, n))
    lo, hi = max(a, 0), min(b, t)
    if hi <= lo:
        out[...] = 0.0
        return out
    if lo > a:
        out[:, : lo - a] = 0.0
    if hi < b:
        out[:, hi - a :] = 0.0
    np.copyto(out[:, lo - a : hi - a], src[:, lo:hi], casting="unsafe")
    return out


def blocks(src: Any, block: int = BLOCK, start: int = 0, stop: int | None = None,
           buffer: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(a, x)``: float64 blocks ``x = src[:, a:a + len]`` covering
    ``[start, stop)`` (default the whole source). The yielded array is a
    reused buffer: copy it to keep it."""
    c, t = source_shape(src)
    stop = t if stop is None else stop
    if buffer is None or buffer.shape[0] != c or buffer.shape[1] < min(block, stop - start):
        buffer = np.empty((c, max(1, min(block, stop - start))))
    for a in range(start, stop, block):
        b = min(a + block, stop)
        yield a, read(src, a, b, buffer[:, : b - a])


def materialize(src: Any, dtype: Any = np.float64) -> np.ndarray:
    """The whole source as one ``(channels, samples)`` array of ``dtype``
    (for metrics that need whole signals)."""
    if isinstance(src, np.ndarray):
        return np.array(src, dtype=dtype)
    c, t = source_shape(src)
    out = np.empty((c, t), dtype=dtype)
    buf = np.empty((c, min(BLOCK, max(t, 1))))
    for a in range(0, t, BLOCK):
        b = min(a + BLOCK, t)
        out[:, a:b] = read(src, a, b, buf[:, : b - a])
    return out


def all_finite(src: Any, block: int = BLOCK) -> tuple[bool, int]:
    """(every sample finite, count of NaN/Inf samples), block by block. A
    block whose sum is finite has only finite samples; others are counted."""
    _, t = source_shape(src)
    bad = 0
    for a in range(0, t, block):
        x = np.asarray(src[:, a : min(a + block, t)])
        if x.dtype.kind not in "fc":
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(x.sum()):
                continue
        bad += int(x.size - np.count_nonzero(np.isfinite(x)))
    return bad == 0, bad


def any_nonzero(src: Any, block: int = BLOCK) -> bool:
    """True if any sample is nonzero (stops at the first nonzero block)."""
    _, t = source_shape(src)
    for a in range(0, t, block):
        if np.any(src[:, a : min(a + block, t)]):
            return True
    return False


# ------------------------------------------------------------ virtual sources

class SumSource:
    """The sum of sources sharing one shape, computed per block in float64 in
    the order given (``((p₀ + p₁) + p₂) …``, exactly ``np.sum`` over a stack
    of the parts upcast to float64)."""

    dtype = np.dtype(np.float64)

    def __init__(self, parts: Sequence[Any]) -> None:
        parts = list(parts)
        if not parts:
            raise InputError("SumSource: no parts given", field="parts")
        shapes = {source_shape(p) for p in parts}
        if len(shapes) != 1:
            raise InputError(f"SumSource: parts differ in shape {sorted(shapes)}", field="parts")
        self.parts: tuple[Any, ...] = tuple(parts)
        self.shape: tuple[int, int] = shapes.pop()

    def __getitem__(self, key: Any) -> np.ndarray:
        ch, a, b = _span(key, self.shape[1])
        out = np.array(self.parts[0][:, a:b], dtype=np.float64)
        for p in self.parts[1:]:
            out += p[:, a:b]
        return out if _full(ch) else out[ch]

    def __repr__(self) -> str:
        return f"SumSource({len(self.parts)} parts, shape={self.shape})"


class PaddedSource:
    """``src`` zero-padded (or truncated) at the end to ``length`` samples."""

    def __init__(self, src: Any, length: int) -> None:
        self.src = src
        self.shape: tuple[int, int] = (source_shape(src)[0], int(length))
        self.dtype = np.dtype(getattr(src, "dtype", np.float64))

    def __getitem__(self, key: Any) -> np.ndarray:
        ch, a, b = _span(key, self.shape[1])
        t = source_shape(self.src)[1]
        if b <= t:
            out = np.asarray(self.src[:, a:b])
        else:
            out = np.zeros((self.shape[0], b - a), dtype=self.dtype)
            if a < t:
                out[:, : t - a] = self.src[:, a:t]
        return out if _full(ch) else out[ch]

    def __repr__(self) -> str:
        return f"PaddedSource({self.src!r}, length={self.shape[1]})"


class QuantizedSource:
    """``src`` rounded to ``bits``-bit PCM per block (full scale ±1, clipped;
    float64): ``clip(round(x·2^(bits−1)), −2^(bits−1), 2^(bits−1) − 1) / 2^(bits−1)``."""

    dtype = np.dtype(np.float64)

    def __init__(self, src: Any, bits: int = 16) -> None:
        self.src = src
        self.bits = int(bits)
        self.shape: tuple[int, int] = source_shape(src)

    def __getitem__(self, key: Any) -> np.ndarray:
        ch, a, b = _span(key, self.shape[1])
        q = float(2 ** (self.bits - 1))
        x = np.asarray(self.src[:, a:b], dtype=np.float64)
        out = np.clip(np.round(x * q), -q, q - 1) / q
        return out if _full(ch) else out[ch]

    def __repr__(self) -> str:
        return f"QuantizedSource({self.src!r}, bits={self.bits})"


def _full(ch: Any) -> bool:
    return isinstance(ch, slice) and ch == slice(None)


# ----------------------------------------------------------------- files

class AudioFileSource:
    """An audio file read in blocks through ``soundfile`` (WAV, FLAC, OGG and
    whatever the installed libsndfile decodes): ``src[:, a:b]`` returns
    samples ``a … b−1`` as float32 ``(channels, b − a)`` (full scale ±1),
    times ``scale`` when given (float32 multiply, the same as ``decoded *
    scale`` on the float32 array). ``sample_rate`` in Hz.

    PCM and float files (WAV, AIFF, …) and FLAC are read by seeking, which
    libsndfile does sample-exactly for them. Other formats (OGG/Vorbis, Opus,
    MP3) are decoded once, sequentially and a block at a time, into a
    temporary float32 file when the source is created (libsndfile's seeks in
    them land on the wrong samples); reads then come from that file, which
    :meth:`close` deletes (read back with ``pread``: the pages stay in the OS
    cache, out of the process's resident memory). ``spool=True`` does the
    same for any format — worth it for FLAC read several times (the metrics
    make up to four passes; decoding FLAC costs more than reading raw
    samples). Either way the values are those of
    ``soundfile.read(path, dtype="float32")`` and the memory used is a block.
    Thread-safe (one lock per file); the file stays open until :meth:`close`
    (or garbage collection)."""

    dtype = np.dtype(np.float32)
    #: subtypes libsndfile seeks in sample-exactly (and any FLAC file)
    SEEKABLE_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE",
                                   "ULAW", "ALAW"})

    def __init__(self, path: str | os.PathLike[str], scale: float | None = None, *, spool: bool = False) -> None:
        import soundfile as sf

        self.path = os.fspath(path)
        try:
            info = sf.info(self.path)
        except Exception as e:  # noqa: BLE001 - soundfile raises RuntimeError/LibsndfileError/OSError
            raise InputError(f"{self.path}: cannot open as audio ({e})", file=self.path) from None
        self.sample_rate: int = int(info.samplerate)
        self.format: str = str(info.format)
        self.subtype: str = str(info.subtype)
        self.shape: tuple[int, int] = (int(info.channels), int(info.frames))
        self.scale = None if scale is None else float(scale)
        self._lock = threading.Lock()
        self._file: Any = None
        self._spool: tuple[str, Any] | None = None
        if spool or not self.seekable:
            self._decode_to_spool()

    @property
    def seekable(self) -> bool:
        """Whether samples are read by seeking in the file itself."""
        return self.format == "FLAC" or self.subtype in self.SEEKABLE_SUBTYPES

    def _decode_to_spool(self) -> None:
        import tempfile
        import weakref

        import soundfile as sf

        fd, tmp = tempfile.mkstemp(prefix="stemlab-audio-", suffix=".f32")
        n = 0
        try:
            with os.fdopen(fd, "wb") as out, sf.SoundFile(self.path) as f:
                while True:
                    blk = f.read(BLOCK, dtype="float32", always_2d=True)
                    if not blk.shape[0]:
                        break
                    out.write(np.ascontiguousarray(blk).tobytes())
                    n += blk.shape[0]
        except Exception as e:  # noqa: BLE001
            os.unlink(tmp)
            raise InputError(f"{self.path}: cannot decode ({e})", file=self.path) from None
        self.shape = (self.shape[0], n)
        # read back with pread (not a memory map): the pages stay in the OS
        # cache, not in this process's resident memory
        rfd = os.open(tmp, os.O_RDONLY)
        self._spool = (tmp, rfd)
        self._finalizer = weakref.finalize(self, _unlink, tmp, rfd)

    def _handle(self) -> Any:
        if self._file is None:
            import soundfile as sf

            self._file = sf.SoundFile(self.path)
        return self._file

    def __getitem__(self, key: Any) -> np.ndarray:
        ch, a, b = _span(key, self.shape[1])
        n = b - a
        if self._spool is None and not self.seekable:
            self._decode_to_spool()
        if self._spool is not None:
            C = self.shape[0]
            raw = os.pread(self._spool[1], n * C * 4, a * C * 4) if n > 0 else b""
            data = np.frombuffer(raw, dtype=np.float32).reshape(-1, C)
        else:
            with self._lock:
                f = self._handle()
                if n > 0:
                    f.seek(a)
                    data = f.read(n, dtype="float32", always_2d=True)
                else:
                    data = np.zeros((0, self.shape[0]), np.float32)
        if data.shape[0] != n:
            raise InputError(f"{self.path}: read {data.shape[0]} of {n} samples at {a} (the file is shorter "
                             f"than its header's {self.shape[1]} frames)", file=self.path)
        out = data.T
        if self.scale is not None:
            out = out * np.float32(self.scale)
        return out if _full(ch) else out[ch]

    def close(self) -> None:
        """Close the file and delete the temporary decode, if any (both come
        back on the next read)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._spool is not None:
                tmp, fd = self._spool
                self._spool = None
                self._finalizer.detach()
                _unlink(tmp, fd)

    def __enter__(self) -> AudioFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_file", "_spool", "_finalizer")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._file = None
        self._spool = None

    def __repr__(self) -> str:
        return f"AudioFileSource({self.path!r}, shape={self.shape}, sample_rate={self.sample_rate})"


class SourceStems(Mapping[str, Any]):
    """Named sources sharing one sample rate and one ``(channels, samples)``
    shape — :class:`~stemlab.types.Stems`' interface (``names``,
    ``sample_rate``, ``num_channels``, ``num_samples``, ``duration``) over
    lazy sources, e.g. a separation in the stem cache or references on disk,
    read a block at a time by the metrics. :meth:`close` closes the files."""

    def __init__(self, sources: Mapping[str, Any], sample_rate: int) -> None:
        if not sources:
            raise InputError("SourceStems: expected at least one source, got none", field="stems")
        shapes = {str(k): source_shape(v) for k, v in sources.items()}
        if len(set(shapes.values())) != 1:
            raise InputError(f"SourceStems: all sources must share (channels, samples); got {shapes}", field="stems")
        if int(sample_rate) <= 0:
            raise InputError(f"SourceStems: sample_rate must be positive (Hz), got {sample_rate!r}",
                             field="sample_rate")
        self._sources = {str(k): v for k, v in sources.items()}
        self.sample_rate = int(sample_rate)
        self.num_channels, self.num_samples = next(iter(shapes.values()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def __getitem__(self, name: str) -> Any:
        try:
            return self._sources[name]
        except KeyError:
            raise KeyError(f"no stem {name!r}; have {list(self._sources)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def close(self) -> None:
        for v in self._sources.values():
            close = getattr(v, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"SourceStems({list(self._sources)}, {self.sample_rate} Hz, {self.num_channels}×{self.num_samples})"


def lazy_references(track: Any) -> SourceStems | None:
    """A track's references as :class:`AudioFileSource` objects when they can be
    read in blocks exactly as the dataset would decode them: one seekable
    WAV/AIFF/FLAC file per target, all at the track's rate, with one shape —
    the mixture's, when the mixture is such a file too. Otherwise (a MUSDB18
    ``.stem.mp4``, lossy files, mono stems beside stereo ones, references in
    memory) None: decode ``track.references`` instead."""
    files = dict(getattr(track, "reference_files", {}) or {})
    if not files or set(files) != set(getattr(track, "target_names", ()) or ()):
        return None
    paths = dict(files)
    if getattr(track, "path", None) is not None:
        paths["\0mixture"] = track.path
    srcs: dict[str, AudioFileSource] = {}
    try:
        for name, f in paths.items():
            src = AudioFileSource(f)
            srcs[name] = src
            if not src.seekable or src.sample_rate != int(track.sample_rate):
                raise InputError("not block-readable")
        if len({src.shape for src in srcs.values()}) != 1:
            raise InputError("shapes differ")
    except InputError:
        for src in srcs.values():
            src.close()
        return None
    mix = srcs.pop("\0mixture", None)
    if mix is not None:
        mix.close()
    return SourceStems(srcs, int(track.sample_rate))


def _unlink(path: str, fd: int | None = None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.unlink(path)
    except OSError:
        pass
