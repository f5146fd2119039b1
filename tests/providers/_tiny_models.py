"""Tiny random models written in the community's on-disk formats, for the
msst and uvr families (loaded by stemlab through the same code path as real
weights):

* MSST: a YAML config in MSST's style (``!!python/tuple``, ``1e-3`` floats,
  ``audio:``/``model:``/``training:``/``inference:``) + ``torch.save(state_dict)``
  (optionally wrapped in ``{"state_dict": …}``, as MSST's trainer can save);
  htdemucs also as a demucs ``.th`` package;
* UVR MDX-Net: an ``.onnx`` graph with input ``input`` ``(batch, 4, dim_f,
  dim_t)`` and the parameters in ``mdx_model_data.json`` keyed by the UVR
  hash (what audio-separator downloads next to its models);
* UVR VR 5.1: a ``.pth`` state dict of audio-separator's ``CascadedNet`` and
  ``vr_model_data.json`` (``vr_model_param``, ``nout``, ``nout_lstm``);
* UVR MDXC: a ``.ckpt`` + YAML named by ``config_yaml`` in ``mdx_model_data.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINING = """training:
  batch_size: 2
  gradient_accumulation_steps: 1
  grad_clip: 0
  instruments:
{instruments}
  lr: 1.0e-05
  patience: 2
  reduce_factor: 0.95
  target_instrument: {target}
  num_epochs: 1000
  num_steps: 1000
  q: 0.95
  coarse_loss_clip: true
  ema_momentum: 0.999
  optimizer: adam
  other_fix: false
  use_amp: true
"""


def _instruments(names: list[str]) -> str:
    return "\n".join(f"  - {n}" for n in names)


def _tuple(values: list[int], indent: str = "  ") -> str:
    return "!!python/tuple\n" + "\n".join(f"{indent}  - {v}" for v in values)


def config_text(model_type: str, *, instruments: list[str] | None = None, target: str | None = None,
                chunk_size: int | None = None, num_overlap: int = 2, batch_size: int = 2,
                normalize: bool = False, extra_model: str = "") -> str:
    """An MSST YAML config for a tiny model of ``model_type``."""
    inst = instruments or (["vocals", "other"] if model_type in ("bs_roformer", "mel_band_roformer")
                           else ["drums", "bass", "other", "vocals"])
    tr = TRAINING.format(instruments=_instruments(inst), target=target if target else "null")
    inf = f"inference:\n  batch_size: {batch_size}\n  num_overlap: {num_overlap}\n" + (
        "  normalize: true\n" if normalize else "")
    if model_type == "bs_roformer":
        chunk = chunk_size or 128 * 172
        return f"""audio:
  chunk_size: {chunk}
  dim_f: 1024
  dim_t: 801 # don't work (use in model)
  hop_length: 441 # don't work (use in model)
  n_fft: 512
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000

model:
  dim: 16
  depth: 1
  stereo: true
  num_stems: {1 if target else len(inst)}
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: {_tuple([32, 32, 64, 64, 65])}
  dim_head: 8
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 257
  stft_n_fft: 512
  stft_hop_length: 128
  stft_win_length: 512
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: {_tuple([4096, 2048, 1024, 512, 256])}
  multi_stft_hop_size: 147
  multi_stft_normalized: False
{extra_model}
{tr}
{inf}"""
    if model_type == "mel_band_roformer":
        chunk = chunk_size or 128 * 172
        return f"""audio:
  chunk_size: {chunk}
  dim_f: 1024
  dim_t: 256
  hop_length: 441
  n_fft: 2048
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000

model:
  dim: 16
  depth: 1
  stereo: true
  num_stems: {1 if target else len(inst)}
  time_transformer_depth: 1
  freq_transformer_depth: 1
  num_bands: 8
  dim_head: 8
  heads: 2
  attn_dropout: 0
  ff_dropout: 0
  flash_attn: True
  dim_freqs_in: 257
  sample_rate: 44100
  stft_n_fft: 512
  stft_hop_length: 128
  stft_win_length: 512
  stft_normalized: False
  mask_estimator_depth: 1
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: {_tuple([4096, 2048, 1024, 512, 256])}
  multi_stft_hop_size: 147
  multi_stft_normalized: False
{extra_model}
{tr}
{inf}"""
    if model_type == "mdx23c":
        chunk = chunk_size or 128 * (64 - 1)
        return f"""audio:
  chunk_size: {chunk}
  dim_f: 64
  dim_t: 64
  hop_length: 128
  n_fft: 512
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.001

model:
  act: gelu
  bottleneck_factor: 4
  growth: 8
  norm: InstanceNorm
  num_blocks_per_scale: 1
  num_channels: 8
  num_scales: 2
  num_subbands: 2
  scale:
    - 2
    - 2
{extra_model}
{tr}
{inf}"""
    if model_type == "scnet":
        chunk = chunk_size or 22050
        return f"""audio:
  chunk_size: {chunk} # 44100 * 0.5
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000

model:
  sources:
{_instruments(inst).replace('  - ', '    - ')}
  audio_channels: 2
  dims:
    - 4
    - 8
    - 8
    - 16
  nfft: 512
  hop_size: 128
  win_size: 512
  normalized: True
  band_SR:
    - 0.175
    - 0.392
    - 0.433
  band_stride:
    - 1
    - 4
    - 16
  band_kernel:
    - 3
    - 4
    - 16
  conv_depths:
    - 1
    - 1
    - 1
  compress: 2
  conv_kernel: 3
  num_dplayer: 2
  expand: 1
{extra_model}
{tr}
{inf}"""
    if model_type == "htdemucs":
        tr_h = tr.replace("training:\n", "training:\n  segment: 1\n  shift: 1\n  samplerate: 44100\n  channels: 2\n"
                          "  normalize: true\n")
        return f"""audio:
  chunk_size: 44100 # samplerate * segment
  min_mean_abs: 0.001
  hop_length: 1024

{tr_h}
{inf}
model: htdemucs

htdemucs:  # see demucs/htdemucs.py for a detailed description
  channels: 2
  channels_time:
  growth: 2
  num_subbands: 1
  nfft: 4096
  wiener_iters: 0
  end_iters: 0
  wiener_residual: false
  cac: true
  depth: 4
  rewrite: true
  multi_freqs: []
  multi_freqs_depth: 3
  freq_emb: 0.2
  emb_scale: 10
  emb_smooth: true
  kernel_size: 8
  stride: 4
  time_stride: 2
  context: 1
  context_enc: 0
  norm_starts: 4
  norm_groups: 4
  dconv_mode: 1
  dconv_depth: 2
  dconv_comp: 2
  dconv_init: 1e-3
  bottom_channels: 0
  t_layers: 1
  t_hidden_scale: 1.0
  t_heads: 1
  t_dropout: 0.0
  t_layer_scale: True
  t_gelu: True
  t_emb: sin
  t_max_positions: 10000
  t_max_period: 10000.0
  t_weight_pos_embed: 1.0
  t_cape_mean_normalize: True
  t_cape_augment: True
  t_cape_glob_loc_scale: [5000.0, 1.0, 1.4]
  t_sin_random_shift: 0
  t_norm_in: True
  t_norm_in_group: False
  t_group_norm: False
  t_norm_first: True
  t_norm_out: True
  t_weight_decay: 0.0
  t_lr:
  t_sparse_self_attn: False
  t_sparse_cross_attn: False
  t_mask_type: diag
  t_mask_random_seed: 42
  t_sparse_attn_window: 400
  t_global_window: 100
  t_sparsity: 0.95
  t_auto_sparsity: False
  t_cross_first: False
  rescale: 0.1
{extra_model}"""
    raise ValueError(model_type)


def write_msst(root: Path, model_type: str, *, seed: int = 0, wrap: str | None = None, name: str | None = None,
               **cfg_kw: Any) -> tuple[Path, Path]:
    """Write ``<name>.yaml`` and ``<name>.ckpt`` (a random network's state
    dict as MSST saves it; ``wrap="state_dict"`` wraps it). Returns the paths."""
    import torch

    from stemlab.providers.local.msst import build_model, load_msst_config

    root.mkdir(parents=True, exist_ok=True)
    name = name or f"tiny_{model_type}"
    cfg_path = root / f"{name}.yaml"
    cfg_path.write_text(config_text(model_type, **cfg_kw))
    torch.manual_seed(seed)
    net = build_model(model_type, load_msst_config(cfg_path))
    with torch.no_grad():  # non-trivial weights where init leaves zeros/ones (gammas, norms)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state: Any = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if wrap:
        state = {wrap: state, "epoch": 3}
    ckpt = root / f"{name}.ckpt"
    torch.save(state, ckpt)
    return cfg_path, ckpt


# ----------------------------------------------------------------- UVR

def write_mdx_onnx(root: Path, name: str = "tiny_mdx.onnx", *, dim_f: int = 256, dim_t_set: int = 4,
                   n_fft: int = 2048, primary: str = "Vocals", compensate: float = 1.03, seed: int = 0) -> Path:
    """A tiny MDX-Net-shaped ONNX graph: a random 1×1 convolution over the
    4 complex-as-channels planes, then a sigmoid-free scaling (so the output
    depends on the input), ``(N, 4, dim_f, 2**dim_t_set)`` in and out, input
    named ``input`` as UVR's graphs; parameters in ``mdx_model_data.json``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from stemlab.providers.local.uvr import uvr_hash

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = 2 ** dim_t_set
    w = (np.eye(4) * 0.5 + rng.standard_normal((4, 4)) * 0.1).astype(np.float32).reshape(4, 4, 1, 1)
    b = np.zeros(4, np.float32)
    g = (0.5 + 0.5 * rng.random((1, 1, dim_f, 1))).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["c"]), helper.make_node("Mul", ["c", "G"], ["output"])]
    graph = helper.make_graph(
        nodes, "tiny_mdx",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, dim_f, t])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, dim_f, t])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(g, "G")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = root / name
    onnx.save(model, str(path))
    _add_model_data(root / "mdx_model_data.json", uvr_hash(path), {
        "compensate": compensate, "mdx_dim_f_set": dim_f, "mdx_dim_t_set": dim_t_set, "mdx_n_fft_scale_set": n_fft,
        "primary_stem": primary})
    return path


def write_vr51(root: Path, name: str = "tiny_vr.pth", *, param: str = "1band_sr44100_hl1024", nout: int = 4,
               nout_lstm: int = 8, primary: str = "Instrumental", seed: int = 0) -> Path:
    """A tiny VR 5.1 model: audio-separator's ``nets_new.CascadedNet`` state
    dict (``torch.save``) + ``vr_model_data.json`` keyed by its UVR hash."""
    import torch

    from stemlab.providers.local.msst import import_audio_separator
    from stemlab.providers.local.uvr import uvr_hash

    nets_new = import_audio_separator("uvr_lib_v5.vr_network.nets_new")
    mpi = import_audio_separator("uvr_lib_v5.vr_network.model_param_init")
    mp = mpi.ModelParameters(str(Path(mpi.__file__).parent / "modelparams" / f"{param}.json"))
    torch.manual_seed(seed)
    net = nets_new.CascadedNet(mp.param["bins"] * 2, 31191, nout=nout, nout_lstm=nout_lstm)
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    torch.save(net.state_dict(), path)
    _add_model_data(root / "vr_model_data.json", uvr_hash(path), {
        "vr_model_param": param, "primary_stem": primary, "nout": nout, "nout_lstm": nout_lstm})
    return path


def write_mdxc(root: Path, model_type: str = "mdx23c", name: str = "tiny_mdxc.ckpt", **kw: Any) -> Path:
    """An MDXC checkpoint as UVR keeps one: ``.ckpt`` in the model folder, its
    YAML next to it, named by ``config_yaml`` in ``mdx_model_data.json``."""
    from stemlab.providers.local.uvr import uvr_hash

    stem = name.rsplit(".", 1)[0]
    cfg, ckpt = write_msst(root, model_type, name=stem, **kw)
    yaml_name = f"config_{stem}.yaml"
    cfg.rename(root / yaml_name)
    _add_model_data(root / "mdx_model_data.json", uvr_hash(ckpt), {"config_yaml": yaml_name})
    return ckpt


def _add_model_data(path: Path, key: str, value: dict[str, Any]) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=4))
