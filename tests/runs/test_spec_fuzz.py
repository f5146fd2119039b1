"""No spec, however broken, ends in a traceback.

Hypothesis generates specs over the whole schema — valid values mixed with
wrong types, out-of-range and non-finite numbers, huge ints, empty and
unicode strings, lists where mappings go and mappings where lists go, None,
unknown keys — at every level (``datasets[].options``,
``providers[].params/options/budget``, ``metric_options``, ``alignment``,
``budget``, ``concurrency`` …). ``load_spec`` must return a :class:`RunSpec`
or raise :class:`ConfigError` whose every line names a path under a key of
the spec; nothing else.
"""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemlab.errors import ConfigError
from stemlab.providers.base import _show
from stemlab.runs.spec import RunSpec, _path, load_spec

# ------------------------------------------------------------------ leaves

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=40),
    st.integers(),  # huge too
    st.sampled_from([10**30, -(10**30), 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e308, float("nan"), float("inf"), -float("inf")]),
    st.text(max_size=8),
    st.sampled_from(["", " ", "auto", "\x00", "é🎵", "two", "1", "true", "-1", "nan", "a,b", "~/x"]),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none()), inner, max_size=3),
    ),
    max_leaves=6,
)


def maybe(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value (itself often out of range), sometimes garbage."""
    return st.one_of(valid, valid, valid, valid, garbage)


def section(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A mapping with some of ``fields`` (each maybe garbage), sometimes an
    unknown key; sometimes garbage instead of the mapping."""
    keyed = st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()})
    extra = st.dictionaries(st.sampled_from(["colour", "x", "", "ü", "a.b", "\n"]), garbage, max_size=1)
    return st.one_of(keyed, keyed, keyed, keyed, st.builds(lambda a, b: {**a, **b}, keyed, extra), garbage)


pos_int = st.integers(min_value=-1, max_value=6)
number = st.one_of(st.floats(min_value=-1, max_value=5000, allow_nan=False), st.integers(-1, 5000))
names = st.lists(st.sampled_from(["vocals", "drums", "bass", "other", "accompaniment", "guitar", ""]), max_size=3)

# ------------------------------------------------------------------ datasets

dataset_options = section({
    "tracks": pos_int, "seconds": number, "seed": st.integers(-1, 2**33), "subset": st.sampled_from(["train", "test"]),
    "split": st.sampled_from(["train", "valid", "test", "dev"]), "stems": names, "mixture": st.text(max_size=4),
    "names": names,
})
dataset_entry = st.one_of(
    st.sampled_from(["demo", "demo", "musdb18", "MUSDB", "musdb18hq", "folder", "nope", ""]),
    section({
        "name": st.sampled_from(["demo", "musdb18", "musdb-hq", "folder", "nope"]),
        "root": st.sampled_from(["/tmp/x", "~/data", ""]),
        "subset": st.sampled_from(["train", "test", "x"]),
        "split": st.sampled_from(["train", "valid", "test", "x"]),
        "stems": names, "mixture": st.text(max_size=4), "options": dataset_options,
        "tracks": names, "pattern": st.sampled_from(["*", "A*", ""]), "limit": pos_int,
    }),
    garbage,
)

# ------------------------------------------------------------------ providers

provider_strings = st.one_of(
    st.sampled_from(
        [
            "oracle:irm",
            "oracle:ibm",
            "baseline:hpss",
            "baseline:mixture",
            "demucs:htdemucs_ft?shifts=2",
            "demucs:htdemucs?shifts=-1&overlap=7",
            "aistemsplitter",
            "mvsep",
            "mvsep",
            "dango",
            "suno",
            "zzz",
            "",
            ":",
            "?",
            "oracle:irm?alpha=x",
            "baseline:hpss?nfft=2048&hop=4096",
            "demucs?device=gpu",
            "demucs:nope",
            "oracle?=&&=",
            "ORACLE:IRM",
            "baseline:hpss?nfft=10**400",
        ]
    ),
    st.builds(
        lambda f, q: f"{f}?{q}", st.sampled_from(["oracle:irm", "baseline:hpss", "demucs"]), st.text(max_size=12)
    ),
)
provider_entry = st.one_of(
    provider_strings,
    section({
        "provider": provider_strings,
        "family": st.sampled_from(["oracle", "baseline", "demucs", "mvsep", "suno", "nope"]),
        "variant": st.sampled_from(["irm", "hpss", "htdemucs", "x"]),
        "params": section({"alpha": number, "nfft": st.sampled_from([512, 2048, 3]), "shifts": pos_int,
                           "overlap": number, "hop": pos_int, "theta": number}),
        "options": section({"device": st.sampled_from(["cpu", "gpu", "cuda:0"]), "threads": pos_int,
                            "base_url": st.sampled_from(["http://127.0.0.1:9", "ftp://x", ""]),
                            "api_key": st.text(max_size=6), "timeout": number, "max_attempts": pos_int,
                            "max_concurrency": pos_int, "rate_limit": number, "algorithms": garbage,
                            "clip_ids": garbage, "mirror": garbage, "plan": garbage}),
        "sandbox": st.booleans(), "max_concurrency": pos_int, "rate_limit": number,
        "budget": section({"usd": number, "credits": number}), "label": st.text(max_size=5), "timeout": number,
    }),
    garbage,
)

# ------------------------------------------------------------------ run spec

specs = st.fixed_dictionaries(
    {
        "datasets": st.one_of(*[st.lists(dataset_entry, min_size=1, max_size=3)] * 4, dataset_entry, garbage),
        "providers": st.one_of(*[st.lists(provider_entry, min_size=1, max_size=3)] * 5, provider_entry, garbage),
    },
    optional={
        "name": maybe(st.text(max_size=6)),
        "dataset": dataset_entry,
        "metrics": maybe(
            st.one_of(
                st.lists(st.sampled_from(["usdr", "si_sdr", "bsseval_v4", "sdr9", ""]), max_size=3),
                st.sampled_from(["usdr,si_sdr", "usdr,", ""]),
            )
        ),
        "metric_options": section(
            {
                "win": number,
                "hop": number,
                "nan_policy": st.sampled_from(["museval", "target", "x"]),
                "filters_len": pos_int,
                "reference_bits": st.sampled_from(["auto", None, 16, 1, 40]),
            }
        ),
        "alignment": section(
            {
                "enabled": st.booleans(),
                "force": st.booleans(),
                "max_shift_ms": number,
                "gain": st.booleans(),
                "min_correlation": number,
            }
        ),
        "targets": maybe(names),
        "output": maybe(st.sampled_from(["/tmp/stemlab-fuzz-out", ""])),
        "budget": section({"usd": number}),
        "concurrency": section({"local": pos_int, "remote": pos_int}),
        "retries": section({"max_attempts": pos_int}),
        "timeouts": section({"job_seconds": number}),
        "sandbox": maybe(st.booleans()),
        "executor": maybe(st.sampled_from(["local", "ray", "spark"])),
        "executor_options": section(
            {
                "address": st.sampled_from(["auto", ""]),
                "num_cpus": number,
                "num_gpus": number,
                "actors_per_provider": pos_int,
                "init_cpus": pos_int,
                "runtime_env": st.dictionaries(st.text(max_size=3), garbage, max_size=2),
            }
        ),
        "seed": maybe(st.integers(-5, 5)),
        "description": maybe(st.text(max_size=5)),
    },
).flatmap(
    lambda d: st.one_of(
        st.just(d),
        st.just(d),
        st.just(d),  # mostly known keys only
        st.dictionaries(
            st.one_of(st.sampled_from(["colour", "", "a.b", "Datasets"]), st.integers(), st.none()),
            garbage,
            min_size=1,
            max_size=2,
        ).map(lambda extra: {**d, **extra}),
    )
)


# ------------------------------------------------------------------ valid specs, then broken in places

v_number = st.one_of(st.floats(min_value=0.01, max_value=100, allow_nan=False), st.integers(1, 100))
v_datasets = st.one_of(
    st.just("demo"),
    st.fixed_dictionaries({"name": st.just("demo")}, optional={
        "options": st.fixed_dictionaries({}, optional={"tracks": st.integers(1, 4), "seconds": st.integers(1, 600),
                                                       "seed": st.integers(0, 9)}),
        "limit": st.integers(1, 5), "pattern": st.just("*"), "tracks": st.just(["bass"])}),
    st.fixed_dictionaries({"name": st.sampled_from(["musdb18", "musdb18hq", "MUSDB"]), "root": st.just("/tmp/m")},
                          optional={"split": st.sampled_from(["train", "valid"]), "subset": st.just("train")}),
    st.fixed_dictionaries({"name": st.just("folder"), "root": st.just("~/songs")},
                          optional={"stems": st.just(["vocals", "guitar"]), "mixture": st.just("mix"),
                                    "options": st.just({"subset": "a"})}),
)
v_providers = st.one_of(
    st.sampled_from(["oracle:irm", "oracle:ibm?alpha=1", "baseline:hpss?nfft=2048", "baseline:mixture",
                     "demucs:htdemucs?shifts=2", "aistemsplitter", "mvsep"]),
    st.fixed_dictionaries({"provider": st.sampled_from(["aistemsplitter:htdemucs", "oracle:irm", "dango"])}, optional={
        "sandbox": st.booleans(), "max_concurrency": st.integers(1, 8), "rate_limit": v_number,
        "budget": st.fixed_dictionaries({}, optional={"usd": v_number, "credits": v_number}),
        "label": st.sampled_from(["a", "b", "é"]), "timeout": v_number,
        "options": st.just({}), "params": st.just({})}),
    st.fixed_dictionaries({"family": st.just("baseline"), "variant": st.just("hpss"),
                           "params": st.fixed_dictionaries({}, optional={"nfft": st.sampled_from([1024, 4096])})}),
)
valid_specs = st.fixed_dictionaries(
    {
        "datasets": st.lists(v_datasets, min_size=1, max_size=2),
        "providers": st.lists(v_providers, min_size=1, max_size=3),
    },
    optional={
        "name": st.text(min_size=1, max_size=5).filter(str.strip),
        "metrics": st.sampled_from([["usdr"], "usdr,si_sdr"]),
        "metric_options": st.fixed_dictionaries(
            {},
            optional={
                "win": v_number,
                "hop": v_number,
                "nan_policy": st.just("target"),
                "reference_bits": st.sampled_from(["auto", None, 16]),
            },
        ),
        "alignment": st.fixed_dictionaries(
            {}, optional={"enabled": st.booleans(), "max_shift_ms": v_number, "min_correlation": st.floats(-1, 1)}
        ),
        "targets": st.just(["vocals"]),
        "output": st.just("/tmp/o"),
        "budget": st.just({"usd": 3}),
        "concurrency": st.fixed_dictionaries({}, optional={"local": st.integers(1, 4), "remote": st.integers(1, 9)}),
        "retries": st.just({"max_attempts": 3}),
        "timeouts": st.just({"job_seconds": 10.5}),
        "sandbox": st.booleans(),
        "executor": st.sampled_from(["local", "ray"]),
        "executor_options": st.just({"address": "auto", "num_gpus": 1}),
        "seed": st.integers(0, 5),
        "description": st.just("d"),
    },
)


def _paths(node, here=()):
    """Every place in a spec tree: (path, is-mapping-parent)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield here + (k,)
            yield from _paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield here + (i,)
            yield from _paths(v, here + (i,))


def _replace(node, path, value):
    node = copy.deepcopy(node)
    parent = node
    for p in path[:-1]:
        parent = parent[p]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return node


_DELETE = object()
breakage = st.one_of(garbage, scalars, st.just(_DELETE), st.just([]), st.just({}), st.just(""), st.just(None),
                     st.sampled_from([0, -1, 10**400, float("nan"), float("inf"), "two", "é🎵", [1], {"k": 1}]))


def _break(spec):
    paths = list(_paths(spec))
    if not paths:
        return st.just(spec)
    return st.lists(st.tuples(st.sampled_from(paths), breakage), min_size=0, max_size=3).map(
        lambda changes: _apply(spec, changes))


def _apply(spec, changes):
    for path, value in changes:
        try:
            spec = _replace(spec, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier change removed or replaced the parent
            pass
    return spec


broken_specs = valid_specs.flatmap(_break)
specs = st.one_of(broken_specs, broken_specs, specs)


def _key(k) -> str:
    return k if isinstance(k, str) else _show(k)


def _check(spec: dict) -> None:
    try:
        out = load_spec(spec)
    except ConfigError as e:
        lines = e.details["errors"]
        assert lines and str(e).startswith(f"spec has {len(lines)} error(s):\n  "), str(e)
        assert str(e).splitlines()[1:] == [f"  {line}" for line in lines]
        roots = {_path((_key(k),)) for k in spec} | set(RunSpec.valid_keys()) | {"spec"}
        for line in lines:
            assert any(line.startswith(r + sep) for r in roots for sep in (": ", ".", "[")), (line, sorted(roots))
            _, _, msg = line.partition(": ")
            assert msg.strip(), line
        return False
    assert isinstance(out, RunSpec)
    assert out.datasets and out.providers
    for p in out.providers:
        assert str(p.ref) and len(p.ref.params_hash) == 16
    for v in (out.budget_usd, out.job_timeout):
        assert v is None or math.isfinite(v)
    out.spec_hash, out.output_hash, out.metrics_hash  # noqa: B018 - must not raise
    return True


SEEN: dict[str, int] = {"ok": 0, "error": 0}


@settings(max_examples=1200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(specs)
def test_any_spec_is_a_runspec_or_a_config_error(spec):
    SEEN["ok" if _check(spec) else "error"] += 1


def test_the_fuzzing_saw_both_outcomes():
    """(runs after the property test) ≥ 1,000 specs, both outcomes well represented."""
    if sum(SEEN.values()) == 0:
        pytest.skip("run together with test_any_spec_is_a_runspec_or_a_config_error")
    assert sum(SEEN.values()) >= 1000 and SEEN["ok"] >= 200 and SEEN["error"] >= 500, SEEN


@pytest.mark.parametrize("text", [
    "datasets: [demo\nproviders: {", "- a\n- b", "datasets: !!python/object:os.system x", "\x00\xff", "a: b: c",
    "datasets: [demo]\nproviders: [oracle:irm]\nmetric_options: {win: .nan}",
])
def test_spec_files_of_garbage_are_config_errors(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ConfigError):
        load_spec(p)
