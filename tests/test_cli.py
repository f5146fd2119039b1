"""The CLI runs in-process (``main(argv)`` returns the exit code)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

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


# ------------------------------------------------------------------ tables

LONG = " ".join(f"reason{i:02d}" for i in range(22)) + " " + "x" * 46  # 200 characters, one 46-char word
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_catalog() -> list[dict]:
    return [{"id": "fam:variant", "kind": "remote", "stems": "vocals,drums", "status": f"unavailable: {LONG}"[:200],
             "cost_per_min": "$0.140/min"},
            {"id": "oracle:irm", "kind": "local", "stems": "vocals", "status": "ready", "cost_per_min": ""}]


@pytest.mark.parametrize("columns", [80, 200])
def test_long_cell_printed_whole_on_a_terminal(columns, monkeypatch) -> None:
    import stemlab.providers.cli as PC

    status = _fake_catalog()[0]["status"]
    assert len(status) == 200
    monkeypatch.setattr(PC, "catalog", _fake_catalog)
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("NO_COLOR", raising=False)
    term = _Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    assert main(["providers", "list"]) == 0
    lines = ANSI.sub("", term.getvalue()).splitlines()
    assert all(len(ln) <= columns for ln in lines)
    assert "…" not in "".join(lines)
    # the status column is the last one: its wrapped pieces follow each other
    squeezed = "".join("".join(ln.split()) for ln in lines)
    assert "".join(status.split()) in squeezed
    assert "fam:variant" in lines[1] and "oracle:irm" in squeezed
    if columns == 80:  # wrapped inside its column, not cut and not spilling over
        assert len(lines) > 4
        assert lines[1].index("unavailable") == lines[2].index("reason")


def test_table_off_a_terminal_is_plain_one_row_per_line(monkeypatch, capsys) -> None:
    import stemlab.providers.cli as PC

    monkeypatch.setattr(PC, "catalog", _fake_catalog)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FORCE_COLOR", "1")  # even then: no colour codes into a pipe
    assert main(["providers", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and not any("\u2500" <= ch <= "\u259f" for ch in out)  # no escapes, no box drawing
    lines = out.splitlines()
    assert lines[3] == "" and len(lines) == 5  # the table, a blank line, the one-line footer
    assert re.split(r"\s{2,}", lines[0]) == ["provider", "kind", "stems", "cost", "runs live", "runs here"]
    assert lines[1].startswith("fam:variant ") and lines[1].endswith(_fake_catalog()[0]["status"])
    assert lines[2].split() == ["oracle:irm", "local", "vocals", "ready"]
    assert lines[1].index("unavailable") == lines[2].index("ready") == lines[0].index("runs here")
    assert lines[4] == "2 provider(s): 1 local (0 ready here), 1 remote (every one runs here against its sandbox; " \
                       "0 live: API key set)."


def test_print_table_aligns_numbers_and_flattens_newlines(capsys) -> None:
    from stemlab.cli import print_table

    print_table([("a", "1.5", "two\nlines"), ("bbb", "NaN", "-"), ("c", "12.25", "")], ("name", "value", "note"))
    assert capsys.readouterr().out.splitlines() == [
        "name  value  note",
        "a       1.5  two lines",
        "bbb     NaN  -",
        "c     12.25",
    ]


def test_run_summary_lists_failures_whole(capsys) -> None:
    import pandas as pd

    from stemlab.runs.cli import _summary

    err = "the service answered 503 " + "y" * 300
    jobs = pd.DataFrame([
        {"provider": "mvsep:bs_roformer", "track": "demo-01-pop", "status": "done", "cost_usd": 0.01, "total_s": 3.0,
         "error_kind": None, "error": None},
        {"provider": "mvsep:bs_roformer", "track": "demo-02-ballad", "status": "failed", "cost_usd": None,
         "total_s": None, "error_kind": "ProviderUnavailable", "error": err},
    ])
    _summary(types.SimpleNamespace(path="out", run_id="r1", jobs=jobs, scores=pd.DataFrame()))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.split(r"\s{2,}", lines[1]) == ["provider", "done", "failed", "USD", "native units", "measured s (median)",
                                             "SIMULATED s (median)"]
    # the median of the measured seconds of the jobs that have them (the failed job has none: not a 0)
    assert lines[2].split() == ["mvsep:bs_roformer", "1", "1", "0.0100", "3.00"]
    assert lines[2].index("3.00") + 4 == lines[1].index("measured s (median)") + len("measured s (median)")
    fail = next(ln for ln in out.splitlines() if ln.startswith("mvsep:bs_roformer  demo-02-ballad"))
    assert fail.endswith(f"failed  ProviderUnavailable: {err}")


def test_dry_run_plan_is_a_table(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "run",
                "--dataset",
                "demo",
                "--limit",
                "1",
                "--provider",
                "oracle:irm",
                "--provider",
                "baseline:mixture",
                "--dry-run",
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("provider "))
    assert re.split(r"\s{2,}", lines[head])[:2] == ["provider", "jobs to run"]
    end = lines.index("", head)
    assert [ln.split()[:2] for ln in lines[head + 1 : end]] == [
        ["oracle:irm", "1"],
        ["baseline:mixture", "1"],
        ["TOTAL", "2"],
    ]
    assert lines[-1] == "dry run: nothing was written (no output folder, ledger or owner file)."
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------- broken sub-commands

def test_broken_registration_fails_loudly_and_help_still_works(monkeypatch, capsys) -> None:
    import stemlab.runs.cli as R

    def register_cli(sub):
        raise ImportError("No module named 'pydantic'")

    monkeypatch.setattr(R, "register_cli", register_cli)
    for argv in (["run", "--demo", "--dry-run"], ["results", "show", "somewhere"], ["run", "--help"]):
        assert main(argv) == 3, argv
        err = capsys.readouterr().err
        assert err == (f"stemlab: error: '{argv[0]}' is unavailable: "
                       "stemlab.runs.cli: ImportError: No module named 'pydantic'\n")
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "run UNAVAILABLE (stemlab.runs.cli: ImportError: No module named 'pydantic')" in help_text
    assert "results UNAVAILABLE (stemlab.runs.cli: ImportError" in help_text
    assert "providers list providers and their status" in help_text
    assert main(["datasets", "list"]) == 0  # the other commands still work
    with pytest.raises(SystemExit) as e:  # and still reject unknown arguments
        main(["datasets", "list", "--bogus"])
    assert e.value.code == 2


def test_module_that_cannot_be_imported_is_named(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "stemlab.reports.cli", None)  # import raises ModuleNotFoundError
    code = ("import sys; sys.modules['stemlab.reports.cli'] = None\n"
            "from stemlab.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "report", "results-dir"], capture_output=True, text=True)
    assert p.returncode == 3 and p.stdout == ""
    assert p.stderr.startswith("stemlab: error: 'report' is unavailable: stemlab.reports.cli: ModuleNotFoundError: ")
    h = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "UNAVAILABLE (stemlab.reports.cli: ModuleNotFoundError" in " ".join(h.stdout.split())
