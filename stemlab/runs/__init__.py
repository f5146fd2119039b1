"""The comparison harness: specs, the runner, the ledger, caches, budgets and
result tables. Public entry points: :func:`run`, :func:`load_results`,
:func:`load_spec`."""

from __future__ import annotations

from .results import Results, load_results
from .runner import Runner, run
from .spec import RunSpec, load_spec

__all__ = ["run", "Runner", "RunSpec", "load_spec", "load_results", "Results"]
