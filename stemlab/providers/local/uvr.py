"""UVR models (``uvr:<model file name>``): the Ultimate Vocal Remover
registry as audio-separator serves it — MDX-Net (``.onnx``), VR
(``.pth``) and MDXC (``.ckpt`` + YAML: MDX23C and BS/Mel-Band Roformer).

**Files and parameters.** Names are those of UVR's ``download_checks.json``
and audio-separator's ``models.json`` (``stemlab models list --family uvr``),
or any model file placed in audio-separator's model folder
(``$AUDIO_SEPARATOR_MODEL_DIR``, default ``/tmp/audio-separator-models``, or
``model_dir=``). Missing files download on first use into that folder (see
:mod:`~stemlab.providers.local.weights`). An MDX-Net or VR file's parameters
are found as UVR and audio-separator find them: by the md5 of the file's last
10,240,000 bytes, looked up in ``mdx_model_data.json`` /
``vr_model_data.json`` in the model folder (what audio-separator downloads),
then audio-separator's packaged ``model-data.json``, then stemlab's snapshot
of UVR's tables (``data/uvr_registry.json``). An MDXC checkpoint's YAML comes
from the registry entry (shipped in ``data/uvr_mdxc_configs/`` or
downloaded) or from the same hash table's ``config_yaml``.

**What runs, and which package serves it.** ``audio-separator`` (MIT)
installs beside ``torch==2.13.0`` but its ``Separator`` reads and writes
files through pydub and refuses to start without an ``ffmpeg`` binary; stemlab
decodes audio itself and hands arrays to the models, so only audio-separator's
architecture code and helpers are used (imported without its package
``__init__``, see :func:`stemlab.providers.local.msst.import_audio_separator`):

* **MDX-Net** — ``onnxruntime`` runs the ``.onnx`` graph; the spectrogram
  front/back end is audio-separator's ``uvr_lib_v5.stft.STFT`` (``n_fft`` =
  ``mdx_n_fft_scale_set``, hop 1024, ``dim_f`` bins, complex as 4 channels;
  the first 3 bins zeroed as UVR does). Segments are ``hop × (dim_t − 1)``
  samples (the graph's fixed ``dim_t`` frames), the track padded with
  ``n_fft // 2`` zeros at both ends, a Hann window over each segment and a
  25 % overlap (audio-separator's defaults). The model's ``primary_stem`` is
  its output; the other stem is ``mixture − primary × compensate``.
  ``polarity=true`` is audio-separator's ``enable_denoise`` (the model run on
  the negated spectrum too, averaged).
* **VR** — audio-separator's networks (``vr_network.nets`` ``CascadedASPPNet``
  chosen by file size as audio-separator does; ``nets_new.CascadedNet`` for
  v5.1 models, with ``nout``/``nout_lstm`` from the model data) and its
  ``spec_utils`` for the multi-band spectrogram (band parameters from the
  model data's ``vr_model_param`` JSON shipped with audio-separator), mask
  aggressiveness (``aggression``, default 5), optional artefact
  post-processing; primary = mask × mixture, secondary = (1 − mask) ×
  mixture. VR normalises by the whole track's peak magnitude, so the engine
  runs it on the whole track by default (``segment=`` cuts it).
* **MDXC** — the same code as the ``msst`` family (MSST's YAML schema and
  chunking; Roformers and MDX23C from audio-separator's classes).

Stem names are audio-separator's lower-cased (``Vocals``/``Instrumental``,
``No Drums`` …), with the instrumental of a vocals model named
``accompaniment`` (musdb's name, which the scorer compares it with).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, ProviderUnavailable
from ..base import Param, Status
from ._neural import NeuralProvider, complement_name, engine_params
from .engine import Engine
from .msst import import_audio_separator

__all__ = ["UvrProvider", "uvr_hash", "model_data_for", "detect_arch", "MDX_HOP"]

MDX_HOP = 1024  # audio-separator's hop_length default for MDX-Net
_HASH_BYTES = 10000 * 1024
VR_ARCH_SIZES = (31191, 33966, 56817, 123821, 123812, 129605, 218409, 537238, 537227)


def uvr_hash(path: str | Path) -> str:
    """md5 of the file's last 10,240,000 bytes (all of it when smaller), as
    UVR and audio-separator's ``get_model_hash``."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        if size >= _HASH_BYTES:
            f.seek(size - _HASH_BYTES)
        return hashlib.md5(f.read()).hexdigest()


def _json_file(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@lru_cache(maxsize=1)
def _shipped_tables() -> tuple[dict[str, Any], dict[str, Any]]:
    reg = json.loads((Path(__file__).with_name("data") / "uvr_registry.json").read_text())
    return reg["mdx_model_data"], reg["vr_model_data"]


def model_data_for(model_hash: str, model_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """``(where, params)`` for a UVR hash: the model folder's tables, then
    audio-separator's ``model-data.json``, then stemlab's snapshot."""
    sources: list[tuple[str, dict[str, Any]]] = []
    for name in ("mdx_model_data.json", "vr_model_data.json"):
        sources.append((str(model_dir / name), _json_file(model_dir / name)))
    spec = importlib.util.find_spec("audio_separator")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            pkg = _json_file(Path(loc) / "model-data.json")
            for key in ("mdx_model_data", "vr_model_data"):
                sources.append((f"audio-separator model-data.json ({key})", pkg.get(key, {})))
    mdx, vr = _shipped_tables()
    sources += [("stemlab uvr_registry.json (mdx)", mdx), ("stemlab uvr_registry.json (vr)", vr)]
    for where, table in sources:
        if model_hash in table and isinstance(table[model_hash], dict):
            return where, dict(table[model_hash])
    return None


def detect_arch(filename: str, data: Mapping[str, Any] | None) -> str:
    """``mdx`` (ONNX), ``vr`` (``vr_model_param``) or ``mdxc`` (a YAML config)."""
    if filename.lower().endswith(".onnx"):
        return "mdx"
    if data and "vr_model_param" in data:
        return "vr"
    if data and "config_yaml" in data:
        return "mdxc"
    if filename.lower().endswith(".pth"):
        return "vr"
    return "mdxc"


#: audio-separator's CommonSeparator.STEM_PAIR_MAPPER / NO_STEM / NON_ACCOM_STEMS (class constants of a
#: module that imports pydub and the file-writing stack at import, so they are restated here)
STEM_PAIR_MAPPER = {"Vocals": "Instrumental", "Instrumental": "Vocals", "lead_only": "backing_only",
                    "backing_only": "lead_only", "Primary Stem": "Secondary Stem"}
NO_STEM = "No "
NON_ACCOM_STEMS = ("Vocals", "Other", "Bass", "Drums", "Guitar", "Piano", "Synthesizer", "Strings", "Woodwinds",
                   "Brass", "Wind Inst")


def _secondary(primary: str) -> str:
    """audio-separator's CommonSeparator.secondary_stem."""
    primary = primary or NO_STEM
    if primary in STEM_PAIR_MAPPER:
        return STEM_PAIR_MAPPER[primary]
    return primary.replace(NO_STEM, "") if NO_STEM in primary else f"{NO_STEM}{primary}"



def num_overlap_for(overlap: float) -> int:
    """MSST's ``num_overlap`` (step = segment / num_overlap, so the overlap
    is 1 − 1/num_overlap) giving at least ``overlap`` (a fraction in [0, 1)):
    0 → 1, 0.25 → 2, 0.5 → 2, 0.6 → 3, 0.75 → 4."""
    return max(1, math.ceil(1.0 / max(1e-6, 1.0 - overlap) - 1e-9))

class UvrProvider(NeuralProvider):
    """UVR / audio-separator models by file name: MDX-Net (onnxruntime), VR
    and MDXC (MDX23C, Roformers); two stems — the model's primary stem and
    its complement."""

    family = "uvr"
    description = "UVR models (audio-separator's registry): MDX-Net ONNX, VR .pth, MDXC/Roformer .ckpt+yaml"
    variants = ()
    default_variant = None
    rtf_guess = 1.5
    params_schema = engine_params("segment length (none = the model's: MDX-Net hop×(dim_t−1), VR whole track, "
                                  "MDXC the config's chunk_size)") + (
        Param("aggression", int, 5, "VR: mask aggressiveness (audio-separator's vr_aggression)", min=-100, max=100),
        Param("window_size", int, 512, "VR: spectrogram frames per network call", choices=(320, 512, 1024)),
        Param("post_process", bool, False, "VR: remove mask artefacts below post_process_threshold"),
        Param("post_process_threshold", float, 0.2, "VR: artefact threshold", min=0.1, max=0.3),
        Param("model_dir", str, "", "folder holding the model file ('' = audio-separator's model folder)",
              unit="path"),
    )

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(None, params, **options)
        self.variant = variant
        self._arch: str | None = None
        self._data: dict[str, Any] | None = None
        self._data_from = ""
        self._net: Any = None
        self._session: Any = None
        self._mdxc: Any = None
        self._vr: dict[str, Any] = {}
        self._names: tuple[str, str] | None = None

    def validate(self) -> None:
        super().validate()
        d = self.config["model_dir"]
        if d and not Path(d).expanduser().is_dir():
            raise ConfigError(f"provider uvr: params.model_dir: {d!r} is not a directory", field="uvr.params.model_dir")

    # -- files ------------------------------------------------------------------------
    def model_dir(self) -> Path:
        from .weights import audio_separator_dir

        d = self.config["model_dir"]
        return Path(d).expanduser() if d else audio_separator_dir()

    def _entry(self) -> Any:
        from .zoo import catalog

        e = catalog().get(str(self.variant)) if self.variant else None
        return e if e is not None and e.family == "uvr" else None

    def model_path(self) -> Path | None:
        if not self.variant:
            return None
        local = self.model_dir() / str(self.variant)
        if local.is_file() or self.config["model_dir"]:
            return local
        e = self._entry()
        if e is not None:
            f = e.files[-1]
            return f.find() or f.target()
        return local

    def _ensure(self) -> Path:
        if not self.variant:
            raise ProviderUnavailable("uvr: name a model file: uvr:<file> (stemlab models list --family uvr)",
                                      provider=self.id)
        p = self.model_path()
        assert p is not None
        e = self._entry()
        if not p.is_file() and e is not None and not self.config["model_dir"]:
            from .weights import ensure

            ensure(list(e.files), what=self.id, offline=self.offline(),
                   progress=bool(self.options.get("progress", True)), pull=e.name)
            p = self.model_path()
            assert p is not None
        if not p.is_file():
            raise ProviderUnavailable(f"{self.id}: {p} not found and not in the UVR registry "
                                      "(stemlab models list --family uvr)", provider=self.id)
        return p

    def model_data(self) -> dict[str, Any]:
        """The model's UVR parameters (by hash), or ``{}`` for an MDXC entry with a YAML."""
        if self._data is None:
            p = self._ensure()
            found = model_data_for(uvr_hash(p), p.parent)
            if found is None:
                e = self._entry()
                if e is not None and e.arch == "mdxc":
                    self._data, self._data_from = {}, "registry"
                else:
                    raise ProviderUnavailable(
                        f"{self.id}: no parameters for this file (md5 of its last 10 MB = {uvr_hash(p)}) in "
                        f"{p.parent}/mdx_model_data.json, vr_model_data.json, audio-separator's model-data.json or "
                        "stemlab's UVR snapshot; add an entry keyed by that hash", provider=self.id)
            else:
                self._data_from, self._data = found
        return self._data

    def arch(self) -> str:
        if self._arch is None:
            e = self._entry()
            p = self.model_path()
            if e is not None and (p is None or not p.is_file() or self.config["model_dir"] == ""):
                self._arch = e.arch
            else:
                self._arch = detect_arch(str(self.variant), self.model_data())
        return self._arch

    def _yaml(self) -> Path:
        e = self._entry()
        if e is not None and e.arch == "mdxc":
            return e.config_path()
        data = self.model_data()
        name = data.get("config_yaml")
        if not name:
            raise ProviderUnavailable(f"{self.id}: MDXC checkpoint without a config (no config_yaml in its model data)",
                                      provider=self.id)
        for cand in (self.model_path().parent / name, Path(__file__).with_name("data") / "uvr_mdxc_configs" / name):  # type: ignore[union-attr]
            if cand.is_file():
                return cand
        raise ProviderUnavailable(f"{self.id}: config {name} not found next to the model or in stemlab's copies",
                                  provider=self.id)

    # -- capabilities ------------------------------------------------------------------
    @property
    def stems(self) -> tuple[str, ...]:
        if not self.variant:
            return ()
        if self._names is not None:
            return self._names
        e = self._entry()
        p = self.model_path()
        if (p is None or not p.is_file()) and e is not None:
            return tuple(e.stems) or ("primary", "secondary")
        if self.arch() == "mdxc":
            return self._mdxc_provider().stems
        primary = str(self.model_data().get("primary_stem", "Vocals"))
        names = complement_name([primary, _secondary(primary)])
        self._names = (names[0], names[1])
        return self._names

    def status(self) -> Status:
        if not self.variant:
            from .zoo import entries

            es = entries("uvr")
            return Status(False, f"name a model: uvr:<file> ({len(es)} in the registry, "
                                 f"{sum(e.ready() for e in es)} cached; stemlab models list --family uvr)")
        if importlib.util.find_spec("audio_separator") is None:
            return Status(False, "needs audio-separator (pip install 'stemlab[zoo]')")
        if str(self.variant).lower().endswith(".onnx") and importlib.util.find_spec("onnxruntime") is None:
            return Status(False, "needs onnxruntime (pip install 'stemlab[zoo]')")
        p = self.model_path()
        if p is None or not p.is_file():
            e = self._entry()
            if e is None:
                return Status(False, f"{p} not found and not in the UVR registry")
            return Status(False, f"weights missing: {p} (downloads on first use, or: stemlab models pull {e.name})")
        return Status(True, str(p))

    def identity_version(self) -> str:
        from .weights import file_digest

        p = self.model_path()
        if p is None or not p.is_file():
            return "uvr|missing"
        return f"uvr|{file_digest(p)[:16]}"

    def default_segment(self) -> float | None:
        a = self.arch()
        if a == "mdx":
            d = self.model_data()
            return MDX_HOP * (2 ** int(d["mdx_dim_t_set"]) - 1) / self.model_rate
        if a == "mdxc":
            return self._mdxc_provider().default_segment()
        return None

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        p = self.model_path()
        out.update({"model_file": str(p) if p else None, "arch": self._arch, "model_data_from": self._data_from,
                    "model_data": self._data})
        try:
            from importlib.metadata import version

            out["audio-separator"] = version("audio-separator")
            if self._arch == "mdx":
                out["onnxruntime"] = version("onnxruntime")
        except Exception:
            pass
        return out

    # -- loading ----------------------------------------------------------------------
    def _mdxc_provider(self) -> Any:
        if self._mdxc is None:
            from .msst import MsstProvider, detect_model_type, load_msst_config

            cfg_path = self._yaml()
            ckpt = self._ensure()
            mtype = detect_model_type(load_msst_config(cfg_path))
            params = {k: self.config[k] for k in ("segment", "shifts", "shift_max", "flip", "polarity", "seed",
                                                  "precision")}
            if self.config["fade"] != "linear":
                params["fade"] = self.config["fade"]
            if self.config["overlap"] is not None:  # MSST steps by chunk/num_overlap: never less overlap than asked
                params["num_overlap"] = num_overlap_for(float(self.config["overlap"]))
            self._mdxc = MsstProvider(mtype, {**params, "config": str(cfg_path), "ckpt": str(ckpt)}, **self.options)
        return self._mdxc

    def _load(self) -> None:
        from .weights import file_digest

        path = self._ensure()
        arch = self.arch()
        if arch == "mdxc":
            m = self._mdxc_provider()
            m.load()
            self.model_rate = m.model_rate
            self._model_info = {"arch": "mdxc", "model_sha256": file_digest(path), **m._model_info}
            return
        data = self.model_data()
        if arch == "mdx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            threads = self.options.get("threads")
            if threads:
                opts.intra_op_num_threads = int(threads)
            dev = str(self.options.get("device", "auto"))
            providers = ["CPUExecutionProvider"]
            if dev.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            stft_mod = import_audio_separator("uvr_lib_v5.stft")
            n_fft, dim_f = int(data["mdx_n_fft_scale_set"]), int(data["mdx_dim_f_set"])
            self._stft = stft_mod.STFT(None, n_fft, MDX_HOP, dim_f, "cpu")
            inp = self._session.get_inputs()[0]
            self._model_info = {"arch": "mdx", "model_sha256": file_digest(path), "onnx_input": inp.name,
                                "onnx_input_shape": [d if isinstance(d, int) else str(d) for d in inp.shape],
                                "onnx_providers": self._session.get_providers()}
        else:
            self._load_vr(path, data)
        primary = str(data.get("primary_stem", "Vocals"))
        self._primary, self._secondary = primary, _secondary(primary)

    def _load_vr(self, path: Path, data: Mapping[str, Any]) -> None:
        from .msst import load_state_dict, load_weights
        from .weights import file_digest

        nets = import_audio_separator("uvr_lib_v5.vr_network.nets")
        nets_new = import_audio_separator("uvr_lib_v5.vr_network.nets_new")
        mpi = import_audio_separator("uvr_lib_v5.vr_network.model_param_init")
        assert mpi.__file__ is not None  # a module loaded from a file
        params_dir = Path(mpi.__file__).parent / "modelparams"
        mp = mpi.ModelParameters(str(params_dir / f"{data['vr_model_param']}.json"))
        size_kb = math.ceil(path.stat().st_size / 1024)
        arch_size = min(VR_ARCH_SIZES, key=lambda x: abs(x - size_kb))
        v51 = arch_size in (56817, 218409) or ("nout" in data and "nout_lstm" in data)
        if v51:
            net = nets_new.CascadedNet(mp.param["bins"] * 2, arch_size, nout=int(data.get("nout", 32)),
                                       nout_lstm=int(data.get("nout_lstm", 128)))
        else:
            net = nets.determine_model_capacity(mp.param["bins"] * 2, arch_size)
        load_weights(net, load_state_dict(path), f"{self.id} ({path.name})")
        net.eval()
        self._net = net
        self._vr = {"mp": mp, "v51": v51}
        self._model_info = {"arch": "vr", "vr_model_param": data["vr_model_param"], "vr_51": v51,
                            "arch_size_kb": arch_size, "network": type(net).__name__,
                            "parameters": int(sum(t.numel() for t in net.parameters())),
                            "model_sha256": file_digest(path)}

    def _drop(self) -> None:
        self._net = self._session = None
        if self._mdxc is not None:
            self._mdxc.close()

    # -- engine ------------------------------------------------------------------------
    def engine_config(self, *, segment_samples: int | None, device: str, **fixed: Any) -> Any:
        if self._arch == "mdx":
            d = self.model_data()
            chunk = MDX_HOP * (2 ** int(d["mdx_dim_t_set"]) - 1)
            if self.config["segment"] is not None:
                raise ConfigError(f"{self.id}: an MDX-Net ONNX graph takes exactly {chunk} samples per call "
                                  "(hop × (dim_t − 1)); segment cannot be changed", field="uvr.params.segment")
            fixed.setdefault("fade", "hann" if self.config["fade"] == "linear" else self.config["fade"])
            return super().engine_config(segment_samples=chunk, device=device, **fixed)
        return super().engine_config(segment_samples=segment_samples, device=device, **fixed)

    def _mdx_model(self, x: Any) -> Any:
        import torch

        spek = self._stft(x.float().cpu())
        spek[:, :, :3, :] *= 0
        inp = self._session.get_inputs()[0]
        fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] >= 1
        arr = spek.numpy()
        if fixed_batch and arr.shape[0] != inp.shape[0]:
            out = np.concatenate([self._session.run(None, {inp.name: arr[i:i + 1]})[0] for i in range(arr.shape[0])])
        else:
            out = self._session.run(None, {inp.name: arr})[0]
        wav = self._stft.inverse(torch.from_numpy(np.ascontiguousarray(out)))  # (B, 2, T)
        return wav[:, None, :, : x.shape[-1]]

    def _vr_model(self, x: Any) -> Any:
        outs = [self._vr_one(np.asarray(x[i].float().cpu().numpy(), dtype=np.float32)) for i in range(x.shape[0])]
        return np.stack(outs)

    def _vr_one(self, wave: np.ndarray) -> np.ndarray:
        """audio-separator's VRSeparator.loading_mix + inference_vr + spec_to_wav, on an array at 44.1 kHz."""
        import librosa
        import torch

        spec_utils = import_audio_separator("uvr_lib_v5.spec_utils")
        mp, v51 = self._vr["mp"], self._vr["v51"]
        bands = mp.param["band"]
        n_bands = len(bands)
        X_wave: dict[int, np.ndarray] = {}
        X_spec: dict[int, np.ndarray] = {}
        for d in range(n_bands, 0, -1):
            bp = bands[d]
            if d == n_bands:
                src, src_sr = wave, self.model_rate
            else:
                src, src_sr = X_wave[d + 1], bands[d + 1]["sr"]
            X_wave[d] = (src if src_sr == bp["sr"] else
                         librosa.resample(src, orig_sr=src_sr, target_sr=bp["sr"], res_type=bp["res_type"]))
            X_spec[d] = spec_utils.wave_to_spectrogram(X_wave[d], bp["hl"], bp["n_fft"], mp, band=d, is_v51_model=v51)
        spec = spec_utils.combine_spectrograms(X_spec, mp, is_v51_model=v51)
        X_mag, X_phase = spec_utils.preprocess(spec)
        n_frame = X_mag.shape[2]
        window = int(self.config["window_size"])
        pad_l, pad_r, roi = spec_utils.make_padding(n_frame, window, self._net.offset)
        X_pad = np.pad(X_mag, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
        peak = X_pad.max()
        if peak > 0:
            X_pad = X_pad / peak
        patches = (X_pad.shape[2] - 2 * self._net.offset) // roi
        masks = []
        with torch.no_grad():
            for i in range(patches):
                xb = torch.from_numpy(np.ascontiguousarray(X_pad[None, :, :, i * roi:i * roi + window])).float()
                pred = self._net.predict_mask(xb).detach().cpu().numpy()
                masks.append(np.concatenate(pred, axis=2))
        mask = np.concatenate(masks, axis=2)[:, :, :n_frame]
        aggr = {"value": float(self.config["aggression"]) / 100, "split_bin": bands[1]["crop_stop"],
                "aggr_correction": mp.param.get("aggr_correction")}
        mask = spec_utils.adjust_aggr(mask, self._primary in NON_ACCOM_STEMS, aggr)
        if self.config["post_process"]:
            mask = spec_utils.merge_artifacts(mask, thres=self.config["post_process_threshold"])
        y_spec = mask * X_mag * np.exp(1.0j * X_phase)
        v_spec = (1 - mask) * X_mag * np.exp(1.0j * X_phase)
        out = []
        for s in (y_spec, v_spec):
            w = spec_utils.cmb_spectrogram_to_wave(np.nan_to_num(s), mp, is_v51_model=v51)
            if mp.param["sr"] != self.model_rate:
                w = librosa.resample(w, orig_sr=mp.param["sr"], target_sr=self.model_rate)
            w = np.asarray(w, dtype=np.float32)
            if w.shape[-1] < wave.shape[-1]:
                w = np.pad(w, ((0, 0), (0, wave.shape[-1] - w.shape[-1])))
            out.append(w[:, : wave.shape[-1]])
        return np.stack(out)

    def _separate_model_rate(self, x: np.ndarray, engine: Engine, desc: str) -> dict[str, np.ndarray]:
        arch = self.arch()
        prog = True if desc else None
        names = self.stems
        if arch == "mdx":
            d = self.model_data()
            trim = int(d["mdx_n_fft_scale_set"]) // 2
            xp = np.pad(x, ((0, 0), (trim, trim)))
            y = engine.run(self._mdx_model, xp, progress=prog, desc=desc or None)[0][:, trim:trim + x.shape[1]]
            comp = float(d.get("compensate", 1.0))
            return {names[0]: y, names[1]: (x - y * np.float32(comp)).astype(np.float32)}
        y = engine.run(self._vr_model, x, progress=prog, desc=desc or None)
        return {names[0]: y[0], names[1]: y[1]}

    def separate(self, track: Any, sample_rate: int | None = None) -> Any:
        if self.variant and self._mdxc is None and self.arch() == "mdxc":
            m = self._mdxc_provider()
            sep = m.separate(track, sample_rate)
            prov = dict(sep.provenance) | {"uvr_model": self.variant}
            return sep.replace(provider=self.id, provenance=prov)
        if self._mdxc is not None:
            sep = self._mdxc.separate(track, sample_rate)
            return sep.replace(provider=self.id, provenance=dict(sep.provenance) | {"uvr_model": self.variant})
        return super().separate(track, sample_rate)
