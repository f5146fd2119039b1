"""The printed summary tables of the reliability matrices (fault matrix,
hostile services): one text layout and one way to show it after a module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def text_table(title: str, rows: Sequence[Mapping[str, Any]], cols: Sequence[str], *, detail_width: int) -> list[str]:
    """``title``, a header and one line per row, columns padded to their
    widest cell (``detail`` cut at ``detail_width`` characters)."""
    w = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    w["detail"] = min(w["detail"], detail_width)
    out = [title, " | ".join(c.ljust(w[c]) for c in cols), "-+-".join("-" * w[c] for c in cols)]
    out += [" | ".join(str(r[c])[: w[c]].ljust(w[c]) for c in cols) for r in rows]
    return out


def show(request: Any, lines: list[str]) -> None:
    """Print ``lines`` past pytest's capture (shown without ``-s`` too)."""
    text = "\n" + "\n".join(lines)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print(text, flush=True)
    else:  # pragma: no cover
        print(text)
