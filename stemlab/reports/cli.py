"""``stemlab report RESULTS [-o report.html]`` and ``--notebook NAME -p k v``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register_cli"]


def _report(args: argparse.Namespace) -> int:
    if args.notebook:
        from .notebooks import run_notebook

        params = {k: v for k, v in (args.parameter or [])}
        params.setdefault("results", str(args.results))
        out = run_notebook(args.notebook, params, output=args.output)
        print(f"notebook: {out}")
        return 0
    from . import build_report

    path = build_report(args.results, Path(args.output) if args.output else None, clips=not args.no_clips,
                        metric=args.metric)
    print(f"report: {path}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report (or run a notebook) for a results directory")
    p.add_argument("results", help="results directory written by 'stemlab run'")
    p.add_argument("-o", "--output", help="HTML (or executed notebook) path; default RESULTS/report.html")
    p.add_argument("--metric", help="primary metric (default: sdr_bsseval_v4 if present)")
    p.add_argument("--no-clips", action="store_true", help="do not embed audio clips")
    p.add_argument("--notebook", help="run a bundled notebook with papermill instead: compare, track_inspector, procurement")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter (repeatable)")
    p.set_defaults(func=_report)
