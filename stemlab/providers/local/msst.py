"""MSST checkpoints (``msst:<model_type>?config=…&ckpt=…``): models trained
with ZFTurbo's Music-Source-Separation-Training, loaded from the files the
community shares — a YAML config and a ``.ckpt``/``.th`` state dict — and
run through the shared engine with the config's own chunking.

Model types: ``bs_roformer``, ``mel_band_roformer``, ``mdx23c``, ``scnet``,
``htdemucs``. ``model=NAME`` takes the config and weights of a catalog entry
instead (``stemlab models list``; downloaded on first use, see
:mod:`~stemlab.providers.local.weights`).

**Which code builds the networks, and why.** The ``msst`` package (MSST's
own code, MIT) declares ``torch<2.12`` and cannot be installed beside
stemlab's ``torch==2.13.0``; it also imports librosa, matplotlib, omegaconf
and its training stack at package import. So:

* ``bs_roformer``, ``mel_band_roformer`` — MSST's own classes, vendored
  unchanged in :mod:`stemlab.providers.local._vendor.msst_roformer` and built
  as MSST builds them, ``Class(**config["model"])`` (unknown keys are refused,
  naming them). audio-separator ships copies with the same state-dict keys,
  but their forward skips MSST's ``zero_dc`` and the ``istft`` length, so
  their outputs differ from MSST's (3–7 % of peak on a random model); the
  reasons are in that package's docstring.
* ``mdx23c`` — audio-separator's ``TFC_TDF_net`` (``uvr_lib_v5/tfc_tdf_v3.py``),
  the same module tree as MSST's ``mdx23c_tfc_tdf_v3.TFC_TDF_net`` (identical
  state-dict keys); built from the whole config as in MSST.
* ``scnet`` — MSST's own ``scnet.py``/``separation.py``, vendored unchanged
  in :mod:`stemlab.providers.local._vendor.msst_scnet` (no installable
  package ships SCNet).
* ``htdemucs`` — demucs' ``HTDemucs`` (demucs 4.1 is a stemlab dependency).
  MSST's ``demucs4ht.HTDemucs`` is that class plus ``num_subbands`` (only 1
  is supported here) and ``use_train_segment`` defaulting to False (passed
  as MSST does); sources, channels, rate and segment come from ``training:``
  and the architecture from the ``htdemucs:`` section. Checkpoints: MSST's
  state dicts (``{"state": …}`` unwrapped) and demucs' own ``.th`` packages
  (their ``state``; read with ``weights_only=True`` allowing only demucs'
  model classes and ``Fraction``).

audio-separator's modules (MDX23C; the UVR family's VR and MDX-Net code)
are imported without running ``audio_separator/separator/__init__.py`` (which imports its file-based
``Separator``, onnx and the rest, ~4 s). Checkpoints are read with
``torch.load(weights_only=True)`` (no pickle code), unwrapped from
``{"state_dict": …}``, ``{"state": …}`` or ``{"model": …}`` and from
DataParallel's ``module.`` prefix, and loaded strictly.

**Config** (MSST's YAML schema, ``!!python/tuple`` and ``1e-3`` floats
read as MSST reads them): ``audio:`` ``chunk_size``, ``sample_rate``,
``num_channels`` (``n_fft``/``hop_length``/``dim_f`` for MDX23C);
``model:`` the architecture; ``training:`` ``instruments`` and
``target_instrument`` (the model returns only the target then);
``inference:`` ``batch_size``, ``num_overlap``, optional ``chunk_size`` and
``normalize``.

**Chunking** as MSST's ``demix``: segments of ``chunk_size`` samples (for
htdemucs ``training.samplerate × training.segment``), step ``chunk_size //
num_overlap``; *generic* models get linear fades of ``chunk_size // 10``
samples, the track reflect-padded by ``chunk_size − step`` at both ends when
longer than twice that, and a short last segment reflect-padded when more
than half of it is real; htdemucs gets equal weights and zero padding.
Differences from MSST: segments stop at the first one reaching the end (MSST
runs a few more past it), the first/last segment does not fade at the track's
edges per segment (MSST applies that per batch), and ``flip``+``polarity``
run all four combinations (MSST's ``--use_tta`` averages three passes).
``inference.normalize`` (mono-mix mean/std, as MSST) is honoured.
With a ``target_instrument``, ``residual=true`` adds mixture − target
(``accompaniment`` for a vocals target, else ``no_<target>``); a
vocals/other (or vocals/instrumental) pair names the other ``accompaniment``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import types
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import ConfigError, ProviderUnavailable
from ..base import Param, Status
from ._neural import NeuralProvider, complement_name, engine_params, stem_name
from .engine import Engine

__all__ = ["MsstProvider", "MODEL_TYPES", "load_msst_config", "build_model", "load_state_dict", "MsstConfig",
           "import_audio_separator", "msst_chunking", "output_stems", "detect_model_type", "load_weights"]

MODEL_TYPES = ("bs_roformer", "mel_band_roformer", "mdx23c", "scnet", "htdemucs")


# ----------------------------------------------------------------- config

class MsstConfig(dict):
    """A YAML mapping with attribute access (``cfg.audio.chunk_size``), as
    MSST's ``ConfigDict``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def wrap(cls, obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return cls({k: cls.wrap(v) for k, v in obj.items()})
        if isinstance(obj, list):
            return [cls.wrap(v) for v in obj]
        return obj


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tuple_(loader: Any, node: Any) -> tuple:
        return tuple(loader.construct_sequence(node, deep=True))

    Loader.add_constructor("tag:yaml.org,2002:python/tuple", tuple_)
    # YAML 1.2 floats without a dot (``1e-3``), as OmegaConf/MSST read them
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_msst_config(path: str | Path) -> MsstConfig:
    """Read an MSST YAML config (safe loader plus ``!!python/tuple``)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_yaml_loader())  # noqa: S506 - SafeLoader subclass
    except OSError as e:
        raise ProviderUnavailable(f"MSST config {p}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"MSST config {p}: not valid YAML ({e})", field="config") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"MSST config {p}: expected a mapping, got {type(data).__name__}", field="config")
    for section in ("audio", "training"):
        if not isinstance(data.get(section), Mapping):
            raise ConfigError(f"MSST config {p}: missing the '{section}:' section", field="config")
    if not data["training"].get("instruments"):
        raise ConfigError(f"MSST config {p}: training.instruments is empty", field="config")
    return MsstConfig.wrap(data)


def output_stems(cfg: Mapping[str, Any]) -> list[str]:
    """The stems the network returns: ``[target_instrument]`` or ``instruments`` (MSST's prefer_target_instrument)."""
    t = cfg["training"].get("target_instrument")
    return [str(t)] if t else [str(i) for i in cfg["training"]["instruments"]]


def msst_chunking(model_type: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """MSST's demix settings: chunk, step, fade and padding (engine keywords)."""
    inf = cfg.get("inference") or {}
    num_overlap = int(inf.get("num_overlap", 4) or 4)
    if model_type == "htdemucs":
        tr = cfg["training"]
        chunk = int(round(float(tr["samplerate"]) * float(tr["segment"])))
        return {"segment": chunk, "num_overlap": num_overlap, "fade": "constant", "fade_length": None,
                "pad_ends": "none", "edge": "zeros"}
    chunk = int(inf.get("chunk_size") or cfg["audio"]["chunk_size"])
    return {"segment": chunk, "num_overlap": num_overlap, "fade": "linear", "fade_length": chunk // 10,
            "pad_ends": "reflect", "edge": "reflect"}


def detect_model_type(cfg: Mapping[str, Any]) -> str:
    """The MSST model type a config describes (for UVR's MDXC entries, which
    do not name it): ``htdemucs`` (``model: htdemucs``), ``mel_band_roformer``
    (``num_bands``), ``bs_roformer`` (``freqs_per_bands``), ``scnet``
    (``band_SR``), ``mdx23c`` (``num_scales``)."""
    m = cfg.get("model")
    if m == "htdemucs" or (not isinstance(m, Mapping) and "htdemucs" in cfg):
        return "htdemucs"
    if isinstance(m, Mapping):
        if "num_bands" in m:
            return "mel_band_roformer"
        if "freqs_per_bands" in m:
            return "bs_roformer"
        if "band_SR" in m:
            return "scnet"
        if "num_scales" in m:
            return "mdx23c"
    raise ConfigError(f"cannot tell the model type of this config (model keys: {sorted(m) if isinstance(m, Mapping) else m})",
                      field="config")


def model_rate(model_type: str, cfg: Mapping[str, Any]) -> int:
    if model_type == "htdemucs":
        return int(cfg["training"].get("samplerate", 44100))
    return int(cfg["audio"].get("sample_rate", 44100))


# ----------------------------------------------------------------- architectures

def import_audio_separator(sub: str) -> types.ModuleType:
    """``audio_separator.separator.<sub>`` without running
    ``audio_separator/separator/__init__.py`` (it imports the file-based
    Separator: onnx, librosa, pydub …). The package is stood in for by a
    bare module only while the submodule imports."""
    full = f"audio_separator.separator.{sub}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec("audio_separator")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable("audio-separator is not installed (pip install 'stemlab[zoo]' — "
                                  "audio-separator==0.47.1 provides the Roformer, MDX23C and VR networks)")
    pkg = "audio_separator.separator"
    stub = None
    if pkg not in sys.modules:
        import audio_separator  # a namespace package: no code runs

        stub = types.ModuleType(pkg)
        stub.__path__ = [str(Path(p) / "separator") for p in spec.submodule_search_locations]  # type: ignore[attr-defined]
        stub.__package__ = pkg
        sys.modules[pkg] = stub
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # rotary_embedding_torch's torch.cuda.amp decorators
            return importlib.import_module(full)
    finally:
        if stub is not None and sys.modules.get(pkg) is stub:
            del sys.modules[pkg]
            parent = sys.modules.get("audio_separator")
            if parent is not None and getattr(parent, "separator", None) is stub:
                delattr(parent, "separator")


def _kwargs_for(cls: type, section: Mapping[str, Any], what: str, drop_false: tuple[str, ...] = ()) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    unknown = []
    for k, v in section.items():
        if k in params or accepts_any:
            out[k] = v
        elif k in drop_false and not v:
            continue
        else:
            unknown.append(k)
    if unknown:
        raise ConfigError(f"{what}: config keys {sorted(unknown)} are not parameters of {cls.__module__}."
                          f"{cls.__name__} (valid: {sorted(k for k in params if k != 'self')})", field="config")
    return out


def build_model(model_type: str, cfg: MsstConfig) -> Any:
    """The untrained network for ``model_type`` built from ``cfg`` (eval mode)."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"msst: unknown model type {model_type!r}; valid: {list(MODEL_TYPES)}", field="msst.variant")
    if model_type in ("bs_roformer", "mel_band_roformer"):
        section = dict(cfg.get("model") or {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # rotary_embedding_torch's torch.cuda.amp decorators
            from ._vendor import msst_roformer
        cls = msst_roformer.BSRoformer if model_type == "bs_roformer" else msst_roformer.MelBandRoformer
        kw = _kwargs_for(cls, section, f"msst:{model_type}")
        try:
            model = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()})
        except AssertionError as e:
            raise ConfigError(f"msst:{model_type}: the config does not describe a valid network: {e}",
                              field="config") from None
    elif model_type == "mdx23c":
        mod = import_audio_separator("uvr_lib_v5.tfc_tdf_v3")
        model = mod.TFC_TDF_net(cfg, device="cpu")
    elif model_type == "scnet":
        from ._vendor.msst_scnet import SCNet

        section = dict(cfg.get("model") or {})
        model = SCNet(**_kwargs_for(SCNet, section, "msst:scnet"))
    else:  # htdemucs
        from demucs.htdemucs import HTDemucs

        if cfg.get("model", "htdemucs") != "htdemucs":
            raise ConfigError(f"msst:htdemucs: config says model: {cfg.get('model')!r}; only htdemucs is supported "
                              "(use the demucs family for demucs/hdemucs packages)", field="config")
        section = dict(cfg.get("htdemucs") or {})
        nsub = section.pop("num_subbands", 1)
        if nsub not in (None, 1):
            raise ConfigError(f"msst:htdemucs: num_subbands={nsub} needs MSST's HTDemucs fork (only 1 is supported)",
                              field="config")
        section.setdefault("use_train_segment", False)  # MSST's demucs4ht default
        tr = cfg["training"]
        extra = {"sources": [str(s) for s in tr["instruments"]], "audio_channels": int(tr.get("channels", 2)),
                 "samplerate": int(tr.get("samplerate", 44100)), "segment": tr.get("segment", 11)}
        kw = _kwargs_for(HTDemucs, section, "msst:htdemucs")
        model = HTDemucs(**extra, **kw)
    model.eval()
    return model


def _demucs_safe_globals() -> list[Any]:
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return [HTDemucs, HDemucs, Demucs, Fraction]


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """The state dict of an MSST checkpoint, read without pickle code
    (``weights_only=True``), unwrapped (``state_dict``/``state``/``model``
    keys, ``module.`` prefixes)."""
    import torch

    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as first:  # a demucs package names its model class: allow exactly those
        try:
            with torch.serialization.safe_globals(_demucs_safe_globals()):
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            raise ProviderUnavailable(f"cannot read checkpoint {p} safely (torch.load weights_only=True): "
                                      f"{type(first).__name__}: {str(first).splitlines()[0][:300]}") from None
    for key in ("state_dict", "state", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
        raise ProviderUnavailable(f"checkpoint {p}: expected a state dict (name → tensor), got {type(obj).__name__}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_weights(model: Any, state: Mapping[str, Any], what: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ProviderUnavailable(
            f"{what}: checkpoint does not fit the network built from the config — missing {len(missing)} "
            f"{missing[:4]}, unexpected {len(unexpected)} {unexpected[:4]}, shape mismatches {shapes[:3]}. "
            "Is it the config that goes with this checkpoint?")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)


# ----------------------------------------------------------------- provider

def _sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class MsstProvider(NeuralProvider):
    """MSST checkpoints (YAML config + state dict): BS/Mel-Band Roformer,
    MDX23C, SCNet, HTDemucs; stems from the config (``training.instruments``
    or its ``target_instrument`` plus the residual)."""

    family = "msst"
    description = "Music-Source-Separation-Training checkpoints (bs/mel-band roformer, mdx23c, scnet, htdemucs)"
    variants = MODEL_TYPES
    default_variant = "bs_roformer"
    rtf_guess = 2.0
    params_schema = tuple(p for p in engine_params("segment length (none = the config's chunk_size)")
                          if p.name not in ("overlap", "fade")) + (
        Param("num_overlap", int, None, "segments overlapping each sample (none = the config's inference.num_overlap)",
              unit="count", min=1, max=64, nullable=True),
        Param("fade", str, None, "cross-fade shape (none = MSST's: linear chunk/10, htdemucs equal weights)",
              choices=("linear", "hann", "triangle", "constant"), nullable=True),
        Param("normalize", bool, None, "normalise by the mono mix mean/std (none = the config's inference.normalize)",
              nullable=True),
        Param("residual", bool, True, "with a target_instrument, also return mixture − target"),
        Param("config", str, "", "MSST YAML config", unit="path"),
        Param("ckpt", str, "", "checkpoint (.ckpt/.th/.pth state dict)", unit="path"),
        Param("model", str, "", "a catalog model instead of config/ckpt (stemlab models list; downloaded on first use)"),
    )

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        p = dict(params or {})
        name = p.get("model")
        if variant is None and name:
            from .zoo import get_entry

            variant = get_entry(str(name), family="msst").arch
        super().__init__(variant, p, **options)
        self._cfg: MsstConfig | None = None
        self._net: Any = None
        self._paths: tuple[Path, Path] | None = None

    def validate(self) -> None:
        super().validate()
        c = self.config
        if c["model"] and (c["config"] or c["ckpt"]):
            raise ConfigError("provider msst: give model=NAME or config=…&ckpt=…, not both", field="msst.params.model")
        if c["model"]:
            from .zoo import get_entry

            e = get_entry(c["model"], family="msst")
            if e.arch != self.variant:
                raise ConfigError(f"provider msst: model {c['model']!r} is a {e.arch}, not {self.variant} "
                                  f"(use msst:{e.arch}?model={c['model']})", field="msst.variant")
        elif bool(c["config"]) != bool(c["ckpt"]):
            raise ConfigError("provider msst: config and ckpt go together (config=FILE.yaml&ckpt=FILE.ckpt)",
                              field="msst.params.config")

    # -- files --------------------------------------------------------------------------
    def _entry(self) -> Any:
        from .zoo import get_entry

        return get_entry(self.config["model"], family="msst") if self.config["model"] else None

    def paths(self) -> tuple[Path, Path] | None:
        """(config, checkpoint) where they are (or would be) on disk; None without any."""
        c = self.config
        if c["config"]:
            return Path(c["config"]).expanduser(), Path(c["ckpt"]).expanduser()
        e = self._entry()
        if e is None:
            return None
        return e.config_path(), e.files[-1].find() or e.files[-1].target()

    def _ensure_files(self) -> tuple[Path, Path]:
        e = self._entry()
        if e is not None:
            from .weights import ensure

            ensure([f for f in e.files], what=self.id, offline=self.offline(),
                   progress=bool(self.options.get("progress", True)), pull=e.name)
        p = self.paths()
        if p is None:
            raise ProviderUnavailable(f"{self.id}: no model given: pass config=FILE.yaml&ckpt=FILE.ckpt or "
                                      "model=NAME (stemlab models list --family msst)", provider=self.id)
        for f in p:
            if not f.is_file():
                raise ProviderUnavailable(f"{self.id}: {f} not found", provider=self.id)
        return p

    def cfg(self) -> MsstConfig:
        if self._cfg is None:
            p = self.paths()
            if p is None:
                raise ProviderUnavailable(f"{self.id}: no config given (config=FILE.yaml&ckpt=FILE.ckpt or model=NAME)",
                                          provider=self.id)
            if not p[0].is_file():
                e = self._entry()
                if e is not None:
                    self._ensure_files()
                else:
                    raise ProviderUnavailable(f"{self.id}: config {p[0]} not found", provider=self.id)
            self._cfg = load_msst_config(p[0])
            self.model_rate = model_rate(str(self.variant), self._cfg)
        return self._cfg

    # -- capabilities ---------------------------------------------------------------------
    @property
    def stems(self) -> tuple[str, ...]:
        return tuple(self._stem_names()[1])

    def _stem_names(self) -> tuple[list[str], list[str]]:
        """(network outputs as named in the config, stems returned)."""
        cfg = self.cfg()
        outs = output_stems(cfg)
        names = complement_name(outs) if len(outs) == 2 else [stem_name(o) for o in outs]
        returned = list(names)
        if cfg["training"].get("target_instrument") and self.config["residual"]:
            t = stem_name(outs[0])
            returned.append("accompaniment" if t == "vocals" else f"no_{t}")
        return names, returned

    def status(self) -> Status:
        c = self.config
        if self.variant in ("bs_roformer", "mel_band_roformer", "mdx23c") and importlib.util.find_spec(
                "audio_separator") is None:
            return Status(False, "needs audio-separator (pip install 'stemlab[zoo]')")
        p = self.paths()
        if p is None:
            return Status(False, "no model given (config=…&ckpt=… or model=NAME; see stemlab models list)")
        missing = [str(f) for f in p if not f.is_file()]
        if missing:
            how = (f"downloads on first use, or: stemlab models pull {c['model']}" if c["model"] else "not found")
            return Status(False, f"weights missing: {', '.join(missing)} ({how})")
        return Status(True, f"{p[0].name} + {p[1].name}")

    def identity_version(self) -> str:
        from .weights import file_digest

        p = self.paths()
        if p is None or not all(f.is_file() for f in p):
            return f"msst|{self.variant}|missing"
        return f"msst|{self.variant}|cfg={_sha16(p[0])}|ckpt={file_digest(p[1])[:16]}"

    def default_segment(self) -> float | None:
        cfg = self.cfg()
        return msst_chunking(str(self.variant), cfg)["segment"] / model_rate(str(self.variant), cfg)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        p = self.paths()
        out.update({"model_type": self.variant, "config": str(p[0]) if p else None,
                    "checkpoint": str(p[1]) if p else None, "catalog": self.config["model"] or None})
        return out

    # -- model ----------------------------------------------------------------------------
    def _load(self) -> None:
        from .weights import file_digest

        cfg_path, ckpt_path = self._ensure_files()
        self._cfg = None
        cfg = self.cfg()
        net = build_model(str(self.variant), cfg)
        load_weights(net, load_state_dict(ckpt_path), f"{self.id} ({ckpt_path.name})")
        self._net = net
        self._paths = (cfg_path, ckpt_path)
        self._model_info = {"config_sha256": hashlib.sha256(cfg_path.read_bytes()).hexdigest(),
                            "checkpoint_sha256": file_digest(ckpt_path),
                            "network": f"{type(net).__module__}.{type(net).__name__}",
                            "parameters": int(sum(t.numel() for t in net.parameters())),
                            "instruments": list(cfg["training"]["instruments"]),
                            "target_instrument": cfg["training"].get("target_instrument")}

    def _drop(self) -> None:
        self._net = None

    def engine_config(self, *, segment_samples: int | None, device: str, **fixed: Any) -> Any:
        cfg = self.cfg()
        ch = msst_chunking(str(self.variant), cfg)
        seg = segment_samples or ch["segment"]
        num_overlap = self.config["num_overlap"] or ch["num_overlap"]
        step = max(1, seg // int(num_overlap))
        fade = self.config["fade"] or ch["fade"]
        fade_len = seg // 10 if (fade == "linear" and ch["fade"] == "linear") else None
        if not self.options.get("batch_size"):
            fixed.setdefault("batch_size", int((cfg.get("inference") or {}).get("batch_size", 1) or 1))
        return super().engine_config(segment_samples=seg, device=device, step=step, fade=fade, fade_length=fade_len,
                                     pad_ends=ch["pad_ends"], edge=ch["edge"], **fixed)

    def _model_fn(self, n_out: int) -> Any:
        net = self._net

        def run(x: Any) -> Any:
            if next(net.parameters()).device != x.device:
                net.to(x.device)
            y = net(x)
            if y.dim() == 3:  # one stem without a stem axis (roformer num_stems=1, MDX23C one target)
                y = y[:, None]
            if y.shape[-1] < x.shape[-1]:  # iSTFT of a chunk that is not a multiple of the hop: MSST pads too
                import torch.nn.functional as F

                y = F.pad(y, (0, x.shape[-1] - y.shape[-1]))
            if y.shape[1] != n_out:
                raise ProviderUnavailable(f"{self.id}: the network returned {y.shape[1]} stems, the config names "
                                          f"{n_out}", provider=self.id)
            return y

        return run

    def _separate_model_rate(self, x: np.ndarray, engine: Engine, desc: str) -> dict[str, np.ndarray]:
        cfg = self.cfg()
        names, returned = self._stem_names()
        normalize = self.config["normalize"]
        if normalize is None:
            normalize = bool((cfg.get("inference") or {}).get("normalize", False))
        mean, std = 0.0, 1.0
        xin = x
        if normalize:  # MSST's normalize_audio: mono mix statistics
            mono = x.mean(axis=0)
            mean, std = float(mono.mean()), float(mono.std())
            if not np.isfinite(std) or std <= np.finfo(np.float32).eps:
                std = 1.0
            xin = ((x - mean) / std).astype(np.float32)
        y = engine.run(self._model_fn(len(names)), xin, progress=True if desc else None, desc=desc or None)
        if normalize:
            y = y * np.float32(std) + np.float32(mean)
        out = {n: y[i] for i, n in enumerate(names)}
        if len(returned) > len(names):
            out[returned[-1]] = (x - y[0]).astype(np.float32)
        return out

    @property
    def model_channels(self) -> int:
        return int(self.cfg()["audio"].get("num_channels", 2)) if self.variant != "htdemucs" else int(
            self.cfg()["training"].get("channels", 2))
