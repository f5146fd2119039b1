"""Dataset base class and validation report.

A dataset is an ordered, filterable collection of :class:`~stemlab.types.Track`
objects whose audio is decoded lazily, one track at a time.
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..types import Track
from .cards import DatasetCard

__all__ = ["Dataset", "Problem", "ValidationReport"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a user's copy of a dataset."""

    track: str | None
    file: str | None
    problem: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = " / ".join(x for x in (self.track, self.file) if x)
        return f"[{self.severity}] {where + ': ' if where else ''}{self.problem}"


@dataclass
class ValidationReport:
    dataset: str
    root: str | None
    tracks_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, track: str | None, file: str | None, problem: str, severity: str = "error") -> None:
        self.problems.append(Problem(track, file, problem, severity))

    def format(self) -> str:
        lines = [
            f"dataset {self.dataset} at {self.root}: {self.tracks_checked} track(s) checked, "
            f"{sum(p.severity == 'error' for p in self.problems)} error(s), "
            f"{sum(p.severity == 'warning' for p in self.problems)} warning(s)"
        ]
        lines += [f"  {p}" for p in self.problems]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


class Dataset(abc.ABC):
    """An ordered collection of tracks.

    Subclasses implement :meth:`track_names` and :meth:`_make_track`."""

    name: str = ""

    def __init__(self, *, card: DatasetCard | None = None, names: Sequence[str] | None = None) -> None:
        self.card = card
        self._selected: tuple[str, ...] | None = tuple(names) if names is not None else None

    # to implement ------------------------------------------------------------------
    @abc.abstractmethod
    def _all_names(self) -> list[str]:
        """Every track name available, in canonical (sorted) order."""

    @abc.abstractmethod
    def _make_track(self, name: str) -> Track:
        """A lazily decoded Track for ``name``."""

    def validate(self, deep: bool = True) -> ValidationReport:
        """Check the copy on disk against the card. Override to add checks."""
        return ValidationReport(self.name, str(getattr(self, "root", None)))

    # public -------------------------------------------------------------------------
    def track_names(self) -> list[str]:
        names = self._all_names()
        if self._selected is None:
            return names
        have = set(names)
        missing = [n for n in self._selected if n not in have]
        if missing:
            raise DatasetError(
                f"{self.name}: no track(s) {missing}; available: {names[:10]}{' …' if len(names) > 10 else ''}"
            )
        return [n for n in names if n in set(self._selected)]

    def __iter__(self) -> Iterator[Track]:
        for n in self.track_names():
            yield self._make_track(n)

    def __len__(self) -> int:
        return len(self.track_names())

    def __getitem__(self, key: int | str) -> Track:
        names = self.track_names()
        if isinstance(key, int):
            return self._make_track(names[key])
        if key not in names:
            raise DatasetError(f"{self.name}: no track {key!r}")
        return self._make_track(key)

    def filter(
        self,
        names: Sequence[str] | None = None,
        pattern: str | None = None,
        limit: int | None = None,
    ) -> Dataset:
        """A view restricted to ``names`` and/or a glob ``pattern``, at most ``limit`` tracks."""
        import copy

        sel = self.track_names()
        if names is not None:
            wanted = list(names)
            missing = [n for n in wanted if n not in sel]
            if missing:
                raise DatasetError(f"{self.name}: no track(s) {missing}")
            sel = [n for n in sel if n in set(wanted)]
        if pattern is not None:
            sel = [n for n in sel if fnmatch.fnmatchcase(n, pattern)]
        if limit is not None:
            sel = sel[: max(0, int(limit))]
        view = copy.copy(self)
        view._selected = tuple(sel)
        return view

    def info(self) -> dict[str, Any]:
        names = self.track_names()
        out: dict[str, Any] = {
            "name": self.name,
            "root": str(getattr(self, "root", "") or ""),
            "tracks": len(names),
            "track_names": names,
        }
        if self.card is not None:
            out["title"] = self.card.title
            out["licence"] = self.card.licence
            out["targets"] = list(self.card.targets)
            out["sample_rate"] = self.card.sample_rate
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} tracks={len(self)}>"


def root_path(root: str | Path | None, dataset: str) -> Path:
    if root is None:
        raise DatasetError(f"{dataset}: pass root= (the directory holding the dataset)", field="root")
    p = Path(root).expanduser()
    if not p.exists():
        raise DatasetError(f"{dataset}: root {p} does not exist", field="root")
    if not p.is_dir():
        raise DatasetError(f"{dataset}: root {p} is not a directory", field="root")
    try:
        next(iter(p.iterdir()), None)
    except PermissionError:
        raise DatasetError(f"{dataset}: root {p} is not readable (permission denied)", field="root") from None
    return p
