"""`stemlab models list/pull/published` and first-use downloads, end to end
against a loopback HTTP server serving tiny checkpoints (a user catalog
points at it): success, checksum mismatch, truncated download, 404, offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import stemlab.providers as P  # noqa: E402
from stemlab.cli import main  # noqa: E402
from stemlab.errors import ProviderUnavailable  # noqa: E402
from stemlab.providers.local import weights as W  # noqa: E402
from stemlab.providers.local import zoo  # noqa: E402

from ._loopback import LoopbackServer  # noqa: E402
from ._tiny_models import write_mdx_onnx, write_msst  # noqa: E402


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Empty caches in tmp, a loopback server with a tiny MSST model (SCNet:
    config + checkpoint), a tiny UVR MDX-Net model and broken variants, and a
    user catalog naming them."""
    server = LoopbackServer()
    src = tmp_path / "src"
    cfg, ckpt = write_msst(src, "scnet", name="tiny_scnet")
    onnx = write_mdx_onnx(src, "tiny_dl.onnx")
    for var in ("TORCH_HOME", "HF_HUB_CACHE", "AUDIO_SEPARATOR_MODEL_DIR", "STEMLAB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    W.set_offline(None)
    asdir = tmp_path / "audio_separator_model_dir"
    asdir.mkdir()
    (asdir / "mdx_model_data.json").write_text((src / "mdx_model_data.json").read_text())  # as audio-separator keeps it
    body = ckpt.read_bytes()
    urls = {
        "cfg": server.add("/rel/tiny_scnet.yaml", body=cfg.read_bytes()),
        "ckpt": server.add("/rel/tiny_scnet.ckpt", body=body),
        "bad": server.add("/rel/bad.ckpt", body=body[:-10] + b"0123456789"),
        "cut": server.add("/rel/cut.ckpt", body=body, truncate_at=len(body) // 3),
        "onnx": server.add("/uvr/tiny_dl.onnx", body=onnx.read_bytes()),
    }

    def msst_entry(name: str, ckpt_url: str, sha: str | None) -> dict:
        return {"name": name, "family": "msst", "arch": "scnet", "stems": ["drums", "bass", "other", "vocals"],
                "files": [{"name": "tiny_scnet.yaml", "urls": [urls["cfg"]], "cache": "stemlab", "subdir": "msst",
                           "sha256": _sha(cfg)},
                          {"name": f"{name}.ckpt", "urls": [ckpt_url], "cache": "torch-hub", "sha256": sha}],
                "published": [{"target": "vocals", "value": 1.23, "dataset": "nowhere", "source": "test table"}]}

    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"models": [
        msst_entry("tiny-scnet", urls["ckpt"], _sha(ckpt)),
        msst_entry("tiny-bad", urls["bad"], _sha(ckpt)),
        msst_entry("tiny-cut", urls["cut"], _sha(ckpt)),
        msst_entry("tiny-404", server.url + "/rel/missing.ckpt", _sha(ckpt)),
        {"name": "tiny_dl.onnx", "family": "uvr", "arch": "mdx", "stems": ["vocals", "accompaniment"],
         "files": [{"name": "tiny_dl.onnx", "urls": [urls["onnx"]], "cache": "audio-separator",
                    "sha256": _sha(onnx)}]},
    ]}))
    monkeypatch.setenv(zoo.CATALOG_ENV, str(cat))
    monkeypatch.setenv("AUDIO_SEPARATOR_MODEL_DIR", str(asdir))
    zoo.clear_cache()
    yield {"server": server, "tmp": tmp_path, "cfg": cfg, "ckpt": ckpt, "asdir": asdir, "urls": urls}
    server.close()
    zoo.clear_cache()
    W.set_offline(None)


def test_pull_then_run(env, capsys, short_track) -> None:
    assert main(["models", "list", "--family", "msst"]) == 0
    out = capsys.readouterr().out
    assert "tiny-scnet" in out and "not cached (stemlab, torch-hub)" in out and "published" in out
    assert main(["models", "pull", "tiny-scnet"]) == 0
    cap = capsys.readouterr()
    ck = env["tmp"] / "torch_home" / "hub" / "checkpoints" / "tiny-scnet.ckpt"
    assert ck.read_bytes() == env["ckpt"].read_bytes() and f"sha256 {_sha(ck)}" in cap.out
    assert "ready: msst:scnet?model=tiny-scnet" in cap.out
    assert main(["models", "list", "--family", "msst", "--cached", "--json"]) == 0
    [row] = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "tiny-scnet"]
    assert row["cached"][1] == str(ck) and row["size"] == ck.stat().st_size + env["cfg"].stat().st_size
    # the catalog model runs and equals the files run directly
    sep = P.create("msst:scnet?model=tiny-scnet", threads=1).separate(short_track)
    direct = P.create(f"msst:scnet?config={env['cfg']}&ckpt={env['ckpt']}", threads=1).separate(short_track)
    np.testing.assert_array_equal(sep.stems["vocals"], direct.stems["vocals"])
    assert main(["providers", "info", "msst:scnet?model=tiny-scnet"]) == 0
    assert "vocals: 1.23 dB  usdr" in capsys.readouterr().out


def test_first_use_downloads(env, short_track) -> None:
    prov = P.create("uvr:tiny_dl.onnx", threads=1, progress=False)
    assert not prov.status().ready and "downloads on first use" in prov.status().detail
    sep = prov.separate(short_track)  # downloads, finds its parameters by hash, runs
    assert (env["asdir"] / "tiny_dl.onnx").is_file() and sep.stems.names == ("vocals", "accompaniment")
    assert prov.status().ready
    hits = list(env["server"].hits)
    P.create("uvr:tiny_dl.onnx", threads=1).separate(short_track)
    assert env["server"].hits == hits  # cached: no second request


@pytest.mark.parametrize("name,expect", [
    ("tiny-bad", "checksum mismatch"),
    ("tiny-cut", "truncated"),
    ("tiny-404", "HTTP 404"),
])
def test_pull_failures_leave_nothing(env, capsys, name, expect) -> None:
    assert main(["models", "pull", name, "--quiet"]) == 1
    assert expect in capsys.readouterr().err
    ck = env["tmp"] / "torch_home" / "hub" / "checkpoints" / f"{name}.ckpt"
    assert not ck.exists() and not list((env["tmp"] / "torch_home").rglob("*.part"))
    with pytest.raises(ProviderUnavailable, match=expect):
        P.create(f"msst:scnet?model={name}").load()


def test_offline(env, capsys, monkeypatch) -> None:
    assert main(["models", "pull", "tiny-scnet", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "weights missing" in err and "tiny-scnet.ckpt" in err and env["urls"]["ckpt"] in err
    assert str(env["tmp"] / "torch_home" / "hub" / "checkpoints") in err
    assert env["server"].hits == []
    W.set_offline(None)
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with pytest.raises(ProviderUnavailable, match="stemlab models pull tiny_dl.onnx"):
        P.create("uvr:tiny_dl.onnx").load()
    prov = P.create("uvr:tiny_dl.onnx", offline=False)  # the option beats the environment
    prov.load()
    assert env["server"].hits


def test_unknown_model(env, capsys) -> None:
    assert main(["models", "pull", "tiny-scne"]) == 2
    assert "did you mean ['tiny-scnet']" in capsys.readouterr().err


def test_published_listing(env, capsys) -> None:
    assert main(["models", "published", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["label"] for r in rows} == {"published"}
    fams = {r["family"] for r in rows}
    assert {"msst", "uvr", "spleeter", "mvsep"} <= fams
    mv = [r for r in rows if r["family"] == "mvsep" and r["provider"] == "mvsep:bs_roformer"]
    assert any(r["target"] == "vocals" and r["value"] == 10.87 for r in mv)
