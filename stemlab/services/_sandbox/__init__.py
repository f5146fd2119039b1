"""The emulator framework the services' ``sandbox.py`` modules are built on.

* :mod:`.server` — :class:`~.server.Sandbox`: a real HTTP server on
  127.0.0.1 with its own ledger, expiring signed file URLs and fault hooks;
* :mod:`.clock` — the scaled virtual clock; :mod:`.faults` — fault plans;
* :mod:`.separators` — what the emulators run (degraded oracle, DSP split);
* :mod:`.pool` — one running sandbox per service for the harness;
* :mod:`.cli` — ``stemlab sandbox serve|list``.

Which services have a sandbox is :data:`stemlab.services.SERVICES`; the
public façade is :mod:`stemlab.sandbox`. Nothing here imports a service's
client or pricing.
"""
