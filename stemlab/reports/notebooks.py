"""The bundled notebooks (``notebooks/*.ipynb``), run with papermill.

>>> run_notebook("compare", {"results": "stemlab-results"}, output="compare.ipynb")

Each notebook has a cell tagged ``parameters``; outputs are stripped in git.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["NOTEBOOKS", "notebook_path", "run_notebook"]

NOTEBOOKS = ("compare", "track_inspector", "procurement")


def _dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [p for p in (here.parent / "_notebooks", here.parent.parent / "notebooks") if p.is_dir()]


def notebook_path(name: str) -> Path:
    stem = name[:-6] if name.endswith(".ipynb") else name
    for d in _dirs():
        p = d / f"{stem}.ipynb"
        if p.is_file():
            return p
    p = Path(name)
    if p.is_file():
        return p
    raise ConfigError(f"no notebook {name!r}; bundled: {list(NOTEBOOKS)}", field="notebook")


def run_notebook(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    output: str | Path | None = None,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
) -> Path:
    """Execute a bundled (or any) notebook with papermill; returns the output path."""
    try:
        import papermill as pm
    except ImportError:  # pragma: no cover - optional extra
        raise ConfigError("running notebooks needs the 'notebooks' extra: pip install 'stemlab[notebooks]'") from None
    src = notebook_path(name)
    out = Path(output) if output else Path(f"{src.stem}.out.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src), str(out), parameters=dict(parameters or {}), kernel_name=kernel_name,
        cwd=str(cwd) if cwd else None, progress_bar=False, log_output=False,
    )
    return out
