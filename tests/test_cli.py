"""The CLI runs in-process (``main(argv)`` returns the exit code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from stemlab import __version__, audio
from stemlab.cli import main


def test_version_subprocess() -> None:
    out = subprocess.run([sys.executable, "-m", "stemlab.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"stemlab {__version__}"


def test_datasets_list(capsys) -> None:
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "folder", "musdb18", "musdb18hq"):
        assert f"\n{name} " in out or out.startswith(f"{name} ")
    assert "train=100, test=50" in out


def test_datasets_info_demo_json(capsys, demo_small) -> None:
    assert main(["datasets", "info", "demo", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "demo" and info["tracks"] == 4
    assert sorted(info["durations"].values()) == [16.0, 18.0, 20.0, 24.0]


def test_datasets_validate_exit_codes(tmp_path: Path, capsys) -> None:
    song = tmp_path / "songs" / "a"
    song.mkdir(parents=True)
    x = np.zeros((2, 4410), np.float32)
    x[:, ::10] = 0.1
    audio.encode(song / "vocals.wav", x, 44100)
    audio.encode(song / "mixture.wav", x, 44100)
    assert main(["datasets", "validate", "folder", "--root", str(tmp_path / "songs")]) == 0
    assert "OK" in capsys.readouterr().out
    (song / "drums.wav").write_bytes(b"RIFF....WAVEjunk")
    assert main(["datasets", "validate", "folder", "--root", str(tmp_path / "songs")]) == 1
    out = capsys.readouterr().out
    assert "drums.wav" in out and "FAILED" in out


def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["datasets", "info", "musdb18", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stemlab: error: musdb18: root") and "does not exist" in err
    assert "Traceback" not in err
