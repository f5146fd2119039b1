"""Dataset registry.

>>> import stemlab.datasets as ds
>>> demo = ds.load("demo")                                   # generated on first use
>>> test = ds.load("musdb18", root="~/data/musdb18", split="test")
>>> mine = ds.load("folder", root="~/my-songs", stems=["vocals", "accompaniment"])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .base import Dataset, Problem, ValidationReport
from .cards import DatasetCard, list_cards, load_card

__all__ = [
    "Dataset",
    "DatasetCard",
    "Problem",
    "ValidationReport",
    "load",
    "names",
    "card",
    "list_cards",
    "validate",
]


def _demo(**kw: Any) -> Dataset:
    from .demo import DemoDataset

    return DemoDataset(**kw)


def _musdb(**kw: Any) -> Dataset:
    from .musdb import MusdbDataset

    return MusdbDataset(**kw)


def _musdbhq(**kw: Any) -> Dataset:
    from .musdb import MusdbHQDataset

    return MusdbHQDataset(**kw)


def _folder(**kw: Any) -> Dataset:
    from .folder import FolderDataset

    return FolderDataset(**kw)


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "demo": _demo,
    "musdb18": _musdb,
    "musdb18hq": _musdbhq,
    "folder": _folder,
}
_ALIASES = {"musdb": "musdb18", "musdb-hq": "musdb18hq", "musdbhq": "musdb18hq", "musdb18-hq": "musdb18hq"}


def names() -> list[str]:
    """Every dataset name :func:`load` accepts."""
    return sorted(_LOADERS)


def _canon(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {names()}", field="dataset")
    return key


def load(name: str, root: str | Path | None = None, **kwargs: Any) -> Dataset:
    """Open a dataset by name.

    ``root``: where it lives (not needed for ``demo``). Keyword arguments go to
    the loader: ``subset``/``split`` for MUSDB, ``stems``/``mixture`` for
    folders, ``tracks``/``seconds``/``seed`` for the demo, ``names`` to
    restrict to some tracks."""
    key = _canon(name)
    if root is not None:
        kwargs["root"] = root
    try:
        return _LOADERS[key](**kwargs)
    except TypeError as e:  # unexpected keyword
        raise DatasetError(f"dataset {key}: {e}", field="dataset") from None


def card(name: str) -> DatasetCard:
    key = _canon(name)
    return load_card("_template" if key == "folder" else key)


def validate(name: str, root: str | Path | None = None, deep: bool = True, **kwargs: Any) -> ValidationReport:
    """Validate a copy of a dataset against its card: missing stems, wrong
    sample rates, truncated/corrupt files, unexpected track counts."""
    ds = load(name, root, **kwargs)
    return ds.validate(deep=deep)
