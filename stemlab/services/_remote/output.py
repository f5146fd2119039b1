"""Turn downloaded stem files into one :class:`~stemlab.types.Stems`.

Services return one file per stem, each with its own container, rate,
channel count and length. Stems must share rate and shape, so this module
reconciles *between stems* (never towards the reference — aligning to the
reference is the metrics layer's job) and reports every change:

* sample rate: the most common rate among the stems wins (ties: the
  highest); others are resampled (libsoxr VHQ) — a warning each;
* channels: mono stems next to stereo ones are duplicated to stereo;
* length: shorter stems are zero-padded to the longest.

It refuses output that cannot be what was asked for: a stem that does not
decode, or stems covering much less than the input (truncated/wrong length).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...audio import decode, decode_bytes, resample, to_channels
from ...errors import InputError, ProviderOutputError
from ...types import Stems

__all__ = ["sniff_format", "OutputReport", "assemble_stems"]


def sniff_format(data: bytes) -> str:
    """Container of an audio file from its first bytes: wav, flac, mp3, m4a,
    ogg — or what a service served instead of audio: html (an error, login
    or CDN page), xml (a storage error), json, text — or "unknown"."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"OggS":
        return "ogg"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if text.startswith((b"<?xml", b"<error")):
        return "xml"
    if text[:1] in (b"{", b"["):
        return "json"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "text"
    return "unknown"


@dataclass
class OutputReport:
    """What the service actually returned, before reconciliation."""

    formats: dict[str, str] = field(default_factory=dict)
    sample_rates: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        fmts = set(self.formats.values())
        rates = set(self.sample_rates.values())
        chans = set(self.channels.values())
        return {
            "format": fmts.pop() if len(fmts) == 1 else dict(self.formats),
            "sample_rate": rates.pop() if len(rates) == 1 else dict(self.sample_rates),
            "channels": chans.pop() if len(chans) == 1 else dict(self.channels),
            "samples": dict(self.samples),
            "bytes": dict(self.bytes),
            "changes": list(self.changes),
        }


def _decode_stem(name: str, data: bytes | str | os.PathLike[str], label: str,
                 report: OutputReport) -> tuple[np.ndarray, int]:
    """Decode one stem (file bytes or a downloaded file's path), noting its
    format, size, rate, channels and length in ``report``."""
    if isinstance(data, (str, os.PathLike)):  # a download on disk
        with open(data, "rb") as f:
            head = f.read(16)
        size = os.path.getsize(data)
    else:
        head, size = bytes(data[:16]), len(data)
    report.formats[name] = sniff_format(head)
    report.bytes[name] = size
    try:
        if isinstance(data, (str, os.PathLike)):
            arr, sr = decode(data, max_seconds=None)
        else:
            arr, sr = decode_bytes(data, max_seconds=None)
    except InputError as e:
        raise ProviderOutputError(
            f"{label}: stem {name!r} ({report.formats[name]}, {size} bytes) does not decode: "
            f"{e.details.get('reason') or ''} {e}".replace("<bytes>: ", "").replace(f"{str(data)}: ", ""),
            provider=label, stem=name,
        ) from None
    report.sample_rates[name] = sr
    report.channels[name] = arr.shape[0]
    report.samples[name] = arr.shape[1]
    return arr, sr


def _check_coverage(arrays: Mapping[str, np.ndarray], sr: int, input_seconds: float, min_coverage: float,
                    label: str, warnings: list[str]) -> None:
    """Raise for a stem shorter than ``min_coverage`` × the input; warn of
    one much longer."""
    for name, a in arrays.items():
        seconds = a.shape[1] / sr
        if input_seconds > 0 and seconds < min_coverage * input_seconds:
            raise ProviderOutputError(
                f"{label}: stem {name!r} lasts {seconds:.2f} s, the input {input_seconds:.2f} s "
                f"(below {min_coverage:.0%}): truncated or wrong-length output",
                provider=label, stem=name,
            )
        if input_seconds > 0 and seconds > input_seconds * 1.1 + 1.0:
            warnings.append(f"stem {name!r} lasts {seconds:.2f} s, longer than the {input_seconds:.2f}-s input")


def _one_rate(arrays: dict[str, np.ndarray], rates: Mapping[str, int], report: OutputReport,
              warnings: list[str]) -> int:
    """Resample, in ``arrays``, every stem not at the most common rate (the
    highest on a tie) to it; that rate."""
    counts = Counter(rates.values())
    target_sr = max(counts, key=lambda r: (counts[r], r))
    for name, sr in rates.items():
        if sr != target_sr:
            arrays[name] = resample(arrays[name], sr, target_sr)
            msg = f"stem {name!r} came at {sr} Hz, the other stems at {target_sr} Hz: resampled"
            warnings.append(msg)
            report.changes.append(msg)
    return target_sr


def _one_channel_count(arrays: dict[str, np.ndarray], input_channels: int | None, label: str,
                       report: OutputReport, warnings: list[str]) -> None:
    """Mono stems beside stereo ones are duplicated to stereo in ``arrays``;
    more than two channels is refused; mono stems for a stereo input are a warning."""
    chans = {a.shape[0] for a in arrays.values()}
    if len(chans) > 1:
        if max(chans) > 2:
            raise ProviderOutputError(f"{label}: stems have {sorted(chans)} channels; expected mono or stereo",
                                      provider=label)
        for name, a in list(arrays.items()):
            if a.shape[0] == 1:
                arrays[name] = to_channels(a, 2)
                msg = f"stem {name!r} is mono, the others stereo: duplicated to stereo"
                warnings.append(msg)
                report.changes.append(msg)
    elif input_channels == 2 and chans == {1}:
        warnings.append("the service returned mono stems for a stereo input")


def _one_length(arrays: dict[str, np.ndarray], report: OutputReport, warnings: list[str]) -> None:
    """Zero-pad, in ``arrays``, every stem shorter than the longest."""
    lengths = {a.shape[1] for a in arrays.values()}
    if len(lengths) > 1:
        n = max(lengths)
        for name, a in list(arrays.items()):
            if a.shape[1] < n:
                arrays[name] = np.pad(a, ((0, 0), (0, n - a.shape[1])))
        msg = f"stem lengths differed ({min(lengths)}–{n} samples): zero-padded to {n}"
        warnings.append(msg)
        report.changes.append(msg)


def assemble_stems(
    blobs: Mapping[str, bytes | str | os.PathLike[str]],
    *,
    expected: Sequence[str],
    label: str,
    input_seconds: float,
    input_channels: int | None = None,
    min_coverage: float = 0.9,
) -> tuple[Stems, OutputReport, list[str]]:
    """Decode ``blobs`` (stem → file bytes, or the path of a downloaded
    file) into Stems at the service's rate.

    Returns ``(stems, report, warnings)``. Raises
    :class:`ProviderOutputError` for a missing stem, an undecodable file, or
    a stem shorter than ``min_coverage`` × the input duration."""
    missing = [s for s in expected if s not in blobs]
    if missing:
        raise ProviderOutputError(
            f"{label}: output lacks stems {missing}; the service returned {sorted(blobs)}", provider=label
        )
    report = OutputReport()
    warnings: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    rates: dict[str, int] = {}
    for name in expected:
        arrays[name], rates[name] = _decode_stem(name, blobs[name], label, report)

    # 1) one sample rate
    target_sr = _one_rate(arrays, rates, report, warnings)
    # 2) one channel count
    _one_channel_count(arrays, input_channels, label, report, warnings)
    # 3) coverage of the input, then one length
    _check_coverage(arrays, target_sr, input_seconds, min_coverage, label, warnings)
    _one_length(arrays, report, warnings)
    return Stems(arrays, target_sr), report, warnings
