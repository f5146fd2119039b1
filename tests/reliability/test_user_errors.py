"""Careless users get a named error, never a traceback: each row is a CLI
call, its exit code and the words the one-line message must contain."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemlab.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


SANDBOX_CASES = [
    (["--port", "99999"], "--port: expected 0 (a free port) or 1..65535, got 99999"),
    (["--port", "-1"], "--port: expected 0"),
    (["--scale", "0"], "--scale: expected a clock scale > 0"),
    (["--scale", "nan"], "--scale: expected a clock scale > 0"),
    (["--faults", "status:http_429(retry_after=abc)"], "argument retry_after='abc', expected seconds ≥ 0 or 'date'"),
    (["--faults", "status:drop(x=1)"], "status:drop: unknown argument 'x'"),
    (["--faults", "download:truncate(fraction=2)"], "fraction=2, expected a fraction in [0, 1)"),
    (["--faults", "status:http_503@7"], "probability must be in [0, 1]"),
    (["--faults", "status:explode"], "unknown kind"),
]


@pytest.mark.parametrize("args,needle", SANDBOX_CASES, ids=[" ".join(a) for a, _ in SANDBOX_CASES])
def test_sandbox_serve_arguments(args, needle):
    r = _cli("sandbox", "serve", "mvsep", *args)
    _no_traceback(r)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_sandbox_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _cli("sandbox", "serve", "mvsep", "--port", str(port))
    _no_traceback(r)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr


# ------------------------------------------------------------ outputs and results files

def _run_demo(out, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("run", "--dataset", "demo", "--limit", "1", "--provider", "baseline:mixture", "--metrics", "usdr",
                "-o", str(out), "-q", *extra)


def test_output_locations(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    for out, needle in ((f, "is a file"), (f / "sub", "which is a file")):
        r = _run_demo(out)
        _no_traceback(r)
        assert r.returncode == 2 and f"output directory {out}" in r.stderr and needle in r.stderr, r.stderr


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "out"
    r = _run_demo(out)
    assert r.returncode == 0, r.stderr
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage,needle", [
    ("run.json", "run.json: unreadable"),
    ("scores.parquet", "scores.parquet: unreadable"),
    ("jobs.parquet", "jobs.parquet: unreadable"),
])
def test_corrupt_results_files(results_dir, tmp_path, damage, needle):
    out = _copy(results_dir, tmp_path / "copy")
    (out / damage).write_bytes(b"\x00garbage{" * 50)
    for args in (["results", "show", str(out)], ["report", str(out), "-o", str(tmp_path / "r.html")]):
        r = _cli(*args)
        _no_traceback(r)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)


def test_corrupt_ledger_page(results_dir, tmp_path):
    out = _copy(results_dir, tmp_path / "copy")
    db = out / "ledger.sqlite"
    data = bytearray(db.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = b"\xff" * 4096  # a page after the header
    db.write_bytes(bytes(data))
    for f in out.glob("ledger.sqlite-*"):
        f.unlink()
    r = _run_demo(out)
    _no_traceback(r)
    assert r.returncode == 2 and "the ledger is damaged" in r.stderr and "cache/paid" in r.stderr, r.stderr


def test_a_one_sample_track_is_a_failed_row(tmp_path):
    import numpy as np
    import pandas as pd
    import soundfile as sf

    root = tmp_path / "songs"
    for name, n in (("tiny", 1), ("ok", 44100)):
        d = root / name
        d.mkdir(parents=True)
        rng = np.random.default_rng(n)
        stems = {k: (0.1 * rng.standard_normal((n, 2))).astype(np.float32) for k in ("vocals", "drums", "bass", "other")}
        for k, v in stems.items():
            sf.write(d / f"{k}.wav", v, 44100, subtype="FLOAT")
        sf.write(d / "mixture.wav", sum(stems.values()), 44100, subtype="FLOAT")
    out = tmp_path / "out"
    r = _cli("run", "--dataset", "folder", "--root", str(root), "--provider", "oracle:irm", "--metrics", "usdr",
             "-o", str(out), "-q")
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    jobs = pd.read_csv(out / "jobs.csv").set_index("track")
    assert jobs.loc["ok", "status"] == "done"
    assert jobs.loc["tiny", "status"] == "failed" and jobs.loc["tiny", "error_kind"] == "InputError"
    assert "has 1 sample(s); it needs at least 1025" in jobs.loc["tiny", "error"]


def test_nothing_is_paid_for_a_track_that_could_not_be_scored(tmp_path):
    """Checked before the paid submit: a track under a second, and references
    with NaN samples — failed rows naming the problem; the service saw no job."""
    import numpy as np
    import soundfile as sf

    from stemlab.runs import run
    from stemlab.sandbox import SandboxPool

    root = tmp_path / "songs"
    rng = np.random.default_rng(0)
    for name, n, nan in (("short", 22050, False), ("nan-ref", 88200, True)):
        d = root / name
        d.mkdir(parents=True)
        stems = {k: (0.1 * rng.standard_normal((n, 2))).astype(np.float32) for k in ("vocals", "drums", "bass", "other")}
        sf.write(d / "mixture.wav", sum(stems.values()), 44100, subtype="FLOAT")
        if nan:
            stems["bass"][10] = np.nan
        for k, v in stems.items():
            sf.write(d / f"{k}.wav", v, 44100, subtype="FLOAT")
    with SandboxPool() as pool:
        res = run({"datasets": [{"name": "folder", "root": str(root)}],
                   "providers": [{"provider": "aistemsplitter", "sandbox": True}], "metrics": ["usdr"],
                   "output": str(tmp_path / "out")}, quiet=True, sandboxes=pool)
        assert len(pool.get("aistemsplitter").ledger.jobs) == 0
    jobs = res.jobs.set_index("track")
    assert (jobs.status == "failed").all() and (jobs.error_kind == "InputError").all()
    assert "is 0.5 s long; a paid service is not sent tracks under 1 s" in jobs.loc["short", "error"]
    assert "bass.wav has 2 NaN/Inf sample(s)" in jobs.loc["nan-ref", "error"]
    assert (res.jobs.cost_usd.fillna(0) == 0).all()
