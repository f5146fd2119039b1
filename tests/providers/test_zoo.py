"""The model catalog and published scores (stemlab.providers.local.zoo)."""

from __future__ import annotations

import json
import statistics

import pytest

from stemlab.providers.local import msst as M
from stemlab.providers.local import zoo


def test_catalog_families_and_files() -> None:
    cat = zoo.catalog()
    fams = {e.family for e in cat.values()}
    assert {"msst", "uvr", "spleeter", "demucs"} <= fams
    for e in zoo.entries("msst"):
        assert e.arch in M.MODEL_TYPES and e.files and e.spec == f"msst:{e.arch}?model={e.name}"
        assert e.files[-1].urls and e.files[-1].cache in ("torch-hub", "hf", "audio-separator")
        if e.shipped_config:  # MSST configs shipped with stemlab describe the entry's model
            cfg = M.load_msst_config(e.config_path())
            assert M.detect_model_type(cfg) == e.arch, e.name
            outs = M.output_stems(cfg)
            assert set(e.stems) <= set(outs) | {"accompaniment"}, (e.name, outs)
    kj = zoo.get_entry("msst-mel-band-roformer-kj")
    assert kj.files[-1].hf == ("KimberleyJSN/melbandroformer", "MelBandRoformer.ckpt", "main")
    ht = zoo.get_entry("msst-htdemucs")
    assert ht.files[-1].expected_sha256() == "8726e21a"  # demucs' name carries its sha256 prefix
    for e in zoo.entries("uvr"):
        assert e.spec == f"uvr:{e.name}" and e.arch in ("mdx", "vr", "mdxc")
        assert all(f.cache == "audio-separator" for f in e.files)
        if e.arch == "mdxc":
            assert e.config_path().name.endswith(".yaml")
    dm = zoo.get_entry("htdemucs")
    assert dm.family == "demucs" and dm.files[0].name == "955717e8-8726e21a.th" and dm.files[0].cache == "torch-hub"


def test_published_frame_is_tidy_and_labelled() -> None:
    df = zoo.published_frame()
    assert list(df.columns) == ["model", "family", "provider", "target", "value", "metric", "aggregation", "dataset",
                                "n_tracks", "source", "note", "label"]
    assert set(df.label) == {"published"} and df.value.notna().all() and (df.dataset != "").all()
    assert set(df.metric) <= {"sdr_bsseval_v4", "usdr"}
    rows = df[df.model == "msst-bs-roformer-viperx-1297"]
    by = {(r.metric, r.target): r for r in rows.itertuples()}
    assert by[("usdr", "vocals")].value == 10.87 and "Multisong" in by[("usdr", "vocals")].dataset
    assert by[("sdr_bsseval_v4", "vocals")].value == pytest.approx(11.7742)
    assert "median" in by[("sdr_bsseval_v4", "vocals")].aggregation
    sp = df[df.family == "spleeter"].iloc[0]
    assert sp.value == 6.86 and "4-stem" in sp.note and sp.dataset == "MUSDB18 test"
    only = zoo.published_frame(["uvr"])
    assert set(only.family) == {"uvr"} and len(only) > 50


def test_audio_separator_scores_are_medians_over_tracks() -> None:
    """The published museval figure is the median over tracks of per-track
    scores — recomputed from the package's own per-track table."""
    p = zoo._as_pkg_file("models-scores.json")
    if p is None:
        pytest.skip("audio-separator not installed")
    raw = json.loads(p.read_text())
    for name in ("UVR-MDX-NET-Inst_HQ_3.onnx", "htdemucs.yaml", "model_bs_roformer_ep_317_sdr_12.9755.ckpt"):
        m = raw[name]
        for stem, s in m["median_scores"].items():
            if not isinstance(s, dict):
                continue
            vals = [t["scores"][stem]["SDR"] for t in m["track_scores"] if stem in t["scores"]]
            assert statistics.median(vals) == pytest.approx(s["SDR"], abs=1e-4)
        pubs = zoo._uvr_published(name)
        assert all(x.n_tracks for x in pubs)
    snap = json.loads((zoo._DATA / "uvr_published.json").read_text())
    assert snap["models"]["UVR-MDX-NET-Inst_HQ_3.onnx"]["median_scores"] == raw["UVR-MDX-NET-Inst_HQ_3.onnx"][
        "median_scores"]


def test_published_for_provider_ids() -> None:
    assert [p.value for p in zoo.published_for("spleeter:2stems")] == [6.86]
    assert any(p.target == "vocals" for p in zoo.published_for("demucs:htdemucs"))
    assert zoo.published_for("msst:scnet?model=msst-scnet-large")[0].dataset.startswith("MUSDB18-HQ test")
    assert zoo.published_for("uvr:UVR-MDX-NET-Inst_HQ_3.onnx")
    assert zoo.published_for("msst:scnet") == [] and zoo.published_for("oracle:irm") == []
