"""AI Stem Splitter (api.aistemsplitter.org; seeds 000/001, SDK ``aistemsplitter`` 0.1.1).

``provider.py`` client · ``pricing.py`` minute packs and credits ·
``catalog.py`` models and stems · ``sandbox.py`` emulator. Registered in
:data:`stemlab.services.SERVICES`.
"""
