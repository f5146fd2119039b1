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
This package file imports nothing, so an emulator that runs on
:mod:`.serve` does not load the HTTP client stack (the base class is
:class:`stemlab.services._remote.http.RemoteProvider`).
"""
