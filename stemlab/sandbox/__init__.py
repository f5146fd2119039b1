"""Offline emulators of the remote services (real HTTP servers on 127.0.0.1).

``with AIStemSplitterSandbox() as sb: create("aistemsplitter", **sb.provider_options())``

A public façade: the emulators live in ``stemlab/services/<name>/sandbox.py``
and are found through :data:`stemlab.services.SERVICES`; the framework is
:mod:`stemlab.services._sandbox` (:mod:`~stemlab.services._sandbox.server`,
:mod:`~stemlab.services._sandbox.faults` for fault injection,
:mod:`~stemlab.services._sandbox.separators` for what they run,
:mod:`~stemlab.services._sandbox.pool`). Every emulator class is importable
from here by its class name (``from stemlab.sandbox import MVSepSandbox``).
"""

from __future__ import annotations

from typing import Any

from ..services import SERVICES, sandbox_class
from ..services._sandbox.clock import ScaledClock
from ..services._sandbox.faults import Fault, FaultPlan
from ..services._sandbox.separators import DegradedOracle, ReferenceLibrary, dsp_split

#: provider family → "module:Class" of its emulator (from :data:`stemlab.services.SERVICES`)
SANDBOXES: dict[str, str] = {name: s.sandbox for name, s in SERVICES.items()}

#: emulator class name → service name
_BY_CLASS: dict[str, str] = {s.sandbox.rpartition(":")[2]: name for name, s in SERVICES.items()}

__all__ = [
    "ScaledClock",
    "Fault",
    "FaultPlan",
    "DegradedOracle",
    "ReferenceLibrary",
    "dsp_split",
    "Sandbox",
    "SANDBOXES",
    "SandboxPool",
    "get_sandbox_class",
    *sorted(_BY_CLASS),
]


def get_sandbox_class(family: str) -> type:
    """The emulator class of a service (:class:`~stemlab.errors.ConfigError` if it has none)."""
    return sandbox_class(family)


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from ..services._sandbox.server import Sandbox

        return Sandbox
    if name == "SandboxPool":
        from ..services._sandbox.pool import SandboxPool

        return SandboxPool
    if name in _BY_CLASS:
        return sandbox_class(_BY_CLASS[name])
    raise AttributeError(f"module 'stemlab.sandbox' has no attribute {name!r}")
