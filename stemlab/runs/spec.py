"""Experiment specs: one YAML/TOML file, Python dict or papermill parameters.

Every error in a spec is reported at once, each with its path::

    ConfigError: spec has 2 error(s):
      providers[2].params.shifts: expected int ≥ 0, got -1
      budget.usd: expected a number ≥ 0, got 'lots'

Schema (all keys optional except ``datasets`` and ``providers``)::

    name: my-comparison
    datasets:                      # or a single name: "demo"
      - name: musdb18              # demo | musdb18 | musdb18hq | folder
        root: ~/data/musdb18
        split: test                # subset / split / stems / options as the loader takes
        tracks: ["A - B"]          # or pattern: "A*", limit: 5
    providers:                     # strings or dicts
      - "demucs:htdemucs_ft?shifts=1"
      - provider: mvsep:bs_roformer
        sandbox: false             # true → the in-package sandbox (default for remote)
        options: {base_url: …}
        max_concurrency: 2         # running jobs of this provider
        rate_limit: 5              # requests/s (remote)
        budget: {usd: 2.0, credits: 100}
    metrics: [bsseval_v4, usdr, si_sdr]
    metric_options: {win: 1.0, hop: 1.0, nan_policy: museval}
    alignment: {enabled: true, max_shift_ms: 250, gain: false}
    output: stemlab-results
    budget: {usd: 10.0}            # hard cap over all paid jobs
    concurrency: {local: 1, remote: 4}
    retries: {max_attempts: 2}
    timeouts: {job_seconds: 3600}
    sandbox: true                  # default for every remote provider
    executor: local                # local | ray
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..providers.base import parse_spec

__all__ = ["RunSpec", "DatasetSel", "ProviderSel", "load_spec", "DEFAULT_METRICS"]

DEFAULT_METRICS: tuple[str, ...] = ("bsseval_v4", "usdr", "si_sdr")

_TOP_KEYS = {
    "name", "datasets", "dataset", "providers", "metrics", "metric_options", "alignment", "output",
    "budget", "concurrency", "retries", "timeouts", "sandbox", "executor", "executor_options",
    "targets", "description", "seed",
}
_DS_KEYS = {"name", "root", "subset", "split", "stems", "mixture", "tracks", "pattern", "limit", "options"}
_PROV_KEYS = {"provider", "family", "variant", "params", "options", "sandbox", "max_concurrency",
              "rate_limit", "budget", "label", "timeout"}


@dataclass(frozen=True)
class DatasetSel:
    name: str
    root: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    tracks: tuple[str, ...] | None = None
    pattern: str | None = None
    limit: int | None = None

    def open(self):
        import stemlab.datasets as D

        ds = D.load(self.name, self.root, **dict(self.kwargs))
        if self.tracks is not None or self.pattern is not None or self.limit is not None:
            ds = ds.filter(names=self.tracks, pattern=self.pattern, limit=self.limit)
        return ds


@dataclass(frozen=True)
class ProviderSel:
    spec: str | Mapping[str, Any]  # what create() takes
    sandbox: bool | None = None
    max_concurrency: int | None = None
    rate_limit: float | None = None
    budget_usd: float | None = None
    budget_credits: float | None = None
    timeout: float | None = None
    label: str | None = None


@dataclass(frozen=True)
class RunSpec:
    datasets: tuple[DatasetSel, ...]
    providers: tuple[ProviderSel, ...]
    name: str = "stemlab-run"
    metrics: tuple[str, ...] = DEFAULT_METRICS
    metric_options: Mapping[str, Any] = field(default_factory=dict)
    alignment: Mapping[str, Any] = field(default_factory=lambda: {"enabled": True})
    output: str = "stemlab-results"
    budget_usd: float | None = None
    local_concurrency: int = 1
    remote_concurrency: int = 4
    max_attempts: int = 2
    job_timeout: float = 3600.0
    sandbox: bool = True
    executor: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def spec_hash(self) -> str:
        blob = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def output_hash(self) -> str:
        """What owns an output directory: the datasets and providers (not
        metric, budget or execution settings, which may change between runs
        into the same directory — re-scoring only, resuming)."""
        blob = json.dumps(
            {"datasets": [[d.name, d.root, dict(d.kwargs), d.tracks, d.pattern, d.limit] for d in self.datasets],
             "providers": [[p.spec, p.sandbox, p.label] for p in self.providers]},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def metrics_hash(self) -> str:
        """Changes when anything that affects scores (not separations) changes."""
        from ..metrics import SCORES_VERSION

        blob = json.dumps(
            {"metrics": list(self.metrics), "opts": dict(self.metric_options), "align": dict(self.alignment),
             "scores_version": SCORES_VERSION,
             "targets": list(self.targets) if self.targets else None},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, msg: str) -> None:
        self.items.append(f"{path}: {msg}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  ".join(self.items)
            raise ConfigError(f"spec has {len(self.items)} error(s):\n  {lines}", errors=list(self.items))


def _num(errs: _Errors, path: str, v: Any, *, integer: bool = False, minimum: float | None = None,
         exclusive: bool = False) -> Any:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if integer:
        ok = ok and float(v).is_integer()
    if ok and minimum is not None:
        ok = v > minimum if exclusive else v >= minimum
    if not ok:
        kind = "int" if integer else "a number"
        bound = "" if minimum is None else (f" > {minimum}" if exclusive else f" ≥ {minimum}")
        errs.add(path, f"expected {kind}{bound}, got {v!r}")
        return None
    return int(v) if integer else float(v)


def _check_provider(errs: _Errors, path: str, entry: Any, default_sandbox: bool) -> ProviderSel | None:
    if isinstance(entry, str):
        spec: Any = entry
        extra: dict[str, Any] = {}
    elif isinstance(entry, Mapping):
        d = dict(entry)
        unknown = sorted(set(d) - _PROV_KEYS)
        if unknown:
            errs.add(path, f"unknown key(s) {unknown}; valid: {sorted(_PROV_KEYS)}")
        if "provider" not in d and "family" not in d:
            errs.add(path, "expected key 'provider' (e.g. 'demucs:htdemucs')")
            return None
        extra = {k: d.pop(k) for k in ("sandbox", "max_concurrency", "rate_limit", "budget", "label", "timeout") if k in d}
        spec = d
    else:
        errs.add(path, f"expected a provider string or mapping, got {type(entry).__name__}")
        return None
    # validate by constructing the provider class (no weights/clients load here)
    try:
        import stemlab.providers as P

        family, variant, params, options = parse_spec(spec)
        cls = P.get_class(family)
        cls(variant, params, **options)
    except ConfigError as e:
        msg = str(e)
        # re-root field paths (e.g. "demucs.params.shifts") under the spec path
        fld = e.details.get("field") or ""
        if fld.startswith(f"{family}."):
            sub = fld[len(family) + 1 :]
            tail = msg.split(": ", 1)[1] if msg.startswith(fld) else msg
            errs.add(f"{path}.{sub}", tail)
        else:
            errs.add(path, msg)
        return None
    sel = ProviderSel(spec=spec, sandbox=default_sandbox if cls.kind == "remote" else None)
    kw: dict[str, Any] = {}
    if "sandbox" in extra:
        if not isinstance(extra["sandbox"], bool):
            errs.add(f"{path}.sandbox", f"expected true/false, got {extra['sandbox']!r}")
        else:
            kw["sandbox"] = extra["sandbox"] if cls.kind == "remote" else None
    if "max_concurrency" in extra:
        kw["max_concurrency"] = _num(errs, f"{path}.max_concurrency", extra["max_concurrency"], integer=True, minimum=1)
    if "rate_limit" in extra:
        kw["rate_limit"] = _num(errs, f"{path}.rate_limit", extra["rate_limit"], minimum=0, exclusive=True)
    if "timeout" in extra:
        kw["timeout"] = _num(errs, f"{path}.timeout", extra["timeout"], minimum=0, exclusive=True)
    if "label" in extra:
        kw["label"] = str(extra["label"])
    b = extra.get("budget")
    if b is not None:
        if not isinstance(b, Mapping):
            errs.add(f"{path}.budget", f"expected a mapping like {{usd: 5, credits: 100}}, got {b!r}")
        else:
            for k in b:
                if k not in ("usd", "credits"):
                    errs.add(f"{path}.budget.{k}", "unknown key; valid: ['credits', 'usd']")
            if "usd" in b:
                kw["budget_usd"] = _num(errs, f"{path}.budget.usd", b["usd"], minimum=0)
            if "credits" in b:
                kw["budget_credits"] = _num(errs, f"{path}.budget.credits", b["credits"], minimum=0)
    return ProviderSel(**{**sel.__dict__, **kw})


def _check_dataset(errs: _Errors, path: str, entry: Any) -> DatasetSel | None:
    import stemlab.datasets as D

    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping):
        errs.add(path, f"expected a dataset name or mapping, got {type(entry).__name__}")
        return None
    d = dict(entry)
    unknown = sorted(set(d) - _DS_KEYS)
    if unknown:
        errs.add(path, f"unknown key(s) {unknown}; valid: {sorted(_DS_KEYS)}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        errs.add(f"{path}.name", f"expected one of {D.names()}, got {name!r}")
        return None
    if name.lower() not in D.names() and name.lower() not in ("musdb", "musdbhq", "musdb-hq", "musdb18-hq"):
        errs.add(f"{path}.name", f"expected one of {D.names()}, got {name!r}")
        return None
    kwargs: dict[str, Any] = dict(d.get("options") or {})
    for k in ("subset", "split", "stems", "mixture"):
        if d.get(k) is not None:
            kwargs[k] = d[k]
    tracks = d.get("tracks")
    if tracks is not None and not (isinstance(tracks, list) and all(isinstance(t, str) for t in tracks)):
        errs.add(f"{path}.tracks", f"expected a list of track names, got {tracks!r}")
        tracks = None
    limit = d.get("limit")
    if limit is not None:
        limit = _num(errs, f"{path}.limit", limit, integer=True, minimum=1)
    root = d.get("root")
    if root is not None and not isinstance(root, (str, Path)):
        errs.add(f"{path}.root", f"expected a directory path, got {root!r}")
        root = None
    return DatasetSel(
        name=name,
        root=str(Path(root).expanduser()) if root is not None else None,
        kwargs=kwargs,
        tracks=tuple(tracks) if tracks is not None else None,
        pattern=d.get("pattern"),
        limit=limit,
    )


def load_spec(source: str | Path | Mapping[str, Any], **overrides: Any) -> RunSpec:
    """Parse and validate a spec from a YAML/TOML/JSON file or a mapping.

    ``overrides`` replace top-level keys (CLI flags, papermill parameters)."""
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"spec file {p} not found", file=str(p))
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() == ".toml":
                try:
                    import tomllib
                except ModuleNotFoundError:  # pragma: no cover - python 3.10
                    import tomli as tomllib  # type: ignore[no-redef]
                raw = tomllib.loads(text)
            elif p.suffix.lower() == ".json":
                raw = json.loads(text)
            else:
                import yaml

                raw = yaml.safe_load(text) or {}
        except Exception as e:  # parse errors of any of the three formats
            raise ConfigError(f"{p}: cannot parse ({e})", file=str(p)) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}", file=str(p))
    raw.update({k: v for k, v in overrides.items() if v is not None})
    errs = _Errors()

    for k in sorted(set(raw) - _TOP_KEYS):
        errs.add(k, f"unknown key; valid: {sorted(_TOP_KEYS)}")

    sandbox = raw.get("sandbox", True)
    if not isinstance(sandbox, bool):
        errs.add("sandbox", f"expected true/false, got {sandbox!r}")
        sandbox = True

    ds_raw = raw.get("datasets", raw.get("dataset"))
    datasets: list[DatasetSel] = []
    if ds_raw is None:
        errs.add("datasets", "required (e.g. [demo] or [{name: musdb18, root: …, split: test}])")
    else:
        items = ds_raw if isinstance(ds_raw, list) else [ds_raw]
        if not items:
            errs.add("datasets", "expected at least one dataset")
        for i, e in enumerate(items):
            sel = _check_dataset(errs, f"datasets[{i}]", e)
            if sel:
                datasets.append(sel)

    pr_raw = raw.get("providers")
    providers: list[ProviderSel] = []
    if not isinstance(pr_raw, list) or not pr_raw:
        errs.add("providers", f"expected a non-empty list of providers, got {pr_raw!r}")
    else:
        for i, e in enumerate(pr_raw):
            sel = _check_provider(errs, f"providers[{i}]", e, sandbox)
            if sel:
                providers.append(sel)

    metrics = raw.get("metrics", list(DEFAULT_METRICS))
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        errs.add("metrics", f"expected a non-empty list of metric names, got {metrics!r}")
        metrics = list(DEFAULT_METRICS)
    else:
        try:
            from ..metrics import available_metrics

            known = set(available_metrics())
            for i, m in enumerate(metrics):
                if m not in known:
                    errs.add(f"metrics[{i}]", f"unknown metric {m!r}; valid: {sorted(known)}")
        except ImportError:  # metrics layer not installed/importable: checked at run time
            pass

    def _mapping(key: str) -> dict[str, Any]:
        v = raw.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            errs.add(key, f"expected a mapping, got {v!r}")
            return {}
        return dict(v)

    metric_options = _mapping("metric_options")
    alignment = {"enabled": True, **_mapping("alignment")}
    budget = _mapping("budget")
    budget_usd = None
    for k in budget:
        if k != "usd":
            errs.add(f"budget.{k}", "unknown key; valid: ['usd'] (per-provider credits go under providers[i].budget)")
    if "usd" in budget:
        budget_usd = _num(errs, "budget.usd", budget["usd"], minimum=0)
    conc = _mapping("concurrency")
    local_c = _num(errs, "concurrency.local", conc.get("local", 1), integer=True, minimum=1) or 1
    remote_c = _num(errs, "concurrency.remote", conc.get("remote", 4), integer=True, minimum=1) or 4
    retries = _mapping("retries")
    attempts = _num(errs, "retries.max_attempts", retries.get("max_attempts", 2), integer=True, minimum=1) or 2
    timeouts = _mapping("timeouts")
    job_timeout = _num(errs, "timeouts.job_seconds", timeouts.get("job_seconds", 3600.0), minimum=0, exclusive=True) or 3600.0
    output = raw.get("output", "stemlab-results")
    if not isinstance(output, (str, Path)) or not str(output):
        errs.add("output", f"expected a directory path, got {output!r}")
        output = "stemlab-results"
    executor = raw.get("executor", "local")
    if executor not in ("local", "ray"):
        errs.add("executor", f"expected 'local' or 'ray', got {executor!r}")
        executor = "local"
    targets = raw.get("targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        errs.add("targets", f"expected a list of stem names, got {targets!r}")
        targets = None
    name = raw.get("name", "stemlab-run")
    if not isinstance(name, str):
        errs.add("name", f"expected a string, got {name!r}")
        name = "stemlab-run"

    errs.raise_if_any()
    return RunSpec(
        datasets=tuple(datasets),
        providers=tuple(providers),
        name=name,
        metrics=tuple(metrics),
        metric_options=metric_options,
        alignment=alignment,
        output=str(output),
        budget_usd=budget_usd,
        local_concurrency=local_c,
        remote_concurrency=remote_c,
        max_attempts=attempts,
        job_timeout=job_timeout,
        sandbox=sandbox,
        executor=executor,
        executor_options=_mapping("executor_options"),
        targets=tuple(targets) if targets else None,
        raw=raw,
    )
