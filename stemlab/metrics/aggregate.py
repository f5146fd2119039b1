"""Every number over tracks comes from here: :func:`aggregate`.

A scores table (``scores.parquet`` of ``stemlab run``, ``stemlab score``'s
rows) holds one row per track × provider × target × metric × *aggregation*:

* framewise BSSEval metrics (``sdr_bsseval_v4`` …) have two rows per track,
  ``median_frames`` (museval's track value) and ``mean_frames``;
* whole-track metrics (``usdr``, ``si_sdr`` …) have one, ``track``.

A number over tracks therefore names two choices — which per-track row
(frames) and which statistic over tracks — and must never pool the
``median_frames`` and ``mean_frames`` rows. :func:`track_values` selects
exactly one per-track value per (group, track); :func:`aggregate` reduces
them and labels the result, e.g. ``median_frames/median_tracks``
(museval/SiSEC 2018), ``median_frames/mean_tracks`` (demucs papers) or
``track/mean_tracks`` (MDX 2021 uSDR).

>>> aggregate(scores, "sdr_bsseval_v4")                      # museval's convention
>>> aggregate(scores, "sdr_bsseval_v4", tracks="mean")       # demucs papers
>>> aggregate(scores, how="mdx")                             # mean uSDR
>>> aggregate(scores, "usdr", ci=0.95)                       # + percentile-bootstrap CI
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np

from ..errors import InputError
from . import registry as R

__all__ = [
    "PRESETS",
    "FRAME_AGGREGATIONS",
    "TRACK_ROWS",
    "DEFAULT_BY",
    "aggregate",
    "aggregate_records",
    "track_values",
    "is_framewise",
    "aggregation_label",
    "describe",
]

#: per-track row labels of framewise metrics, by frame statistic
#: (:data:`stemlab.metrics.registry.FRAME_AGGREGATIONS`)
FRAME_AGGREGATIONS: dict[str, str] = {a.split("_", 1)[0]: a for a in R.FRAME_AGGREGATIONS}
#: per-track row label of whole-track metrics
TRACK_ROWS = R.TRACK_AGGREGATION
TRACK_STATS = ("median", "mean")
DEFAULT_BY = ("provider", "target")

#: published conventions: the metric, the frame statistic (None: a
#: whole-track metric) and the statistic over tracks
PRESETS: dict[str, dict[str, Any]] = {
    # sigsep/museval, SiSEC 2018: median over 1-s frames, median over tracks
    "museval": {"metric": "sdr_bsseval_v4", "frames": "median", "tracks": "median"},
    # demucs papers: per-track median over frames, mean over tracks
    "demucs": {"metric": "sdr_bsseval_v4", "frames": "median", "tracks": "mean"},
    # MDX 2021 / SDX 2023 / MSST: whole-track uSDR, mean over tracks
    "mdx": {"metric": "usdr", "frames": None, "tracks": "mean"},
}

_WORDS = {
    "median_frames": "median over frames",
    "mean_frames": "mean over frames",
    "track": "one whole-track value",
}


def aggregation_label(row_aggregation: str, tracks: str) -> str:
    """``median_frames`` + ``median`` → ``median_frames/median_tracks``."""
    return f"{row_aggregation}/{tracks}_tracks"


def describe(label: str) -> str:
    """A label in words: ``median_frames/median_tracks`` → ``median over
    frames per track, then median over tracks``."""
    rows, _, tr = label.partition("/")
    first = _WORDS.get(rows, rows) + " per track"
    return f"{first}, then {tr[: -len('_tracks')]} over tracks" if tr.endswith("_tracks") else first


def _frame(scores: Any):
    import pandas as pd

    if isinstance(scores, pd.DataFrame):
        return scores
    if isinstance(scores, Mapping):
        return pd.DataFrame(scores)
    return pd.DataFrame(list(scores))


def _parse_label(aggregation: str) -> tuple[str, str]:
    """``median_frames/mean_tracks`` → (``median_frames``, ``mean``)."""
    rows, sep, tr = str(aggregation).partition("/")
    valid = sorted(FRAME_AGGREGATIONS.values()) + [TRACK_ROWS]
    if not sep or not tr.endswith("_tracks") or rows not in valid:
        raise InputError(f"aggregation must read '<rows>/<stat>_tracks' with rows one of {valid}, e.g. "
                         f"'median_frames/median_tracks' or 'track/mean_tracks'; got {aggregation!r}",
                         field="aggregation")
    return rows, tr[: -len("_tracks")]


def _resolve(metric: str | None, how: str | None, frames: str | None, tracks: str | None,
             aggregation: str | None) -> tuple[str, str | None, bool, str]:
    """→ (metric, rows, strict, tracks). ``rows``: the per-track row label
    wanted (None: the metric's default — ``median_frames`` for framewise,
    ``track`` for whole-track metrics). ``strict``: asked for explicitly
    (``frames=`` or a label), so a metric of the other kind is an error; a
    preset's choice is only a default."""
    preset: dict[str, Any] = {}
    if how is not None:
        if how not in PRESETS:
            raise InputError(f"how must be one of {sorted(PRESETS)}, got {how!r}", field="how")
        preset = PRESETS[how]
    if frames is not None and frames not in FRAME_AGGREGATIONS:
        raise InputError(f"frames must be one of {sorted(FRAME_AGGREGATIONS)} (or None: median for framewise "
                         f"metrics, the 'track' rows of whole-track metrics), got {frames!r}", field="frames")
    rows: str | None = None
    strict = False
    if aggregation is not None:
        if frames is not None or tracks is not None:
            raise InputError("give either aggregation='<rows>/<stat>_tracks' or frames=/tracks=, not both",
                             field="aggregation")
        rows, tracks = _parse_label(aggregation)
        strict = True
    elif frames is not None:
        rows, strict = FRAME_AGGREGATIONS[frames], True
    elif preset:
        rows = FRAME_AGGREGATIONS[preset["frames"]] if preset["frames"] else TRACK_ROWS
    metric = metric or preset.get("metric") or PRESETS["museval"]["metric"]
    tracks = tracks or preset.get("tracks") or "median"
    if tracks not in TRACK_STATS:
        raise InputError(f"tracks must be one of {list(TRACK_STATS)}, got {tracks!r}", field="tracks")
    return metric, rows, strict, tracks


def is_framewise(scores: Any, metric: str) -> bool:
    """Whether ``metric``'s per-track rows are frame aggregations
    (``median_frames``/``mean_frames``) rather than one ``track`` value."""
    df = _frame(scores)
    if "aggregation" not in df.columns or "metric" not in df.columns:
        return False
    have = set(df.loc[df["metric"] == metric, "aggregation"].dropna().astype(str))
    return bool(have) and have <= set(FRAME_AGGREGATIONS.values())


def _track_keys(df) -> list[str]:
    if "track" not in df.columns:
        raise InputError(f"scores have no 'track' column (columns: {list(df.columns)}): cannot aggregate over "
                         "tracks", field="scores")
    return [c for c in ("dataset", "track") if c in df.columns]


def track_values(
    scores: Any,
    metric: str | None = None,
    *,
    frames: str | None = None,
    by: Sequence[str] = DEFAULT_BY,
    how: str | None = None,
    aggregation: str | None = None,
):
    """Exactly one per-track value per (``by`` group, track) of ``metric``.

    ``frames``: ``median`` (museval's track value; the default for
    framewise metrics) or ``mean`` — selects the ``median_frames`` or
    ``mean_frames`` rows; a whole-track metric (rows ``track``) has no
    frames, so asking for them is an :class:`InputError`. ``aggregation``
    (a label such as ``mean_frames/median_tracks``) and ``how`` (a preset)
    choose the rows too. Rows without an ``aggregation`` column count as
    whole-track values. Two rows for one (group, track) — e.g. ``by``
    without ``provider`` on a run of several providers — are an error,
    never averaged.

    Returns a DataFrame ``[*by, dataset?, track, value, aggregation]``
    (``aggregation``: the per-track row label), input order kept."""
    metric, rows, strict, _ = _resolve(metric, how, frames, None, aggregation)
    return _select(_frame(scores), metric, rows, strict, by)


def _select(df, metric: str, rows: str | None, strict: bool, by: Sequence[str]):
    by = list(by)
    if df.empty or "metric" not in df.columns:
        raise InputError(f"no scores to aggregate (metric {metric!r})", field="scores")
    keys = _track_keys(df)
    missing = [b for b in by if b not in df.columns]
    if missing:
        raise InputError(f"cannot group by {missing}: the scores have columns {list(df.columns)}", field="by")
    sub = df[df["metric"] == metric]
    if sub.empty:
        raise InputError(f"no scores for metric {metric!r}; have {sorted(map(str, set(df['metric'])))}",
                         field="metric")
    labels = sub["aggregation"].fillna(TRACK_ROWS).astype(str) if "aggregation" in sub.columns else None
    have = set(labels) if labels is not None else {TRACK_ROWS}
    want = _rows_wanted(metric, have, rows, strict)
    if labels is not None:
        sub = sub[labels == want]
    cols = list(dict.fromkeys(by + keys))
    out = sub[cols + ["value"]].copy()
    out["value"] = _to_float(out["value"])
    dup = out.duplicated(cols, keep=False)
    if dup.any():
        sizes = out.groupby(cols, dropna=False, sort=False).size()
        sizes = sizes[sizes > 1]
        key = sizes.index[0] if len(cols) > 1 else (sizes.index[0],)
        raise InputError(
            f"metric {metric!r} ({want}): several rows for one track within a group of {by}, "
            f"e.g. {int(sizes.iloc[0])} rows for {dict(zip(cols, key))}; group by every column that tells them apart "
            "(provider, params …) or filter first — rows are never averaged together",
            field="by",
        )
    out["aggregation"] = want
    return out.reset_index(drop=True)


def _rows_kind(metric: str, have: set[str]) -> str:
    """``framewise`` or ``track``: what the per-track rows ``have`` say,
    checked against the metric's declaration
    (:mod:`stemlab.metrics.registry`) when it has one; rows of another tool's
    metric are taken as they are."""
    frame_rows = set(FRAME_AGGREGATIONS.values())
    if have <= frame_rows:
        kind = "framewise"
    elif have == {TRACK_ROWS}:
        kind = "track"
    else:
        raise InputError(f"metric {metric!r} has per-track rows of kinds {sorted(have)}: expected "
                         f"{sorted(frame_rows)} (framewise) or ['track'] (whole-track), not a mix",
                         field="aggregation")
    spec = R.metric_of_row(metric)
    if spec is not None and (spec.kind != kind or not have <= set(spec.aggregations)):
        raise InputError(f"metric {metric!r} is declared {spec.kind} (per-track rows {list(spec.aggregations)}), "
                         f"but its rows are {sorted(have)}", field="aggregation")
    return kind


def _rows_wanted(metric: str, have: set[str], rows: str | None, strict: bool) -> str:
    """The per-track rows to use: a framewise metric's ``rows`` (default
    ``median_frames``), a whole-track metric's ``track`` rows; asking for
    the other kind explicitly (``strict``) is an error."""
    frame_rows = set(FRAME_AGGREGATIONS.values())
    if _rows_kind(metric, have) == "framewise":
        if rows == TRACK_ROWS and strict:
            raise InputError(f"metric {metric!r} is framewise (per-track rows {sorted(have)}): choose its frame "
                             "aggregation, frames='median' (museval) or 'mean'", field="frames")
        want = rows if rows in frame_rows else FRAME_AGGREGATIONS["median"]
        if want not in have:
            raise InputError(f"metric {metric!r} has per-track rows {sorted(have)}, not {want!r}", field="frames")
        return want
    if rows in frame_rows and strict:
        raise InputError(f"metric {metric!r} is a whole-track metric (one value per track, aggregation "
                         f"'track'): it has no frames to take the {rows.split('_')[0]} of; leave frames=None",
                         field="frames")
    return TRACK_ROWS


def _to_float(s):
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").astype(np.float64)


def aggregate(
    scores: Any,
    metric: str | None = None,
    *,
    frames: str | None = None,
    tracks: str | None = None,
    by: Sequence[str] = DEFAULT_BY,
    how: str | None = None,
    aggregation: str | None = None,
    ci: float | None = None,
    n_boot: int = 4000,
    seed: int = 0,
):
    """``metric`` over tracks per ``by`` group — the one function behind
    every leaderboard, summary, table, figure and CI in stemlab.

    ``scores``: a DataFrame (or rows) with ``track``, ``metric``, ``value``,
    ``aggregation`` and the ``by`` columns. ``frames``: ``median`` |
    ``mean`` per-track rows of a framewise metric (default ``median``,
    museval's); None for a whole-track metric (asking for frames of one is
    an error). ``tracks``: ``median`` (default) | ``mean`` over tracks.
    ``aggregation``: the same two choices as one label,
    ``median_frames/mean_tracks`` or ``track/mean_tracks``. ``how``: a
    preset of :data:`PRESETS` (``museval``, ``demucs``, ``mdx``) filling
    metric/frames/tracks not given. NaN tracks are skipped and counted
    (``±inf`` values are kept, as pandas and museval keep them).
    ``ci``: add a percentile-bootstrap CI over tracks at this level
    (:func:`stemlab.reports.stats.bootstrap_ci`, ``n_boot``, ``seed``;
    NaN with fewer than 3 finite tracks).

    Returns a DataFrame ``[*by, metric, aggregation, value, n_tracks,
    n_nan_tracks(, ci_low, ci_high)]``, groups in input order;
    ``aggregation`` reads e.g. ``median_frames/median_tracks``."""
    import pandas as pd

    metric, rows, strict, tracks = _resolve(metric, how, frames, tracks, aggregation)
    per = _select(_frame(scores), metric, rows, strict, by)
    by = list(by)
    records = []
    groups = per.groupby(by, sort=False, dropna=False) if by else [((), per)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        a = g["value"].to_numpy(dtype=np.float64)
        ok = a[~np.isnan(a)]
        if ok.size == 0:
            v = float("nan")
        else:
            v = float(np.median(ok)) if tracks == "median" else float(np.mean(ok))
        r = {**dict(zip(by, key)), "metric": metric,
             "aggregation": aggregation_label(str(g["aggregation"].iloc[0]), tracks),
             "value": v, "n_tracks": int(ok.size), "n_nan_tracks": int(a.size - ok.size)}
        if ci is not None:
            r["ci_low"], r["ci_high"] = _ci(ok, tracks, ci, n_boot, seed)
        records.append(r)
    cols = by + ["metric", "aggregation", "value", "n_tracks", "n_nan_tracks"] + (
        ["ci_low", "ci_high"] if ci is not None else [])
    return pd.DataFrame(records, columns=cols)


def _ci(vals: np.ndarray, stat: str, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    from ..reports.stats import MIN_SAMPLES_CI, bootstrap_ci

    if not 0 < level < 1:
        raise InputError(f"ci must be in (0, 1), got {level}", field="ci")
    if vals.size < MIN_SAMPLES_CI or not np.isfinite(vals).all():
        return float("nan"), float("nan")
    _, lo, hi = bootstrap_ci(cast(Sequence[float], vals), stat=stat, ci=level, n_boot=n_boot, seed=seed)
    return lo, hi


def aggregate_records(rows: Iterable[Mapping[str, Any]] | Any, **kw: Any) -> list[dict[str, Any]]:
    """:func:`aggregate` as a list of dicts (NaN kept as float NaN)."""
    out = aggregate(rows, **kw)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in out.to_dict("records")]
