"""Crash-point injection for the durability tests.

``STEMLAB_CRASH_AT="name:n[,name:n…]"`` makes the process SIGKILL itself the
``n``-th time it passes :func:`crashpoint` ``name`` (``n`` defaults to 1).
Unset (always, outside tests) this is a dictionary lookup and nothing else.

Points: ``remote.before_submit`` (after the ledger says *submitting*, before
the request), ``remote.after_submit`` (request sent, id not yet recorded),
``remote.poll``, ``remote.after_download``, ``cache.write`` (files written,
entry not yet renamed), ``run.before_score``, ``run.after_score``.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["crashpoint"]

_lock = threading.Lock()
_counts: dict[str, int] = {}
_plan: dict[str, int] | None = None


def _load() -> dict[str, int]:
    spec = os.environ.get("STEMLAB_CRASH_AT", "")
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, n = item.partition(":")
        out[name] = int(n or 1)
    return out


def crashpoint(name: str) -> None:
    global _plan
    if _plan is None:
        _plan = _load()
    if not _plan or name not in _plan:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] == _plan[name]:
            os.kill(os.getpid(), signal.SIGKILL)
