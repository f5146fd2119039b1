"""``stemlab sandbox serve SERVICE`` and ``stemlab sandbox list``.

The lead wires :func:`register_cli` into ``stemlab.cli``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["register_cli", "build_sandbox"]


def register_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser("sandbox", help="offline emulators of the remote services")
    sub = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    ps = sub.add_parser("serve", help="serve one service's emulator on 127.0.0.1 until interrupted")
    ps.add_argument("service", help="provider family (see 'stemlab sandbox list')")
    ps.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    ps.add_argument("--faults", action="append", default=[], metavar="SPEC",
                    help="fault(s) 'ENDPOINT:KIND[(k=v)][*COUNT][@PROB][+AFTER]' separated by ';', "
                         "or a JSON/YAML file; repeatable")
    ps.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    ps.add_argument("--scale", type=float, default=1.0,
                    help="clock scale: 0.01 makes queue/processing delays 100x shorter (default 1: real time)")
    ps.add_argument("--api-key", action="append", default=[], dest="api_keys",
                    help="accepted fake key(s) (default: a printed sandbox key)")
    ps.add_argument("--references", metavar="DATASET", default=None,
                    help="register the tracks of a dataset (e.g. 'demo') so the oracle separates them")
    ps.set_defaults(func=_serve)
    pl = sub.add_parser("list", help="services that have a sandbox")
    pl.set_defaults(func=_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def build_sandbox(args: argparse.Namespace) -> Any:
    """The (not yet started) sandbox the ``serve`` arguments describe."""
    from .. import sandbox_class
    from .faults import FaultPlan

    cls = sandbox_class(args.service)
    plan = FaultPlan.parse(";".join(args.faults) if args.faults else None, seed=args.seed)
    kwargs: dict[str, Any] = {"faults": plan, "scale": args.scale, "port": args.port, "seed": args.seed}
    if args.api_keys:
        kwargs["api_keys"] = args.api_keys
    sb = cls(**kwargs)
    if args.references:
        import stemlab.datasets as D

        for t in D.load(args.references):
            sb.register_track(t)
    return sb


def _check_args(args: argparse.Namespace) -> None:
    from ...errors import ConfigError

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 0 (a free port) or 1..65535, got {args.port}", field="port")
    if not (args.scale > 0 and args.scale < float("inf")):
        raise ConfigError(f"--scale: expected a clock scale > 0 (e.g. 0.01: 100x faster), got {args.scale}",
                          field="scale")


def _serve(args: argparse.Namespace) -> int:
    from ...errors import ConfigError
    from .. import SERVICES

    _check_args(args)
    sb = build_sandbox(args)
    try:
        sb.start()
    except OSError as e:
        raise ConfigError(f"--port {args.port}: cannot listen on 127.0.0.1:{args.port} ({e.strerror or e}); "
                          "is it in use? Pass another port or 0 for a free one", field="port") from None
    var = SERVICES[args.service.lower()].env_var
    print(f"stemlab sandbox ({args.service}) — an offline emulator, NOT the real service", flush=True)
    print(f"  base URL : {sb.base_url}")
    print(f"  API key  : {sb.api_key}   (export {var}=…)")
    print(f"  faults   : {sb.faults!r}")
    print(f"  use      : stemlab run … with options base_url={sb.base_url}   (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
        print(f"stopped; jobs {len(sb.ledger.jobs)}, charges {len(sb.ledger.charges)}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from ...cli import print_table
    from .. import SERVICES

    print_table([(s.name, s.env_var, s.description) for _, s in sorted(SERVICES.items())],
                ("service", "API key variable", "description"))
    return 0
