"""Downloading weights into the standard caches, checked — against a loopback
server only (tests/providers/_loopback.py): success, checksum mismatch,
truncated transfer, 404 with a fallback URL, Hugging Face layout, offline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from stemlab.errors import ProviderUnavailable
from stemlab.providers.local import weights as W

from ._loopback import LoopbackServer


@pytest.fixture()
def server():
    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture()
def caches(tmp_path, monkeypatch):
    """Every cache in tmp: torch hub, HF hub, audio-separator's dir, stemlab's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("AUDIO_SEPARATOR_MODEL_DIR", str(tmp_path / "as"))
    monkeypatch.setenv("STEMLAB_CACHE", str(tmp_path / "stemlab"))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    W.set_offline(None)
    yield tmp_path
    W.set_offline(None)


BODY = os.urandom(70_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _no_partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_download_verified_into_each_cache(server, caches) -> None:
    url = server.add("/m/tiny.ckpt", body=BODY)
    for cache in ("torch-hub", "audio-separator", "stemlab"):
        f = W.WeightFile("tiny.ckpt", (url,), cache=cache, sha256=SHA)
        assert f.find() is None
        [p] = W.ensure(f, progress=False)
        assert p == f.target() and p.read_bytes() == BODY and p.parent == (W.cache_root(cache) / f.subdir)
        assert W.file_digest(p) == SHA
    assert (caches / "torch" / "hub" / "checkpoints" / "tiny.ckpt").is_file()
    assert (caches / "as" / "tiny.ckpt").is_file()
    log = W.download_log()
    assert len(log) == 3 and all(e["verified"] and e["checked_against"] == "catalog" for e in log)
    # found again without a request
    hits = len(server.hits)
    W.ensure(W.WeightFile("tiny.ckpt", (url,), cache="torch-hub", sha256=SHA), progress=True)
    assert len(server.hits) == hits


def test_checksum_mismatch_deletes_the_file(server, caches) -> None:
    url = server.add("/m/evil.ckpt", body=BODY[:-1] + b"x")
    f = W.WeightFile("evil.ckpt", (url,), cache="torch-hub", sha256=SHA)
    with pytest.raises(W.DownloadError) as ei:
        W.ensure(f, progress=False)
    msg = str(ei.value)
    assert "checksum mismatch" in msg and SHA in msg and "deleted" in msg
    assert f.find() is None and not _no_partials(caches)


def test_digest_in_file_name_is_checked(server, caches) -> None:
    """torch hub convention: name-<sha256 prefix>.ext (as demucs' files)."""
    good = W.WeightFile(f"model-{SHA[:8]}.th", (server.add("/h/good.th", body=BODY),), cache="torch-hub")
    assert W.ensure(good, progress=False)[0].read_bytes() == BODY
    bad = W.WeightFile("model-deadbeef.th", (server.add("/h/bad.th", body=BODY),), cache="torch-hub")
    with pytest.raises(W.DownloadError, match="expected deadbeef… \\(file name\\)"):
        W.ensure(bad, progress=False)


def test_truncated_download_refused(server, caches) -> None:
    url = server.add("/m/cut.ckpt", body=BODY, truncate_at=30_000)
    f = W.WeightFile("cut.ckpt", (url,), cache="audio-separator", sha256=SHA)
    with pytest.raises(W.DownloadError) as ei:
        W.ensure(f, progress=False)
    assert "truncated: got 30000 of 70000 bytes" in str(ei.value)
    assert f.find() is None and not _no_partials(caches)


def test_404_falls_back_to_the_next_url_and_reports_all(server, caches) -> None:
    missing = server.url + "/gone/a.onnx"
    good = server.add("/mirror/a.onnx", body=BODY)
    f = W.WeightFile("a.onnx", (missing, good), cache="audio-separator", sha256=SHA)
    assert W.ensure(f, progress=False)[0].read_bytes() == BODY
    g = W.WeightFile("b.onnx", (server.url + "/gone/b1", server.url + "/gone/b2"), cache="audio-separator")
    with pytest.raises(W.DownloadError) as ei:
        W.ensure(g, progress=False)
    assert "/gone/b1 → HTTP 404" in str(ei.value) and "/gone/b2 → HTTP 404" in str(ei.value)
    assert ei.value.retryable


def test_hf_layout_and_lfs_etag(server, caches) -> None:
    """A Hugging Face 'resolve' URL redirects to the CDN; the first answer
    carries X-Repo-Commit and X-Linked-Etag (the LFS sha256). The file lands
    in the hub cache's layout, where huggingface_hub finds it offline."""
    commit = "a" * 40
    cdn = server.add("/cdn/blob", body=BODY)
    url = server.add("/org/repo/resolve/main/sub/w.ckpt", redirect=cdn,
                     headers={"X-Repo-Commit": commit, "X-Linked-Etag": f'"{SHA}"'})
    f = W.WeightFile("w.ckpt", (url,), cache="hf", hf=("org/repo", "sub/w.ckpt", "main"))
    [p] = W.ensure(f, progress=False)
    repo = caches / "hf" / "models--org--repo"
    assert p == repo / "snapshots" / commit / "sub" / "w.ckpt" and p.read_bytes() == BODY
    assert (repo / "blobs" / SHA).is_file() and (repo / "refs" / "main").read_text() == commit
    assert W.download_log()[-1]["checked_against"] == "server LFS etag"
    hub = pytest.importorskip("huggingface_hub")
    assert Path(hub.try_to_load_from_cache("org/repo", "sub/w.ckpt", cache_dir=str(caches / "hf"))) == p
    # a wrong etag is a mismatch
    url2 = server.add("/org/repo/resolve/main/x.ckpt", body=BODY, headers={"X-Linked-Etag": "0" * 64})
    with pytest.raises(W.DownloadError, match="server LFS etag"):
        W.ensure(W.WeightFile("x.ckpt", (url2,), cache="hf", hf=("org/repo", "x.ckpt", "main")), progress=False)


def test_unverified_download_is_recorded_as_such(server, caches) -> None:
    url = server.add("/plain.bin", body=BODY)
    [p] = W.ensure(W.WeightFile("plain.bin", (url,), cache="stemlab", subdir="x"), progress=False)
    assert p == caches / "stemlab" / "models" / "x" / "plain.bin"
    entry = W.download_log()[-1]
    assert entry["verified"] is False and entry["checked_against"] == "unverified" and entry["sha256"] == SHA


def test_offline_message_names_files_places_and_commands(server, caches, monkeypatch) -> None:
    url = server.add("/m/tiny.ckpt", body=BODY)
    f = W.WeightFile("tiny.ckpt", (url,), cache="torch-hub", sha256=SHA)
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with pytest.raises(ProviderUnavailable) as ei:
        W.ensure(f, what="msst:bs_roformer", pull="tiny")
    msg = str(ei.value)
    assert "msst:bs_roformer: weights missing: tiny.ckpt" in msg
    assert str(caches / "torch" / "hub" / "checkpoints" / "tiny.ckpt") in msg
    assert "stemlab models pull tiny" in msg and url in msg and "STEMLAB_OFFLINE=1" in msg
    assert server.hits == []  # nothing was requested
    W.set_offline(False)  # --offline off beats the environment
    assert W.ensure(f, progress=False)[0].is_file()
    W.set_offline(True)
    assert W.ensure(f)[0].is_file()  # present files need no network


def test_github_release_digest(server, caches, monkeypatch) -> None:
    """A release asset is checked against the sha256 GitHub publishes for it."""
    import json

    monkeypatch.setenv(W.GITHUB_API_ENV, server.url + "/api")
    url = server.add("/o/r/releases/download/v1.0/rel.ckpt", body=BODY)
    server.add("/api/repos/o/r/releases/tags/v1.0", body=json.dumps({"assets": [
        {"name": "rel.ckpt", "digest": f"sha256:{SHA}"}, {"name": "bad.ckpt", "digest": "sha256:" + "1" * 64},
        {"name": "old.ckpt", "digest": None}]}).encode(), headers={"Content-Type": "application/json"})
    [p] = W.ensure(W.WeightFile("rel.ckpt", (url,), cache="torch-hub"), progress=False)
    assert p.read_bytes() == BODY and W.download_log()[-1]["checked_against"] == "GitHub release asset digest"
    bad = server.add("/o/r/releases/download/v1.0/bad.ckpt", body=BODY)
    with pytest.raises(W.DownloadError, match="GitHub release asset digest"):
        W.ensure(W.WeightFile("bad.ckpt", (bad,), cache="torch-hub"), progress=False)
    old = server.add("/o/r/releases/download/v1.0/old.ckpt", body=BODY)  # no digest recorded: unverified, kept
    W.ensure(W.WeightFile("old.ckpt", (old,), cache="torch-hub"), progress=False)
    assert W.download_log()[-1]["verified"] is False
    assert W.github_release_digest("https://example.org/x.ckpt") is None


def test_gzip_encoded_answer_is_the_file(server, caches) -> None:
    """Content-Length of a gzip answer counts encoded bytes: the file is
    checked on its decoded bytes, the transfer on the encoded ones; stemlab
    asks for identity encoding."""
    text = b"audio:\n  chunk_size: 261120\n" * 300  # a YAML config compresses well
    sha = hashlib.sha256(text).hexdigest()
    url = server.add("/cfg/model.yaml", body=text, gzip=True)
    [p] = W.ensure(W.WeightFile("model.yaml", (url,), cache="audio-separator", sha256=sha), progress=False)
    assert p.read_bytes() == text
    assert server.request_headers[-1]["accept-encoding"] == "identity"
    cut = server.add("/cfg/cut.yaml", body=os.urandom(5_000), gzip=True, truncate_at=2_000)
    with pytest.raises(W.DownloadError, match="cut.yaml"):
        W.ensure(W.WeightFile("cut.yaml", (cut,), cache="audio-separator"), progress=False)
    assert W.WeightFile("cut.yaml", (cut,), cache="audio-separator").find() is None and not _no_partials(caches)


def test_a_bad_mirror_moves_on_to_the_next(server, caches) -> None:
    """Truncated or corrupt at the first URL: the next one is tried; both
    reasons are named when every URL fails."""
    cut = server.add("/a/m.ckpt", body=BODY, truncate_at=10_000)
    wrong = server.add("/b/m.ckpt", body=BODY[::-1])
    good = server.add("/c/m.ckpt", body=BODY)
    [p] = W.ensure(W.WeightFile("m.ckpt", (cut, wrong, good), cache="torch-hub", sha256=SHA), progress=False)
    assert p.read_bytes() == BODY and not _no_partials(caches)
    with pytest.raises(W.DownloadError) as ei:
        W.ensure(W.WeightFile("n.ckpt", (cut, wrong), cache="torch-hub", sha256=SHA), progress=False)
    assert "truncated: got 10000 of 70000 bytes" in str(ei.value) and "checksum mismatch" in str(ei.value)


def test_a_server_header_cannot_place_the_file_outside_the_cache(server, caches) -> None:
    """X-Repo-Commit names a snapshot folder: only a 40-hex commit is taken
    from a server; anything else falls back to the catalog's revision."""
    url = server.add("/org/repo/resolve/main/w.ckpt", body=BODY,
                     headers={"X-Repo-Commit": "../../../../escaped", "X-Linked-Etag": f'"{SHA}"'})
    [p] = W.ensure(W.WeightFile("w.ckpt", (url,), cache="hf", hf=("org/repo", "w.ckpt", "main")), progress=False)
    repo = caches / "hf" / "models--org--repo"
    assert p == repo / "snapshots" / "main" / "w.ckpt" and p.read_bytes() == BODY
    assert not (caches / "escaped").exists() and not any(caches.parent.glob("escaped"))


@pytest.mark.parametrize("kw, field", [
    ({"subdir": "../outside"}, "subdir"),
    ({"subdir": "/etc"}, "subdir"),
    ({"cache": "hf", "hf": ("org/m", "../../../../z_out.ckpt", "main")}, "hf"),
    ({"cache": "hf", "hf": ("org/m", "w.ckpt", "../..")}, "hf"),
    ({"cache": "hf", "hf": ("../m", "w.ckpt", "main")}, "hf"),
])
def test_catalog_paths_stay_inside_the_cache(kw, field) -> None:
    from stemlab.errors import ConfigError

    with pytest.raises(ConfigError) as ei:
        W.WeightFile("w.ckpt", ("http://127.0.0.1/x",), **kw)
    assert ei.value.details["field"] == field
