"""Experiment specs: one YAML/TOML file, Python dict or papermill parameters.

The spec is a tree of typed (pydantic) models; :func:`load_spec` validates it
in one pass — types, ranges, unknown keys, and what needs the registries
(provider families and their ``params_schema``, metric names, dataset names
and loader options, ``metric_options``/``alignment`` keys, ``targets``) — and
reports every problem at once, each with its path::

    ConfigError: spec has 2 error(s):
      providers[2].params.shifts: expected int in [0, 20], got -1
      budget.usd: expected a number ≥ 0, got 'lots'

Schema (all keys optional except ``datasets`` and ``providers``; the JSON
schema editors can validate against is ``docs/spec.schema.json``, from
:meth:`RunSpec.json_schema`)::

    name: my-comparison
    datasets:                      # or a single name: "demo"
      - name: musdb18              # demo | musdb18 | musdb18hq | folder
        root: ~/data/musdb18
        split: test                # subset / split / stems / mixture as the loader takes
        options: {}                # more loader options (demo: tracks, seconds, seed)
        tracks: ["A - B"]          # or pattern: "A*", limit: 5
    providers:                     # strings or dicts
      - "demucs:htdemucs_ft?shifts=1"
      - provider: mvsep:bs_roformer
        params: {}                 # merged over the string's ?k=v
        sandbox: false             # true → the in-package sandbox (default for remote)
        options: {base_url: …}
        max_concurrency: 2         # running jobs of this provider
        rate_limit: 5              # requests/s (remote)
        budget: {usd: 2.0, credits: 100}
        timeout: 600               # seconds per job (default timeouts.job_seconds)
        label: mvsep-roformer
    metrics: [bsseval_v4, usdr, si_sdr]
    metric_options: {win: 1.0, hop: 1.0, nan_policy: museval, device: cpu}   # device: cpu (numpy) | torch | cuda
    alignment: {enabled: true, max_shift_ms: 250, gain: false}
    targets: [vocals, accompaniment]
    output: stemlab-results
    budget: {usd: 10.0}            # hard cap over all paid jobs
    concurrency: {local: 1, remote: 4}
    retries: {max_attempts: 2}
    timeouts: {job_seconds: 3600}
    sandbox: true                  # default for every remote provider
    executor: local                # local | ray
    executor_options: {address: auto, num_cpus: 2, num_gpus: 1, actors_per_provider: 4}

Each provider entry becomes a :class:`ProviderSel` carrying a validated
:class:`~stemlab.providers.ref.ProviderRef` (parsed once) and the run-level
fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, cast

import annotated_types as at
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import ConfigError
from ..metrics.scoring import ALIGN_OPTIONS, METRIC_OPTIONS
from ..providers.base import SPEC_FORM, _show
from ..providers.ref import ProviderRef

__all__ = [
    "DEFAULT_METRICS",
    "AlignmentOptions",
    "Concurrency",
    "DatasetSel",
    "DemoOptions",
    "ExecutorOptions",
    "FolderOptions",
    "MetricOptions",
    "MusdbOptions",
    "ProviderBudget",
    "ProviderSel",
    "Retries",
    "RunBudget",
    "RunSpec",
    "Timeouts",
    "load_spec",
]

from ..metrics.registry import DEFAULT_METRICS  # declared once, with the metrics

# ------------------------------------------------------------------ errors
#
# Every check raises (or collects) "stemlab" errors whose message is already
# in the report's wording; pydantic's own errors (should one slip through)
# are translated. A validator that finds several problems raises them all
# at once as one ValidationError, which pydantic merges into the enclosing
# one with the location prefixed.

_KIND = "stemlab_spec"
Loc = tuple[str | int, ...]


def _err(msg: str) -> PydanticCustomError:
    return PydanticCustomError(_KIND, "{msg}", {"msg": msg})


def _fail(items: Sequence[tuple[Loc, str]]) -> None:
    raise ValidationError.from_exception_data(
        "RunSpec", [InitErrorDetails(type=_err(msg), loc=tuple(loc), input=None) for loc, msg in items])


def _key(k: Any) -> str:
    return k if isinstance(k, str) else _show(k)


def _translate(d: Mapping[str, Any]) -> str:
    t = d.get("type")
    if t == _KIND:
        return str(d["ctx"]["msg"])
    if t == "missing":
        return "required"
    if t == "extra_forbidden":
        return "unknown key"
    if t in ("model_type", "dict_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping, got {_show(d.get('input'))}"
    msg = str(d.get("msg") or t)
    return f"{msg[:1].lower()}{msg[1:]}, got {_show(d.get('input'))}"


def _items(e: ValidationError) -> list[tuple[Loc, str]]:
    return [(tuple(d["loc"]), _translate(d)) for d in e.errors(include_url=False)]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _path(loc: Loc) -> str:
    """``("providers", 2, "params", "shifts")`` → ``providers[2].params.shifts``
    (an odd key — spaces, dots, control characters — as ``['a b']``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_show(part)}]"
    return out or "spec"


# ------------------------------------------------------------------ leaf types

def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounds(kind: str, lo: float | None, hi: float | None, exclusive: bool) -> str:
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]"
    if lo is not None:
        return f"{kind} {'>' if exclusive else '≥'} {lo}"
    if hi is not None:
        return f"{kind} ≤ {hi}"
    return kind


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    want = _bounds("int", lo, hi, False)

    def check(v: Any) -> int:
        ok = _is_num(v) and (isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()))
        if ok:
            v = int(v)
            ok = (lo is None or v >= lo) and (hi is None or v <= hi)
        if not ok:
            raise _err(f"expected {want}, got {_show(v)}")
        return v

    return check


def _num(lo: float | None = None, hi: float | None = None, *, exclusive: bool = False) -> Callable[[Any], float]:
    want = _bounds("a number", lo, hi, exclusive)

    def check(v: Any) -> float:
        ok = _is_num(v)
        if ok:
            try:
                f = float(v)
            except OverflowError:
                ok = False
            else:
                ok = math.isfinite(f) and (lo is None or (f > lo if exclusive else f >= lo)) and (hi is None or f <= hi)
        if not ok:
            raise _err(f"expected {want}, got {_show(v)}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _err(f"expected true/false, got {_show(v)}")
    return v


def _text(what: str = "a non-empty string") -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise _err(f"expected {what}, got {_show(v)}")
        return v

    return check


def _choice(choices: Sequence[str]) -> Callable[[Any], str]:
    text = " or ".join(repr(c) for c in choices) if len(choices) == 2 else f"one of {list(choices)}"

    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            raise _err(f"expected {text}, got {_show(v)}")
        return v

    return check


def _names(what: str) -> Callable[[Any], tuple[str, ...]]:
    """A non-empty list of non-empty strings (one bad item: its own path)."""

    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)) or not v:
            raise _err(f"expected a non-empty list of {what}, got {_show(v)}")
        bad = [((i,), f"expected {what.removesuffix('s')} (a non-empty string), got {_show(x)}")
               for i, x in enumerate(v) if not isinstance(x, str) or not x.strip()]
        if bad:
            _fail(bad)
        return tuple(v)

    return check


def _path_text(v: Any) -> str:
    if isinstance(v, Path):
        v = str(v)
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        raise _err(f"expected a directory path, got {_show(v)}")
    return v


def _root(v: Any) -> str:
    v = _path_text(v)
    try:
        return str(Path(v).expanduser())
    except RuntimeError:  # ~someone without a home directory: the loader says so
        return v


def _as_is(v: Any) -> Any:
    return v


Int = Annotated[int, BeforeValidator(_int())]
PosInt = Annotated[int, at.Ge(1), BeforeValidator(_int(1))]
NonNegNumber = Annotated[float, at.Ge(0), BeforeValidator(_num(0))]
PosNumber = Annotated[float, at.Gt(0), BeforeValidator(_num(0, exclusive=True))]
Bool = Annotated[bool, BeforeValidator(_bool)]
Text = Annotated[str, at.MinLen(1), BeforeValidator(_text())]
PathText = Annotated[str, at.MinLen(1), BeforeValidator(_path_text)]
Root = Annotated[str, at.MinLen(1), BeforeValidator(_root)]
Glob = Annotated[str, at.MinLen(1), BeforeValidator(_text("a glob pattern (string)"))]
TrackNames = Annotated[tuple[str, ...], at.MinLen(1), BeforeValidator(_names("track names"))]
StemNames = Annotated[tuple[str, ...], at.MinLen(1), BeforeValidator(_names("stem names"))]


def _label(v: Any) -> str:
    if _is_num(v) and not (isinstance(v, float) and not math.isfinite(v)):
        return str(v)  # a YAML label: 2024 is still a label
    if not isinstance(v, str) or not v.strip():
        raise _err(f"expected a label (non-empty string), got {_show(v)}")
    return v


Label = Annotated[str, at.MinLen(1), BeforeValidator(_label)]


# ------------------------------------------------------------------ base model

class _Model(BaseModel):
    """Every spec section: frozen, unknown keys reported one per line (with
    the valid ones), every problem of the section and its children collected
    before anything is raised."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True,
                              validate_default=False)

    #: ``null`` means "all defaults" (``budget: null``)
    _none_ok: ClassVar[bool] = True
    #: input keys that are not fields (handled by :meth:`_before`)
    _input_keys: ClassVar[tuple[str, ...]] = ()
    _unknown_hint: ClassVar[str] = ""
    _type_msg: ClassVar[str] = "expected a mapping, got {show}"
    #: accept any key (loader options of a dataset stemlab has no model for)
    _open: ClassVar[bool] = False

    @classmethod
    def valid_keys(cls) -> list[str]:
        return sorted({(f.alias or n) for n, f in cls.model_fields.items()} | set(cls._input_keys))

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return data

    @classmethod
    def _before(cls, data: dict[str, Any], items: list[tuple[Loc, str]], given: Any) -> dict[str, Any]:
        return data

    def _after(self, items: list[tuple[Loc, str]], given: Any) -> None:
        pass

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        if isinstance(data, cls):
            return data
        given = data
        if data is None and cls._none_ok:
            data = {}
        data = cls._coerce(data)
        if not isinstance(data, Mapping):
            _fail([((), cls._type_msg.format(show=_show(data), type=type(data).__name__))])
        items: list[tuple[Loc, str]] = []
        known = set(cls.valid_keys())
        clean: dict[str, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and (k in known or cls._open):
                clean[k] = v
            else:
                items.append(((_key(k),), f"unknown key; valid: {sorted(known)}{cls._unknown_hint}"))
        clean = cls._before(clean, items, given)
        reported = {loc[0] for loc, _ in items if loc}  # one line per problem: not again from the fields
        out = None
        try:
            out = handler(clean)
        except ValidationError as e:
            items.extend((loc, msg) for loc, msg in _items(e) if not (loc and loc[0] in reported))
        if out is not None:
            out._after(items, given)
        if items:
            _fail(items)
        return out


class _Section(_Model, Mapping[str, Any]):
    """A section that is also a read-only mapping: ``dict(section)`` holds the
    keys written in the spec (plus :attr:`_always`) — what the runner
    forwards (``alignment.setdefault("force", True)`` for remote providers
    needs ``force`` absent unless written); attributes hold every value,
    defaults filled in."""

    _always: ClassVar[tuple[str, ...]] = ()

    def keys(self) -> Any:
        return [n for n in type(self).model_fields if n in self.model_fields_set or n in self._always]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a Mapping's, not BaseModel's (key, value)
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:  # an empty section is still a section
        return True


# ------------------------------------------------------------------ sections

class RunBudget(_Model):
    """Hard cap over all paid jobs of the run."""

    usd: NonNegNumber | None = None
    _unknown_hint: ClassVar[str] = " (per-provider credits go under providers[i].budget)"


class ProviderBudget(_Model):
    """Cap for one provider (USD and/or the service's credits)."""

    usd: NonNegNumber | None = None
    credits: NonNegNumber | None = None


class ProviderPrice(_Model):
    """Your money price for a remote service whose documents publish none
    (MVSEP credits, Dango points, Suno calls) or another than the published one
    (an AI Stem Splitter pack). ``usd_per_credit``: USD per unit the job rows
    count (MVSEP credit, Dango point, Suno call, AI Stem Splitter credit =
    1 s of input); the service's own key says the same in its words. ``source``:
    where your price comes from (recorded with the job rows)."""

    usd_per_credit: NonNegNumber | None = None
    usd_per_point: NonNegNumber | None = None
    usd_per_call: NonNegNumber | None = None
    usd_per_minute: NonNegNumber | None = None
    pack: Text | None = None
    source: Text | None = None

    def given(self) -> dict[str, Any]:
        """The keys written (values not None)."""
        return {k: getattr(self, k) for k in type(self).model_fields if getattr(self, k) is not None}


class Concurrency(_Model):
    """Jobs running at once, per kind of provider."""

    local: PosInt = 1
    remote: PosInt = 4


class Retries(_Model):
    max_attempts: PosInt = 2


class Timeouts(_Model):
    job_seconds: PosNumber = 3600.0


_NAN_POLICIES = ("museval", "target")


def _reference_bits(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v == "auto"):
        return v
    if _is_num(v) and not isinstance(v, float) and 2 <= v <= 32:
        return v
    raise _err(f"expected 'auto', null or int in [2, 32], got {_show(v)}")


def _device(v: Any) -> Any:
    from ..errors import InputError
    from ..metrics.devices import parse_device

    try:
        parse_device(v)
    except InputError:
        raise _err(f"expected 'cpu' (numpy), 'torch', 'torch:cpu', 'cuda' or 'cuda:N', got {_show(v)}") from None
    return v.strip().lower()


class MetricOptions(_Section):
    """``metric_options``: see :data:`stemlab.metrics.scoring.METRIC_OPTIONS`."""

    win: PosNumber = METRIC_OPTIONS["win"]
    hop: PosNumber = METRIC_OPTIONS["hop"]
    nan_policy: Annotated[Literal["museval", "target"], BeforeValidator(_choice(_NAN_POLICIES))] = \
        METRIC_OPTIONS["nan_policy"]
    filters_len: PosInt = METRIC_OPTIONS["filters_len"]
    reference_bits: Annotated[Literal["auto"] | Annotated[int, at.Ge(2), at.Le(32)] | None,
                              BeforeValidator(_reference_bits)] = METRIC_OPTIONS["reference_bits"]
    #: the metrics' backend (:mod:`stemlab.metrics.devices`); a speed setting —
    #: the scores are the numpy path's (float64), so it is not in ``metrics_hash``.
    #: Whether a GPU exists is checked where the scores are computed.
    device: Annotated[str, BeforeValidator(_device)] = METRIC_OPTIONS["device"]


class AlignmentOptions(_Section):
    """``alignment``: see :data:`stemlab.metrics.scoring.ALIGN_OPTIONS`."""

    _always: ClassVar[tuple[str, ...]] = ("enabled",)

    enabled: Bool = ALIGN_OPTIONS["enabled"]
    force: Bool = ALIGN_OPTIONS["force"]
    max_shift_ms: NonNegNumber = ALIGN_OPTIONS["max_shift_ms"]
    gain: Bool = ALIGN_OPTIONS["gain"]
    min_correlation: Annotated[float, at.Ge(-1), at.Le(1), BeforeValidator(_num(-1, 1))] = \
        ALIGN_OPTIONS["min_correlation"]


def _runtime_env(v: Any) -> Any:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
        raise _err(f"expected a mapping (Ray runtime_env), got {_show(v)}")
    return dict(v)


class ExecutorOptions(_Section):
    """``executor_options`` (``executor: ray``): see :class:`stemlab.runs.executors.RayExecutor`."""

    address: Text | None = None
    num_cpus: NonNegNumber | None = None
    num_gpus: NonNegNumber | None = None
    actors_per_provider: PosInt | None = None
    init_cpus: PosInt | None = None
    runtime_env: Annotated[dict[str, Any], BeforeValidator(_runtime_env)] | None = None


# ------------------------------------------------------------------ datasets

def _demo_tracks() -> int:
    from ..datasets.demo import DEFAULT_SONGS

    return len(DEFAULT_SONGS)


_DEMO_TRACKS = _demo_tracks()


class DemoOptions(_Section):
    """Loader options of ``demo``."""

    tracks: Annotated[int, at.Ge(1), at.Le(_DEMO_TRACKS), BeforeValidator(_int(1, _DEMO_TRACKS))] | None = None
    seconds: Annotated[float, at.Ge(1), at.Le(600), BeforeValidator(_num(1, 600))] | None = None
    seed: Annotated[int, at.Ge(0), at.Le(2 ** 32 - 1), BeforeValidator(_int(0, 2 ** 32 - 1))] | None = None
    subset: Annotated[Literal["test"], BeforeValidator(_choice(("test",)))] | None = None
    names: TrackNames | None = None


class MusdbOptions(_Section):
    """Loader options of ``musdb18`` / ``musdb18hq``."""

    subset: Annotated[Literal["train", "test"], BeforeValidator(_choice(("train", "test")))] | None = None
    split: Annotated[Literal["train", "valid", "test"], BeforeValidator(_choice(("train", "valid", "test")))] | None = (
        None
    )
    names: TrackNames | None = None

    def _after(self, items: list[tuple[Loc, str]], given: Any) -> None:
        need = {"train": "train", "valid": "train", "test": "test"}
        if self.split and self.subset and need[self.split] != self.subset:
            items.append((("split",), (f"split {self.split!r} is part of subset {need[self.split]!r}, "
                                      f"not {self.subset!r}")))


class FolderOptions(_Section):
    """Loader options of ``folder``."""

    subset: Text | None = None
    stems: StemNames | None = None
    mixture: Text | None = None
    names: TrackNames | None = None
    dataset_name: Text | None = None


class _AnyOptions(_Section):
    """Options of a dataset stemlab has no model for: passed through."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _open: ClassVar[bool] = True

    def keys(self) -> Any:
        return list(self.model_extra or {})

    def __getitem__(self, key: str) -> Any:
        return (self.model_extra or {})[key]


_OPTION_MODELS: dict[str, type[_Section]] = {
    "demo": DemoOptions, "musdb18": MusdbOptions, "musdb18hq": MusdbOptions, "folder": FolderOptions,
}
_DATASET_ALIASES = {"musdb": "musdb18", "musdbhq": "musdb18hq", "musdb-hq": "musdb18hq", "musdb18-hq": "musdb18hq"}
#: loader options also accepted next to ``name`` (merged over ``options``)
_TOP_OPTIONS = ("subset", "split", "stems", "mixture")
# validated per dataset by DatasetSel._before; the schema offers the three models
_DatasetOptions = Annotated[
    DemoOptions | MusdbOptions | FolderOptions | _AnyOptions,
    BeforeValidator(_as_is, json_schema_input_type=DemoOptions | MusdbOptions | FolderOptions),
]


def _dataset_names() -> list[str]:
    import stemlab.datasets as D

    return D.names()


def _canon_dataset(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    key = _DATASET_ALIASES.get(name.strip().lower(), name.strip().lower())
    return key if key in _dataset_names() else None


def _merge_top_options(data: dict[str, Any], canon: str, model: type[_Section], merged: dict[str, Any],
                       items: list[tuple[Loc, str]]) -> None:
    """Loader options given at the top of a dataset entry (``subset``,
    ``split`` …) into ``merged``; one that the dataset does not take, or
    that does not validate, is reported in ``items`` and dropped from ``data``."""
    for k in _TOP_OPTIONS:
        v = data.get(k)
        if v is None:
            continue
        if k not in model.model_fields and not model._open:
            items.append(((k,), f"not an option of dataset {canon!r}; valid: {model.valid_keys()}"))
            data.pop(k)
            continue
        try:
            merged.update(model.model_validate({k: v}).model_dump(exclude_unset=True))
        except ValidationError as e:
            items.extend(_items(e))
            data.pop(k)


class DatasetSel(_Model):
    """One dataset of the run: ``name`` (+ ``root``), its loader options
    (typed per dataset) and an optional track selection."""

    name: Text
    root: Root | None = None
    subset: Text | None = None
    split: Annotated[Literal["train", "valid", "test"], BeforeValidator(_choice(("train", "valid", "test")))] | None = (
        None
    )
    stems: StemNames | None = None
    mixture: Text | None = None
    options: _DatasetOptions | None = None
    tracks: TrackNames | None = None
    pattern: Glob | None = None
    limit: PosInt | None = None

    _none_ok: ClassVar[bool] = False
    _type_msg: ClassVar[str] = "expected a dataset name or mapping, got {type}"
    _given_kwargs: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @classmethod
    def _before(cls, data: dict[str, Any], items: list[tuple[Loc, str]], given: Any) -> dict[str, Any]:
        name = data.get("name")
        canon = _canon_dataset(name)
        if canon is None:
            items.append((("name",), f"expected one of {_dataset_names()}, got {_show(name)}"))
        model = _OPTION_MODELS.get(canon or "", _AnyOptions)
        opts = data.pop("options", None)
        merged: dict[str, Any] = {}
        if opts is not None and not isinstance(opts, Mapping):
            items.append((("options",), f"expected a mapping of loader options, got {_show(opts)}"))
        elif opts is not None and canon is not None:
            try:
                merged.update(model.model_validate(opts).model_dump(exclude_unset=True))
            except ValidationError as e:
                items.extend((("options",) + loc, msg) for loc, msg in _items(e))
        if canon is not None:
            _merge_top_options(data, canon, model, merged, items)
            try:
                data["options"] = model.model_validate(merged)
            except ValidationError as e:  # cross-key checks (musdb split vs subset)
                items.extend(_items(e))
        return data

    def _after(self, items: list[tuple[Loc, str]], given: Any) -> None:
        # what the loader is called with, as written (the output directory's owner hash)
        d = given if isinstance(given, Mapping) else {"name": given}
        opts = d.get("options")
        kw = dict(opts) if isinstance(opts, Mapping) else {}
        kw.update({k: d[k] for k in _TOP_OPTIONS if d.get(k) is not None})
        self._given_kwargs = kw

    @property
    def kwargs(self) -> Mapping[str, Any]:
        """The loader's keyword arguments (``options`` and the top-level ones)."""
        return dict(self.options) if self.options is not None else {}

    @property
    def dataset(self) -> str:
        """The canonical dataset name (``musdb`` → ``musdb18``)."""
        return _canon_dataset(self.name) or self.name

    def open(self):
        import stemlab.datasets as D

        ds = D.load(self.name, self.root, **dict(self.kwargs))
        if self.tracks is not None or self.pattern is not None or self.limit is not None:
            ds = ds.filter(names=self.tracks, pattern=self.pattern, limit=self.limit)
        return ds

    def _hash_key(self) -> list[Any]:
        return [self.name, self.root, self._given_kwargs, self.tracks, self.pattern, self.limit]


# ------------------------------------------------------------------ providers

#: run-level keys of a provider entry (the rest makes its ProviderRef)
_RUN_KEYS = ("sandbox", "max_concurrency", "rate_limit", "budget", "label", "timeout", "price")
_REF_KEYS = ("provider", "family", "variant", "params", "options")
_PLACEHOLDER = ProviderRef("?", None, {})


def _provider_schema(schema: dict[str, Any]) -> None:
    props = schema.setdefault("properties", {})
    props.pop("ref", None)
    schema["required"] = [r for r in schema.get("required", []) if r != "ref"]
    if not schema["required"]:
        schema.pop("required")
    ref_props = {
        "provider": {
            "type": "string",
            "minLength": 1,
            "description": f"{SPEC_FORM}, e.g. 'demucs:htdemucs_ft?shifts=1'",
        },
        "family": {"type": "string", "minLength": 1, "description": "provider family (instead of 'provider')"},
        "variant": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
        "params": {"type": "object", "description": "parameters (see `stemlab providers info FAMILY`)"},
        "options": {"type": "object", "description": "device, threads, base_url, api_key … (not part of the identity)"},
    }
    schema["properties"] = {**ref_props, **props}
    schema["anyOf"] = [{"required": ["provider"]}, {"required": ["family"]}]


class ProviderSel(_Model):
    """One provider of the run: its :class:`ProviderRef` (validated against
    the provider class) and the run-level settings."""

    model_config = ConfigDict(json_schema_extra=_provider_schema)

    ref: Annotated[ProviderRef, WithJsonSchema({})]
    label: Label | None = None
    sandbox: Bool | None = None
    max_concurrency: PosInt | None = None
    rate_limit: PosNumber | None = None
    budget: ProviderBudget | None = None
    timeout: PosNumber | None = None
    price: ProviderPrice | None = None

    _none_ok: ClassVar[bool] = False
    _input_keys: ClassVar[tuple[str, ...]] = _REF_KEYS
    _type_msg: ClassVar[str] = "expected a provider string or mapping, got {type}"
    _given: Any = PrivateAttr(None)

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [k for k in super().valid_keys() if k != "ref"]

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return {"provider": data} if isinstance(data, str) else data

    @classmethod
    def _before(cls, data: dict[str, Any], items: list[tuple[Loc, str]], given: Any) -> dict[str, Any]:
        ref_in: Any = given if isinstance(given, str) else {k: data[k] for k in _REF_KEYS if k in data}
        for k in _REF_KEYS:
            data.pop(k, None)
        try:
            ref = ProviderRef.parse(ref_in, where="")
        except ConfigError as e:
            relative = cast("list[tuple[str, str]]", e.details.get("relative") or [("", str(e))])
            for sub, msg in relative:
                items.append((tuple(sub.split(".")) if sub else (), msg))
            ref = _PLACEHOLDER
        data["ref"] = ref
        if ref is not _PLACEHOLDER and ref.kind != "remote" and isinstance(data.get("sandbox"), bool):
            data["sandbox"] = None  # a local provider has no sandbox
        return data

    def _after(self, items: list[tuple[Loc, str]], given: Any) -> None:
        if self.price is not None and self.ref is not _PLACEHOLDER:
            items.extend((("price", *loc), msg) for loc, msg in _price_problems(self.ref, self.price))
        # the entry as written, without run-level keys (the output directory's owner hash)
        self._given = given if isinstance(given, str) else {k: v for k, v in dict(given).items() if k not in _RUN_KEYS}

    @property
    def spec(self) -> Any:
        """The provider as written in the spec (string or mapping, without the run-level keys)."""
        return self._given if self._given is not None else str(self.ref)

    @property
    def family(self) -> str:
        return self.ref.family

    @property
    def budget_usd(self) -> float | None:
        return self.budget.usd if self.budget is not None else None

    @property
    def budget_credits(self) -> float | None:
        return self.budget.credits if self.budget is not None else None


def _price_problems(ref: ProviderRef, price: ProviderPrice) -> list[tuple[Loc, str]]:
    """What in ``price`` does not apply to ``ref``'s service."""
    if ref.kind != "remote":
        return [((), "a price applies to remote services only (local providers cost compute time)")]
    from ..services import SERVICES, pricing_module

    if ref.family not in SERVICES:
        return []
    sp = pricing_module(ref.family).SERVICE_PRICING
    ok = {"usd_per_credit", "source", sp.price_key} | ({"pack"} if sp.packs else set())
    out: list[tuple[Loc, str]] = []
    for k in price.given():
        if k not in ok:
            out.append(((k,), f"not a price of {ref.family} (it counts {sp.unit}); valid: {sorted(ok)}"))
    if "pack" in price.given() and sp.packs and price.pack not in [p.name for p in sp.packs]:
        out.append((("pack",), f"unknown pack {price.pack!r}; valid: {[p.name for p in sp.packs]}"))
    both = [k for k in ("usd_per_credit", sp.price_key) if k in price.given()]
    if len(set(both)) == 2:
        out.append(((sp.price_key,), f"give either usd_per_credit or {sp.price_key}, not both"))
    return out


# ------------------------------------------------------------------ run spec

def _metric_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [m.strip() for m in v.split(",") if m.strip()]
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(m, str) for m in v):
        raise _err(f"expected a non-empty list of metric names, got {_show(v)}")
    from ..metrics import available_metrics

    known = set(available_metrics())
    bad = [((i,), f"unknown metric {m!r}; valid: {sorted(known)}") for i, m in enumerate(v) if m not in known]
    if bad:
        _fail(bad)
    return tuple(v)


def _targets(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and not v:
        return None  # [] = every target
    out = _names("stem names")(v)
    dup = sorted({t for t in out if out.count(t) > 1})
    if dup:
        raise _err(f"expected distinct stem names, got {dup} more than once")
    return out


def _dataset_list(v: Any) -> Any:
    if v is None:
        raise _err("required (e.g. [demo] or [{name: musdb18, root: …, split: test}])")
    items = v if isinstance(v, (list, tuple)) else [v]
    if not items:
        raise _err("expected at least one dataset")
    return items


def _provider_list(v: Any) -> Any:
    if not isinstance(v, (list, tuple)) or not v:
        raise _err(f"expected a non-empty list of providers, got {_show(v)}")
    return v


# a list item: a name/string or a mapping (the schema says so; the models' own validators take both)
_DatasetEntry = Annotated[DatasetSel, BeforeValidator(_as_is, json_schema_input_type=str | DatasetSel)]
_ProviderEntry = Annotated[ProviderSel, BeforeValidator(_as_is, json_schema_input_type=str | ProviderSel)]


def _run_schema(schema: dict[str, Any]) -> None:
    props = schema.get("properties", {})
    for k in ("datasets", "providers", "metrics"):
        if k in props:
            props[k]["minItems"] = 1
    if "datasets" in props:  # also one dataset, and the alias 'dataset'
        one = copy.deepcopy(props["datasets"].get("items", {}))
        props["datasets"] = {"anyOf": [props["datasets"], one]}
        props["dataset"] = {"description": "alias of 'datasets'", **copy.deepcopy(props["datasets"])}
        schema["required"] = [r for r in schema.get("required", []) if r != "datasets"]
        schema["anyOf"] = [{"required": ["datasets"]}, {"required": ["dataset"]}]
    if "metrics" in props:
        props["metrics"] = {"anyOf": [props["metrics"], {"type": "string", "description": "comma-separated"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stemlab run spec"


class RunSpec(_Model):
    """A validated experiment spec (see the module docstring)."""

    model_config = ConfigDict(json_schema_extra=_run_schema)

    name: Text = "stemlab-run"
    description: Annotated[str, BeforeValidator(_text("a string"))] | None = None
    seed: Int | None = None
    # (non-empty: checked by the before-validators; minItems added to the schema)
    datasets: Annotated[tuple[_DatasetEntry, ...], BeforeValidator(_dataset_list)]
    providers: Annotated[tuple[_ProviderEntry, ...], BeforeValidator(_provider_list)]
    metrics: Annotated[tuple[str, ...], BeforeValidator(_metric_list)] = DEFAULT_METRICS
    metric_options: MetricOptions = Field(default_factory=MetricOptions)
    alignment: AlignmentOptions = Field(default_factory=AlignmentOptions)
    targets: Annotated[tuple[str, ...] | None, BeforeValidator(_targets)] = None
    output: PathText = "stemlab-results"
    budget: RunBudget = Field(default_factory=RunBudget)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    retries: Retries = Field(default_factory=Retries)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    sandbox: Bool = True
    executor: Annotated[Literal["local", "ray"], BeforeValidator(_choice(("local", "ray")))] = "local"
    executor_options: ExecutorOptions = Field(default_factory=ExecutorOptions)

    _none_ok: ClassVar[bool] = False
    _input_keys: ClassVar[tuple[str, ...]] = ("dataset",)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def _before(cls, data: dict[str, Any], items: list[tuple[Loc, str]], given: Any) -> dict[str, Any]:
        if "dataset" in data:
            if "datasets" in data:
                items.append((("dataset",), "give 'datasets' or 'dataset', not both"))
                data.pop("dataset")
            else:
                data["datasets"] = data.pop("dataset")
        elif "datasets" not in data:
            data["datasets"] = None  # → "required (e.g. …)"
        data.setdefault("providers", None)  # → "expected a non-empty list of providers, got None"
        if data.get("targets") is None:
            data.pop("targets", None)
        return data

    def _after(self, items: list[tuple[Loc, str]], given: Any) -> None:
        # remote providers without an explicit sandbox take the spec's
        provs = tuple(p if p.sandbox is not None or p.ref.kind != "remote" else _with_sandbox(p, self.sandbox)
                      for p in self.providers)
        object.__setattr__(self, "providers", provs)
        if self.targets:
            valid = self._known_stems()
            if valid is not None:
                items.extend(((("targets", i), f"unknown stem {t!r}; valid: {sorted(valid)}")
                              for i, t in enumerate(self.targets) if t not in valid))
        self._raw = dict(given) if isinstance(given, Mapping) else {}

    def _known_stems(self) -> set[str] | None:
        """Stem names the datasets can have (None: some dataset takes any)."""
        import stemlab.datasets as D

        out = {"accompaniment"}
        for d in self.datasets:
            stems = d.kwargs.get("stems")
            if stems:
                out.update(stems)
                continue
            if d.dataset == "folder":
                return None
            try:
                targets = D.card(d.dataset).targets
            except Exception:  # no card: cannot tell
                return None
            if not targets:
                return None
            out.update(targets)
        return out

    # ------------------------------------------------------------- accessors
    @property
    def raw(self) -> Mapping[str, Any]:
        """The spec as given (overrides applied): what ``spec_hash`` hashes
        and ``run.json`` stores (redacted)."""
        return self._raw

    @property
    def budget_usd(self) -> float | None:
        return self.budget.usd

    @property
    def local_concurrency(self) -> int:
        return self.concurrency.local

    @property
    def remote_concurrency(self) -> int:
        return self.concurrency.remote

    @property
    def max_attempts(self) -> int:
        return self.retries.max_attempts

    @property
    def job_timeout(self) -> float:
        return float(self.timeouts.job_seconds)

    # ------------------------------------------------------------- hashes
    @property
    def spec_hash(self) -> str:
        return _hash(self.raw)

    @property
    def output_hash(self) -> str:
        """What owns an output directory: the datasets and providers (not
        metric, budget or execution settings, which may change between runs
        into the same directory — re-scoring only, resuming). Hashed as
        written (the same value as before the typed spec)."""
        return _hash({"datasets": [d._hash_key() for d in self.datasets],
                      "providers": [[p.spec, p.sandbox, p.label] for p in self.providers]})

    @property
    def metrics_hash(self) -> str:
        """Changes when anything that affects scores (not separations) changes."""
        from ..metrics import SCORES_VERSION

        raw = self.raw
        opts = {k: v for k, v in dict(raw.get("metric_options") or {}).items() if k != "device"}
        return _hash({"metrics": list(self.metrics), "opts": opts,
                      "align": {"enabled": True, **dict(raw.get("alignment") or {})},
                      "scores_version": SCORES_VERSION,
                      "targets": list(self.targets) if self.targets else None})

    # ------------------------------------------------------------- schema
    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of a spec file (``docs/spec.schema.json``)."""
        return cls.model_json_schema(mode="validation", by_alias=True)


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_str_keys(v) for v in obj]
    return obj


def _hash(obj: Any) -> str:
    """sha256 (16 hex) of canonical JSON (a mapping with keys of mixed types
    — an option value from YAML — hashed with its keys as strings)."""
    try:
        blob = json.dumps(obj, sort_keys=True, default=str)
    except TypeError:
        blob = json.dumps(_str_keys(obj), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _with_sandbox(p: ProviderSel, sandbox: bool) -> ProviderSel:
    q = p.model_copy(update={"sandbox": sandbox})
    q._given = p._given
    return q


# ------------------------------------------------------------------ loading

def _read(source: str | Path) -> dict[str, Any]:
    p = Path(source)
    if not p.is_file():
        raise ConfigError(f"spec file {p} not found", file=str(p))
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - python 3.10
                import tomli as tomllib
            raw = tomllib.loads(text)
        elif p.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
    except Exception as e:  # parse errors of any of the three formats, undecodable bytes
        raise ConfigError(f"{p}: cannot parse ({e})", file=str(p)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}", file=str(p))
    return raw


def spec_error(items: Sequence[tuple[Loc, str]]) -> ConfigError:
    """The one error of a spec: ``spec has N error(s):`` and a ``path: problem`` line each."""
    lines = [f"{_path(loc)}: {' '.join(msg.split(chr(10)))}" for loc, msg in items]  # one line each
    text = "\n  ".join(lines)
    return ConfigError(f"spec has {len(lines)} error(s):\n  {text}", errors=lines)


def load_spec(source: str | Path | Mapping[str, Any], **overrides: Any) -> RunSpec:
    """Parse and validate a spec from a YAML/TOML/JSON file or a mapping.

    ``overrides`` replace top-level keys (CLI flags, papermill parameters).
    Every problem is reported at once in one :class:`ConfigError`."""
    if isinstance(source, Mapping):
        try:
            raw = copy.deepcopy(dict(source))
        except Exception:  # something deepcopy cannot copy: keep the caller's objects
            raw = dict(source)
    elif isinstance(source, (str, Path)):
        raw = _read(source)
    else:
        raise ConfigError(f"spec: expected a mapping or a file path, got {type(source).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunSpec.model_validate(raw)
    except ValidationError as e:
        raise spec_error(_items(e)) from None
    except RecursionError:
        raise ConfigError("spec: nested too deeply") from None


if __name__ == "__main__":  # python -m stemlab.runs.spec > docs/spec.schema.json
    print(json.dumps(RunSpec.json_schema(), indent=2, ensure_ascii=False))
