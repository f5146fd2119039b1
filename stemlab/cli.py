"""The ``stemlab`` command line — a thin layer over the library.

argparse (stdlib), with every package adding its commands through a plain
``register_cli(subparsers)`` hook. Typer was evaluated and not adopted: it
would not be smaller (each option becomes an annotated parameter instead of
an ``add_argument`` line, and every handler — some called directly with an
``argparse.Namespace`` by tests — would change shape), it would force one
rewrite of every package's hook at once, and it adds typer+click to every
start (~80 ms against ~15 ms). Shell completion is not offered.

Tables go through :func:`print_table` (rich): on a terminal they fit its
width and wrap long cells; piped, they are plain text — one row per line,
columns aligned by spaces, no colour codes or box characters, nothing cut.

A command whose module fails to import (or whose hook raises) stays listed in
``stemlab --help`` as unavailable, with the module and the error, and running
it exits 3 saying so; the other commands keep working.

Exit codes: 0 success, 1 the command ran but found problems (validation
failures, failed jobs with ``--strict``), 2 usage or input errors, 3 the
command is unavailable (its module failed to import: a broken install).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import re
import sys
from typing import Any, Callable, Iterable, Sequence, TextIO

from ._version import __version__
from .errors import StemlabError

__all__ = ["main", "build_parser", "print_table"]

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


_NUMBER = re.compile(r"[-+]?\$?~?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?%?|NaN|nan")


def print_table(rows: Iterable[Sequence[Any]], header: Sequence[str], *, file: TextIO | None = None) -> None:
    """Print ``rows`` under ``header`` with every cell whole, columns two
    spaces apart and numeric columns right-aligned. On a terminal (rich): a
    bold header and long cells wrapped to the terminal's width, the widest
    columns narrowed first and no column below its longest word while the
    width allows. Off a terminal (pipes, files, CI logs): plain text, one row
    per line (newlines in cells become spaces), no escape codes or box
    characters — ``grep``/``awk``/``cut`` friendly."""
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    cells = [[str(c) if tty else " ".join(str(c).splitlines()) for c in r] for r in rows]
    cols = [[str(h)] + [r[i] for r in cells] for i, h in enumerate(header)]
    opts: dict[str, Any] = dict(markup=False, emoji=False, highlight=False)
    console = (Console(file=out, force_terminal=True, **opts) if tty else
               Console(file=io.StringIO(), force_terminal=False, color_system=None, width=1 << 20, **opts))
    # the widest width every column may take (never below its longest word) so that the table fits
    natural = [max(cell_len(line) for c in col for line in c.splitlines() or [""]) for col in cols]
    longest_word = [max((cell_len(w) for c in col for w in c.split()), default=0) for col in cols]
    room = console.width - 2 * (len(cols) - 1)
    cap = next((w for w in range(max(natural, default=0), 0, -1)
                if sum(min(n, max(w, m)) for n, m in zip(natural, longest_word)) <= room), None)
    table = Table(box=None, pad_edge=False, header_style="bold" if tty else "")
    for col, m in zip(cols, longest_word):
        filled = [c for c in col[1:] if c not in ("", "-")]
        numeric = bool(filled) and all(_NUMBER.fullmatch(c) for c in filled)
        table.add_column(col[0], justify="right" if numeric else "left", overflow="fold",
                         max_width=None if cap is None else max(cap, m))
    for r in cells:
        table.add_row(*r)
    console.print(table)
    if not tty:
        text = console.file.getvalue()  # type: ignore[attr-defined]
        print("\n".join(line.rstrip() for line in text.splitlines()), file=out)


# ------------------------------------------------------------------ datasets

def _datasets_list(args: argparse.Namespace) -> int:
    from . import datasets as D

    rows = []
    for n in D.names():
        c = D.card(n)
        counts = ", ".join(f"{k}={v}" for k, v in c.subsets.items()) or "-"
        rows.append((n, c.title, counts, c.licence))
    print_table(rows, ("name", "title", "tracks", "licence"))
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
    print_table(rows, ("track", "subset", "seconds", "stems"))
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

#: commands of other packages: their ``register_cli`` hook → the commands it adds
_EXTRA_COMMANDS: dict[str, tuple[str, ...]] = {
    "stemlab.providers.cli:register_cli": ("providers",),
    "stemlab.metrics.cli:register_cli": ("score",),
    "stemlab.runs.cli:register_cli": ("run", "results"),
    "stemlab.reports.cli:register_cli": ("report",),
    "stemlab.services._sandbox.cli:register_cli": ("sandbox",),
    "stemlab.providers.local.zoo:register_cli": ("models",),
}

UNAVAILABLE = 3  #: exit code of a command whose module failed to import


def _register(sub: argparse._SubParsersAction, hook: str, commands: Sequence[str]) -> None:
    """Run one package's hook; if its import (or the hook) fails, its
    commands stay listed as unavailable and running one says why."""
    mod, _, fn = hook.partition(":")
    try:
        getattr(importlib.import_module(mod), fn)(sub)
    except Exception as e:  # noqa: BLE001 - reported, never swallowed
        reason = f"{mod}: {type(e).__name__}: {e}"
        for name in commands:
            p = sub.choices.get(name) or sub.add_parser(name, help=f"UNAVAILABLE ({reason})", add_help=False)
            p.set_defaults(func=None, unavailable=f"'{name}' is unavailable: {reason}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemlab",
        description="Compare music source separation models and services: quality, latency, cost.",
    )
    parser.add_argument("--version", action="version", version=f"stemlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_datasets(sub)
    for hook, commands in _EXTRA_COMMANDS.items():
        _register(sub, hook, commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._secrets import install_log_filter

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "unavailable", None):  # whatever its arguments: they were never defined
        print(f"stemlab: error: {args.unavailable}", file=sys.stderr)
        return UNAVAILABLE
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        if args.verbose:
            _print_chain(e)
        return 2
    except KeyboardInterrupt:
        print("stemlab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: one redacted line, the traceback only with -v
        from ._secrets import redact

        print(f"stemlab: internal error: {redact(f'{type(e).__name__}: {e}')} — this is a bug in stemlab; "
              "rerun with -v for the traceback and report it", file=sys.stderr)
        if args.verbose:
            _print_chain(e)
        return 1


def _print_chain(e: BaseException) -> None:
    """The exception's traceback and causes, redacted (``-v``)."""
    import traceback

    from ._secrets import redact

    print(redact("".join(traceback.format_exception(e))), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
