"""Demucs (``demucs:<name>``): every pretrained model of demucs 4.1, loaded
with demucs' own loader and run with :func:`demucs.apply.apply_model`.

Names: ``htdemucs`` (default), ``htdemucs_ft``, ``htdemucs_6s``,
``hdemucs_mmi``, ``mdx``, ``mdx_extra``, ``mdx_q``, ``mdx_extra_q`` (the two
``_q`` models need the ``diffq`` package), or any name of a model or bag of
models in a local repo (``repo=DIR``).

Where the weights come from — nothing is ever downloaded:

1. ``repo`` (parameter) or the environment variable ``STEMLAB_DEMUCS_REPO``:
   a demucs *local repo*, the folder ``demucs --repo DIR`` reads — model
   files ``{sig}-{sha256[:8]}.th`` (or ``{sig}.th``; the suffix is checked
   when present) and bag files ``{name}.yaml`` (``models: [sig, …]``,
   optional ``weights`` and ``segment``). The bag files of the pretrained
   names ship with demucs and are used when the folder has none, so a copy
   of the torch hub cache works as a repo. Loaded with
   ``demucs.pretrained.get_model(name, repo=DIR)``.
2. otherwise the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default
   ``~/.cache/torch/hub/checkpoints``), where demucs < 4.1 and
   ``torch.hub.load_state_dict_from_url`` store the ``.th`` files;
3. otherwise the Hugging Face cache (``$HF_HUB_CACHE``, default
   ``~/.cache/huggingface/hub/models--adefossez--<Repo>/snapshots/…``),
   where demucs 4.1's ``get_model(name)`` stores ``{name}.yaml`` and
   ``{sig}.safetensors`` (loaded offline with ``demucs.hf.load_safetensors_model``).

Missing weights raise :class:`~stemlab.errors.ProviderUnavailable` naming the
exact files, where they go and how to fetch them on a connected machine;
:meth:`DemucsProvider.status` answers the same question by listing folders
(no model load), for ``stemlab providers list``.

Running mirrors ``demucs.api.Separator.separate_tensor``: the input is
resampled to the model rate (44.1 kHz, libsoxr VHQ) and made stereo, then
normalised by the mean/std of its mono mix (``normalize=true``), passed to
``apply_model`` (``shifts``, ``split``, ``segment`` in seconds, ``overlap``
as a fraction of a segment), and the output is de-normalised, resampled back
and given the input's channel count and length. ``split=true`` runs the
model on one segment at a time, so the model's working memory does not grow
with the track (only the input and output arrays do). The random time
shifts of ``shifts ≥ 1`` draw from Python's ``random``; ``seed`` (default 0)
seeds it for the call and restores it after, so runs repeat exactly
(``seed=-1``: unseeded, and the instance no longer claims determinism).

Options (not part of the id; also accepted in the spec string):
``device`` — ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``,
``cuda:N``, ``mps``; a GPU asked for but absent falls back to CPU with a
warning. ``threads`` — torch intra-op threads for the call (restored after).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, InputError, ProviderRejected, ProviderUnavailable
from ...types import Cost, Separation, Stems, Track
from ..base import Param, Provider, Status, as_track
from ._common import check_mixture, peak_rss

__all__ = [
    "DemucsProvider",
    "PRETRAINED",
    "WeightsPlan",
    "resolve_weights",
    "load_demucs_model",
    "torch_hub_checkpoints",
    "hf_cache_dir",
    "hf_repo_name",
    "REPO_ENV",
]

log = logging.getLogger("stemlab.providers.demucs")

#: environment variable naming a demucs local repo folder
REPO_ENV = "STEMLAB_DEMUCS_REPO"

_FOUR = ("drums", "bass", "other", "vocals")
#: pretrained name → its sources, in demucs' order (from the models' ``sources``)
PRETRAINED: Mapping[str, tuple[str, ...]] = {
    "htdemucs": _FOUR,
    "htdemucs_ft": _FOUR,
    "htdemucs_6s": _FOUR + ("guitar", "piano"),
    "hdemucs_mmi": _FOUR,
    "mdx": _FOUR,
    "mdx_extra": _FOUR,
    "mdx_q": _FOUR,
    "mdx_extra_q": _FOUR,
}
_QUANTIZED = frozenset({"mdx_q", "mdx_extra_q"})  # diffq-packed states
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_HF_NAMESPACE = "adefossez"  # demucs.hf.DEFAULT_NAMESPACE

#: CPU real-time factor of one model at shifts=1 (seconds per second of
#: audio, 2-4 cores); the estimate scales it by models × shifts. A run
#: replaces it with the measured factor of this provider instance.
_RTF_CPU = 0.6
_RTF_GPU = 0.03

#: shortest input handed to demucs (shorter input is zero-padded, the output cut back)
_MIN_SAMPLES = 64

# One demucs run at a time per process: ``threads`` changes torch's global
# thread count and ``seed`` the global ``random`` state for the call.
_RUN_LOCK = threading.Lock()


# --------------------------------------------------------------------- places

def _demucs_remote_dir() -> Path | None:
    """demucs' shipped ``remote/`` folder (bag yamls, files.txt), found
    without importing demucs (which imports torch)."""
    spec = importlib.util.find_spec("demucs")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "remote"


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (computed without importing torch
    unless it is already imported, as torch does: ``$TORCH_HOME``, else
    ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
    else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def hf_repo_name(name: str) -> str:
    """demucs name → its Hugging Face repository (as ``demucs.hf.hf_repo_name``)."""
    if name == "htdemucs":
        return "HTDemucs"
    if name.startswith("htdemucs_"):
        return "HTDemucs-" + name[len("htdemucs_"):]
    return "Demucs-" + name


def _remote_files() -> dict[str, tuple[str, str]]:
    """sig → (file name, path under demucs' download root) from the shipped
    ``remote/files.txt``."""
    d = _demucs_remote_dir()
    out: dict[str, tuple[str, str]] = {}
    if d is None or not (d / "files.txt").is_file():
        return out
    root = ""
    for line in (d / "files.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
            continue
        out[line.split("-", 1)[0]] = (line, root + line)
    return out


def _read_bag(path: Path) -> dict[str, Any]:
    import yaml

    try:
        bag = yaml.safe_load(path.read_text())
        models = [str(s) for s in bag["models"]]
    except Exception as e:
        raise ProviderUnavailable(f"demucs bag file {path}: expected a YAML mapping with 'models: [sig, ...]' ({e})"
                                  ) from None
    return {"models": models, "weights": bag.get("weights"), "segment": bag.get("segment")}


def _scan_th(root: Path) -> dict[str, list[Path]]:
    """sig → ``.th`` files in ``root`` (as ``demucs.repo.LocalRepo.scan``)."""
    found: dict[str, list[Path]] = {}
    try:
        entries = list(root.iterdir())
    except OSError:
        return found
    for f in entries:
        if f.suffix == ".th":
            sig = f.stem.rsplit("-", 1)[0] if "-" in f.stem else f.stem
            found.setdefault(sig, []).append(f)
    return found


@dataclass(frozen=True)
class WeightsPlan:
    """Where a model's files are (or would be), found without loading them.

    ``where``: ``repo`` | ``torch-hub`` | ``hf-cache``; ``files``: signature
    → file found; ``missing``: signatures with no file; ``expected``:
    signature → the file name to place in ``root``."""

    name: str
    where: str
    root: Path
    signatures: tuple[str, ...]
    files: Mapping[str, Path] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    bag: Path | None = None  # bag yaml (None: ``name`` is a single signature)
    expected: Mapping[str, str] = field(default_factory=dict)
    problem: str = ""  # e.g. a duplicate signature

    @property
    def ready(self) -> bool:
        return not self.missing and not self.problem and bool(self.signatures)

    def checksums(self) -> dict[str, str]:
        """sig → checksum from the file name (``{sig}-{checksum}.th``), or ``""``."""
        out = {}
        for sig, f in self.files.items():
            stem = f.stem
            out[sig] = stem.rsplit("-", 1)[1] if f.suffix == ".th" and "-" in stem else ""
        return out


def _plan_local(name: str, root: Path, where: str) -> WeightsPlan:
    """Plan for a demucs local-repo-like folder of ``.th`` files."""
    remote = _remote_files()
    th = _scan_th(root)
    dup = sorted(s for s, fs in th.items() if len(fs) > 1)
    problem = ""
    if dup:
        problem = (f"{root}: more than one file for signature(s) {dup} "
                   f"({', '.join(sorted(f.name for s in dup for f in th[s]))}); keep one of each")
    bag: Path | None = None
    if name in th:
        sigs: tuple[str, ...] = (name,)
    else:
        pkg = _demucs_remote_dir()
        candidates = [root / f"{name}.yaml"] + ([pkg / f"{name}.yaml"] if pkg is not None else [])
        bag = next((c for c in candidates if c.is_file()), None)
        sigs = tuple(_read_bag(bag)["models"]) if bag is not None else ()
    files = {s: th[s][0] for s in sigs if s in th}
    missing = tuple(dict.fromkeys(s for s in sigs if s not in th))
    expected = {s: remote[s][0] if s in remote else f"{s}-<sha256[:8]>.th (or {s}.th)" for s in sigs}
    if not sigs:
        problem = problem or (f"no model or bag named {name!r} in {root} (expected {name}.yaml or "
                              f"{name}-<sha256[:8]>.th)")
    return WeightsPlan(name, where, root, sigs, files, missing, bag, expected, problem)


def _plan_hf(name: str) -> WeightsPlan:
    """Plan for demucs 4.1's Hugging Face cache layout."""
    repo_dir = hf_cache_dir() / f"models--{_HF_NAMESPACE}--{hf_repo_name(name)}"
    snaps = repo_dir / "snapshots"
    snapshot = None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        cand = snaps / ref.read_text().strip()
        snapshot = cand if cand.is_dir() else None
    if snapshot is None and snaps.is_dir():
        found = sorted((p for p in snaps.iterdir() if (p / f"{name}.yaml").is_file()), key=lambda p: p.stat().st_mtime)
        snapshot = found[-1] if found else None
    pkg = _demucs_remote_dir()
    bag = snapshot / f"{name}.yaml" if snapshot is not None and (snapshot / f"{name}.yaml").is_file() else None
    if bag is None and pkg is not None and (pkg / f"{name}.yaml").is_file():
        bag = pkg / f"{name}.yaml"
    sigs = tuple(_read_bag(bag)["models"]) if bag is not None else ()
    root = snapshot if snapshot is not None else repo_dir / "snapshots" / "<revision>"
    files = {
        s: root / f"{s}.safetensors" for s in sigs if snapshot is not None and (root / f"{s}.safetensors").is_file()
    }
    missing = tuple(dict.fromkeys(s for s in sigs if s not in files))
    expected = {s: f"{s}.safetensors" for s in sigs}
    return WeightsPlan(name, "hf-cache", root, sigs, files, missing, bag, expected)


def resolve_weights(name: str, repo: str | os.PathLike[str] | None = None) -> list[WeightsPlan]:
    """Every place searched for ``name``, best first; ``plans[0].ready`` tells
    whether the model can load. Only lists folders and reads bag yamls."""
    if repo:
        return [_plan_local(name, Path(repo).expanduser(), "repo")]
    env = os.environ.get(REPO_ENV, "").strip()
    if env:
        return [_plan_local(name, Path(env).expanduser(), "repo")]
    plans = [_plan_local(name, torch_hub_checkpoints(), "torch-hub")]
    if name in PRETRAINED:
        plans.append(_plan_hf(name))
    plans.sort(key=lambda p: not p.ready)  # stable: torch hub first among equals
    return plans


def _missing_message(pid: str, name: str, plans: list[WeightsPlan], repo_given: bool) -> str:
    p = plans[0]
    if p.problem and not (p.missing and p.signatures):
        head = f"{pid}: cannot use the weights: {p.problem}"
    else:
        head = f"{pid}: weights missing for demucs model {name!r}"
    lines = [head + ". Searched:"]
    for q in plans:
        got = [f"{s} ({q.files[s].name})" for s in q.signatures if s in q.files]
        lines.append(f"  - {q.where}: {q.root}" + (f" — found {', '.join(got)}" if got else ""))
    local = next((q for q in plans if q.where in ("repo", "torch-hub")), plans[0])
    want = [local.expected[s] for s in (local.missing or local.signatures)]
    if want:
        lines.append(f"Expected file(s) in {local.root}: {', '.join(want)}"
                     + (f" (bag definition {name}.yaml ships with demucs)" if local.bag is not None
                        and local.bag.parent != local.root else ""))
    remote = _remote_files()
    urls = [remote[s][1] for s in (local.missing or local.signatures) if s in remote]
    if name in PRETRAINED or urls:
        try:
            from demucs.pretrained import ROOT_URL
        except Exception:  # pragma: no cover - demucs missing
            ROOT_URL = "<demucs download root>"
        lines.append("This machine does not download weights. On a connected machine, either:")
        if urls:
            cmd = "; ".join(f"torch.hub.load_state_dict_from_url('{ROOT_URL}{u}', check_hash=True)" for u in urls)
            lines.append(f"  python -c \"import torch; {cmd}\"  then copy ~/.cache/torch/hub/checkpoints/"
                         f"{{{','.join(remote[s][0] for s in (local.missing or local.signatures) if s in remote)}}} "
                         f"into {local.root} here (or into any folder and pass repo=FOLDER / set {REPO_ENV})")
        lines.append(f"  python -c \"from demucs.pretrained import get_model; get_model('{name}')\"  (demucs 4.1 "
                     f"stores them in ~/.cache/huggingface/hub/models--{_HF_NAMESPACE}--{hf_repo_name(name)}; copy "
                     f"that folder to {hf_cache_dir()} here; older demucs store .th files in "
                     "~/.cache/torch/hub/checkpoints: copy those)")
    elif not repo_given:
        lines.append(f"A model that is not pretrained needs repo=FOLDER (or {REPO_ENV}) naming its demucs repo.")
    return "\n".join(lines)


# --------------------------------------------------------------------- loading

def _sha8(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for buf in iter(lambda: f.read(1 << 20), b""):
            h.update(buf)
    return h.hexdigest()[:8]


def load_demucs_model(plan: WeightsPlan, pid: str = "demucs") -> Any:
    """Load the model or bag of models of a ready plan with demucs' loaders
    (``get_model(name, repo=…)``, ``LocalRepo``/``BagOnlyRepo`` with the
    shipped bag yaml, or ``demucs.hf.load_safetensors_model``); eval mode.
    Failures raise :class:`ProviderUnavailable` naming the file."""
    if plan.name in _QUANTIZED and importlib.util.find_spec("diffq") is None:
        raise ProviderUnavailable(f"{pid}: model {plan.name!r} is quantized with diffq; install it: pip install diffq",
                                  provider=pid)
    try:
        if plan.where == "hf-cache":
            from demucs.apply import BagOfModels
            from demucs.hf import load_safetensors_model

            assert plan.bag is not None
            bag = _read_bag(plan.bag)
            model: Any = BagOfModels([load_safetensors_model(plan.files[s]) for s in bag["models"]],
                                     bag["weights"], bag["segment"])
        elif plan.bag is None or plan.bag.parent == plan.root:
            from demucs.pretrained import get_model

            model = get_model(plan.name, repo=plan.root)
        else:  # weights in root, bag definition shipped with demucs
            from demucs.repo import AnyModelRepo, BagOnlyRepo, LocalRepo

            models = LocalRepo(plan.root)
            model = AnyModelRepo(models, BagOnlyRepo(plan.bag.parent, models)).get_model(plan.name)
    except ProviderUnavailable:
        raise
    except SystemExit as e:  # demucs.utils.fatal
        raise ProviderUnavailable(f"{pid}: demucs refused to load {plan.name!r} from {plan.root} (exit {e.code})",
                                  provider=pid) from None
    except Exception as e:
        files = ", ".join(str(plan.files[s]) for s in plan.signatures if s in plan.files)
        raise ProviderUnavailable(f"{pid}: cannot load demucs model {plan.name!r} from {files}: "
                                  f"{type(e).__name__}: {e}. Re-copy the file(s)", provider=pid) from None
    model.eval()
    return model


def _max_segment(model: Any) -> float:
    """Longest segment (s) the model accepts: HTDemucs' training length."""
    from demucs.htdemucs import HTDemucs

    if hasattr(model, "max_allowed_segment"):
        return float(model.max_allowed_segment)
    return float(model.segment) if isinstance(model, HTDemucs) else math.inf


def _resolve_device(wanted: str) -> tuple[str, str | None]:
    """(device, warning) for ``auto``/``cpu``/``cuda[:N]``/``mps``."""
    import torch

    w = (wanted or "auto").lower()
    if w == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if w.startswith("cuda"):
        if torch.cuda.is_available():
            return w, None
        return "cpu", f"device {wanted!r} requested but CUDA is not available: ran on CPU"
    if w == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps", None
        return "cpu", "device 'mps' requested but not available: ran on CPU"
    return "cpu", None


@contextmanager
def _scoped_threads(n: int | None) -> Iterator[None]:
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def _scoped_seed(seed: int | None) -> Iterator[None]:
    if seed is None or seed < 0:
        yield
        return
    state = random.getstate()
    random.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(state)


# --------------------------------------------------------------------- provider

_DEVICES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DemucsProvider(Provider):
    """Demucs v4 (Hybrid Transformer) and v3 (hybrid / MDX) models through
    demucs' own loader and ``apply_model``; stems are the model's sources.

    Weights are looked up in ``repo`` / ``$STEMLAB_DEMUCS_REPO``, else the
    torch hub and Hugging Face caches; never downloaded."""

    family = "demucs"
    kind = "local"
    description = (
        "Demucs v4/v3 pretrained models (htdemucs, htdemucs_ft, htdemucs_6s, hdemucs_mmi, mdx*) via apply_model"
    )
    variants = tuple(PRETRAINED)
    default_variant = "htdemucs"
    deterministic = True  # with a seed (default 0); seed=-1 with shifts ≥ 1 is not (set per instance)
    params_schema = (
        Param("shifts", int, 1, "random time shifts (0–0.5 s) averaged; 0 = none (demucs' CLI default: 1)",
              unit="count", min=0, max=20),
        Param("split", bool, True, "run segment by segment (bounded model memory; demucs' default)"),
        Param("segment", float, None, "segment length; none = the model's own (7.8 s for htdemucs; at most "
              "that for transformer models)", unit="seconds", min=0.1, max=600.0, nullable=True),
        Param("overlap", float, 0.25, "overlap between segments", unit="fraction of a segment", min=0.0, max=0.95),
        Param("seed", int, 0, "seed of the random shifts; -1 = unseeded (not repeatable when shifts ≥ 1)",
              min=-1),
        Param("precision", str, "float32", "compute precision; bfloat16/float16 run under torch.autocast",
              choices=("float32", "bfloat16", "float16")),
        Param("normalize", bool, True, "normalise the input by its mono mix mean/std and undo it on the output "
              "(as demucs.api.Separator)"),
        Param("repo", str, "", f"demucs local repo folder ('' = ${REPO_ENV}, else the torch hub / "
              "Hugging Face caches)", unit="path"),
    )
    option_names = ("device", "threads")

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        p = dict(params or {})
        for opt in self.option_names:  # device/threads given in the spec string are options
            if opt in p:
                options.setdefault(opt, p.pop(opt))
        name = variant if variant is not None else self.default_variant
        self._custom = name not in PRETRAINED
        super().__init__(self.default_variant if self._custom else name, p, **options)
        self.variant = name
        if self._custom:
            self._check_custom(str(name))
        if self.config["seed"] < 0 and self.config["shifts"] > 0:
            self.deterministic = False  # type: ignore[misc]  # random shifts, unseeded
        self._model: Any = None
        self._plan: WeightsPlan | None = None
        self._load_lock = threading.Lock()
        self._rtf: float | None = None
        self._provenance_extra: dict[str, Any] = {}

    # -- configuration -------------------------------------------------------
    def validate(self) -> None:
        dev = self.options.get("device", "auto")
        if not isinstance(dev, str) or not _DEVICES.match(dev.lower()):
            raise ConfigError(f"provider demucs: option device: expected auto, cpu, cuda, cuda:N or mps, got {dev!r}",
                              field="demucs.options.device")
        thr = self.options.get("threads")
        if thr is not None:
            try:
                ok = int(thr) >= 1 and float(thr) == int(thr)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"provider demucs: option threads: expected an int ≥ 1, got {thr!r}",
                                  field="demucs.options.threads")
            self.options["threads"] = int(thr)
        repo = self.config["repo"]
        if repo and not Path(repo).expanduser().is_dir():
            raise ConfigError(f"provider demucs: params.repo: {repo!r} is not a directory (a demucs local repo "
                              "holds {sig}-{checksum}.th and {name}.yaml files)", field="demucs.params.repo")

    def _repo_dir(self) -> Path | None:
        r = self.config["repo"] or os.environ.get(REPO_ENV, "").strip()
        return Path(r).expanduser() if r else None

    def _check_custom(self, name: str) -> None:
        valid = list(PRETRAINED)
        root = self._repo_dir()
        if root is not None and root.is_dir():
            local = sorted({p.stem for p in root.glob("*.yaml")} | set(_scan_th(root)))
            valid += [n for n in local if n not in PRETRAINED]
            if _NAME_RE.match(name) and name in local:
                return
        raise ConfigError(
            f"provider demucs: unknown model {name!r}; valid: {valid}"
            + ("" if root is not None else f" (other names need repo=FOLDER or {REPO_ENV})"),
            field="demucs.variant",
        )

    def identity_version(self) -> str:
        """demucs version and the weights' signatures/checksums (file names)."""
        plan = self.plans()[0]
        sums = plan.checksums()
        files = ",".join(f"{s}-{sums.get(s) or (plan.files[s].stat().st_size if s in plan.files else 'missing')}"
                         for s in plan.signatures)
        return f"demucs={_demucs_version()}|{files}"

    # -- capabilities -------------------------------------------------------
    def plans(self) -> list[WeightsPlan]:
        return resolve_weights(str(self.variant), self._repo_dir())

    @property
    def stems(self) -> tuple[str, ...]:
        """The model's sources: those of the loaded model once loaded; before
        that, known for pretrained names (other models are loaded to read them)."""
        if self._model is not None:
            return tuple(self._model.sources)
        if not self._custom:
            return PRETRAINED[str(self.variant)]
        return tuple(self.model().sources)

    def status(self) -> Status:
        """Ready when every file of the model is present (folders listed, no
        load, no checksum)."""
        if importlib.util.find_spec("demucs") is None:
            return Status(False, "demucs not installed (pip install demucs==4.1.0)")
        if self.variant in _QUANTIZED and importlib.util.find_spec("diffq") is None:
            return Status(False, "needs diffq (pip install diffq)")
        try:
            plans = self.plans()
        except ProviderUnavailable as e:  # an unreadable bag yaml
            return Status(False, str(e))
        p = plans[0]
        if p.ready:
            return Status(True, f"{p.where}: {p.root}")
        if p.problem and not p.missing:
            return Status(False, p.problem)
        local = next((q for q in plans if q.where != "hf-cache"), p)
        want = ", ".join(local.expected[s] for s in local.missing or local.signatures)
        return Status(False, f"weights missing: {want} (in {local.root})",
                      help=_missing_message(self.id, str(self.variant), plans, self._repo_dir() is not None))

    def estimate_cost(self, track: Track | float) -> Cost:
        """Compute-seconds: the measured real-time factor of this instance
        once it has run, else a CPU/GPU guess × models in the bag × shifts."""
        seconds = float(track if isinstance(track, (int, float)) else track.seconds)
        if self._rtf is not None:
            return Cost(compute_seconds=self._rtf * seconds, estimated=True)
        n_models = max(1, len(self.plans()[0].signatures))
        dev = str(self.options.get("device", "auto"))
        gpu = dev.startswith("cuda") or (dev == "auto" and _cuda_available_cheap())
        rtf = (_RTF_GPU if gpu else _RTF_CPU) * n_models * max(1, self.config["shifts"])
        return Cost(compute_seconds=rtf * seconds, estimated=True)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        plan = self._plan or self.plans()[0]
        out.update({
            "demucs": _demucs_version(),
            "model": self.variant,
            "weights": plan.where,
            "weights_dir": str(plan.root),
            "signatures": list(plan.signatures),
            "checksums": plan.checksums(),
            "files": [plan.files[s].name for s in plan.signatures if s in plan.files],
            "bag": str(plan.bag) if plan.bag is not None else None,
        })
        try:
            import torch

            out["torch"] = torch.__version__
        except Exception:  # pragma: no cover
            pass
        out.update(self._provenance_extra)
        return out

    # -- model ----------------------------------------------------------------
    def model(self) -> Any:
        """The loaded model or bag (loaded once per instance)."""
        with self._load_lock:
            if self._model is not None:
                return self._model
            plans = self.plans()
            plan = plans[0]
            if not plan.ready:
                raise ProviderUnavailable(_missing_message(self.id, str(self.variant), plans,
                                                           self._repo_dir() is not None), provider=self.id)
            model = load_demucs_model(plan, self.id)
            sums = plan.checksums()
            for s, f in plan.files.items():  # the suffix is verified by LocalRepo; hash the rest
                if not sums.get(s):
                    sums[s] = _sha8(f)
            bag_models = list(getattr(model, "models", [model]))
            self._provenance_extra = {
                "checksums": sums,
                "classes": sorted({type(m).__name__ for m in bag_models}),
                "sources": list(model.sources),
                "model_samplerate": int(model.samplerate),
                "audio_channels": int(model.audio_channels),
                "bag_weights": [list(map(float, w)) for w in model.weights] if hasattr(model, "weights") else None,
            }
            self._plan = plan
            self._model = model
            return model

    def close(self) -> None:
        with self._load_lock:
            self._model = None

    # -- running ----------------------------------------------------------------
    def _check_segment(self, seg: float | None, model: Any) -> None:
        """Refuse a ``segment`` longer than the model's training length."""
        max_seg = _max_segment(model)
        if seg is not None and seg > max_seg:
            raise ConfigError(f"{self.id}: params.segment: at most {max_seg:.2f} s for this model "
                              f"(its training length), got {seg}", field="demucs.params.segment")

    def _place(self, model: Any, warnings: list[str]) -> str:
        """The device to run on (a fallback is warned about and added to ``warnings``), ``model`` moved there."""
        import torch

        device, warn = _resolve_device(str(self.options.get("device", "auto")))
        if warn:
            warnings.append(warn)
            log.warning("%s: %s", self.id, warn)
        have, want = next(model.parameters()).device, torch.device(device)
        if have.type != want.type or (want.index is not None and have.index != want.index):
            with self._load_lock:  # once: apply_model would move every model of a bag there and back per call
                model.to(device)
        return device

    def _apply(self, apply_model: Callable[..., Any], model: Any, wav: Any, device: str, seg: float | None,
               autocast: Any, track: str, seconds: float) -> tuple[Any, dict[str, Any]]:
        """``apply_model`` on ``wav`` under the run lock, scoped threads and seed: ``(output, memory stats)``;
        running out of memory is a ProviderRejected."""
        import torch

        c = self.config
        cuda = device.startswith("cuda")
        with _RUN_LOCK, _scoped_threads(self.options.get("threads")), _scoped_seed(c["seed"]), peak_rss() as mem:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            try:
                with torch.no_grad(), autocast:
                    out = apply_model(model, wav[None], shifts=c["shifts"], split=c["split"], overlap=c["overlap"],
                                      segment=seg, device=device, progress=False)
            except RuntimeError as e:
                if "out of memory" not in str(e).lower():
                    raise
                raise ProviderRejected(
                    f"{self.id}: out of memory on {device} for {seconds:.1f} s of audio; use split=true, a shorter "
                    f"segment, fewer shifts or device=cpu ({e})", provider=self.id, track=track) from None
            if cuda:
                mem["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        return out, mem

    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        import torch
        from demucs.apply import apply_model

        t0 = time.perf_counter()
        t = as_track(track, sample_rate)
        mix = check_mixture(t, self.id)
        if mix.shape[0] > 2:
            raise InputError(f"{self.id}: track {t.name!r} has {mix.shape[0]} channels; demucs separates mono or "
                             "stereo (mix it down first)", field="channels")
        c = self.config
        warnings: list[str] = []
        t_load = time.perf_counter()
        loaded = self._model is not None
        model = self.model()
        t_load = time.perf_counter() - t_load if not loaded else 0.0
        seg = c["segment"]
        self._check_segment(seg, model)
        device = self._place(model, warnings)
        sr, n, ch = t.sample_rate, mix.shape[1], mix.shape[0]
        msr, mch = int(model.samplerate), int(model.audio_channels)

        t1 = time.perf_counter()
        x, mean, std = _model_input(mix, sr, msr, mch, bool(c["normalize"]), f"track {t.name!r}", warnings)
        wav = torch.from_numpy(np.ascontiguousarray(x))
        autocast = _autocast(torch, c["precision"], device)
        t2 = time.perf_counter()
        out, mem = self._apply(apply_model, model, wav, device, seg, autocast, t.name, n / sr)
        t3 = time.perf_counter()
        y = out[0].float()
        if c["normalize"]:
            y.mul_(std).add_(mean)  # in place: no second copy of the stems
        est = y.cpu().numpy()
        del out, y
        stems = _from_model(est, model.sources, ch, mch, sr, msr, n)
        t4 = time.perf_counter()
        seconds = n / sr
        self._rtf = (t3 - t2) / seconds if seconds > 0 else None
        prov = self.provenance()
        prov["run"] = {
            "device": device,
            "threads": self.options.get("threads") or torch.get_num_threads(),
            "real_time_factor": self._rtf,
            "audio_seconds": seconds,
            **mem,
        }
        return Separation(
            Stems(stems, sr),
            self.id,
            params={k: v for k, v in c.items()} | {"segment_used": seg if seg is not None else _model_segment(model)},
            timings={"load": t_load, "prepare": t2 - t1, "separate": t3 - t2, "post": t4 - t3,
                     "total": time.perf_counter() - t0},
            device=device,
            warnings=tuple(warnings),
            cost=Cost(compute_seconds=t4 - t0, estimated=False),
            provenance=prov,
        )


def _model_input(mix: np.ndarray, sr: int, msr: int, mch: int, normalize: bool, name: str,
                 warnings: list[str]) -> tuple[np.ndarray, float, float]:
    """``(x, mean, std)``: the mixture at the model's rate and channel count, at least ``_MIN_SAMPLES``
    long, normalised as ``demucs.api`` does when ``normalize`` (else mean 0, std 1)."""
    from ...audio import resample, to_channels

    x = mix
    if sr != msr:
        x = resample(x, sr, msr)
        warnings.append(f"resampled {sr} Hz → {msr} Hz for the model and back")
    if mix.shape[0] != mch:
        x = to_channels(x, mch, name=name)
    if x.shape[1] < _MIN_SAMPLES:  # demucs' chunking asserts on a single sample; pad, cut after
        x = np.pad(x, ((0, 0), (0, _MIN_SAMPLES - x.shape[1])))
    mean, std = 0.0, 1.0
    if normalize:  # as demucs.api: stats of the mono mix, unbiased std + 1e-8
        ref = x.mean(axis=0, dtype=np.float64)
        mean, std = float(ref.mean()), float(ref.std(ddof=1)) + 1e-8
        x = np.subtract(x, np.float32(mean), dtype=np.float32)  # a new array: the track's is never modified
        x /= np.float32(std)
    return x, mean, std


def _autocast(torch: Any, precision: str, device: str) -> Any:
    """The autocast context for ``precision`` on ``device`` (none for float32)."""
    if precision == "float32":
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, precision))


def _from_model(est: np.ndarray, sources: Sequence[str], ch: int, mch: int, sr: int, msr: int,
                n: int) -> dict[str, np.ndarray]:
    """The model's ``(sources, mch, samples)`` output as stems of the track: its channels, rate and length."""
    from ._common import to_track_stems

    return to_track_stems({name: est[i] for i, name in enumerate(sources)}, ch, mch, sr, msr, n)


def _model_segment(model: Any) -> float | None:
    segs = [float(m.segment) for m in getattr(model, "models", [model]) if getattr(m, "segment", None) is not None]
    return min(segs) if segs else None


@functools.cache
def _demucs_version() -> str:
    try:
        from importlib.metadata import version

        return version("demucs")
    except Exception:  # pragma: no cover - not installed
        return "missing"


def _cuda_available_cheap() -> bool:
    """Whether CUDA is usable, without importing torch just to ask."""
    torch = sys.modules.get("torch")
    if torch is None:
        return Path("/dev/nvidia0").exists()
    return bool(torch.cuda.is_available())
