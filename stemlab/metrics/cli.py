"""``stemlab score ESTIMATES_DIR --dataset NAME -o OUT``: the command line of
:func:`stemlab.metrics.score_dir.score` (museval's ``eval_mus_dir`` for any
stemlab dataset)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..errors import InputError
from .evaluation import NAN_POLICIES
from .registry import DEFAULT_METRICS
from .score_dir import ScoreReport, score

__all__ = ["register_cli"]


def _summary(report: ScoreReport) -> str:
    """Per target and metric, the number :func:`stemlab.metrics.aggregate.aggregate`
    gives with its defaults — the same as ``stemlab run``'s summary and
    report: median over tracks of each track's median over frames
    (museval) for BSSEval, median over tracks for whole-track metrics —
    with its aggregation label."""
    from .aggregate import aggregate

    lines = []
    metrics = list(dict.fromkeys(r["metric"] for r in report.rows))
    for m in metrics:
        for r in aggregate(report.rows, m, by=("target",)).to_dict("records"):
            v = r["value"]
            nan = f", {r['n_nan_tracks']} NaN" if r["n_nan_tracks"] else ""
            lines.append(f"  {r['target']:<14} {m:<16} {('nan' if math.isnan(v) else f'{v:8.3f}'):>8}  "
                         f"{r['aggregation']}  (n={r['n_tracks']}{nan})")
    return "\n".join(lines)


def _bits_arg(v: str) -> int | str | None:
    if v in ("auto", "none"):
        return None if v == "none" else v
    if not v.isdigit():
        raise InputError(f"--reference-bits: expected auto, none or a bit depth, got {v!r}", field="reference_bits")
    return int(v)


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Dataset loader arguments from ``--subset``, ``--split``, ``--stems`` and
    ``--dataset-arg KEY=VALUE`` (VALUE read as JSON when it parses)."""
    kw: dict[str, Any] = {}
    for key in ("subset", "split"):
        if getattr(args, key, None):
            kw[key] = getattr(args, key)
    if args.stems:
        kw["stems"] = [s for s in args.stems.split(",") if s]
    for item in args.dataset_arg or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise InputError(f"--dataset-arg expects KEY=VALUE, got {item!r}", field="dataset_arg")
        try:
            kw[k] = json.loads(v)
        except ValueError:
            kw[k] = v
    return kw


def _cli_score(args: argparse.Namespace) -> int:
    rep = score(
        args.estimates_dir,
        args.dataset,
        root=args.root,
        metrics=args.metrics,
        output=args.output,
        targets=[t for t in args.targets.split(",") if t] if args.targets else None,
        win=args.win,
        hop=args.hop,
        nan_policy=args.nan_policy,
        align=args.align,
        reference_bits=_bits_arg(args.reference_bits),
        device=args.device,
        **_dataset_kwargs(args),
    )
    if rep.messages:
        print(rep.format_messages())
    print(f"scored {len(rep.scored)} track(s)" + (f" → {rep.output}" if rep.output else ""))
    if rep.rows:
        print(_summary(rep))
    return 0 if rep.ok else 1


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a directory of estimates against a dataset (like museval eval_mus_dir)")
    p.add_argument("estimates_dir", help="folder of {track}/{target}.<ext> estimates")
    p.add_argument("--dataset", required=True, help="dataset name (stemlab datasets list)")
    p.add_argument("--root", help="directory holding the dataset (not for 'demo')")
    p.add_argument("--subset", help="train or test (MUSDB)")
    p.add_argument("--split", choices=("train", "valid", "test"), help="exact MUSDB split")
    p.add_argument("--stems", help="comma-separated stem names (folder datasets)")
    p.add_argument("--dataset-arg", action="append", metavar="KEY=VALUE",
                   help="extra dataset loader argument, e.g. tracks=2 (repeatable)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated metric names")
    p.add_argument("--targets", help="comma-separated targets (default: every estimate with a reference)")
    p.add_argument("--win", type=float, default=1.0, help="BSSEval window, seconds (museval: 1)")
    p.add_argument("--hop", type=float, default=1.0, help="BSSEval hop, seconds (museval: 1)")
    p.add_argument("--nan-policy", choices=NAN_POLICIES, default="museval", help="which frames are dropped")
    p.add_argument("--reference-bits", default="auto", metavar="auto|none|N",
                   help="round references to N-bit PCM (auto: 16 for musdb18, as musdb/stempeg feed museval)")
    p.add_argument("--device", default="cpu", metavar="cpu|torch|torch:cpu|cuda|cuda:N",
                   help="metrics backend: cpu = numpy (default); torch/cuda = the torch backend (same numbers)")
    p.add_argument("--align", action="store_true", help="resample/fix channels/offset-align mismatching estimates")
    p.add_argument("-o", "--output", help="output directory (museval JSON, scores.csv/parquet, frames.parquet)")
    p.set_defaults(func=_cli_score)
