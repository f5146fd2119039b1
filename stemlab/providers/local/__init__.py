"""Providers that run on this machine: the Demucs family
(:mod:`~stemlab.providers.local.demucs`, demucs' own ``apply_model``),
Spleeter (:mod:`~stemlab.providers.local.spleeter`), MSST checkpoints
(:mod:`~stemlab.providers.local.msst`) and UVR models
(:mod:`~stemlab.providers.local.uvr`) run by the shared inference engine
(:mod:`~stemlab.providers.local.engine`), oracle upper bounds
(:mod:`~stemlab.providers.local.oracle`) and floors / DSP baselines
(:mod:`~stemlab.providers.local.baselines`). Model files, caches and
downloads: :mod:`~stemlab.providers.local.weights`; the catalog and
published scores: :mod:`~stemlab.providers.local.zoo`.

Submodules import torch/scipy only when used; import the provider classes
from their modules (the registry does this lazily)."""

__all__: list[str] = []
