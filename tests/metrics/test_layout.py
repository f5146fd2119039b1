"""Where the metrics code lives: scoring (one separation), score_dir (a
directory of estimates), cli (``stemlab score``), registry (the metrics);
public names stay importable from where they were."""

from __future__ import annotations

import ast
from pathlib import Path

import stemlab
from stemlab.metrics import cli, score_dir, scoring

PKG = Path(scoring.__file__).parent


def test_public_names_still_importable() -> None:
    from stemlab.metrics.cli import register_cli  # noqa: F401
    from stemlab.metrics.score_dir import ScoreReport, score  # noqa: F401
    from stemlab.metrics.scoring import (  # noqa: F401
        ALIGN_OPTIONS,
        METRIC_OPTIONS,
        align_to,
        evaluate_track,
        score_separation,
        score_stems,
    )

    assert stemlab.score is score_dir.score and stemlab.score_separation is scoring.score_separation


def test_stemlab_cli_registers_the_metrics_cli() -> None:
    from stemlab.cli import _EXTRA_COMMANDS, build_parser

    assert "stemlab.metrics.cli:register_cli" in _EXTRA_COMMANDS
    args = build_parser().parse_args(["score", "est", "--dataset", "demo"])
    assert args.func is cli._cli_score and args.metrics == "bsseval_v4,usdr,si_sdr"


def test_no_import_fallbacks_for_own_modules() -> None:
    """``try: from .x import … except ImportError`` around a module of this
    package can never trigger; none is left."""
    for path in PKG.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try):
                continue
            names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            relative = [n for n in node.body if isinstance(n, ast.ImportFrom) and n.level > 0]
            assert not (relative and any("ImportError" in n for n in names)), f"{path.name}:{node.lineno}"
