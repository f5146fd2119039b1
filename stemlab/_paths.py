"""Where stemlab keeps generated and cached files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$STEMLAB_CACHE`` or ``$XDG_CACHE_HOME/stemlab`` or ``~/.cache/stemlab``,
    joined with ``parts`` and created."""
    base = os.environ.get("STEMLAB_CACHE")
    if base:
        root = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stemlab"
    p = root.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
