"""Dango's algorithms (seed 003 "歌曲算法": the ``style`` of the upload
channel) and the default one of each stemlab variant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Style", "STYLES", "STYLE_BY_CODE", "DEFAULT_STYLE"]


@dataclass(frozen=True)
class Style:
    """One Dango algorithm (``style`` on the upload channel)."""

    name: str
    code: int
    description: str
    multitrack: bool = False  # offers the 4-stem zip
    deprecated: bool = False  # "已过时不推荐" in the docs


#: stemlab name → algorithm (seed 003 "歌曲算法"); numbers are accepted too
STYLES: Mapping[str, Style] = {s.name: s for s in (
    Style("multitrack_v2", 0, "Dango 2.0 multitrack extraction", multitrack=True, deprecated=True),
    Style("v4", 5, "Dango 4.0 accompaniment/vocal extraction"),
    Style("v4_better_vocals", 6, "Dango 4.0 better-vocals extraction", deprecated=True),
    Style("v4_harmony", 7, "Dango 4.0 harmony-keeping extraction", deprecated=True),
    Style("v4_aggressive", 8, "Dango 4.0 accompaniment/vocal extraction (aggressive)", deprecated=True),
    Style("v5", 9, "Dango 5.0 accompaniment/vocal extraction"),
    Style("v5_better_vocals", 10, "Dango 5.0 better-vocals extraction"),
    Style("v5_harmony", 11, "Dango 5.0 harmony-keeping extraction"),
    Style("multitrack_v3", 12, "Dango 3.0 multitrack extraction", multitrack=True),
)}
STYLE_BY_CODE: Mapping[int, Style] = {s.code: s for s in STYLES.values()}
DEFAULT_STYLE = {"vocals": "v5", "4stems": "multitrack_v3"}
