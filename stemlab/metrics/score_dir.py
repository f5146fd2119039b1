"""Score a directory of estimates against a dataset — museval's
``eval_mus_dir``/``eval_dir`` for any stemlab dataset (``stemlab score``,
:func:`stemlab.score`).

Estimates are laid out ``{track}/{target}.<ext>`` (or
``{subset}/{track}/…``, museval's layout), any decodable format. Writes
museval-schema JSON per track (``OUT/museval/{subset}/{track}.json``,
readable by ``museval.EvalStore.add_eval_dir``), ``OUT/scores.{csv,parquet}``,
``OUT/frames.parquet`` and ``OUT/messages.txt``. A track with a problem gets
a message naming the file and what was expected; the others are still
scored. The CLI is :mod:`stemlab.metrics.cli`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import audio
from .._slug import slug as _slug  # one slug for run and score museval JSON paths
from ..errors import InputError, StemlabError
from ..types import Stems, Track
from .devices import torch_device
from .evaluation import NAN_POLICIES
from .registry import DEFAULT_METRICS, check_metrics
from .scoring import align_to, evaluate_track

__all__ = ["ScoreReport", "score"]

log = logging.getLogger(__name__)

#: evaluate()'s routine notes, not worth a message per track
_ROUTINE = ("reference accompaniment", "estimates without", "references rounded")


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
    device: str = "cpu",
    **dataset_kwargs: Any,
) -> ScoreReport:
    """Score a directory of estimates against a dataset's references.

    ``estimates_dir``: ``{track}/{target}.<ext>`` (or ``{subset}/{track}/…``);
    ``dataset``: a name for :func:`stemlab.datasets.load` (with ``root`` and
    ``dataset_kwargs``) or a Dataset. ``win``/``hop`` in seconds. ``align``:
    resample / fix channels / offset-align estimates that do not match the
    references (otherwise such a track is reported and skipped; a length
    mismatch alone is padded or truncated as museval does, with a warning).
    Writes to ``output`` when given (see module docstring).
    ``reference_bits``: ``"auto"`` rounds MUSDB18 references to 16 bits as
    musdb/stempeg do (see docs/metrics.md). ``device``: the metrics'
    backend (:mod:`stemlab.metrics.devices`: ``cpu`` numpy, ``torch``, ``cuda``)."""
    from .. import datasets as D

    est_root = Path(estimates_dir).expanduser()
    if not est_root.is_dir():
        raise InputError(f"estimates directory {est_root} does not exist", file=str(est_root))
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}", field="nan_policy")
    wanted = [m.name for m in check_metrics(metrics, "score")]
    torch_device(device)  # an unknown device or a missing GPU fails before any track
    if isinstance(dataset, str):
        ds = D.load(dataset, root if root is None or isinstance(root, str) else Path(root), **dataset_kwargs)
    else:
        ds = dataset
    report = ScoreReport(Path(output).expanduser() if output is not None else None)
    opts = {"win": win, "hop": hop, "nan_policy": nan_policy, "reference_bits": reference_bits, "device": device}
    names = ds.track_names()
    if track_names is not None:
        names = [n for n in names if n in set(track_names)]
    _unmatched_folders(est_root, set(names), report, getattr(ds, "name", dataset))
    museval_docs: dict[str, tuple[str, dict]] = {}
    for name in names:
        _score_track(ds[name], est_root, report, wanted, opts, targets, align, museval_docs)
    if not report.scored and not report.messages:
        report.add("error", "-", f"no estimates found under {est_root} for any of the {len(names)} track(s) "
                                 f"of {getattr(ds, 'name', dataset)!r} (expected {{track}}/{{target}}.wav)")
    if report.output is not None:
        _write(report, report.output, museval_docs)
    return report


def _unmatched_folders(est_root: Path, known: set[str], report: ScoreReport, dataset: Any) -> None:
    for d in sorted(p for p in est_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name in known or d.name in ("train", "test", "valid"):
            continue
        report.add("error", d.name, f"estimates folder {d} matches no track of dataset {dataset!r}")


def _score_track(track: Track, est_root: Path, report: ScoreReport, metrics: Sequence[str], opts: dict[str, Any],
                 targets: Sequence[str] | None, align: bool, museval_docs: dict[str, tuple[str, dict]]) -> None:
    """Score one track's folder of estimates (if any) into ``report``;
    a StemlabError becomes an error message. The track's audio is released."""
    folder = _estimate_dir(est_root, track)
    if folder is None:
        log.info("%s: no estimates folder, skipped", track.name)
        return
    try:
        ok = _score_one(track, folder, report, metrics, opts, targets, align, museval_docs)
    except StemlabError as e:
        report.add("error", track.name, f"not scored: {e}")
        ok = False
    finally:
        track.release()
    if ok:
        report.scored.append(track.name)


def _estimate_dir(root: Path, track: Track) -> Path | None:
    subsets = [track.subset] if track.subset else []
    subsets += [s for s in ("test", "train", "valid") if s not in subsets]
    for d in [root / track.name] + [root / s / track.name for s in subsets]:
        if d.is_dir():
            return d
    return None


def _estimate_files(folder: Path, report: ScoreReport, track: str) -> dict[str, Path]:
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


def _score_one(track: Track, folder: Path, report: ScoreReport, metrics: Sequence[str], opts: dict[str, Any],
               targets: Sequence[str] | None, align: bool, museval_docs: dict[str, tuple[str, dict]]) -> bool:
    """Decode, check, fix (when ``align``) and score one track's estimates;
    False (with an error message) when nothing could be scored."""
    name = track.name
    refs = track.references
    if refs is None:
        report.add("error", name, "the dataset has no references for this track (nothing to score against)")
        return False
    files = _estimate_files(folder, report, name)
    avail_ref = set(refs.names) | ({"accompaniment"} if "vocals" in refs else set())
    _check_targets(files, refs, avail_ref, targets, folder, report, name)
    decoded, rates = _decode(files, avail_ref, report, name)
    if not decoded:
        report.add("error", name, "no decodable estimate matches a reference target; track not scored")
        return False
    problems = _layout_problems(decoded, rates, files, refs)
    if problems and not align:
        report.add("error", name, "; ".join(problems) + " — track not scored (pass align=True / --align to "
                                                        "resample and align)")
        return False
    corrections: dict[str, Any] = {}
    if problems or align:
        decoded, corrections = _aligned(decoded, rates, files, track, refs)
        report.add("warning", name, "aligned: " + json.dumps(corrections, default=str))
    else:
        decoded = _fit_lengths(decoded, files, refs, report, name)
    stems = Stems(decoded, refs.sample_rate)
    sel = [t for t in (targets or stems.names) if t in stems or (t == "accompaniment" and "vocals" in stems)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev = evaluate_track(stems, track, metrics=metrics, metric_options=opts, targets=sel or None)
    for n in ev.notes:
        if not n.startswith(_ROUTINE):
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


def _check_targets(files: Mapping[str, Path], refs: Stems, avail_ref: set[str], targets: Sequence[str] | None,
                   folder: Path, report: ScoreReport, name: str) -> None:
    """Messages for files that match no reference and targets without a file."""
    want = list(targets) if targets else list(refs.names) + (["accompaniment"] if "accompaniment" in files else [])
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


def _decode(files: Mapping[str, Path], avail_ref: set[str], report: ScoreReport,
            name: str) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The files of reference targets, decoded (``(channels, samples)``, Hz)."""
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
    return decoded, rates


def _layout_problems(decoded: Mapping[str, np.ndarray], rates: Mapping[str, int], files: Mapping[str, Path],
                     refs: Stems) -> list[str]:
    """Rate and channel mismatches with the references, in words."""
    problems = []
    for t, a in decoded.items():
        if rates[t] != refs.sample_rate:
            problems.append(f"{files[t].name} is {rates[t]} Hz, references are {refs.sample_rate} Hz")
        if a.shape[0] != refs.num_channels:
            problems.append(f"{files[t].name} has {a.shape[0]} channel(s), references {refs.num_channels}")
    return problems


def _aligned(decoded: Mapping[str, np.ndarray], rates: Mapping[str, int], files: Mapping[str, Path], track: Track,
             refs: Stems) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Rates and layouts per file first, then one offset/length alignment of
    all stems together (the sum of stems is matched to the mixture)."""
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
    if pre:
        corrections = {**corrections, "per_file": pre}
    return dict(aligned.items()), corrections


def _fit_lengths(decoded: dict[str, np.ndarray], files: Mapping[str, Path], refs: Stems, report: ScoreReport,
                 name: str) -> dict[str, np.ndarray]:
    """Estimates of another length than the references: zero-padded or
    truncated at the end (as museval does), with a warning."""
    lens = {t: a.shape[1] for t, a in decoded.items()}
    if len(set(lens.values())) == 1 and next(iter(lens.values())) == refs.num_samples:
        return decoded
    wrong = {files[t].name: n for t, n in lens.items() if n != refs.num_samples}
    report.add("warning", name, f"length(s) {wrong} samples differ from the references' {refs.num_samples}: "
                                "zero-padded/truncated at the end, as museval does")
    return {t: audio.fit_length(a, refs.num_samples) for t, a in decoded.items()}


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
