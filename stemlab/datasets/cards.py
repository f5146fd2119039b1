"""Dataset cards: YAML files in the top-level ``datasets/`` folder (shipped in
the wheel as ``stemlab/datasets/_cards``) describing where to get a dataset,
its licence, layout, expected counts/durations and checksums. Loaders read
them to validate a user's copy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DatasetError

__all__ = ["DatasetCard", "card_dirs", "load_card", "list_cards"]


@dataclass(frozen=True)
class DatasetCard:
    name: str
    title: str
    homepage: str = ""
    licence: str = ""
    description: str = ""
    layout: str = ""
    sample_rate: int = 44100
    channels: int = 2
    targets: tuple[str, ...] = ()
    stream_order: tuple[str, ...] = ()
    subsets: Mapping[str, int] = field(default_factory=dict)  # subset → track count
    splits: Mapping[str, int] = field(default_factory=dict)
    validation_tracks: tuple[str, ...] = ()
    duration_seconds: Mapping[str, float] = field(default_factory=dict)  # min/max/total
    checksums: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    path: str = ""


def card_dirs() -> list[Path]:
    """Where cards are looked up: the installed copy, then the source tree."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "_cards", here.parent.parent / "datasets") if p.is_dir()]


def list_cards() -> list[str]:
    names: set[str] = set()
    for d in card_dirs():
        names.update(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_"))
    return sorted(names)


def load_card(name: str) -> DatasetCard:
    for d in card_dirs():
        p = d / f"{name}.yaml"
        if p.is_file():
            break
    else:
        raise DatasetError(f"no dataset card {name!r}; known cards: {list_cards()}", field="dataset")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DatasetError(f"{p}: invalid YAML ({e})", file=str(p)) from None
    if not isinstance(data, dict) or "name" not in data:
        raise DatasetError(f"{p}: expected a mapping with at least 'name' and 'title'", file=str(p))
    return DatasetCard(
        name=str(data["name"]),
        title=str(data.get("title", data["name"])),
        homepage=str(data.get("homepage", "")),
        licence=str(data.get("licence", "")),
        description=str(data.get("description", "")).strip(),
        layout=str(data.get("layout", "")).strip(),
        sample_rate=int(data.get("sample_rate", 44100)),
        channels=int(data.get("channels", 2)),
        targets=tuple(data.get("targets", ()) or ()),
        stream_order=tuple(data.get("stream_order", ()) or ()),
        subsets=dict(data.get("subsets", {}) or {}),
        splits=dict(data.get("splits", {}) or {}),
        validation_tracks=tuple(data.get("validation_tracks", ()) or ()),
        duration_seconds=dict(data.get("duration_seconds", {}) or {}),
        checksums=dict(data.get("checksums", {}) or {}),
        raw=data,
        path=str(p),
    )
