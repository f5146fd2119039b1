"""Where stemlab keeps generated and cached files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "cache_root"]


def cache_root() -> Path:
    """``$STEMLAB_CACHE`` or ``$XDG_CACHE_HOME/stemlab`` or ``~/.cache/stemlab``
    (not created)."""
    base = os.environ.get("STEMLAB_CACHE")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stemlab"


def cache_dir(*parts: str) -> Path:
    """``$STEMLAB_CACHE`` or ``$XDG_CACHE_HOME/stemlab`` or ``~/.cache/stemlab``,
    joined with ``parts`` and created."""
    p = cache_root().joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
