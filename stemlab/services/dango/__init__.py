"""Dango vocal remover (api.dango.ai; seed 003).

``provider.py`` client · ``api.py`` wire constants and messages ·
``catalog.py`` algorithms (styles) · ``pricing.py`` points · ``sandbox.py``
emulator. Registered in :data:`stemlab.services.SERVICES`.
"""
