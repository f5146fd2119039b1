"""Provider registry.

Built-ins are listed in :data:`BUILTIN` — one line per local provider plus
the remote services of :data:`stemlab.services.SERVICES` — imported lazily. Third-party packages add providers through the ``stemlab.providers``
entry-point group (``name = "pkg.module:ProviderClass"``).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Mapping

from ..errors import ConfigError
from ..services import SERVICES
from .base import JobJournal, NullJournal, Param, Provider, Status, format_spec, parse_spec
from .ref import ProviderRef

__all__ = [
    "BUILTIN",
    "Provider",
    "Param",
    "Status",
    "JobJournal",
    "NullJournal",
    "create",
    "ProviderRef",
    "get_class",
    "families",
    "parse_spec",
    "format_spec",
    "register",
]

#: family → "module:Class". One line per local provider; the remote services
#: come from :data:`stemlab.services.SERVICES` (one entry per service there).
BUILTIN: dict[str, str] = {
    "demucs": "stemlab.providers.local.demucs:DemucsProvider",
    "oracle": "stemlab.providers.local.oracle:OracleProvider",
    "baseline": "stemlab.providers.local.baselines:BaselineProvider",
    "spleeter": "stemlab.providers.local.spleeter:SpleeterProvider",
    "msst": "stemlab.providers.local.msst:MsstProvider",
    "uvr": "stemlab.providers.local.uvr:UvrProvider",
    **{name: s.provider for name, s in SERVICES.items()},
}

_registered: dict[str, type[Provider]] = {}
_entry_points: dict[str, str] | None = None


def register(cls: type[Provider]) -> type[Provider]:
    """Register a provider class at run time (also usable as a decorator)."""
    if not cls.family:
        raise ConfigError(f"{cls.__name__}: set the 'family' class attribute", field="family")
    _registered[cls.family] = cls
    return cls


def _eps() -> dict[str, str]:
    global _entry_points
    if _entry_points is None:
        found: dict[str, str] = {}
        try:
            for ep in metadata.entry_points(group="stemlab.providers"):
                found[ep.name.lower()] = ep.value
        except Exception:  # pragma: no cover - broken metadata of another package
            pass
        _entry_points = found
    return _entry_points


def families() -> list[str]:
    """Every known provider family (built-in, registered, entry points)."""
    return sorted(set(BUILTIN) | set(_registered) | set(_eps()))


def get_class(family: str) -> type[Provider]:
    fam = family.lower()
    if fam in _registered:
        return _registered[fam]
    target = BUILTIN.get(fam) or _eps().get(fam)
    if target is None:
        raise ConfigError(f"unknown provider {family!r}; valid: {families()}", field="provider")
    mod, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"provider {family!r}: cannot import {target} ({e})", field="provider") from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider {family!r}: {target} is not a stemlab Provider subclass", field="provider")
    _registered[fam] = cls
    return cls


def create(spec: "str | Mapping[str, Any] | ProviderRef | Provider", **options: Any) -> Provider:
    """Build a provider from ``"family:variant?param=value"``, a dict or a
    :class:`ProviderRef` (a provider instance is returned as is).

    Keyword ``options`` (device, base_url, api_key …) are merged over those of
    the spec. A string or dict is parsed once and the provider built once; a
    :class:`ProviderRef` is not parsed again."""
    if isinstance(spec, Provider):
        return spec
    if isinstance(spec, ProviderRef):
        cls = get_class(spec.family)
        return cls(spec.variant, spec.non_default_params, **{**spec.options, **options})
    from .ref import _resolve

    return _resolve(spec, None, options)[1]
