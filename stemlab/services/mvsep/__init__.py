"""MVSEP (mvsep.com; seed 002, ``mvsep-cli`` 1.2.0).

``provider.py`` client · ``api.py`` wire constants · ``catalog.py`` the
algorithm list (``algorithms.json`` snapshot) · ``pricing.py`` credits ·
``quality_checker.py`` Quality Checker client · ``sandbox.py`` emulator.
Registered in :data:`stemlab.services.SERVICES`.
"""
