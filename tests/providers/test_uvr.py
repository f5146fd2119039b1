"""uvr:<model file> — tiny random models in UVR's on-disk formats (MDX-Net
.onnx, VR 5.1 .pth, MDXC .ckpt + YAML) with their parameters in the model
folder's UVR tables, loaded through the same code path as real weights; no
ffmpeg needed; the registry entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("audio_separator")
pytest.importorskip("onnxruntime")

import stemlab.providers as P  # noqa: E402
from stemlab.errors import ConfigError, ProviderUnavailable  # noqa: E402
from stemlab.providers.local import uvr as U  # noqa: E402

from ._tiny_models import write_mdx_onnx, write_mdxc, write_vr51  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uvr-models")
    write_mdx_onnx(root)
    write_vr51(root)
    write_mdxc(root)
    return root


def test_uvr_hash_is_audio_separators(model_dir, tmp_path) -> None:
    import logging

    from stemlab.providers.local.msst import import_audio_separator

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(10_240_000 + 4321))
    sep_cls = None
    try:  # audio-separator's own method, called on a bare object (its Separator needs ffmpeg to construct)
        mod = import_audio_separator("separator")
        sep_cls = mod.Separator
    except Exception:
        pytest.skip("audio-separator's Separator module not importable")
    fake = type("S", (), {"logger": logging.getLogger("t")})()
    for f in (model_dir / "tiny_mdx.onnx", big):
        assert U.uvr_hash(f) == sep_cls.get_model_hash(fake, str(f))


def test_mdx_onnx(model_dir, short_track) -> None:
    prov = P.create(f"uvr:tiny_mdx.onnx?model_dir={model_dir}", threads=1)
    assert prov.status().ready and prov.stems == ("vocals", "accompaniment")
    sep = prov.separate(short_track)
    n = short_track.num_samples
    assert sep.stems.names == ("vocals", "accompaniment")
    assert (sep.stems.num_channels, sep.stems.num_samples) == (2, n)
    v = sep.stems["vocals"]
    assert np.abs(v).max() > 1e-3 and not np.allclose(v, short_track.mixture, atol=1e-3)
    # secondary = mixture − primary × compensate (audio-separator's MDX-Net)
    np.testing.assert_allclose(sep.stems["accompaniment"], short_track.mixture - v * np.float32(1.03), atol=1e-5)
    again = P.create(prov.id, threads=1).separate(short_track)
    np.testing.assert_array_equal(again.stems["vocals"], v)
    info = sep.provenance
    assert info["arch"] == "mdx" and info["model_data_from"].endswith("mdx_model_data.json")
    assert info["model_data"]["mdx_n_fft_scale_set"] == 2048 and info["onnx_input"] == "input"
    eng = info["run"]["engine"]
    assert eng["segment"] == U.MDX_HOP * (2 ** 4 - 1) and eng["fade"] == "hann" and eng["overlap"] == 0.25
    with pytest.raises(ConfigError, match="cannot be changed"):
        P.create(f"uvr:tiny_mdx.onnx?model_dir={model_dir}&segment=1.0").separate(short_track)


def test_mdx_polarity_is_audio_separators_denoise(model_dir, short_track) -> None:
    """enable_denoise = the model on −spectrum and spectrum, averaged: the
    engine's polarity pass. The tiny graph is linear, so it changes nothing."""
    a = P.create(f"uvr:tiny_mdx.onnx?model_dir={model_dir}", threads=1).separate(short_track)
    b = P.create(f"uvr:tiny_mdx.onnx?model_dir={model_dir}&polarity=true", threads=1).separate(short_track)
    assert b.provenance["run"]["engine_stats"]["passes"] == 2
    np.testing.assert_allclose(a.stems["vocals"], b.stems["vocals"], atol=1e-5)


def test_vr51(model_dir, short_track) -> None:
    prov = P.create(f"uvr:tiny_vr.pth?model_dir={model_dir}&aggression=10", threads=1)
    assert prov.stems == ("accompaniment", "vocals")  # primary Instrumental, secondary Vocals
    sep = prov.separate(short_track)
    assert sep.stems.names == ("accompaniment", "vocals") and sep.stems.num_samples == short_track.num_samples
    info = sep.provenance
    assert info["arch"] == "vr" and info["vr_51"] and info["network"] == "CascadedNet"
    assert info["run"]["engine"]["segment"] is None  # VR: the whole track, as UVR
    mix = short_track.mixture
    # mask and 1 − mask of the same spectrogram: the stems add back to (nearly) the mixture
    corr = np.corrcoef((sep.stems["accompaniment"] + sep.stems["vocals"]).ravel(), mix.ravel())[0, 1]
    assert corr > 0.95, corr
    again = P.create(prov.id, threads=1).separate(short_track)
    np.testing.assert_array_equal(again.stems["vocals"], sep.stems["vocals"])


def test_mdxc_through_the_msst_code(model_dir, short_track) -> None:
    prov = P.create(f"uvr:tiny_mdxc.ckpt?model_dir={model_dir}", threads=1)
    assert prov.stems == ("drums", "bass", "other", "vocals")
    sep = prov.separate(short_track)
    assert sep.provider == prov.id and sep.provenance["uvr_model"] == "tiny_mdxc.ckpt"
    direct = P.create(f"msst:mdx23c?config={model_dir / 'config_tiny_mdxc.yaml'}&ckpt={model_dir / 'tiny_mdxc.ckpt'}",
                      threads=1).separate(short_track)
    for k in sep.stems.names:
        np.testing.assert_array_equal(sep.stems[k], direct.stems[k])


def test_unknown_file_and_missing_parameters(model_dir, tmp_path) -> None:
    stray = tmp_path / "stray.onnx"
    stray.write_bytes((model_dir / "tiny_mdx.onnx").read_bytes() + b"\0")  # another hash
    prov = P.create(f"uvr:stray.onnx?model_dir={tmp_path}")
    with pytest.raises(ProviderUnavailable, match="no parameters for this file"):
        prov.load()
    nothing = P.create(f"uvr:nope.onnx?model_dir={tmp_path}")
    assert not nothing.status().ready and "not found" in nothing.status().detail
    bare = P.create("uvr")
    assert not bare.status().ready and "name a model" in bare.status().detail and bare.stems == ()


def test_registry_entries(monkeypatch, tmp_path) -> None:
    from stemlab.providers.local import weights as W
    from stemlab.providers.local import zoo

    monkeypatch.setenv("AUDIO_SEPARATOR_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    prov = P.create("uvr:UVR-MDX-NET-Inst_HQ_3.onnx")
    assert prov.id == "uvr:UVR-MDX-NET-Inst_HQ_3.onnx"
    assert prov.stems == ("accompaniment", "vocals")
    st = prov.status()
    assert not st.ready and "stemlab models pull UVR-MDX-NET-Inst_HQ_3.onnx" in st.detail
    with pytest.raises(ProviderUnavailable, match="UVR-MDX-NET-Inst_HQ_3.onnx"):
        prov.load()
    e = zoo.get_entry("UVR-MDX-NET-Inst_HQ_3.onnx")
    assert e.files[0].urls[0].startswith(zoo.UVR_PUBLIC) and e.files[0].cache == "audio-separator"
    assert e.files[0].target() == tmp_path / "UVR-MDX-NET-Inst_HQ_3.onnx"
    roformer = zoo.get_entry("model_bs_roformer_ep_317_sdr_12.9755.ckpt")
    assert roformer.arch == "mdxc" and roformer.config_path().is_file()  # UVR's YAML ships with stemlab
    reg = json.loads((Path(U.__file__).with_name("data") / "uvr_registry.json").read_text())
    assert len(reg["mdx"]) >= 30 and len(reg["vr"]) >= 27 and len(reg["mdx_model_data"]) >= 80


def test_runs_without_ffmpeg_and_without_audio_separators_separator(model_dir) -> None:
    """The whole path — model data, onnxruntime, audio-separator's STFT — in a
    process whose PATH has no ffmpeg; audio-separator's file-based Separator
    (and its package __init__) is never imported."""
    code = (
        "import sys, numpy as np, stemlab.providers as P\n"
        f"p = P.create('uvr:tiny_mdx.onnx?model_dir={model_dir}', threads=1)\n"
        "x = (np.random.default_rng(0).standard_normal((2, 30000)) * 0.1).astype('float32')\n"
        "s = p.separate(x, 44100)\n"
        "assert s.stems.names == ('vocals', 'accompaniment'), s.stems.names\n"
        "assert 'audio_separator.separator.separator' not in sys.modules\n"
        "assert 'pydub' not in sys.modules\n"
        "import shutil; assert shutil.which('ffmpeg') is None\n"
        "print('ok')\n")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_restated_constants_match_audio_separator() -> None:
    import warnings

    from stemlab.providers.local.msst import import_audio_separator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = import_audio_separator("common_separator").CommonSeparator
    assert U.STEM_PAIR_MAPPER == cs.STEM_PAIR_MAPPER and U.NO_STEM == cs.NO_STEM
    assert U.NON_ACCOM_STEMS == cs.NON_ACCOM_STEMS


@pytest.mark.parametrize("overlap, n", [(0.0, 1), (0.25, 2), (0.5, 2), (0.6, 3), (0.75, 4), (0.875, 8)])
def test_mdxc_overlap_is_never_less_than_asked(overlap: float, n: int) -> None:
    from stemlab.providers.local.uvr import num_overlap_for

    assert num_overlap_for(overlap) == n and 1 - 1 / n >= overlap - 1e-12
