"""One file-name slug for every place stemlab writes a per-name file
(museval JSON of ``stemlab run`` and ``stemlab score`` …).

Letters, digits and ``-_.,()&'`` and spaces are kept (so a MUSDB track's
JSON is ``<track name>.json``, as museval writes it and as
``museval.EvalStore`` reads the track name back from the file stem); every
other character becomes ``_``; at most 120 characters; a name that would be
empty or only dots becomes ``default``.
"""

from __future__ import annotations

__all__ = ["slug"]

_KEEP = frozenset(" -_.,()&'")


def slug(name: object, default: str = "track") -> str:
    s = "".join(c if c.isalnum() or c in _KEEP else "_" for c in str(name)).strip()[:120].strip()
    return s if s.strip(".") else default
