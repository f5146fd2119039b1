"""Folder datasets.

Layouts understood (``root`` is the directory passed to :func:`stemlab.datasets.load`):

* stem folders — one directory per track holding ``mixture.<ext>`` and one
  file per stem (``vocals.wav``, ``drums.flac`` …); the MUSDB18-HQ layout.
  Stem names are configurable; a folder without a mixture uses the sum of
  its stems, a folder with only a mixture has no references.
* plain mixtures — audio files directly under ``root``; each file is a track
  without references (separation only, no reference metrics).

Any decodable extension works (see :data:`stemlab.audio.DECODABLE_EXTENSIONS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import audio
from ..errors import DatasetError, InputError
from ..types import Track
from .base import Dataset, ValidationReport, root_path
from .cards import DatasetCard

__all__ = ["FolderDataset", "find_audio", "stem_folder_track"]


def find_audio(folder: Path, stem: str) -> Path | None:
    """The file ``<stem>.<decodable ext>`` in ``folder`` (None if absent).
    Raises if several files claim the same stem name."""
    hits = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.stem == stem and p.suffix.lower() in audio.DECODABLE_EXTENSIONS
    ]
    if len(hits) > 1:
        raise DatasetError(
            f"{folder}: several files for {stem!r}: {sorted(h.name for h in hits)}; keep one", file=str(folder)
        )
    return hits[0] if hits else None


def _same_rate(rate: int | None, sr: int, track: str, path: Path) -> int:
    """The track's one sample rate: ``sr`` for the first file; a later file at another rate is refused."""
    if rate is not None and sr != rate:
        raise DatasetError(
            f"track {track!r}: {path.name} is {sr} Hz but the other files are {rate} Hz; "
            "resample the file so all stems share one rate",
            file=str(path),
        )
    return sr


def _add_into(total: np.ndarray | None, arr: np.ndarray) -> tuple[bool, np.ndarray | None]:
    """Add ``arr`` to the running sum ``total`` (the first array becomes it):
    ``(summable, total)``, ``(False, None)`` when the shapes cannot be summed."""
    if total is None:
        return True, arr  # decode() returned a fresh array: it becomes the accumulator
    if arr.shape[1] != total.shape[1] or (
        arr.shape[0] != total.shape[0] and not {arr.shape[0], total.shape[0]} <= {1, 2}
    ):
        return False, None  # refused below, with every file's length/channels
    if total.shape[0] < arr.shape[0]:
        total = np.repeat(total, arr.shape[0], axis=0)  # mono so far, a stereo stem: dual mono
    total += arr  # a mono stem broadcasts over both channels (dual mono)
    return True, total


def _check_lengths(lengths: dict[str, int], files: dict[str, Path], track: str) -> None:
    """Refuse files of different lengths (samples)."""
    if len(set(lengths.values())) > 1:
        raise DatasetError(
            f"track {track!r}: stems have different lengths (samples) {lengths}; expected equal lengths",
            file=str(next(iter(files.values())).parent),
        )


def _match_channels(out: dict[str, np.ndarray], chans: dict[str, int], files: dict[str, Path]) -> None:
    """Mono stems beside stereo ones → dual mono (the kept arrays in ``out`` are
    converted in place); any other mix of channel counts is an error."""
    if len(set(chans.values())) > 1:
        target = max(chans.values())
        for n in files:
            if n in out:
                out[n] = audio.to_channels(out[n], target, name=str(files[n]))
            else:  # same check (and error) as converting it
                audio.to_channels(np.zeros((chans[n], 0), np.float32), target, name=str(files[n]))


def _decode_all(
    files: dict[str, Path], track: str, *, keep: Callable[[str], bool] = lambda name: True,
    add: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """Decode ``files`` one at a time, check one sample rate, equal lengths
    and compatible channels (mono beside stereo → dual mono).

    ``keep(name)``: whether to keep that file's samples (the others are
    decoded for their checks only and dropped at once). ``add``: return
    ``{"sum": …}``, the float32 sum of the kept files in file order, built in
    one accumulator — the same values as stacking and summing them, without
    holding every stem plus the sum."""
    out: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    chans: dict[str, int] = {}
    rate: int | None = None
    total: np.ndarray | None = None
    summable = True
    for name, path in files.items():
        arr, sr = audio.decode(path)
        rate = _same_rate(rate, sr, track, path)
        lengths[name], chans[name] = arr.shape[1], arr.shape[0]
        if not keep(name):
            pass  # decoded for its checks only: dropped before the next file is decoded
        elif not add:
            out[name] = arr
        elif summable:
            summable, total = _add_into(total, arr)
        del arr
    _check_lengths(lengths, files, track)
    _match_channels(out, chans, files)
    assert rate is not None
    if add:
        assert total is not None
        return {"sum": total}, rate
    return out, rate


def stem_folder_track(
    folder: Path,
    *,
    dataset: str,
    subset: str | None,
    stems: Sequence[str] | None,
    mixture: str = "mixture",
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Track:
    """A lazily decoded Track for one stem folder."""
    track_name = name or folder.name
    mix_path = find_audio(folder, mixture)
    if stems is None:
        stem_names = sorted(
            p.stem
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in audio.DECODABLE_EXTENSIONS and p.stem != mixture
        )
    else:
        stem_names = list(stems)
    stem_paths = {s: find_audio(folder, s) for s in stem_names}
    present = {s: p for s, p in stem_paths.items() if p is not None}
    if stems is not None and present and len(present) != len(stem_names):
        missing = [s for s, p in stem_paths.items() if p is None]
        raise DatasetError(
            f"track {track_name!r} in {folder}: missing stem file(s) {missing} "
            f"(expected {[s + '.<ext>' for s in stem_names]})",
            file=str(folder),
        )
    if mix_path is None and not present:
        raise DatasetError(
            f"track {track_name!r}: {folder} holds neither {mixture}.<ext> nor stem files", file=str(folder)
        )
    probe_src = mix_path or next(iter(present.values()))
    info = audio.probe(probe_src)
    meta = dict(metadata or {})
    meta.update(
        {
            "mixture_file": str(mix_path) if mix_path else None,
            "stem_files": {s: str(p) for s, p in present.items()},
            "mixture_is_sum_of_stems": mix_path is None,
            "decoder": audio.decoder_versions(),
        }
    )

    def load_mixture() -> np.ndarray:
        if mix_path is None:
            # the sum of the stems, accumulated one decoded stem at a time
            return _decode_all(present, track_name, add=True)[0]["sum"]
        arr, sr = audio.decode(mix_path)
        if sr != info.sample_rate:
            raise DatasetError(f"track {track_name!r}: sample rate changed while reading {mix_path}")
        return arr

    def load_references() -> dict[str, np.ndarray]:
        files = dict(present)
        if mix_path is not None:
            files = {"__mixture__": mix_path, **files}
        # the mixture is decoded for its checks (rate, length) and dropped at once
        arrs, _ = _decode_all(files, track_name, keep=lambda n: n != "__mixture__")
        return arrs

    return Track(
        name=track_name,
        sample_rate=info.sample_rate,
        dataset=dataset,
        subset=subset,
        duration=info.duration,
        target_names=tuple(present),
        path=mix_path,
        metadata=meta,
        load_mixture=load_mixture,
        load_references=load_references if present else None,
    )


class FolderDataset(Dataset):
    """A user's own folder of tracks (see module docstring for layouts).

    ``stems``: expected stem names (None → every non-mixture audio file in a
    track folder); ``mixture``: the mixture's file stem; ``subset``: an
    optional sub-directory of ``root`` to read."""

    name = "folder"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        subset: str | None = None,
        stems: Sequence[str] | None = None,
        mixture: str = "mixture",
        card: DatasetCard | None = None,
        names: Sequence[str] | None = None,
        dataset_name: str | None = None,
    ) -> None:
        super().__init__(card=card, names=names)
        base = root_path(root, dataset_name or self.name)
        self.root = base / subset if subset else base
        if subset and not self.root.is_dir():
            raise DatasetError(f"{dataset_name or self.name}: no subset directory {self.root}", field="subset")
        self.subset = subset
        self.stems = tuple(stems) if stems is not None else None
        self.mixture = mixture
        if dataset_name:
            self.name = dataset_name

    def _entries(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(self.root.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                out[p.name] = p
            elif p.is_file() and p.suffix.lower() in audio.DECODABLE_EXTENSIONS:
                out[p.stem] = p
        return out

    def _all_names(self) -> list[str]:
        return sorted(self._entries())

    def _make_track(self, name: str) -> Track:
        p = self._entries()[name]
        if p.is_dir():
            return stem_folder_track(p, dataset=self.name, subset=self.subset, stems=self.stems, mixture=self.mixture)
        info = audio.probe(p)
        return Track(
            name=name,
            sample_rate=info.sample_rate,
            dataset=self.name,
            subset=self.subset,
            duration=info.duration,
            path=p,
            metadata={"mixture_file": str(p), "decoder": audio.decoder_versions()},
            load_mixture=lambda: audio.decode(p)[0],
        )

    def validate(self, deep: bool = True) -> ValidationReport:
        """Check every track: files decodable (``deep``: fully decoded, which
        finds truncation), stems present, equal lengths, one sample rate."""
        report = ValidationReport(self.name, str(self.root))
        expected_sr = self.card.sample_rate if self.card else None
        names = self.track_names()
        if not names:
            report.add(None, str(self.root), "no tracks found (expected track folders or audio files)")
        for n in names:
            report.tracks_checked += 1
            try:
                t = self._make_track(n)
            except (DatasetError, InputError) as e:
                report.add(n, None, str(e))
                continue
            if self.stems is not None and not t.has_references:
                report.add(n, None, f"no stem files (expected {list(self.stems)})")
            if expected_sr and t.sample_rate != expected_sr:
                report.add(n, str(t.path), f"sample rate {t.sample_rate} Hz, expected {expected_sr} Hz")
            if deep:
                try:
                    _ = t.mixture
                    if t.has_references:
                        _ = t.references
                except (DatasetError, InputError) as e:
                    report.add(n, None, str(e))
                finally:
                    t.release()
        return report
