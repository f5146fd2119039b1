"""Scoring separations and directories of estimates.

* :func:`score_stems` — what the harness calls for every (track, provider)
  job: align the returned stems to the references when needed, evaluate,
  return ``{"rows", "frames", "museval", "corrections"}``.
* :func:`score` / ``stemlab score ESTIMATES_DIR --dataset NAME -o OUT`` —
  museval's ``eval_mus_dir``/``eval_dir`` for any stemlab dataset: estimates
  laid out ``{track}/{target}.<ext>`` (or ``{subset}/{track}/…``, museval's
  layout), any decodable format; writes museval-schema JSON per track
  (``OUT/museval/{subset}/{track}.json``, readable by
  ``museval.EvalStore.add_eval_dir``), ``OUT/scores.{csv,parquet}``,
  ``OUT/frames.parquet`` and ``OUT/messages.txt``. A track with a problem
  gets a message naming the file and what was expected; the others are
  still scored.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError, StemlabError
from ..types import Separation, Stems, Track
from .evaluation import DEFAULT_METRICS, NAN_POLICIES, TrackEvaluation, aggregate_tracks, evaluate

__all__ = ["score_stems", "score_separation", "score", "ScoreReport", "register_cli", "METRIC_OPTIONS"]

log = logging.getLogger(__name__)

#: keys accepted in a run spec's ``metric_options`` (and their defaults)
METRIC_OPTIONS: dict[str, Any] = {"win": 1.0, "hop": 1.0, "nan_policy": "museval", "filters_len": 512,
                                  "reference_bits": "auto"}
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

def _basic_fix(stems: Stems, refs: Stems) -> tuple[Stems, dict[str, Any]]:
    """Rate, channel layout and length fixes without offset search (used only
    when :mod:`stemlab.metrics.align` is not importable)."""
    from .. import audio

    corr: dict[str, Any] = {"offset_samples": None, "note": "stemlab.metrics.align unavailable: no offset search"}
    out = {}
    for n, a in stems.items():
        if stems.sample_rate != refs.sample_rate:
            a = audio.resample(a, stems.sample_rate, refs.sample_rate)
        if a.shape[0] != refs.num_channels:
            a = audio.to_channels(a, refs.num_channels, name=f"estimate {n!r}")
        out[n] = audio.fit_length(a, refs.num_samples)
    if stems.sample_rate != refs.sample_rate:
        corr["resampled_from"] = stems.sample_rate
    if stems.num_channels != refs.num_channels:
        corr["channels_from"] = stems.num_channels
    if stems.num_samples != refs.num_samples:
        corr["length_from"] = stems.num_samples
    return Stems(out, refs.sample_rate), corr


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
    try:
        from .align import align
    except ImportError:
        return _basic_fix(stems, refs)
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
                    reference_bits=bits)


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
    import warnings

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the notes carry them
        ev = evaluate_track(aligned, track, metrics=metrics, metric_options=metric_options, targets=targets,
                            references=references)
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


# ------------------------------------------------------------- directories

@dataclass
class ScoreReport:
    """What :func:`score` did. ``messages``: ``(severity, track, text)``
    with severity ``error`` (something not scored) or ``warning``."""

    output: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    scored: list[str] = field(default_factory=list)
    messages: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(s == "error" for s, _, _ in self.messages)

    def add(self, severity: str, track: str, text: str) -> None:
        self.messages.append((severity, track, text))
        log.info("%s: [%s] %s", track, severity, text)

    def format_messages(self) -> str:
        return "\n".join(f"[{s}] {t}: {m}" for s, t, m in self.messages)

    @property
    def scores(self):
        """``rows`` as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def _estimate_dir(root: Path, track: Track) -> Path | None:
    subsets = [track.subset] if track.subset else []
    subsets += [s for s in ("test", "train", "valid") if s not in subsets]
    for d in [root / track.name] + [root / s / track.name for s in subsets]:
        if d.is_dir():
            return d
    return None


def _estimate_files(folder: Path, report: ScoreReport, track: str) -> dict[str, Path]:
    from .. import audio

    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in audio.DECODABLE_EXTENSIONS:
            found.setdefault(p.stem, []).append(p)
    out = {}
    for name, ps in found.items():
        if len(ps) > 1:
            report.add("error", track, f"several files for target {name!r}: {[p.name for p in ps]}; keep one "
                                       "(target not scored)")
            continue
        out[name] = ps[0]
    return out


from .._slug import slug as _slug  # noqa: E402  (one slug for run and score museval JSON paths)


def score(
    estimates_dir: str | os.PathLike[str],
    dataset: str | Any,
    *,
    root: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] | str = DEFAULT_METRICS,
    output: str | os.PathLike[str] | None = None,
    targets: Sequence[str] | None = None,
    win: float = 1.0,
    hop: float = 1.0,
    nan_policy: str = "museval",
    align: bool = False,
    reference_bits: int | str | None = "auto",
    track_names: Sequence[str] | None = None,
    **dataset_kwargs: Any,
) -> ScoreReport:
    """Score a directory of estimates against a dataset's references.

    ``estimates_dir``: ``{track}/{target}.<ext>`` (or ``{subset}/{track}/…``);
    ``dataset``: a name for :func:`stemlab.datasets.load` (with ``root`` and
    ``dataset_kwargs``) or a Dataset. ``align``: resample / fix channels /
    offset-align estimates that do not match the references (otherwise such
    a track is reported and skipped; a length mismatch alone is padded or
    truncated as museval does, with a warning). Writes to ``output`` when
    given (see module docstring). ``reference_bits``: ``"auto"`` rounds
    MUSDB18 references to 16 bits as musdb/stempeg do (see docs/metrics.md)."""
    from .. import datasets as D

    est_root = Path(estimates_dir).expanduser()
    if not est_root.is_dir():
        raise InputError(f"estimates directory {est_root} does not exist", file=str(est_root))
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}", field="nan_policy")
    from . import available_metrics

    bad = [m for m in metrics if m not in available_metrics()]
    if bad or not metrics:
        raise InputError(f"unknown metric(s) {bad or metrics}; valid: {available_metrics()}", field="metrics")
    ds = D.load(dataset, root, **dataset_kwargs) if isinstance(dataset, str) else dataset
    out = Path(output).expanduser() if output is not None else None
    report = ScoreReport(out)
    opts = {"win": win, "hop": hop, "nan_policy": nan_policy, "reference_bits": reference_bits}
    names = ds.track_names()
    if track_names is not None:
        names = [n for n in names if n in set(track_names)]
    known = set(names)
    for d in sorted(p for p in est_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name in known or d.name in ("train", "test", "valid"):
            continue
        report.add("error", d.name, f"estimates folder {d} matches no track of dataset {getattr(ds, 'name', dataset)!r}")
    museval_docs: dict[str, tuple[str, dict]] = {}
    for name in names:
        track = ds[name]
        folder = _estimate_dir(est_root, track)
        if folder is None:
            log.info("%s: no estimates folder, skipped", name)
            continue
        try:
            ok = _score_one(track, folder, report, metrics, opts, targets, align, museval_docs)
        except StemlabError as e:
            report.add("error", name, f"not scored: {e}")
            ok = False
        finally:
            track.release()
        if ok:
            report.scored.append(name)
    if not report.scored and not report.messages:
        report.add("error", "-", f"no estimates found under {est_root} for any of the {len(names)} track(s) "
                                 f"of {getattr(ds, 'name', dataset)!r} (expected {{track}}/{{target}}.wav)")
    if out is not None:
        _write(report, out, museval_docs)
    return report


def _score_one(track: Track, folder: Path, report: ScoreReport, metrics: Sequence[str], opts: dict[str, Any],
               targets: Sequence[str] | None, align: bool, museval_docs: dict[str, tuple[str, dict]]) -> bool:
    import warnings

    from .. import audio

    name = track.name
    refs = track.references
    if refs is None:
        report.add("error", name, "the dataset has no references for this track (nothing to score against)")
        return False
    files = _estimate_files(folder, report, name)
    want = list(targets) if targets else list(refs.names) + (["accompaniment"] if "accompaniment" in files else [])
    avail_ref = set(refs.names) | ({"accompaniment"} if "vocals" in refs else set())
    extra = sorted(set(files) - avail_ref)
    if extra:
        report.add("warning", name, f"files {[files[e].name for e in extra]} match no reference target "
                                    f"({sorted(avail_ref)}); ignored")
    missing = [t for t in want if t not in files and not (t == "accompaniment" and "vocals" in files)]
    if targets is None and "accompaniment" in files:
        missing = [t for t in missing if t == "vocals"]  # a vocals/accompaniment submission
    if missing:
        report.add("error", name, f"no estimate for target(s) {missing} in {folder} (expected "
                                  f"{', '.join(t + '.wav' for t in missing)}); scoring the others")
    decoded: dict[str, np.ndarray] = {}
    rates: dict[str, int] = {}
    for t, p in files.items():
        if t not in avail_ref:
            continue
        try:
            a, sr = audio.decode(p)
        except InputError as e:
            report.add("error", name, f"{p.name}: cannot decode ({e}); target not scored")
            continue
        decoded[t], rates[t] = a, sr
    if not decoded:
        report.add("error", name, "no decodable estimate matches a reference target; track not scored")
        return False
    problems = []
    for t, a in decoded.items():
        if rates[t] != refs.sample_rate:
            problems.append(f"{files[t].name} is {rates[t]} Hz, references are {refs.sample_rate} Hz")
        if a.shape[0] != refs.num_channels:
            problems.append(f"{files[t].name} has {a.shape[0]} channel(s), references {refs.num_channels}")
    corrections: dict[str, Any] = {}
    if problems and not align:
        report.add("error", name, "; ".join(problems) + " — track not scored (pass align=True / --align to "
                                                        "resample and align)")
        return False
    lens = {t: a.shape[1] for t, a in decoded.items()}
    if problems or align:
        # rates and layouts per file first, then one offset/length alignment of
        # all stems together (the sum of stems is matched to the mixture)
        pre: dict[str, Any] = {}
        fixed = {}
        for t, a in decoded.items():
            c: dict[str, Any] = {}
            if rates[t] != refs.sample_rate:
                a = audio.resample(a, rates[t], refs.sample_rate)
                c["resampled_from"] = rates[t]
            if a.shape[0] != refs.num_channels:
                c["channels_from"] = int(a.shape[0])
                a = audio.to_channels(a, refs.num_channels, name=files[t].name)
            fixed[t] = a
            if c:
                pre[t] = c
        n = max(a.shape[1] for a in fixed.values())
        fixed = {t: audio.fit_length(a, n) for t, a in fixed.items()}
        aligned, corrections = align_to(Stems(fixed, refs.sample_rate), track, {"enabled": True, "force": True})
        decoded = dict(aligned.items())
        if pre:
            corrections = {**corrections, "per_file": pre}
        report.add("warning", name, "aligned: " + json.dumps(corrections, default=str))
    elif len(set(lens.values())) > 1 or next(iter(lens.values())) != refs.num_samples:
        wrong = {files[t].name: n for t, n in lens.items() if n != refs.num_samples}
        report.add("warning", name, f"length(s) {wrong} samples differ from the references' {refs.num_samples}: "
                                    "zero-padded/truncated at the end, as museval does")
        decoded = {t: audio.fit_length(a, refs.num_samples) for t, a in decoded.items()}
    stems = Stems(decoded, refs.sample_rate)
    sel = [t for t in (targets or stems.names) if t in stems or (t == "accompaniment" and "vocals" in stems)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev = evaluate_track(stems, track, metrics=metrics, metric_options=opts, targets=sel or None)
    for n in ev.notes:
        if not n.startswith(("reference accompaniment", "estimates without", "references rounded")):
            report.add("warning", name, n)
    base = {"dataset": getattr(track, "dataset", ""), "track": name, "subset": track.subset}
    report.rows += [{**base, **r} for r in ev.rows]
    report.frames += [{**base, **r} for r in ev.frames]
    mj = ev.museval_json()
    if mj is not None:
        if corrections:
            mj["stemlab_corrections"] = corrections
        museval_docs[name] = (track.subset or "test", mj)
    return True


def _write(report: ScoreReport, out: Path, museval_docs: Mapping[str, tuple[str, dict]]) -> None:
    import pandas as pd

    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, (subset, doc) in museval_docs.items():
            d = out / "museval" / subset
            d.mkdir(parents=True, exist_ok=True)
            _atomic(d / f"{_slug(name)}.json", json.dumps(doc, indent=2))
        scores = pd.DataFrame(report.rows)
        frames = pd.DataFrame(report.frames)
        tmp = out / ".scores.parquet.tmp"
        scores.to_parquet(tmp, index=False)
        os.replace(tmp, out / "scores.parquet")
        _atomic(out / "scores.csv", scores.to_csv(index=False))
        tmp = out / ".frames.parquet.tmp"
        frames.to_parquet(tmp, index=False)
        os.replace(tmp, out / "frames.parquet")
        _atomic(out / "messages.txt", report.format_messages() + ("\n" if report.messages else ""))
    except OSError as e:
        raise InputError(f"cannot write scores to {out} ({e.strerror or e})", file=str(out)) from None


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- CLI

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


def _cli_score(args: argparse.Namespace) -> int:
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
        **kw,
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
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names")
    p.add_argument("--targets", help="comma-separated targets (default: every estimate with a reference)")
    p.add_argument("--win", type=float, default=1.0, help="BSSEval window, seconds (museval: 1)")
    p.add_argument("--hop", type=float, default=1.0, help="BSSEval hop, seconds (museval: 1)")
    p.add_argument("--nan-policy", choices=NAN_POLICIES, default="museval", help="which frames are dropped")
    p.add_argument("--reference-bits", default="auto", metavar="auto|none|N",
                   help="round references to N-bit PCM (auto: 16 for musdb18, as musdb/stempeg feed museval)")
    p.add_argument("--align", action="store_true", help="resample/fix channels/offset-align mismatching estimates")
    p.add_argument("-o", "--output", help="output directory (museval JSON, scores.csv/parquet, frames.parquet)")
    p.set_defaults(func=_cli_score)
