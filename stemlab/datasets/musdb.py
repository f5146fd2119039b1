"""MUSDB18 (``.stem.mp4``) and MUSDB18-HQ (wav folders) with exact splits.

* MUSDB18: ``{root}/{train,test}/{track}.stem.mp4``; stream 0 is the mixture,
  then drums, bass, other, vocals (musdb's ``stem_ids``), AAC at 44.1 kHz.
* MUSDB18-HQ: ``{root}/{train,test}/{track}/{mixture,drums,bass,other,vocals}.wav``.

Splits (``split=``): ``train`` = the train subset minus musdb's 14 validation
tracks, ``valid`` = those 14, ``test`` = the test subset. They never overlap —
unlike ``musdb.DB(split='valid')`` without a subset, which also returns the 50
test tracks (sigsep-mus-db#60). The validation list is read from the card.

Every track records the decoder (PyAV/libav versions) and, once decoded, the
sample counts in ``track.metadata`` — ffmpeg versions are known to change
MUSDB sample counts (stempeg#2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .. import audio
from ..errors import DatasetError, InputError
from ..types import Track
from .base import Dataset, ValidationReport, root_path
from .cards import DatasetCard, load_card
from .folder import stem_folder_track

__all__ = ["MusdbDataset", "MusdbHQDataset", "SPLITS"]

SPLITS = ("train", "valid", "test")
_SUBSET_OF_SPLIT = {"train": "train", "valid": "train", "test": "test"}


def _resolve(subset: str | None, split: str | None, dataset: str) -> tuple[list[str], str | None]:
    """Which subset directories to read and which split filter to apply."""
    if split is not None and split not in SPLITS:
        raise DatasetError(f"{dataset}: split must be one of {SPLITS}, got {split!r}", field="split")
    if subset is not None and subset not in ("train", "test"):
        raise DatasetError(f"{dataset}: subset must be 'train' or 'test', got {subset!r}", field="subset")
    if split is not None:
        need = _SUBSET_OF_SPLIT[split]
        if subset is not None and subset != need:
            raise DatasetError(
                f"{dataset}: split {split!r} is part of subset {need!r}, not {subset!r}", field="split"
            )
        return [need], split
    return ([subset] if subset else ["train", "test"]), None


class _MusdbBase(Dataset):
    card_name = ""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        subset: str | None = None,
        split: str | None = None,
        names: Sequence[str] | None = None,
        card: DatasetCard | None = None,
    ) -> None:
        card = card or load_card(self.card_name)
        super().__init__(card=card, names=names)
        self.name = self.card_name
        self.root = root_path(root, self.name)
        self.subsets, self.split = _resolve(subset, split, self.name)
        self.subset = subset
        missing = [s for s in self.subsets if not (self.root / s).is_dir()]
        if subset is None and split is None and len(missing) < len(self.subsets):
            # e.g. the 7-s preview or a partial copy holding only train/
            self.subsets = [s for s in self.subsets if s not in missing]
            missing = []
        if missing:
            raise DatasetError(
                f"{self.name}: {self.root} has no {missing} directory; expected "
                f"{self.card.layout.splitlines()[0] if self.card and self.card.layout else 'train/ and test/'}",
                field="root",
            )
        self.validation_tracks = frozenset(card.validation_tracks)

    def _in_split(self, subset: str, name: str) -> bool:
        if self.split is None or self.split == "test":
            return True
        is_valid = name in self.validation_tracks
        return is_valid if self.split == "valid" else not is_valid

    def _scan(self, subset: str) -> list[str]:  # pragma: no cover - abstract helper
        raise NotImplementedError

    def _index(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.subsets:
            for n in self._scan(s):
                if self._in_split(s, n):
                    if n in out:
                        raise DatasetError(f"{self.name}: track {n!r} appears in both {out[n]} and {s}")
                    out[n] = s
        return out

    def _all_names(self) -> list[str]:
        return sorted(self._index())

    def split_of(self, name: str) -> str:
        subset = self._index()[name]
        if subset == "test":
            return "test"
        return "valid" if name in self.validation_tracks else "train"

    def validate(self, deep: bool = True) -> ValidationReport:
        report = ValidationReport(self.name, str(self.root))
        card = self.card
        assert card is not None
        index = self._index()
        for s in self.subsets:
            expected = card.subsets.get(s)
            have = sum(1 for v in index.values() if v == s)
            if expected is not None and self.split is None and have != expected:
                report.add(None, s, f"{have} track(s) in {s}/, the card expects {expected}", "warning")
        if self.split == "valid" or self.split is None and "train" in self.subsets:
            missing_valid = sorted(self.validation_tracks - set(index))
            if missing_valid and self.split in (None, "valid"):
                report.add(
                    None,
                    "train",
                    f"{len(missing_valid)} validation track(s) missing, e.g. {missing_valid[:3]}",
                    "warning",
                )
        dmin = card.duration_seconds.get("min")
        dmax = card.duration_seconds.get("max")
        for n in self.track_names():
            report.tracks_checked += 1
            self._validate_track(n, report, deep, dmin, dmax)
        return report

    def _validate_track(self, name: str, report: ValidationReport, deep: bool, dmin, dmax) -> None:
        raise NotImplementedError


class MusdbDataset(_MusdbBase):
    """MUSDB18 as distributed: one ``.stem.mp4`` per track (5 AAC streams)."""

    card_name = "musdb18"

    def _scan(self, subset: str) -> list[str]:
        d = self.root / subset
        return sorted(p.name[: -len(".stem.mp4")] for p in d.glob("*.stem.mp4") if p.is_file())

    def path_of(self, name: str) -> Path:
        return self.root / self._index()[name] / f"{name}.stem.mp4"

    def _make_track(self, name: str) -> Track:
        path = self.path_of(name)
        order = (
            self.card.stream_order
            if self.card and self.card.stream_order
            else ("mixture", "drums", "bass", "other", "vocals")
        )
        info = audio.probe(path)
        if len(info.streams) < len(order):
            raise DatasetError(
                f"{path}: has {len(info.streams)} audio stream(s), a MUSDB18 stem file has {len(order)} "
                f"({', '.join(order)})",
                file=str(path),
            )
        meta: dict = {
            "file": str(path),
            "split": self.split_of(name),
            "decoder": audio.decoder_versions(),
            "stream_order": list(order),
        }
        cache: dict[str, np.ndarray] = {}

        def _take(keys: Sequence[str]) -> dict[str, np.ndarray]:
            # one demux pass decodes all five streams; what is handed to the
            # Track leaves this closure, so Track.release() frees the memory
            if not all(k in cache for k in keys):
                arrays, sr = audio.decode_streams(path, list(range(len(order))))
                if sr != info.sample_rate:  # pragma: no cover - defensive
                    raise DatasetError(f"{path}: sample rate changed while decoding")
                counts = {o: int(a.shape[1]) for o, a in zip(order, arrays)}
                if len(set(counts.values())) != 1:
                    raise DatasetError(f"{path}: streams decode to different lengths {counts}", file=str(path))
                chans = {o: int(a.shape[0]) for o, a in zip(order, arrays)}
                if len(set(chans.values())) != 1:
                    raise DatasetError(
                        f"{path}: streams have different channel counts {chans}; expected one layout", file=str(path)
                    )
                meta["decoded_samples"] = counts
                cache.clear()
                cache.update(dict(zip(order, arrays)))
            return {k: cache.pop(k) for k in keys}

        def load_mixture() -> np.ndarray:
            return _take(["mixture"])["mixture"]

        def load_references() -> dict[str, np.ndarray]:
            return _take([o for o in order if o != "mixture"])

        return Track(
            name=name,
            sample_rate=info.sample_rate,
            dataset=self.name,
            subset=self._index()[name],
            duration=info.duration,
            target_names=tuple(o for o in order if o != "mixture"),
            path=path,
            metadata=MappingProxyType(meta),
            load_mixture=load_mixture,
            load_references=load_references,
        )

    def _validate_track(self, name, report, deep, dmin, dmax) -> None:
        path = self.path_of(name)
        try:
            t = self._make_track(name)
        except (DatasetError, InputError) as e:
            report.add(name, path.name, str(e))
            return
        card = self.card
        assert card is not None
        if t.sample_rate != card.sample_rate:
            report.add(name, path.name, f"sample rate {t.sample_rate} Hz, expected {card.sample_rate} Hz")
        if t.duration is not None and dmin is not None and t.duration < dmin:
            report.add(name, path.name, f"duration {t.duration:.1f} s below the card's minimum {dmin} s", "warning")
        if t.duration is not None and dmax is not None and t.duration > dmax:
            report.add(name, path.name, f"duration {t.duration:.1f} s above the card's maximum {dmax} s", "warning")
        if deep:
            try:
                _ = t.references
            except (DatasetError, InputError) as e:
                report.add(name, path.name, str(e))
            finally:
                t.release()


class MusdbHQDataset(_MusdbBase):
    """MUSDB18-HQ: uncompressed WAV stems, one folder per track."""

    card_name = "musdb18hq"

    def _scan(self, subset: str) -> list[str]:
        d = self.root / subset
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _make_track(self, name: str) -> Track:
        subset = self._index()[name]
        card = self.card
        assert card is not None
        return stem_folder_track(
            self.root / subset / name,
            dataset=self.name,
            subset=subset,
            stems=card.targets,
            metadata={"split": self.split_of(name)},
        )

    def _validate_track(self, name, report, deep, dmin, dmax) -> None:
        folder = self.root / self._index()[name] / name
        card = self.card
        assert card is not None
        try:
            t = self._make_track(name)
        except (DatasetError, InputError) as e:
            report.add(name, folder.name, str(e))
            return
        if t.metadata.get("mixture_is_sum_of_stems"):
            report.add(name, "mixture.wav", "missing (the sum of stems will be used)", "warning")
        if t.sample_rate != card.sample_rate:
            report.add(name, None, f"sample rate {t.sample_rate} Hz, expected {card.sample_rate} Hz")
        if deep:
            try:
                _ = t.mixture
                _ = t.references
            except (DatasetError, InputError) as e:
                report.add(name, None, str(e))
            finally:
                t.release()
