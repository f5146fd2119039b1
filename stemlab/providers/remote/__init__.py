"""Remote (paid) separation services behind one HTTP base.

* :mod:`._http` — :class:`RemoteProvider`, the job lifecycle the ledger drives;
* :mod:`._client` — the shared async HTTP client (auth, retries, rate limit,
  checked downloads); :mod:`._limits` — per-account rate limit and job slots;
* one small module per service: :mod:`.aistemsplitter`, :mod:`.suno`;
* :mod:`.webhooks` — signature verification and a local receiver.

Offline emulators of every service live in :mod:`stemlab.sandbox`.
"""

from __future__ import annotations

from ._http import JobContext, JobState, PollSchedule, RemoteJobInfo, RemoteProvider, Submission

__all__ = ["RemoteProvider", "JobContext", "JobState", "Submission", "RemoteJobInfo", "PollSchedule"]
