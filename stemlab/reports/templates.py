"""The report templates (``reports/templates`` in a checkout, shipped as
``stemlab/_report_templates`` in an installed package): the HTML page
skeleton and the one stylesheet the report and the notebooks share."""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

from ..errors import ConfigError

__all__ = ["template_dir", "css", "render_page"]


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [here.parent / "_report_templates", here.parent.parent / "reports" / "templates"]


def template_dir() -> Path:
    """The folder the templates are read from (installed copy first)."""
    for d in _candidates():
        if (d / "report.html").is_file() and (d / "report.css").is_file():
            return d
    raise ConfigError("stemlab's report templates are missing (looked in "
                      + ", ".join(str(d) for d in _candidates()) + "); reinstall stemlab", field="templates")


@cache
def _read(name: str) -> str:
    return (template_dir() / name).read_text(encoding="utf-8")


def css() -> str:
    """The report's stylesheet (also for HTML tables shown in notebooks)."""
    return _read("report.css")


def render_page(title: str, body: str) -> str:
    """The whole HTML document: the skeleton with ``title`` (escaped by the
    caller), the stylesheet and ``body``."""
    return string.Template(_read("report.html")).substitute(title=title, css=css(), body=body)
