"""stemlab — research toolkit and comparison harness for music source separation.

The public API is small (papermill-style)::

    import stemlab
    ds = stemlab.datasets.load("demo")
    prov = stemlab.providers.create("oracle:irm?alpha=2")
    sep = prov.separate(next(iter(ds)))
    scores = stemlab.score_separation(sep, track)          # metrics
    stemlab.run({"dataset": "demo", "providers": [...]})   # the harness
    frames = stemlab.load_results("stemlab-results")

Heavy modules (torch, pandas, the HTTP stack) are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import (
    BudgetExceeded,
    ConfigError,
    DatasetError,
    InputError,
    ProviderError,
    ProviderOutputError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RunError,
    StemlabError,
)
from .types import Cost, Result, Separation, Stems, Track

__all__ = [
    "__version__",
    "Track",
    "Stems",
    "Separation",
    "Cost",
    "Result",
    "StemlabError",
    "InputError",
    "DatasetError",
    "ConfigError",
    "ProviderError",
    "ProviderUnavailable",
    "ProviderRejected",
    "ProviderOutputError",
    "ProviderTimeout",
    "BudgetExceeded",
    "RunError",
    "audio",
    "datasets",
    "providers",
    "metrics",
    "score",
    "score_separation",
    "run",
    "load_results",
]

_LAZY_MODULES = {"audio", "datasets", "providers", "metrics", "sandbox", "runs", "reports"}
_LAZY_ATTRS = {
    "score": ("stemlab.metrics.score_dir", "score"),
    "score_separation": ("stemlab.metrics.scoring", "score_separation"),
    "run": ("stemlab.runs", "run"),
    "load_results": ("stemlab.runs", "load_results"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"stemlab.{name}")
    if name in _LAZY_ATTRS:
        mod, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'stemlab' has no attribute {name!r}")
