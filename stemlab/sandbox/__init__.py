"""Offline emulators of the remote services (real HTTP servers on 127.0.0.1).

``with AIStemSplitterSandbox() as sb: create("aistemsplitter", **sb.provider_options())``
— see :mod:`stemlab.sandbox.server` for the framework, :mod:`.faults` for
fault injection, :mod:`.separators` for what they run.
"""

from __future__ import annotations

from typing import Any

from .clock import ScaledClock
from .faults import Fault, FaultPlan
from .separators import DegradedOracle, ReferenceLibrary, dsp_split

__all__ = [
    "ScaledClock",
    "Fault",
    "FaultPlan",
    "DegradedOracle",
    "ReferenceLibrary",
    "dsp_split",
    "Sandbox",
    "AIStemSplitterSandbox",
    "SunoSandbox",
    "DangoSandbox",
    "MVSepSandbox",
    "SANDBOXES",
    "SandboxPool",
    "get_sandbox_class",
]

#: provider family → "module:Class" of its emulator (one line per service)
SANDBOXES: dict[str, str] = {
    "aistemsplitter": "stemlab.sandbox.aistemsplitter:AIStemSplitterSandbox",
    "suno": "stemlab.sandbox.suno:SunoSandbox",
    "dango": "stemlab.sandbox.dango:DangoSandbox",
    "mvsep": "stemlab.sandbox.mvsep:MVSepSandbox",
}


def get_sandbox_class(family: str) -> type:
    import importlib

    from ..errors import ConfigError

    target = SANDBOXES.get(family.lower())
    if target is None:
        raise ConfigError(f"no sandbox for provider {family!r}; available: {sorted(SANDBOXES)}", field="sandbox")
    mod, _, attr = target.partition(":")
    return getattr(importlib.import_module(mod), attr)


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from .server import Sandbox

        return Sandbox
    if name == "AIStemSplitterSandbox":
        return get_sandbox_class("aistemsplitter")
    if name == "SunoSandbox":
        return get_sandbox_class("suno")
    if name == "DangoSandbox":
        return get_sandbox_class("dango")
    if name == "MVSepSandbox":
        return get_sandbox_class("mvsep")
    if name == "SandboxPool":
        from .pool import SandboxPool

        return SandboxPool
    raise AttributeError(f"module 'stemlab.sandbox' has no attribute {name!r}")
