"""msst:<model_type> — tiny random checkpoints in MSST's on-disk format (YAML
config + torch.save state dict) for every supported model type, loaded
through the same code path as real weights; MSST's chunking, target
instruments, checkpoint wrappers and config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import stemlab.providers as P  # noqa: E402
from stemlab.errors import ConfigError, ProviderUnavailable  # noqa: E402
from stemlab.providers.local import msst as M  # noqa: E402

from ._tiny_models import config_text, write_msst  # noqa: E402

TYPES = {
    "bs_roformer": dict(target="vocals"),
    "mel_band_roformer": {},
    "mdx23c": {},
    "scnet": {},
    "htdemucs": {},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    pytest.importorskip("beartype")
    root = tmp_path_factory.mktemp("msst")
    return {t: write_msst(root, t, **kw) for t, kw in TYPES.items()}


@pytest.fixture(scope="module")
def separated(tiny, short_track):
    out = {}
    for t, (cfg, ck) in tiny.items():
        prov = P.create(f"msst:{t}?config={cfg}&ckpt={ck}", threads=1)
        out[t] = (prov, prov.separate(short_track))
    return out


@pytest.mark.parametrize("model_type", list(TYPES))
def test_tiny_checkpoint_separates(model_type, separated, tiny, short_track) -> None:
    prov, sep = separated[model_type]
    cfg = M.load_msst_config(tiny[model_type][0])
    expected = {"bs_roformer": ("vocals", "accompaniment"), "mel_band_roformer": ("vocals", "accompaniment")}.get(
        model_type, ("drums", "bass", "other", "vocals"))
    assert prov.stems == expected and sep.stems.names == expected
    n = short_track.num_samples
    assert (sep.stems.num_channels, sep.stems.num_samples, sep.stems.sample_rate) == (2, n, 44100)
    for k in expected:
        assert np.isfinite(sep.stems[k]).all() and np.abs(sep.stems[k]).max() > 1e-4, k
    again = P.create(prov.id, threads=1).separate(short_track)
    for k in expected:
        np.testing.assert_array_equal(sep.stems[k], again.stems[k], err_msg=k)
    # MSST's chunking was used: chunk, step = chunk // num_overlap, fade chunk // 10, batch from the config
    ch = M.msst_chunking(model_type, cfg)
    eng = sep.provenance["run"]["engine"]
    assert eng["segment"] == ch["segment"] and eng["step"] == ch["segment"] // cfg["inference"]["num_overlap"]
    assert eng["batch_size"] == cfg["inference"]["batch_size"]
    if model_type == "htdemucs":
        assert (eng["fade"], eng["pad_ends"]) == ("constant", "none")
    else:
        assert (eng["fade"], eng["fade_length"], eng["pad_ends"]) == ("linear", ch["segment"] // 10, "reflect")
    info = sep.provenance
    assert info["checkpoint_sha256"] and info["config_sha256"] and info["parameters"] > 1000
    assert prov.status().ready and prov.identity_version().startswith(f"msst|{model_type}|cfg=")


def test_target_instrument_residual(separated, tiny, short_track) -> None:
    """bs_roformer's config has target_instrument: vocals → vocals + (mixture − vocals)."""
    prov, sep = separated["bs_roformer"]
    total = sep.stems["vocals"] + sep.stems["accompaniment"]
    np.testing.assert_allclose(total, short_track.mixture, atol=1e-6)
    cfg, ck = tiny["bs_roformer"]
    only = P.create(f"msst:bs_roformer?config={cfg}&ckpt={ck}&residual=false", threads=1)
    assert only.stems == ("vocals",)
    np.testing.assert_array_equal(only.separate(short_track).stems["vocals"], sep.stems["vocals"])


def test_vocals_other_pair_is_named_accompaniment(separated) -> None:
    """mel_band_roformer: instruments [vocals, other], no target: 'other' is the complement."""
    prov, sep = separated["mel_band_roformer"]
    assert sep.stems.names == ("vocals", "accompaniment")


def test_checkpoint_wrappers_and_prefixes(tmp_path, short_track, separated) -> None:
    base_prov, base = separated["scnet"]
    cfg, ck = write_msst(tmp_path, "scnet", wrap="state_dict", name="wrapped")
    cfg0 = base_prov.config["config"]
    assert Path(cfg).read_text() == Path(cfg0).read_text()
    state = torch.load(ck, weights_only=True)
    assert set(state) == {"state_dict", "epoch"}  # {"state_dict": …} as trainers save it
    # same weights as the module fixture's (same seed) → the same output
    out = P.create(f"msst:scnet?config={cfg}&ckpt={ck}", threads=1).separate(short_track)
    np.testing.assert_array_equal(out.stems["vocals"], base.stems["vocals"])
    dp = tmp_path / "dp.ckpt"  # DataParallel's module. prefix
    torch.save({f"module.{k}": v for k, v in state["state_dict"].items()}, dp)
    assert set(M.load_state_dict(dp)) == set(state["state_dict"])


def test_demucs_package_through_msst_htdemucs(tmp_path, tiny, short_track) -> None:
    """A demucs .th package (class + args + state, as demucs' serialize_model
    writes it) is read with weights_only=True allowing only demucs' classes."""
    from .conftest import demucs_package

    cfg = M.load_msst_config(tiny["htdemucs"][0])
    net = M.build_model("htdemucs", cfg)
    pkg = demucs_package(net)
    th = tmp_path / "955717e8-00000000.th"
    torch.save(pkg, th)
    state = M.load_state_dict(th)
    assert set(state) == set(net.state_dict())
    sep = P.create(f"msst:htdemucs?config={tiny['htdemucs'][0]}&ckpt={th}", threads=1).separate(short_track)
    assert sep.stems.names == ("drums", "bass", "other", "vocals")


def test_unsafe_checkpoint_refused(tmp_path) -> None:
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "bad.ckpt"
    torch.save({"w": Evil()}, bad)
    with pytest.raises(ProviderUnavailable, match="weights_only=True"):
        M.load_state_dict(bad)


def test_normalize_makes_output_scale_equivariant(tmp_path, short_track) -> None:
    cfg, ck = write_msst(tmp_path, "mdx23c", normalize=True, name="norm")
    prov = P.create(f"msst:mdx23c?config={cfg}&ckpt={ck}", threads=1)
    a = prov.separate(short_track)
    loud = type(short_track).from_arrays("loud", short_track.mixture * 3.0, short_track.sample_rate)
    b = prov.separate(loud)
    for k in a.stems.names:
        np.testing.assert_allclose(b.stems[k], 3.0 * a.stems[k], atol=2e-5)
    no = P.create(f"msst:mdx23c?config={cfg}&ckpt={ck}&normalize=false", threads=1)
    assert not np.allclose(no.separate(loud).stems["vocals"], b.stems["vocals"], atol=1e-4)


def test_config_reading(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(config_text("htdemucs"))
    cfg = M.load_msst_config(p)
    assert cfg.htdemucs.dconv_init == pytest.approx(1e-3) and isinstance(cfg.htdemucs.dconv_init, float)
    p.write_text(config_text("bs_roformer"))
    cfg = M.load_msst_config(p)
    assert cfg.model.freqs_per_bands == (32, 32, 64, 64, 65) and isinstance(cfg.model.freqs_per_bands, tuple)
    assert M.detect_model_type(cfg) == "bs_roformer"
    assert M.output_stems(cfg) == ["vocals", "other"]
    p.write_text("audio: {}\n")
    with pytest.raises(ConfigError, match="training"):
        M.load_msst_config(p)
    p.write_text("audio: {}\ntraining: {instruments: [a]}\nx: !!python/object/apply:os.system ['echo']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        M.load_msst_config(p)


def test_config_errors_name_the_problem(tmp_path, tiny) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(config_text("bs_roformer", extra_model="  no_such_key: 3"))
    with pytest.raises(ConfigError, match=r"config keys \['no_such_key'\]"):
        M.build_model("bs_roformer", M.load_msst_config(p))
    p.write_text(config_text("bs_roformer", extra_model="  use_pope: true"))
    with pytest.raises(ConfigError, match="PoPE"):
        M.build_model("bs_roformer", M.load_msst_config(p))
    p.write_text(config_text("htdemucs").replace("num_subbands: 1", "num_subbands: 2"))
    with pytest.raises(ConfigError, match="num_subbands=2"):
        M.build_model("htdemucs", M.load_msst_config(p))
    # a checkpoint that does not fit its config
    other = tmp_path / "other.yaml"
    other.write_text(config_text("scnet").replace("    - 16\n  nfft", "    - 32\n  nfft"))
    prov = P.create(f"msst:scnet?config={other}&ckpt={tiny['scnet'][1]}")
    with pytest.raises(ProviderUnavailable, match="does not fit the network built from the config"):
        prov.load()
    with pytest.raises(ConfigError, match="config and ckpt go together"):
        P.create(f"msst:scnet?config={other}")
    with pytest.raises(ConfigError, match="model=NAME or config"):
        P.create(f"msst:scnet?config={other}&ckpt=x&model=msst-scnet-large")
    assert not P.create("msst:scnet").status().ready


def test_catalog_model_param(monkeypatch, tmp_path) -> None:
    from stemlab.providers.local import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    prov = P.create("msst?model=msst-scnet-large")
    assert prov.variant == "scnet" and prov.id == "msst:scnet?model=msst-scnet-large"
    st = prov.status()
    assert not st.ready and "stemlab models pull msst-scnet-large" in st.detail
    with pytest.raises(ProviderUnavailable) as ei:
        prov.load()
    assert "model_scnet_sdr_9.3244.ckpt" in str(ei.value) and "STEMLAB_OFFLINE=1" in str(ei.value)
    with pytest.raises(ConfigError, match="is a scnet, not bs_roformer"):
        P.create("msst:bs_roformer?model=msst-scnet-large")
    shipped = P.create("msst?model=msst-htdemucs")
    assert shipped.stems == ("drums", "bass", "other", "vocals")  # its config ships with stemlab
