"""Quality metrics, each under an explicit name (never a bare "SDR").

* ``bsseval_v4`` — museval 0.4.1's framewise SDR/ISR/SIR/SAR (images mode,
  512-tap time-invariant filters, 1-s frames), identical to museval to
  ~1e-10 dB and 25–35× faster (:mod:`.bsseval`); rows ``sdr_bsseval_v4`` …
* ``sdr_bsseval_v4`` — museval's SDR alone, without the distortion filters
  (the same numbers by construction, ~100× faster).
* the whole-track metrics of :mod:`.simple` (``usdr``, ``usdr_mdx``,
  ``si_sdr``, ``sdr_gain``, ``l1_freq``, ``bleedless``, ``fullness``,
  ``log_wmse`` when its package is installed).

:func:`evaluate` scores one track; :mod:`.scoring` scores separations and
directories of estimates (``stemlab score``). Inputs are read a block at a
time: arrays, Stems, or mappings of lazy sources (:mod:`.sources`:
``AudioFileSource`` for files on disk, ``SumSource``, ``PaddedSource``,
``QuantizedSource``). See ``docs/metrics.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["available_metrics", "evaluate", "TrackEvaluation", "aggregate_tracks", "AudioFileSource", "SumSource",
           "PaddedSource", "QuantizedSource"]

#: the metrics :mod:`.simple` provides (used when it cannot be imported, so a
#: spec naming them still validates; evaluate() then says what is missing)
_SIMPLE_NAMES = ("usdr", "usdr_mdx", "si_sdr", "sdr_gain", "l1_freq", "bleedless", "fullness")
BSSEVAL_NAMES = ("bsseval_v4", "sdr_bsseval_v4")

#: bumped whenever a metric's numbers change for the same input and options;
#: part of a run's ``metrics_hash``, so cached scores of an older definition
#: are recomputed (from the cached stems — nothing is separated again).
#: 2: bleedless/fullness default to MSST's own float32 arithmetic.
SCORES_VERSION = 2


def available_metrics() -> list[str]:
    """Every metric name :func:`evaluate` and run specs accept."""
    try:
        from .simple import SIMPLE_METRICS

        simple = list(SIMPLE_METRICS)
    except ImportError:
        simple = list(_SIMPLE_NAMES)
    return list(BSSEVAL_NAMES) + [m for m in simple if m not in BSSEVAL_NAMES]


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "TrackEvaluation", "aggregate_tracks"):
        from . import evaluation as _ev

        return getattr(_ev, name)
    if name in ("AudioFileSource", "SumSource", "PaddedSource", "QuantizedSource"):
        from . import sources as _src

        return getattr(_src, name)
    raise AttributeError(f"module 'stemlab.metrics' has no attribute {name!r}")
