"""``stemlab report RESULTS [-o report.html]`` and ``--notebook NAME -p k v``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register_cli"]


def _prices(items: list[str] | None) -> dict[str, float]:
    from ..errors import ConfigError

    out: dict[str, float] = {}
    for it in items or []:
        name, sep, val = it.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise ConfigError(f"--price expects SERVICE=USD_PER_UNIT (e.g. mvsep=0.01), got {it!r}",
                              field="price") from None
        if not sep or out[name.strip()] < 0:
            raise ConfigError(f"--price expects SERVICE=USD_PER_UNIT ≥ 0 (e.g. mvsep=0.01), got {it!r}", field="price")
    return out


def _report(args: argparse.Namespace) -> int:
    if args.notebook:
        from .notebooks import run_notebook

        params = {k: v for k, v in (args.parameter or [])}
        params.setdefault("results", str(args.results))
        out = run_notebook(args.notebook, params, output=args.output)
        print(f"notebook: {out}")
        return 0
    from . import build_report
    from .pricing import Volume

    volume = Volume(songs_per_month=args.songs_per_month, seconds_per_song=args.song_minutes * 60,
                    budget_usd_month=args.budget_month)
    path = build_report(args.results, Path(args.output) if args.output else None, clips=not args.no_clips,
                        metric=args.metric, volume=volume, prices=_prices(args.price), buyer_target=args.target)
    print(f"report: {path}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report (or run a notebook) for a results directory")
    p.add_argument("results", help="results directory written by 'stemlab run'")
    p.add_argument("-o", "--output", help="HTML (or executed notebook) path; default reports/<run-id>/report.html "
                                          "(the Markdown and CSV sidecars are named after it: X.md, X.leaderboard.csv)")
    p.add_argument("--metric", help="primary metric (default: sdr_bsseval_v4 if present)")
    p.add_argument("--target", help="the stem the buyer's recommendation leads with (default: vocals)")
    p.add_argument("--songs-per-month", type=int, default=1000, help="the buyer's volume (default 1000)")
    p.add_argument("--song-minutes", type=float, default=3.5, help="average song length in minutes (default 3.5)")
    p.add_argument("--budget-month", type=float, help="monthly budget in USD for the recommendation (default: none)")
    p.add_argument("--price", action="append", metavar="SERVICE=USD",
                   help="your price per unit of a service's price table where none is published "
                        "(mvsep=USD per credit, dango=per point, suno=per call, aistemsplitter=per minute); repeatable")
    p.add_argument("--no-clips", action="store_true", help="do not embed audio clips")
    p.add_argument(
        "--notebook", help="run a bundled notebook with papermill instead: compare, track_inspector, procurement"
    )
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter (repeatable)")
    p.set_defaults(func=_report)
