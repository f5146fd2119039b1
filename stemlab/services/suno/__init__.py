"""Suno stems gateway (seed 004).

``provider.py`` client · ``pricing.py`` calls · ``sandbox.py`` emulator.
Registered in :data:`stemlab.services.SERVICES`.
"""
