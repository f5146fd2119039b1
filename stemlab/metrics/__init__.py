"""Quality metrics, each under an explicit name (never a bare "SDR"), each
declared once in :mod:`.registry` (unit, direction, kind, rows, version).

* ``bsseval_v4`` — museval 0.4.1's framewise SDR/ISR/SIR/SAR (images mode,
  512-tap time-invariant filters, 1-s frames), identical to museval to
  ~1e-10 dB and 25–35× faster (:mod:`.bsseval`); rows ``sdr_bsseval_v4`` …
* ``sdr_bsseval_v4`` — museval's SDR alone, without the distortion filters
  (the same numbers by construction, ~100× faster).
* the whole-track metrics of :mod:`.simple` (``usdr``, ``usdr_mdx``,
  ``si_sdr``, ``sdr_gain``, ``l1_freq``, ``bleedless``, ``fullness``,
  ``log_wmse`` when its package is installed).

:func:`evaluate` scores one track; :mod:`.scoring` scores separations,
:mod:`.score_dir` directories of estimates (``stemlab score``, CLI in
:mod:`.cli`). Inputs are read a block at a time: arrays, Stems, or mappings
of lazy sources (:mod:`.sources`: ``AudioFileSource`` for files on disk,
``SumSource``, ``PaddedSource``, ``QuantizedSource``). See ``docs/metrics.md``.

``SCORES_VERSION`` (:func:`.registry.scores_version` of every declared
metric) is part of a run's ``metrics_hash``: it changes when any metric's
``version`` is bumped, so cached scores of an older definition are
recomputed (from the cached stems — nothing is separated again).
"""

from __future__ import annotations

from typing import Any

__all__ = ["available_metrics", "evaluate", "TrackEvaluation", "aggregate_tracks", "AudioFileSource", "SumSource",
           "PaddedSource", "QuantizedSource", "DEFAULT_METRICS", "SCORES_VERSION"]

_LAZY = {
    "evaluate": "evaluation", "TrackEvaluation": "evaluation", "aggregate_tracks": "evaluation",
    "AudioFileSource": "sources", "SumSource": "sources", "PaddedSource": "sources", "QuantizedSource": "sources",
    "DEFAULT_METRICS": "registry", "Metric": "registry", "METRICS": "registry",
}


def available_metrics() -> list[str]:
    """Every metric name :func:`evaluate` and run specs accept."""
    from .registry import available_metrics as _available

    return _available()


def __getattr__(name: str) -> Any:
    import importlib

    if name == "SCORES_VERSION":  # computed on access: follows the declared versions
        from .registry import scores_version

        return scores_version()
    if name == "BSSEVAL_NAMES":
        from .registry import DECLARED

        return tuple(m.name for m in DECLARED if m.kind == "framewise")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'stemlab.metrics' has no attribute {name!r}")
