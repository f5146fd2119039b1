"""Providers that run on this machine: the Demucs family
(:mod:`~stemlab.providers.local.demucs`), oracle upper bounds
(:mod:`~stemlab.providers.local.oracle`) and floors / DSP baselines
(:mod:`~stemlab.providers.local.baselines`).

Submodules import torch/scipy only when used; import the provider classes
from their modules (the registry does this lazily)."""

__all__: list[str] = []
