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
