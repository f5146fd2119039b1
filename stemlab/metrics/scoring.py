"""Scoring separations: what the harness calls for every (track, provider) job.

* :func:`score_stems` — align the returned stems to the references when
  needed (:func:`align_to`), evaluate (:func:`evaluate_track`), return
  ``{"rows", "frames", "museval", "corrections", "notes"}``;
  :func:`score_separation` does it for a provider's :class:`Separation`.
* directories of estimates (``stemlab score``, :func:`stemlab.score`):
  :mod:`stemlab.metrics.score_dir`, its CLI :mod:`stemlab.metrics.cli`
  (``score``, ``ScoreReport`` and ``register_cli`` stay importable from here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Separation, Stems, Track
from .align import align
from .evaluation import TrackEvaluation, evaluate
from .registry import DEFAULT_METRICS

__all__ = ["ALIGN_OPTIONS", "METRIC_OPTIONS", "align_to", "evaluate_track", "score_separation", "score_stems"]

log = logging.getLogger(__name__)

#: keys accepted in a run spec's ``metric_options`` (and their defaults)
METRIC_OPTIONS: dict[str, Any] = {"win": 1.0, "hop": 1.0, "nan_policy": "museval", "filters_len": 512,
                                  "reference_bits": "auto", "device": "cpu"}
#: datasets whose references museval users get as 16-bit PCM (ffmpeg via
#: stempeg decodes MUSDB18's AAC to s16) while stemlab decodes to float
_PCM16_DATASETS = {"musdb18"}
#: keys accepted in a run spec's ``alignment``
ALIGN_OPTIONS: dict[str, Any] = {"enabled": True, "force": False, "max_shift_ms": 250.0, "gain": False,
                                 "min_correlation": 0.5}


def _options(opts: Mapping[str, Any] | None, defaults: Mapping[str, Any], what: str) -> dict[str, Any]:
    opts = dict(opts or {})
    unknown = sorted(set(opts) - set(defaults))
    if unknown:
        raise InputError(f"{what}: unknown option(s) {unknown}; valid: {sorted(defaults)}", field=what)
    return {**defaults, **opts}


# ------------------------------------------------------------------ alignment

def align_to(stems: Stems, track: Track, alignment: Mapping[str, Any] | None = None, *,
             references: Any = None) -> tuple[Stems, dict[str, Any]]:
    """Align ``stems`` to ``track``'s references when their rate, channel
    count or length differ, or when ``alignment["force"]``. Returns the
    stems and the corrections applied (``{}`` when none). ``references``:
    the track's references if already at hand (Stems or
    :class:`~stemlab.metrics.sources.SourceStems`), so that comparing layouts
    reads no audio."""
    opt = _options(alignment, ALIGN_OPTIONS, "alignment")
    refs = references if references is not None else track.references
    if refs is None:
        raise InputError(f"track {track.name!r}: no references to align to", field="references")
    differs = (stems.sample_rate != refs.sample_rate or stems.num_channels != refs.num_channels
               or stems.num_samples != refs.num_samples)
    if not opt["enabled"] or not (differs or opt["force"]):
        return stems, {}
    aligned, corr = align(stems, track.mixture, track.sample_rate, max_shift_ms=float(opt["max_shift_ms"]),
                          gain=bool(opt["gain"]), min_correlation=float(opt["min_correlation"]))
    return aligned, dict(corr)


# ------------------------------------------------------------------ one track

def _targets(stems: Stems | Mapping[str, Any], refs: Stems, targets: Sequence[str] | None) -> list[str]:
    names = list(stems.names) if isinstance(stems, Stems) else [str(k) for k in stems]
    avail_ref = set(refs.names) | ({"accompaniment"} if "vocals" in refs else set())
    avail_est = set(names) | ({"accompaniment"} if "vocals" in names and len(names) > 1 else set())
    if targets:
        sel = [t for t in targets if t in avail_ref and t in avail_est]
    else:
        sel = [t for t in names if t in avail_ref]
    if not sel:
        raise InputError(
            f"no target to score: estimates {names}, references {list(refs.names)}"
            + (f", targets {list(targets)}" if targets else ""),
            field="targets",
        )
    return sel


def _lazy_layout(stems: Mapping[str, Any], refs: Stems) -> tuple[int, set[int], set[int]]:
    """Rate (Hz; the references' unless the sources say otherwise), channel
    counts and lengths (samples) of a mapping of sources."""
    from .sources import source_shape

    rates = {int(r) for r in (getattr(v, "sample_rate", None) for v in stems.values()) if r is not None}
    if len(rates) > 1:
        raise InputError(f"estimates at different sample rates {sorted(rates)} Hz", field="estimates.sample_rate")
    shapes = [source_shape(v) if not isinstance(v, np.ndarray) or v.ndim == 2 else np.atleast_2d(v).shape
              for v in stems.values()]
    return (rates.pop() if rates else refs.sample_rate), {c for c, _ in shapes}, {t for _, t in shapes}


def _as_stems(stems: Mapping[str, Any], rate: int) -> Stems:
    """A mapping of sources read whole into float32 Stems (for alignment)."""
    from .sources import materialize

    return Stems({k: v if isinstance(v, np.ndarray) else materialize(v, np.float32) for k, v in stems.items()}, rate)


def evaluate_track(
    stems: Stems | Mapping[str, Any],
    track: Track,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: Mapping[str, Any] | None = None,
    targets: Sequence[str] | None = None,
    references: Any = None,
    warn: bool = True,
) -> TrackEvaluation:
    """:func:`evaluate` ``stems`` against ``track``'s references (no alignment).
    ``stems``: :class:`Stems` or a mapping of ``(channels, samples)`` arrays or
    lazy sources (:mod:`stemlab.metrics.sources`, e.g. ``AudioFileSource``),
    read block by block. ``references``: the track's references as lazy
    sources (:class:`~stemlab.metrics.sources.SourceStems`), instead of
    decoding ``track.references``."""
    refs = references if references is not None else track.references
    if refs is None:
        raise InputError(f"track {track.name!r} has no references to score against", field="references")
    opt = _options(metric_options, METRIC_OPTIONS, "metric_options")
    sel = _targets(stems, refs, targets)
    bits = opt["reference_bits"]
    if bits == "auto":
        bits = 16 if getattr(track, "dataset", None) in _PCM16_DATASETS else None
    return evaluate(refs, stems, refs.sample_rate, metrics=tuple(metrics), targets=sel, win=float(opt["win"]),
                    hop=float(opt["hop"]), nan_policy=str(opt["nan_policy"]), filters_len=int(opt["filters_len"]),
                    reference_bits=bits, warn=warn, device=opt["device"])


def score_stems(
    stems: Stems | Mapping[str, Any],
    track: Track,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: Mapping[str, Any] | None = None,
    alignment: Mapping[str, Any] | None = None,
    targets: Sequence[str] | None = None,
    references: Any = None,
) -> dict[str, Any]:
    """Align (when needed, see :func:`align_to`) and score one separation.
    ``references``: as in :func:`evaluate_track` (lazy references on disk).

    ``stems``: :class:`Stems`, or a mapping of ``(channels, samples)`` arrays
    or lazy sources (:mod:`stemlab.metrics.sources`): those are scored block
    by block, in memory that does not grow with the track's length, unless
    they need aligning (another rate or channel count, another length with
    alignment enabled, or ``alignment["force"]``) — then they are read whole
    into Stems first. Returns ``{"rows": [...], "frames": [...], "museval":
    dict | None, "corrections": {...}, "notes": [...]}``; rows carry target,
    metric, value, aggregation, unit, frames_used, frames_dropped."""

    aligned: Stems | Mapping[str, Any]
    if isinstance(stems, Stems):
        aligned, corrections = align_to(stems, track, alignment, references=references)
    else:
        refs = references if references is not None else track.references
        if refs is None:
            raise InputError(f"track {track.name!r}: no references to align to", field="references")
        opt = _options(alignment, ALIGN_OPTIONS, "alignment")
        rate, chans, lens = _lazy_layout(stems, refs)
        differs = rate != refs.sample_rate or chans != {refs.num_channels} or lens != {refs.num_samples}
        if opt["enabled"] and (differs or opt["force"]):
            aligned, corrections = align_to(_as_stems(stems, rate), track, alignment)
        else:
            aligned, corrections = stems, {}
    # the notes carry the adjustments (the NaN reasons of the rows); no RuntimeWarning is raised — a
    # warnings.catch_warnings() here was not thread-safe: two tracks scored at once leaked them to stderr
    ev = evaluate_track(aligned, track, metrics=metrics, metric_options=metric_options, targets=targets,
                        references=references, warn=False)
    return {
        "rows": ev.rows,
        "frames": ev.frames,
        "museval": ev.museval_json(),
        "corrections": corrections,
        "notes": list(ev.notes),
    }


def score_separation(separation: Separation, track: Track, **kwargs: Any) -> dict[str, Any]:
    """:func:`score_stems` for a provider's :class:`Separation`; the
    provider's own corrections are kept under ``corrections["provider"]``."""
    out = score_stems(separation.stems, track, **kwargs)
    if separation.corrections:
        out["corrections"] = {**out["corrections"], "provider": dict(separation.corrections)}
    return out
