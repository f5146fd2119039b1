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
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Protocol, Sequence
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
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise ConfigError(f"{where}: expected {self.describe_type()}, got None", field=where)
        t = self.type
        try:
            if t is bool:
                if isinstance(value, bool):
                    v: Any = value
                elif isinstance(value, (int, np.integer)) and value in (0, 1):
                    v = bool(value)
                elif isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                    v = value.lower() in _TRUE
                else:
                    raise ValueError
            elif t is int:
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                v = int(value)
            elif t is float:
                if isinstance(value, bool):
                    raise ValueError
                v = float(value)
                if not math.isfinite(v):
                    raise ValueError
            else:
                v = t(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: expected {self.describe_type()}, got {value!r}", field=where
            ) from None
        if self.choices is not None and v not in self.choices:
            raise ConfigError(f"{where}: expected one of {list(self.choices)}, got {v!r}", field=where)
        if self.min is not None and v < self.min:
            raise ConfigError(f"{where}: expected {self.describe_type()}, got {v!r}", field=where)
        if self.max is not None and v > self.max:
            raise ConfigError(f"{where}: expected {self.describe_type()}, got {v!r}", field=where)
        return v

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


def parse_spec(spec: str | Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """Split a provider spec into ``(family, variant, params, options)``.

    Strings: ``family[:variant][?k=v&…]``. Dicts: ``{"provider": "family:variant",
    "params": {...}, "options": {...}}`` or ``{"family": …, "variant": …, …}``;
    params in the string and in ``params`` are merged (dict wins)."""
    if isinstance(spec, str):
        s = spec.strip()
        if not s:
            raise ConfigError("provider spec: expected 'family[:variant][?param=value]', got ''", field="provider")
        head, _, query = s.partition("?")
        family, _, variant = head.partition(":")
        params: dict[str, Any] = {}
        for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            params[k] = v
        if query and not params:
            raise ConfigError(f"provider spec {spec!r}: cannot parse parameters {query!r}", field="provider")
        return family.strip().lower(), (variant.strip() or None), params, {}
    if isinstance(spec, Mapping):
        d = dict(spec)
        if "provider" in d:
            family, variant, params, _ = parse_spec(str(d.pop("provider")))
        elif "family" in d:
            family, variant, params = str(d.pop("family")).lower(), d.pop("variant", None), {}
        else:
            raise ConfigError(f"provider spec: expected key 'provider' (e.g. 'demucs:htdemucs'), got keys {sorted(d)}", field="provider")
        if d.get("variant") is not None:
            variant = str(d.pop("variant"))
        p = d.pop("params", None) or {}
        if not isinstance(p, Mapping):
            raise ConfigError(f"provider {family}: 'params' must be a mapping, got {type(p).__name__}", field="params")
        params.update(p)
        options = dict(d.pop("options", None) or {})
        options.update(d)  # any other key is an option (device, base_url …)
        return family, variant, params, options
    raise ConfigError(f"provider spec: expected str or mapping, got {type(spec).__name__}", field="provider")


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
    def validate(self) -> None:
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
                f"{self.id}: track {track.name!r} is {track.seconds:.1f} s, above the limit of {self.max_duration:.0f} s",
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

    def close(self) -> None:
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
