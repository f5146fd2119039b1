"""The one HTTP job base every remote service's client is built on.

* :mod:`.http` — :class:`RemoteProvider`, the job lifecycle the ledger drives;
* :mod:`.client` — the shared async HTTP client (auth, retries, rate limit,
  checked downloads); :mod:`.limits` — per-account rate limit and job slots;
* :mod:`.output` — decoding and aligning the returned stems;
* :mod:`.webhooks` — signature verification and a local receiver;
* :mod:`.serve` — a uvicorn server on 127.0.0.1 in a background thread (also
  what the emulators in :mod:`stemlab.services._sandbox` run on; it knows no
  service).

The services themselves live in ``stemlab/services/<name>/provider.py``.
Names below are re-exported lazily, so importing :mod:`.serve` alone does not
load the HTTP client stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RemoteProvider", "JobContext", "JobState", "Submission", "RemoteJobInfo", "PollSchedule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
