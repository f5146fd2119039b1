"""The remote separation services stemlab knows — one folder and one
:data:`SERVICES` entry each.

A service lives in ``stemlab/services/<name>/``:

* ``provider.py`` — the client (a :class:`~stemlab.services._remote.http.RemoteProvider`);
* ``pricing.py`` — its price/credit/point formulas and dated table (the one
  copy: the provider's cost estimates and :mod:`stemlab.reports.pricing` use it);
* ``catalog.py`` (models, stems, algorithm lists) and ``api.py`` (wire
  constants and parsers) where the service has them;
* ``sandbox.py`` — the loopback emulator, written from the service's API
  document alone: it imports :mod:`stemlab.services._sandbox`, core
  types/errors/audio and third-party libraries, never its client or pricing
  (``tests/remote/test_service_layout.py`` checks);
* ``__init__.py`` — a docstring only (importing a service folder is free).

Shared machinery: :mod:`stemlab.services._remote` (the HTTP job base every
client uses) and :mod:`stemlab.services._sandbox` (the emulator framework,
fault injection, the pool and ``stemlab sandbox`` CLI).

Everything else reads :data:`SERVICES`: the provider registry
(:data:`stemlab.providers.BUILTIN`), :data:`stemlab._secrets.ENV_VARS`,
:mod:`stemlab.sandbox` (``SANDBOXES``, ``get_sandbox_class``, the pool and
CLI) and :data:`stemlab.reports.pricing.PRICING`. This module imports
nothing heavy: targets are ``"module:Class"`` strings loaded on demand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["ServiceInfo", "SERVICES", "load", "provider_class", "sandbox_class", "pricing_module", "env_vars"]


@dataclass(frozen=True)
class ServiceInfo:
    """One remote service: where its parts live and which secrets it reads."""

    name: str  #: provider family, folder name and ``stemlab sandbox serve`` name
    provider: str  #: "module:Class" of the client
    sandbox: str  #: "module:Class" of the emulator
    env_var: str  #: environment variable holding the API key
    pricing: str  #: module with the price formulas and ``SERVICE_PRICING``
    description: str  #: one line, shown by ``stemlab providers list``
    webhook_env_var: str | None = None  #: environment variable of the webhook signing secret, if any


_S = "stemlab.services"

#: service name → :class:`ServiceInfo`. Adding a service: its folder plus one entry here.
SERVICES: dict[str, ServiceInfo] = {s.name: s for s in (
    ServiceInfo("aistemsplitter", f"{_S}.aistemsplitter.provider:AIStemSplitter",
                f"{_S}.aistemsplitter.sandbox:AIStemSplitterSandbox", "AISTEMSPLITTER_API_KEY",
                f"{_S}.aistemsplitter.pricing", "AI Stem Splitter hosted Demucs (paid, per minute)",
                webhook_env_var="AISTEMSPLITTER_WEBHOOK_SECRET"),
    ServiceInfo("mvsep", f"{_S}.mvsep.provider:MVSep", f"{_S}.mvsep.sandbox:MVSepSandbox", "MVSEP_API_TOKEN",
                f"{_S}.mvsep.pricing",
                "MVSEP hosted models (BS/Mel-Roformer, Demucs4 HT, ensembles …; paid in credits)"),
    ServiceInfo("dango", f"{_S}.dango.provider:Dango", f"{_S}.dango.sandbox:DangoSandbox", "DANGO_API_KEY",
                f"{_S}.dango.pricing", "Dango vocal remover (团子): vocals/accompaniment or 4 stems (paid, points)"),
    ServiceInfo("suno", f"{_S}.suno.provider:Suno", f"{_S}.suno.sandbox:SunoSandbox", "SUNO_API_KEY",
                f"{_S}.suno.pricing", "Suno stems via an API gateway (vocals + instrumental of a Suno clip)"),
)}


def load(target: str) -> Any:
    """The object a ``"module:attr"`` string names (a module for ``"module"``)."""
    mod, _, attr = target.partition(":")
    m = importlib.import_module(mod)
    return getattr(m, attr) if attr else m


def _info(name: str, what: str) -> ServiceInfo:
    info = SERVICES.get(name.lower())
    if info is None:
        from ..errors import ConfigError

        raise ConfigError(f"no {what} for service {name!r}; available: {sorted(SERVICES)}", field=what)
    return info


def provider_class(name: str) -> type:
    return load(_info(name, "provider").provider)


def sandbox_class(name: str) -> type:
    return load(_info(name, "sandbox").sandbox)


def pricing_module(name: str) -> Any:
    return load(_info(name, "pricing").pricing)


def env_vars() -> dict[str, str]:
    """Secret name → environment variable: ``<service>`` for the API key,
    ``<service>_webhook`` for a webhook signing secret."""
    out: dict[str, str] = {}
    for s in SERVICES.values():
        out[s.name] = s.env_var
        if s.webhook_env_var:
            out[f"{s.name}_webhook"] = s.webhook_env_var
    return out
