"""Reports: tables, paired statistics, plotly figures and a self-contained
HTML report of a results directory."""

from __future__ import annotations

from .html import build_report

__all__ = ["build_report", "stats", "tables", "figures"]
