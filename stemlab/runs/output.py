"""The output directory as a whole: one run at a time (a lock), one spec
per directory (an owner file), and the provenance ``run.json`` records."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import RunError
from .spec import RunSpec

__all__ = ["OWNER_FILE", "RESULT_FILES", "check_output_dir", "claim_output", "output_lock", "package_versions",
           "run_meta"]

log = logging.getLogger("stemlab.runs")

OWNER_FILE = "run-owner.json"
#: what a results directory holds besides its cache and ledger
RESULT_FILES = ("scores.parquet", "scores.csv", "jobs.parquet", "jobs.csv", "frames.parquet", "run.json")


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Exclusive lock on the output directory: a second runner refuses. An
    output that cannot be a directory (a file, a path under a file, a
    read-only place) is a :class:`RunError` naming it."""
    out = check_output_dir(out)
    path = out / ".lock"
    try:
        fh = open(path, "a+")
    except OSError as e:
        raise RunError(f"output directory {out}: cannot write in it ({e.strerror or e}); choose another -o",
                       file=str(out)) from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunError(
            f"{out} is in use by another stemlab run ({holder}); wait for it or use another output", file=str(out)
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {platform.node()}")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def check_output_dir(out: Path) -> Path:
    """``out`` as a writable directory (created when missing), or a
    :class:`RunError` saying what is in the way."""
    out = Path(out).expanduser()
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == out else f"is under {parent}, which is a file"
            raise RunError(f"output directory {out} {what}; choose another -o", file=str(out))
        if parent.exists():
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"output directory {out}: cannot create it ({e.strerror or e}); choose another -o",
                       file=str(out)) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunError(f"output directory {out} is not writable; choose another -o", file=str(out))
    return out


def _read_owner(f: Path) -> dict[str, Any] | None:
    """The owner record, or None when there is none or it is unreadable."""
    try:
        cur = json.loads(f.read_text())
        if not isinstance(cur, dict):
            raise ValueError("not an object")
        return cur
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s is unreadable (%s): taking the directory over", f, e)
        return None


def claim_output(out: Path, spec: RunSpec, *, overwrite: bool, write: bool = True) -> None:
    """A results directory belongs to one spec (its datasets and providers,
    :attr:`RunSpec.output_hash`): another spec's run refuses, unless
    ``overwrite`` — then the old results go (cache and ledger stay: they are
    content-addressed, and what was paid for is never lost). ``write=False``
    (a dry run) checks without changing anything."""
    f = out / OWNER_FILE
    mine = {"output_hash": spec.output_hash, "name": spec.name, "spec_hash": spec.spec_hash}
    cur = _read_owner(f)
    if cur is not None and cur.get("output_hash") != spec.output_hash:
        if not overwrite:
            raise RunError(
                f"{out} holds the results of another spec ({cur.get('name')!r}: other datasets or providers); "
                "write to another output directory (-o), or pass --overwrite to replace those results (the stem "
                "cache and the ledger are kept and reused)", file=str(out))
        if write:
            for name in RESULT_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "museval", ignore_errors=True)
            log.warning("%s: replaced the results of spec %r", out, cur.get("name"))
    if write and cur != mine:
        tmp = out / f".{OWNER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(mine, indent=1))
        os.replace(tmp, f)


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def package_versions() -> dict[str, str]:
    """Versions of python, stemlab and the packages that shape results."""
    from importlib import metadata

    out = {"python": sys.version.split()[0], "stemlab": __version__}
    for pkg in ("numpy", "scipy", "torch", "demucs", "av", "soundfile", "soxr", "httpx", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_meta(spec: RunSpec) -> dict[str, Any]:
    """What ``run.json`` records of a run as it starts: the spec (redacted),
    its hashes, versions, git commit, host and start time."""
    from .._secrets import redact_obj

    return {
        "name": spec.name,
        "spec_hash": spec.spec_hash,
        "metrics_hash": spec.metrics_hash,
        "spec": redact_obj(spec.raw),  # an api_key written into the spec never reaches disk
        "versions": package_versions(),
        "git_commit": _git_commit(),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "executor": spec.executor,
    }
