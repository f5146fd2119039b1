"""The provider contract: anything that turns a mixture into stems.

A provider is addressed by a string ``family[:variant][?param=value&…]``
(``"demucs:htdemucs_ft?shifts=2&overlap=0.25"``) or a dict. *Params* change the
output and are part of the provider's identity (and of the ledger/cache key);
*options* (device, threads, base URL, API key, timeouts) do not.

Local providers implement :meth:`Provider.separate`; remote ones (see
:mod:`stemlab.services._remote.http`) implement the async job lifecycle and
get ``separate`` for free. The harness only calls :meth:`Provider.aseparate`.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlencode

import numpy as np

from ..errors import ConfigError, InputError
from ..types import Cost, Separation, Track

__all__ = [
    "Param",
    "Status",
    "Provider",
    "JobJournal",
    "NullJournal",
    "parse_spec",
    "format_spec",
    "as_track",
]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _to_bool(value: Any) -> bool:
    """A bool, a 0/1 integer, or a true/false word (see ``_TRUE``/``_FALSE``) as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError


def _to_int(value: Any) -> int:
    """An integral value (not a bool, not a fractional float) as an int."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, float) and not value.is_integer():
        raise ValueError
    return int(value)


def _to_float(value: Any) -> float:
    """A finite number (not a bool) as a float."""
    if isinstance(value, bool):
        raise ValueError
    v = float(value)
    if not math.isfinite(v):
        raise ValueError
    return v


def _to_str(value: Any) -> str:
    """A string or a number (not a bool, list or mapping) as a str."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError  # a list or mapping is not a string parameter
    return str(value)


_CONVERTERS: dict[type, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


@dataclass(frozen=True)
class Param:
    """One parameter of a provider, with its default, type, bounds and unit.

    ``unit`` documents what the number means ("seconds", "fraction of a
    segment", "count", "dB"); it is shown by ``stemlab providers info``."""

    name: str
    type: type
    default: Any
    help: str = ""
    unit: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False

    def coerce(self, value: Any, where: str) -> Any:
        """Convert ``value`` (possibly a query-string ``str``) and check bounds."""
        v, problem = self.check(value)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}", field=where)
        return v

    def check(self, value: Any) -> tuple[Any, str | None]:
        """``(converted value, None)``, or ``(None, "expected …, got …")``
        naming what was wrong (no field path: the caller knows where)."""
        if value is None:
            if self.nullable or self.default is None:
                return None, None
            return None, f"expected {self.describe_type()}, got None"
        try:
            v = self._convert(value)
        except (TypeError, ValueError, OverflowError):
            return None, f"expected {self.describe_type()}, got {_show(value)}"
        problem = self._range_problem(v)
        if problem is not None:
            return None, problem
        return v, None

    def _convert(self, value: Any) -> Any:
        """``value`` as this parameter's type; raises ``ValueError``/``TypeError`` if it is not one."""
        convert = _CONVERTERS.get(self.type)
        if convert is None:
            return self.type(value)
        return convert(value)

    def _range_problem(self, v: Any) -> str | None:
        """What is wrong with a converted value against ``choices``/``min``/``max``, or ``None``."""
        if self.choices is not None and v not in self.choices:
            return f"expected one of {list(self.choices)}, got {_show(v)}"
        if self.min is not None and v < self.min:
            return f"expected {self.describe_type()}, got {_show(v)}"
        if self.max is not None and v > self.max:
            return f"expected {self.describe_type()}, got {_show(v)}"
        return None

    def describe_type(self) -> str:
        name = {bool: "bool", int: "int", float: "float", str: "str"}.get(self.type, self.type.__name__)
        parts = [name]
        if self.min is not None and self.max is not None:
            parts.append(f"in [{self.min}, {self.max}]")
        elif self.min is not None:
            parts.append(f"≥ {self.min}")
        elif self.max is not None:
            parts.append(f"≤ {self.max}")
        if self.choices is not None:
            parts.append(f"one of {list(self.choices)}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.describe_type(),
            "default": self.default,
            "unit": self.unit,
            "help": self.help,
        }


@dataclass(frozen=True)
class Status:
    """Whether a provider can run here: ``ready`` or the reason it cannot."""

    ready: bool
    detail: str = ""
    #: the whole story when ``detail`` is a one-line summary (where it looked, how to fix it)
    help: str = ""

    def __str__(self) -> str:
        return "ready" if self.ready else f"unavailable: {self.detail}"


class JobJournal(Protocol):
    """Where a provider records a job's progress so that a crash never loses a
    paid job. The harness passes its SQLite ledger; standalone use passes
    :class:`NullJournal`.

    The runner guarantees :meth:`submitting` is durable before it returns, so
    a provider must call it *before* any request that can cost money."""

    idempotency_key: str
    remote_id: str | None  # known from a previous run: poll it, never resubmit
    in_doubt: bool  # a previous run died between submitting and submitted

    def submitting(self, estimate: Cost) -> None: ...
    def submitted(self, remote_id: str, cost: Cost, info: Mapping[str, Any] | None = None) -> None: ...
    def phase(self, name: str, seconds: float) -> None: ...
    def note(self, key: str, value: Any) -> None: ...


@dataclass
class NullJournal:
    """A journal that remembers in memory only (library use without a ledger)."""

    idempotency_key: str = ""
    remote_id: str | None = None
    in_doubt: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    cost: Cost | None = None

    def submitting(self, estimate: Cost) -> None:
        self.notes["estimate"] = estimate

    def submitted(self, remote_id: str, cost: Cost, info: Mapping[str, Any] | None = None) -> None:
        self.remote_id = remote_id
        self.cost = cost
        if info:
            self.notes.update(info)

    def phase(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + float(seconds)

    def note(self, key: str, value: Any) -> None:
        self.notes[key] = value


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for messages: shortened, and never raising (a huge int
    has no decimal repr in Python ≥ 3.11)."""
    try:
        text = repr(value)
    except Exception:  # pragma: no cover - int beyond sys.get_int_max_str_digits
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


SPEC_FORM = "'family[:variant][?param=value]'"
#: what a mapping spec may hold besides options
_REF_KEYS = ("provider", "family", "variant", "params", "options")


def _split_string(spec: str, problems: list[tuple[str, str]], at: str) -> tuple[str, str | None, dict[str, Any]]:
    s = spec.strip()
    head, _, query = s.partition("?")
    family, _, variant = head.partition(":")
    family = family.strip().lower()
    if not family:
        problems.append((at, f"expected {SPEC_FORM}, got {_show(spec)}"))
    params: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        params[k] = v
    if query and not params:
        problems.append((at, f"cannot parse parameters {_show(query)} (expected param=value&…)"))
    return family, (variant.strip() or None), params


def _names_ok(m: Mapping[Any, Any], at: str, what: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(k, str) and k:
            out[k] = v
        else:
            problems.append((at, f"expected {what} names (non-empty strings), got key {_show(k)}"))
    return out


def _spec_family(d: dict[Any, Any], problems: list[tuple[str, str]]) -> tuple[str, str | None, dict[str, Any]]:
    """Pop ``provider`` (or ``family``) from the mapping spec ``d``: ``(family, variant, params)``."""
    family, variant = "", None
    params: dict[str, Any] = {}
    if "provider" in d:
        p = d.pop("provider")
        if isinstance(p, str):
            family, variant, params = _split_string(p, problems, "provider")
        else:
            problems.append(("provider", f"expected {SPEC_FORM}, got {_show(p)}"))
        if "family" in d:
            d.pop("family")
            problems.append(("family", "give 'provider' or 'family', not both"))
    elif "family" in d:
        f = d.pop("family")
        if isinstance(f, str) and f.strip():
            family = f.strip().lower()
        else:
            problems.append(("family", f"expected a provider family name, got {_show(f)}"))
    else:
        problems.append(("", "expected key 'provider' (e.g. 'demucs:htdemucs')"))
    return family, variant, params


def _spec_variant(d: dict[Any, Any], variant: str | None, problems: list[tuple[str, str]]) -> str | None:
    """Pop ``variant`` from the mapping spec ``d``: it replaces ``variant`` when given (None keeps it)."""
    if "variant" in d:
        v = d.pop("variant")
        if v is None:
            pass
        elif isinstance(v, str) and v.strip():
            variant = v.strip()
        else:
            problems.append(("variant", f"expected a variant name (string), got {_show(v)}"))
    return variant


def _spec_values(d: dict[Any, Any], key: str, what: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Pop the mapping ``key`` (``params``/``options``) from the mapping spec ``d``: its well-named values."""
    m = d.pop(key, None)
    if m is None:
        return {}
    if isinstance(m, Mapping):
        return _names_ok(m, key, what, problems)
    problems.append((key, f"expected a mapping of {what} values, got {_show(m)}"))
    return {}


def _split_spec(spec: Any) -> tuple[str, str | None, dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """:func:`parse_spec` without raising: ``(family, variant, params,
    options, problems)``; each problem is ``(sub-path, message)`` with the
    sub-path relative to the spec (``""``, ``"params"``, ``"options"`` …)."""
    problems: list[tuple[str, str]] = []
    if isinstance(spec, str):
        family, variant, params = _split_string(spec, problems, "")
        return family, variant, params, {}, problems
    if not isinstance(spec, Mapping):
        problems.append(("", f"expected a provider string {SPEC_FORM} or mapping, got {type(spec).__name__}"))
        return "", None, {}, {}, problems
    d = dict(spec)
    family, variant, params = _spec_family(d, problems)
    variant = _spec_variant(d, variant, problems)
    params.update(_spec_values(d, "params", "parameter", problems))
    options = _spec_values(d, "options", "option", problems)
    options.update(_names_ok(d, "", "option", problems))  # any other key is an option (device, base_url …)
    return family, variant, params, options, problems


def problem_lines(problems: Sequence[tuple[str, str]], where: str | None, family: str = "") -> list[tuple[str, str]]:
    """Root ``(sub-path, message)`` problems at ``where`` (``providers[2]``).
    Without ``where``: the family for sub-paths (``demucs.params.shifts``, as
    a provider's own errors name fields), ``provider spec`` for the spec itself."""
    out = []
    for sub, msg in problems:
        root = where if where is not None else (family if sub and family else "provider spec")
        out.append((f"{root}.{sub}" if sub else root, msg))
    return out


def problems_error(lines: Sequence[tuple[str, str]], what: str = "provider spec", **details: Any) -> ConfigError:
    """One :class:`ConfigError` for ``(path, message)`` lines: the line itself
    when there is one, else ``"<what> has N error(s):"`` and the lines."""
    text = [f"{p}: {m}" for p, m in lines]
    msg = text[0] if len(text) == 1 else f"{what} has {len(text)} error(s):\n  " + "\n  ".join(text)
    return ConfigError(msg, field=lines[0][0] if lines else "", errors=text, **details)


def parse_spec(spec: str | Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """Split a provider spec into ``(family, variant, params, options)``.

    Strings: ``family[:variant][?k=v&…]``. Dicts: ``{"provider": "family:variant",
    "params": {...}, "options": {...}}`` or ``{"family": …, "variant": …, …}``;
    params in the string and in ``params`` are merged (dict wins); any other
    key is an option. Nothing is checked against the provider class here: see
    :class:`stemlab.providers.ref.ProviderRef` for the validated value. Every
    structural problem is reported at once in one :class:`ConfigError`
    (``details["items"]``: ``(sub-path, message)`` pairs)."""
    family, variant, params, options, problems = _split_spec(spec)
    if problems:
        # items: relative to the spec, for callers that root them elsewhere
        raise problems_error(problem_lines(problems, None, family), family=family, items=list(problems))
    return family, variant, params, options


def format_spec(family: str, variant: str | None, params: Mapping[str, Any]) -> str:
    head = family if variant is None else f"{family}:{variant}"
    if not params:
        return head
    items = []
    for k in sorted(params):
        v = params[k]
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, float) and v.is_integer():
            v = repr(v)
        items.append((k, v))
    return f"{head}?{urlencode(items)}"


def as_track(audio: Track | np.ndarray, sample_rate: int | None = None, name: str = "input") -> Track:
    if isinstance(audio, Track):
        return audio
    if sample_rate is None:
        raise InputError("separate(array): pass sample_rate (Hz) with a raw array", field="sample_rate")
    return Track.from_arrays(name, np.asarray(audio, dtype=np.float32), int(sample_rate))


class Provider(abc.ABC):
    """Base class of every provider.

    Subclasses set the class attributes and implement :attr:`stems` and
    :meth:`separate` (local) — or derive from the remote base. Instances are
    cheap: heavy state (models, HTTP clients) loads on first use."""

    family: ClassVar[str] = ""
    kind: ClassVar[str] = "local"  # "local" | "remote"
    description: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ()  # () → the provider takes no variant
    default_variant: ClassVar[str | None] = None
    params_schema: ClassVar[tuple[Param, ...]] = ()
    option_names: ClassVar[tuple[str, ...]] = ()
    needs_references: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    #: input limits checked before any work/payment (None = no limit)
    max_duration: ClassVar[float | None] = None  # seconds
    #: a bound rather than an option one could use or buy: ``"upper"`` (reads
    #: the ground truth, e.g. oracles) or ``"lower"`` (a floor such as the
    #: mixture); per variant in ``bound_variants``. Reports draw bounds as
    #: reference lines, never on a Pareto frontier or in a procurement ranking.
    bound: ClassVar[str | None] = None
    bound_variants: ClassVar[Mapping[str, str]] = {}

    def bound_kind(self) -> str | None:
        """``"upper"``, ``"lower"`` or None (an option): see :attr:`bound`."""
        return self.bound_variants.get(self.variant or "", self.bound)

    def __init__(
        self,
        variant: str | None = None,
        params: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        fam = self.family
        if self.variants:
            v = variant if variant is not None else self.default_variant
            if v not in self.variants:
                raise ConfigError(
                    f"provider {fam}: unknown variant {v!r}; valid: {list(self.variants)}",
                    field=f"{fam}.variant",
                )
            self.variant: str | None = v
        else:
            if variant is not None:
                raise ConfigError(f"provider {fam}: takes no variant, got {variant!r}", field=f"{fam}.variant")
            self.variant = None
        schema = {p.name: p for p in self.params_schema}
        given = dict(params or {})
        unknown = sorted(set(given) - set(schema))
        if unknown:
            raise ConfigError(
                f"provider {fam}: unknown parameter(s) {unknown}; valid: {sorted(schema) or 'none'}",
                field=f"{fam}.params.{unknown[0]}",
            )
        self.config: dict[str, Any] = {}
        for name, p in schema.items():
            raw = given.get(name, p.default)
            self.config[name] = p.coerce(raw, f"{fam}.params.{name}") if name in given else p.default
        bad_opts = sorted(set(options) - set(self.option_names))
        if bad_opts:
            raise ConfigError(
                f"provider {fam}: unknown option(s) {bad_opts}; valid: {sorted(self.option_names) or 'none'}",
                field=f"{fam}.options.{bad_opts[0]}",
            )
        self.options: dict[str, Any] = dict(options)
        self.validate()

    # identity -----------------------------------------------------------------
    def validate(self) -> None:  # noqa: B027  (optional hook: a no-op unless overridden)
        """Cross-parameter checks; raise :class:`ConfigError`. Override."""

    @property
    def id(self) -> str:
        """Canonical id: family, variant and every non-default parameter."""
        schema = {p.name: p for p in self.params_schema}
        non_default = {k: v for k, v in self.config.items() if v != schema[k].default}
        return format_spec(self.family, self.variant, non_default)

    @property
    def params_hash(self) -> str:
        """sha256 (16 hex) of family, variant and *all* params (defaults
        included), so a changed default changes the key."""
        blob = json.dumps(
            {"family": self.family, "variant": self.variant, "params": self.config, "v": self.identity_version()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def identity_version(self) -> str:
        """Bump to invalidate cached outputs (e.g. model checksum). Override."""
        return "1"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # capabilities -----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def stems(self) -> tuple[str, ...]:
        """Names of the stems this configuration returns."""

    def status(self) -> Status:
        """Whether the provider can run here (weights present, key set …)."""
        return Status(True)

    def provenance(self) -> dict[str, Any]:
        """Versions and checksums that identify what ran."""
        from .. import __version__

        return {"stemlab": __version__}

    def estimate_cost(self, track: Track | float) -> Cost:
        """Expected cost for a track (or a duration in seconds) before running."""
        return Cost()

    def check_input(self, track: Track) -> None:
        """Refuse input this provider cannot take, before any work or payment."""
        from ..errors import ProviderRejected

        if self.needs_references and not track.has_references:
            raise ProviderRejected(
                f"{self.id}: needs reference stems, track {track.name!r} has none", provider=self.id, track=track.name
            )
        if self.max_duration is not None and track.seconds > self.max_duration:
            raise ProviderRejected(
                f"{self.id}: track {track.name!r} is {track.seconds:.1f} s, "
                f"above the limit of {self.max_duration:.0f} s",
                provider=self.id,
                track=track.name,
            )

    # running --------------------------------------------------------------------
    def separate(self, track: Track | np.ndarray, sample_rate: int | None = None) -> Separation:
        """Separate synchronously (local providers override this)."""
        t = as_track(track, sample_rate)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aseparate(t))
        raise RuntimeError(f"{self.id}: call 'await aseparate(...)' inside a running event loop")

    async def aseparate(self, track: Track, journal: JobJournal | None = None) -> Separation:
        """Separate from async code. Local providers run in a worker thread."""
        t = as_track(track)
        if type(self).separate is Provider.separate:
            # neither method overridden: the defaults would call each other forever
            raise NotImplementedError(f"{type(self).__name__} ({self.family}): implement separate() or aseparate()")
        return await asyncio.to_thread(type(self).separate, self, t)

    def close(self) -> None:  # noqa: B027  (optional hook: a no-op unless overridden)
        """Release models / clients."""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # metadata -----------------------------------------------------------------------
    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "family": cls.family,
            "kind": cls.kind,
            "description": cls.description,
            "variants": list(cls.variants),
            "default_variant": cls.default_variant,
            "params": [p.as_dict() for p in cls.params_schema],
            "options": list(cls.option_names),
            "needs_references": cls.needs_references,
            "deterministic": cls.deterministic,
        }


def check_output_stems(sep: Separation, expected: Iterable[str], num_samples: int, provider: str) -> None:
    """Shared sanity check of a provider's output (used by the contract tests
    and the runner)."""
    from ..errors import ProviderOutputError

    missing = sorted(set(expected) - set(sep.stems.names))
    if missing:
        raise ProviderOutputError(f"{provider}: output lacks stems {missing}", provider=provider)
    if sep.stems.num_samples != num_samples:
        raise ProviderOutputError(
            f"{provider}: output has {sep.stems.num_samples} samples, expected {num_samples}", provider=provider
        )


def require(names: Sequence[str], have: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in have]
    if missing:
        raise ConfigError(f"{what}: unknown {missing}; valid: {list(have)}", field=what)
