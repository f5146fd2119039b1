"""The ``stemlab`` command line — a thin layer over the library.

argparse (stdlib) rather than Typer/Click: no extra dependency, sub-command
modules register themselves with a plain ``register_cli(subparsers)``
function, startup stays fast (nothing heavy is imported before a command
runs) and the parser is easy to test in-process (``main(argv)`` returns the
exit code). demucs' own CLI makes the same choice.

Exit codes: 0 success, 1 the command ran but found problems (validation
failures, failed jobs with ``--strict``), 2 usage or input errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from ._version import __version__
from .errors import StemlabError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------ datasets

def _datasets_list(args: argparse.Namespace) -> int:
    from . import datasets as D

    rows = []
    for n in D.names():
        c = D.card(n)
        counts = ", ".join(f"{k}={v}" for k, v in c.subsets.items()) or "-"
        rows.append((n, c.title, counts, c.licence.split(";")[0][:40]))
    print(_table(rows, ("name", "title", "tracks", "licence")))
    return 0


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for key in ("subset", "split"):
        v = getattr(args, key, None)
        if v:
            kw[key] = v
    if getattr(args, "stems", None):
        kw["stems"] = [s for s in args.stems.split(",") if s]
    return kw


def _datasets_info(args: argparse.Namespace) -> int:
    from . import datasets as D

    ds = D.load(args.name, args.root, **_dataset_kwargs(args))
    info = ds.info()
    card = ds.card or D.card(args.name)
    info.setdefault("title", card.title)
    info["homepage"] = card.homepage
    info["layout"] = card.layout
    if args.json:
        info["durations"] = {t.name: t.duration for t in ds}
        _print_json(info)
        return 0
    print(f"{info['name']}: {card.title}")
    if card.homepage:
        print(f"  homepage: {card.homepage}")
    print(f"  licence:  {card.licence}")
    print(f"  root:     {info['root']}")
    print(f"  targets:  {', '.join(card.targets) or '-'}  ({card.sample_rate} Hz, {card.channels} ch)")
    rows = []
    total = 0.0
    for t in ds:
        d = t.duration or 0.0
        total += d
        rows.append((t.name, t.subset or "-", f"{d:.1f}", ", ".join(t.target_names) or "(mixture only)"))
    print(_table(rows, ("track", "subset", "seconds", "stems")))
    print(f"{len(rows)} track(s), {total / 60:.1f} min")
    return 0


def _datasets_validate(args: argparse.Namespace) -> int:
    from . import datasets as D

    report = D.validate(args.name, args.root, deep=not args.shallow, **_dataset_kwargs(args))
    print(report.format())
    return 0 if report.ok else 1


def _add_dataset_args(p: argparse.ArgumentParser, root_required: bool = False) -> None:
    p.add_argument("name", help="dataset name (stemlab datasets list)")
    p.add_argument("--root", required=root_required, help="directory holding the dataset (not for 'demo')")
    p.add_argument("--subset", help="train or test (MUSDB)")
    p.add_argument("--split", choices=("train", "valid", "test"), help="exact MUSDB split (never overlapping)")
    p.add_argument("--stems", help="comma-separated stem names (folder datasets)")


def _register_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list, inspect and validate datasets")
    dsub = p.add_subparsers(dest="datasets_cmd", required=True, metavar="COMMAND")
    pl = dsub.add_parser("list", help="known datasets")
    pl.set_defaults(func=_datasets_list)
    pi = dsub.add_parser("info", help="tracks, durations and card of a dataset")
    _add_dataset_args(pi)
    pi.add_argument("--json", action="store_true", help="machine-readable output")
    pi.set_defaults(func=_datasets_info)
    pv = dsub.add_parser("validate", help="check a copy against its card (missing stems, rates, truncation)")
    _add_dataset_args(pv)
    pv.add_argument("--shallow", action="store_true", help="headers only; do not decode every file")
    pv.set_defaults(func=_datasets_validate)


# ----------------------------------------------------------------- assembly

def _optional(register: str) -> Callable[[argparse._SubParsersAction], None] | None:
    """Sub-commands owned by other modules (metrics, sandbox, runs …)."""
    import importlib

    mod, _, fn = register.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError):
        return None


_EXTRA_COMMANDS = (
    "stemlab.providers.cli:register_cli",
    "stemlab.metrics.cli:register_cli",
    "stemlab.runs.cli:register_cli",
    "stemlab.reports.cli:register_cli",
    "stemlab.services._sandbox.cli:register_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemlab",
        description="Compare music source separation models and services: quality, latency, cost.",
    )
    parser.add_argument("--version", action="version", version=f"stemlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_datasets(sub)
    for target in _EXTRA_COMMANDS:
        reg = _optional(target)
        if reg is not None:
            reg(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._secrets import install_log_filter

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    install_log_filter()
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except StemlabError as e:
        print(f"stemlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stemlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
