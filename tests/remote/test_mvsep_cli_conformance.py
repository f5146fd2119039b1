"""The official client mvsep-cli 1.2.0 against the MVSEP sandbox, unmodified
except the base URL — its Python API in-process and its ``mvsep`` CLI in a
subprocess — and stemlab's client through the same flows on the same sandbox.
A sandbox only stemlab understands would prove nothing."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stemlab.providers as P
from stemlab.audio import decode_bytes, encode_bytes
from stemlab.services._remote.limits import _reset_registry
from stemlab.services.mvsep import provider as M
from stemlab.services.mvsep.quality_checker import QualityChecker, build_zip
from stemlab.services.mvsep.sandbox import MVSepSandbox

api_mod = pytest.importorskip("mvsep_cli.api", reason="mvsep-cli (dev extra) not installed")
MVSEP_API = api_mod.MVSEP_API
SCALE = 0.005


@pytest.fixture(scope="module")
def track():
    import stemlab.datasets as D

    return list(D.load("demo", tracks=1, seconds=3.0))[0]


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    # mvsep-cli keeps its local task names in ~/.mvsep_tasks.json: keep it in the test dir
    monkeypatch.setattr(api_mod, "TASK_META_FILE", str(tmp_path / "mvsep_tasks.json"))
    _reset_registry()
    M._ALGO_CACHE.clear()
    yield
    _reset_registry()


@pytest.fixture
def wav(track, tmp_path) -> Path:
    p = tmp_path / "song.wav"
    p.write_bytes(encode_bytes(track.mixture, track.sample_rate, "wav"))
    return p


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    r, e = ref[..., :n].astype(np.float64), est[..., :n].astype(np.float64)
    return 10 * math.log10(np.sum(r**2) / max(np.sum((r - e) ** 2), 1e-12))


def stemlab_provider(spec: str, sb: MVSepSandbox):
    return P.create(spec, **{**sb.provider_options(), "poll_interval": 10.0, "poll_initial": 5.0, "max_wait": 36000.0})


def test_python_api_create_status_wait_download(track, wav, tmp_path, capsys):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        api = MVSEP_API(sb.api_key, base_url=sb.root_url)
        created = api.create_task(audio_file=str(wav), sep_type=40, output_format=2, add_opt1="81")
        h = created["hash"]
        assert h.endswith("-song.wav") and h in created["link"]
        first = api.get_status(h)
        assert first["success"] is True and first["status"] in ("waiting", "processing", "done")
        final = api.wait_for_completion(h, interval=1, max_wait=60)
        assert final["status"] == "done" and final["data"]["output_format"] == "flac"
        assert [f["download"] for f in final["data"]["files"]] == ["song_vocals.flac", "song_instrum.flac"]
        paths = api.download_results(h, str(tmp_path / "out"))
        assert sorted(Path(x).name for x in paths) == ["song_instrum.flac", "song_vocals.flac"]
        vocals, sr = decode_bytes(Path(tmp_path / "out" / "song_vocals.flac").read_bytes())
        assert sr == 44100 and vocals.shape == track.mixture.shape
        # the sandbox really separated (BS Roformer → degraded oracle at quality 0.9)
        assert sdr(track.references["vocals"], vocals) > sdr(track.references["vocals"], track.mixture) + 3.0
        job = sb.ledger.jobs[h]
        assert job.extra["sep_type"] == 40 and job.extra["add_opts"] == {"add_opt1": "81"}
        assert job.output_format == "flac16" and sb.ledger.charged() == 1.0

        # the same job through stemlab's client: identical status and files
        p = stemlab_provider("mvsep:bs_roformer?model=ver_2025_07&output_format=flac", sb)
        st = asyncio.run(_status(p, h))
        assert st.status == "done"
        assert st.outputs == {"vocals": final["data"]["files"][0]["url"],
                              "accompaniment": final["data"]["files"][1]["url"]}

        # the other direction: stemlab submits, mvsep-cli reads and downloads it
        sep = p.separate(track)
        assert sorted(sep.stems) == ["accompaniment", "vocals"]
        assert api.get_status(sep.remote_id)["status"] == "done"
        got = api.download_results(sep.remote_id, str(tmp_path / "out2"))
        assert len(got) == 2 and all(os.path.getsize(x) > 1000 for x in got)
        assert sb.ledger.jobs[sep.remote_id].extra["add_opts"] == {"add_opt1": "81"}
        assert sb.ledger.duplicate_charges() == {}


async def _status(p, h):
    try:
        return await p.astatus(h)
    finally:
        await p.aclose()


def test_python_api_remote_url_algorithms_queue_history_news(track, wav, tmp_path):
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        api = MVSEP_API(sb.api_key, base_url=sb.root_url)
        url = sb.host_file(wav.read_bytes(), "remote.wav", "audio/wav")
        h = api.create_task(remote_url=url, remote_type="direct", sep_type=20, add_opt1="0")["hash"]
        final = api.wait_for_completion(h, interval=1, max_wait=60)
        assert final["status"] == "done"
        assert sorted(f["download"] for f in final["data"]["files"]) == [
            "remote_bass.mp3", "remote_drums.mp3", "remote_other.mp3", "remote_vocals.mp3"]  # output_format 0
        algos = api.get_algorithms()
        assert isinstance(algos, list) and len(algos) == 57
        assert "htdemucs_ft (High Quality, Slow)" in api.get_algorithms_formatted()[20]
        q = api.get_queue_info()
        assert set(q["queue"]) == {"in_process", "premium", "registered", "unregistered"}
        hist = api.get_separation_history()
        assert hist["success"] is True and [x["hash"] for x in hist["data"]] == [h]
        assert api.get_news()[0]["title"]
        assert api.enable_long_filenames()["success"] is True
        # stemlab reads the same account
        p = stemlab_provider("mvsep:demucs4ht", sb)
        assert [x["hash"] for x in p.history()] == [h]
        mine, theirs = p.queue(), api.get_queue_info()
        assert mine["queue"] == theirs["queue"]
        # stemlab sends the token (the plan of this account), mvsep-cli does not
        assert mine["plan"]["plan"] == "premium" and theirs["plan"]["plan"] == "unregistered"
        assert len(p.algorithms()) == 57


def test_python_api_cancel_matches_stemlab(track, wav):
    with MVSepSandbox(scale=SCALE, queue_seconds=1e6) as sb:
        api = MVSEP_API(sb.api_key, base_url=sb.root_url)
        h1 = api.create_task(audio_file=str(wav), sep_type=48)["hash"]
        assert api.get_status(h1)["status"] == "waiting"
        assert api.get_status(h1)["data"]["current_order"] == 1
        assert api.cancel_task(h1)["success"] is True
        assert api.get_status(h1)["status"] == "failed"
        p = stemlab_provider("mvsep:mel_roformer", sb)
        h2 = api.create_task(audio_file=str(wav), sep_type=48)["hash"]
        assert p.cancel(h2) is True and api.cancel_task(h2)["success"] is False
        assert sb.ledger.charged() == 0.0 and len(sb.ledger.charges) == 2


def test_quality_entry_from_cli_is_seen_by_stemlab(tmp_path):
    with MVSepSandbox(scale=0.001, qc_seconds=60.0) as sb:
        songs = sb.qc_dataset(0)
        zpath = tmp_path / "entry.zip"
        zpath.write_bytes(build_zip({s: {k: v[k] for k in ("vocals", "instrum")} for s, v in songs.items()}, 44100))
        api = MVSEP_API(sb.api_key, base_url=sb.root_url)
        out = api.create_quality_entry(str(zpath), "cli entry", "uploaded by mvsep-cli", dataset_type=0,
                                       password="cli-pass-123")
        assert out["success"] is True
        qc = QualityChecker(stemlab_provider("mvsep", sb))
        e = qc.wait_scored(out["data"]["id"], interval=30.0)
        assert e["algo_name"] == "cli entry" and e["msg"] == "OK" and e["sdr_vocals"] > 60
        assert qc.delete(e["id"], password="cli-pass-123") is True


_CLI = ("import sys, mvsep_cli.config as c; c.Config.MIRRORS['main'] = sys.argv.pop(1); "
        "from mvsep_cli.__main__ import main; sys.argv[0] = 'mvsep'; sys.exit(main())")


def cli(sb: MVSepSandbox, home: Path, *args: str) -> subprocess.CompletedProcess:
    """The ``mvsep`` console script, pointed at the sandbox (its only change)."""
    env = {**os.environ, "HOME": str(home), "MVSEP_API_TOKEN": sb.api_key}
    return subprocess.run([sys.executable, "-c", _CLI, sb.root_url, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_run_status_download_algorithms(track, wav, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with MVSepSandbox(scale=SCALE) as sb:
        sb.register_track(track)
        r = cli(sb, home, "run", str(wav), "-t", "20", "--add-opt1", "0", "-f", "1", "-o", str(tmp_path / "run"),
                "-i", "1", "--timeout", "60")
        assert r.returncode == 0, r.stdout + r.stderr
        h = re.search(r"Hash: (\S+)", r.stdout).group(1)
        assert "Separation completed!" in r.stdout and "Downloaded 4 files" in r.stdout
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
            "song_bass.wav", "song_drums.wav", "song_other.wav", "song_vocals.wav"]
        s = cli(sb, home, "status", h)
        assert s.returncode == 0 and "Status: done" in s.stdout and "Output files (4)" in s.stdout
        d = cli(sb, home, "download", h, "-o", str(tmp_path / "dl"))
        assert d.returncode == 0 and len(list((tmp_path / "dl").iterdir())) == 4
        a = cli(sb, home, "algorithms", "-i", "20")
        assert a.returncode == 0 and "0: htdemucs_ft (High Quality, Slow)" in a.stdout
        ls = cli(sb, home, "list", "-s", "roformer")
        assert "40: BS Roformer (vocals, instrumental)" in ls.stdout
        bad = cli(sb, home, "status", "20260101000000-0000000000-nothing.wav")
        assert bad.returncode == 1 and "Status: not_found" in bad.stdout
        # the job the CLI made is the one stemlab sees, with the same four stem files
        assert sb.ledger.jobs[h].extra["add_opts"] == {"add_opt1": "0"}
        st = asyncio.run(_status(stemlab_provider("mvsep:demucs4ht?model=htdemucs_ft", sb), h))
        assert sorted(st.outputs) == ["bass", "drums", "other", "vocals"]
        vocals, _ = decode_bytes((tmp_path / "run" / "song_vocals.wav").read_bytes())
        assert sdr(track.references["vocals"], vocals) > sdr(track.references["vocals"], track.mixture) + 3.0
