"""A provider reference as a value: parsed and validated once.

>>> ref = ProviderRef.parse("demucs:htdemucs_ft?shifts=2", where="providers[0]")
>>> ref.family, ref.variant, ref.params["shifts"]
('demucs', 'htdemucs_ft', 2)
>>> str(ref)                      # canonical: non-default params, sorted
'demucs:htdemucs_ft?shifts=2'
>>> prov = stemlab.providers.create(ref, device="cpu")   # no re-parsing

:meth:`ProviderRef.parse` takes what :func:`stemlab.providers.create` takes (a
``family[:variant][?param=value]`` string or a mapping with ``provider`` /
``family`` / ``variant`` / ``params`` / ``options``), splits it once with
:func:`~stemlab.providers.base.parse_spec`, checks every parameter against the
class's ``params_schema`` (all bad values reported at once, each with its
path: ``providers[2].params.shifts: expected int ≥ 0, got -1``) and lets the
class run its own checks (variant, options, cross-parameter rules) on a
throwaway instance — provider instances are cheap by contract (no weights,
clients or I/O before first use). ``params`` then holds every parameter,
coerced, defaults filled in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigError
from .base import SPEC_FORM, format_spec, parse_spec, problem_lines, problems_error

if TYPE_CHECKING:  # pragma: no cover
    from .base import Provider

__all__ = ["ProviderRef"]


class _FrozenDict(dict):
    """A read-only dict that pickles and copies (a MappingProxyType does not)."""

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("ProviderRef params/options are read-only; use ProviderRef.parse or .replace")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))


@dataclass(frozen=True, eq=False, repr=False)
class ProviderRef:
    """``family``, ``variant``, ``params`` (every parameter, validated, defaults
    filled in) and ``options`` (device, base_url, api_key …: not part of the
    identity). Build one with :meth:`parse` (or :meth:`of` a provider): the
    constructor itself checks nothing."""

    family: str
    variant: str | None
    params: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _FrozenDict(sorted(dict(self.params).items())))
        object.__setattr__(self, "options", _FrozenDict(self.options))

    # ------------------------------------------------------------ construction
    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | ProviderRef | Provider, where: str | None = None) -> ProviderRef:
        """Validate ``spec``; :class:`ConfigError` lists every problem with its
        path under ``where`` (default: ``<family>.params.x`` / ``provider spec``)."""
        if isinstance(spec, ProviderRef):
            return spec
        from .base import Provider

        if isinstance(spec, Provider):
            return cls.of(spec)
        ref, _ = _resolve(spec, where)
        return ref

    @classmethod
    def of(cls, provider: Provider) -> ProviderRef:
        """The reference of a built provider."""
        return cls(provider.family, provider.variant, provider.config, provider.options)

    # ------------------------------------------------------------------ values
    @property
    def provider_class(self) -> type[Provider]:
        from . import get_class

        return get_class(self.family)

    @property
    def kind(self) -> str:
        """``"local"`` or ``"remote"``."""
        return self.provider_class.kind

    @property
    def non_default_params(self) -> dict[str, Any]:
        """The parameters that differ from the class defaults (what ``str(ref)`` shows)."""
        schema = {p.name: p for p in self.provider_class.params_schema}
        return {k: v for k, v in self.params.items() if k not in schema or v != schema[k].default}

    @property
    def id(self) -> str:
        """Canonical ``family:variant?k=v`` (non-default params, sorted) — the
        same string as the built provider's :attr:`Provider.id`."""
        return format_spec(self.family, self.variant, self.non_default_params)

    @property
    def params_hash(self) -> str:
        """sha256 (16 hex) of family, variant and every parameter, defaults
        included: stable across processes and spellings (``shifts=1`` and
        ``{"shifts": 1.0}`` hash alike). Unlike :attr:`Provider.params_hash`
        it does not include the implementation's ``identity_version()``
        (model checksums), which needs the built provider."""
        blob = json.dumps({"family": self.family, "variant": self.variant, "params": dict(self.params)},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def create(self, **options: Any) -> Provider:
        """Build the provider (``options`` merged over :attr:`options`)."""
        from . import create

        return create(self, **options)

    def replace(self, *, options: Mapping[str, Any] | None = None) -> ProviderRef:
        """The same reference with other options (the identity is unchanged)."""
        return ProviderRef(self.family, self.variant, self.params, self.options if options is None else options)

    # ------------------------------------------------------------------ dunder
    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:  # option values may hold keys: names only
        opts = f", options={sorted(self.options)}" if self.options else ""
        return f"ProviderRef({self.id!r}{opts})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProviderRef):
            return NotImplemented
        return (self.family, self.variant, dict(self.params), dict(self.options)) == \
            (other.family, other.variant, dict(other.params), dict(other.options))

    def __hash__(self) -> int:
        return hash((self.family, self.variant, self.params_hash))


def _error(problems: list[tuple[str, str]], where: str | None, family: str = "") -> ConfigError:
    """One ConfigError; ``details["relative"]`` keeps the ``(sub-path, message)``
    pairs for a caller that roots them itself (the run spec)."""
    return problems_error(problem_lines(problems, where, family), relative=list(problems))


def _parse(spec: Any, where: str | None) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """``parse_spec(spec)``, its problems re-raised rooted at ``where``."""
    if not isinstance(spec, (str, Mapping)):
        raise _error([("", f"expected a provider string {SPEC_FORM} or mapping, got {type(spec).__name__}")], where)
    try:
        return parse_spec(spec)
    except ConfigError as e:
        items = cast("list[tuple[str, str]]", e.details.get("items") or [("", str(e))])
        raise _error(list(items), where, str(e.details.get("family", ""))) from None


def _check_params(cls: type[Provider], params: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``(coerced params, problems)``: each known parameter checked against the class's schema,
    unknown ones passed through as they are."""
    schema = {p.name: p for p in cls.params_schema}
    problems: list[tuple[str, str]] = []
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if name in schema:
            v, problem = schema[name].check(value)
            if problem is not None:
                problems.append((f"params.{name}", problem))
            checked[name] = v
        else:
            checked[name] = value
    return checked, problems


def _unknown_names(cls: type[Provider], params: Mapping[str, Any],
                   options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems for parameter and option names the class does not know."""
    schema = {p.name for p in cls.params_schema}
    problems: list[tuple[str, str]] = []
    # names the class's constructor may move to options (demucs: device/threads in the string)
    unknown = sorted(set(params) - schema - set(cls.option_names))
    if unknown:
        problems.append((f"params.{unknown[0]}" if len(unknown) == 1 else "params",
                         f"unknown parameter(s) {unknown}; valid: {sorted(schema) or 'none'}"))
    bad_opts = sorted(set(options) - set(cls.option_names))
    if bad_opts:
        problems.append((f"options.{bad_opts[0]}" if len(bad_opts) == 1 else "options",
                         f"unknown option(s) {bad_opts}; valid: {sorted(cls.option_names) or 'none'}"))
    return problems


def _constructor_problem(e: ConfigError, family: str, fam: str) -> tuple[str, str]:
    """A constructor's ConfigError as ``(sub-path under the family, message without the field prefix)``."""
    field = str(e.details.get("field") or "")
    sub = ""
    for prefix in {f"{fam}.", f"{family}."}:
        if field.startswith(prefix):
            sub = field[len(prefix):]
    msg = str(e)
    if field and msg.startswith(f"{field}: "):  # Param-style "field: expected …": keep the tail
        msg = msg[len(field) + 2:]
    return sub, msg


def _construct(cls: type[Provider], variant: str | None, checked: dict[str, Any], options: dict[str, Any], *,
               family: str, fam: str, has_params: bool, where: str | None) -> Provider:
    """``cls(variant, checked, **options)``, whatever it raises turned into a rooted ConfigError."""
    try:
        return cls(variant, checked, **options)
    except ConfigError as e:
        raise _error([_constructor_problem(e, family, fam)], where, fam) from None
    except Exception as e:  # a provider's constructor choking on a value of the wrong type
        sub = "options" if options else ("params" if has_params else "")
        raise _error([(sub, f"invalid configuration for {fam} ({type(e).__name__}: {e})")], where, fam) from None


def _resolve(spec: Any, where: str | None, extra_options: Mapping[str, Any] | None = None,
             ) -> tuple[ProviderRef, Provider]:
    """Parse once, check against the class, build once: ``(ref, provider)``."""
    from . import get_class

    family, variant, params, options = _parse(spec, where)
    if extra_options:
        options.update(extra_options)
    try:
        cls = get_class(family)
    except ConfigError as e:
        raise _error([("", str(e))], where) from None
    fam = cls.family or family
    checked, problems = _check_params(cls, params)
    problems += _unknown_names(cls, params, options)
    if problems:
        raise _error(problems, where, fam)
    provider = _construct(cls, variant, checked, options, family=family, fam=fam, has_params=bool(params), where=where)
    return ProviderRef(fam, provider.variant, provider.config, provider.options), provider
