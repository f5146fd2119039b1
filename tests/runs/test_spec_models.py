"""The typed run spec and the provider reference it carries.

* the six specs a user found that ended in a Python traceback, each with the
  error it gives now;
* hashes that own output directories and cached scores are unchanged by the
  typed spec (a re-run into an existing directory is not refused);
* ``docs/spec.schema.json`` is what :meth:`RunSpec.json_schema` generates;
* :class:`ProviderRef`: parsed once, validated against the class, canonical
  string, stable hash, ``create`` without re-parsing; a run parses each
  provider once and builds it once in the runner.
"""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from pydantic import ValidationError

import stemlab.providers as P
import stemlab.providers.base as B
from stemlab.errors import ConfigError
from stemlab.providers import ProviderRef
from stemlab.runs import load_spec, run
from stemlab.runs.spec import DatasetSel, ProviderSel, RunSpec

ROOT = Path(__file__).resolve().parents[2]


def _err(spec: dict) -> str:
    with pytest.raises(ConfigError) as ei:
        load_spec(spec)
    return str(ei.value)


def _base(**kw):
    return {"datasets": ["demo"], "providers": ["oracle:irm"], **kw}


# ------------------------------------------------------------- user's cases

@pytest.mark.parametrize("spec,line", [
    (_base(providers=[""]), "providers[0]: expected 'family[:variant][?param=value]', got ''"),
    (_base(providers=[{"provider": "baseline:hpss", "params": "kernel=3"}]),
     "providers[0].params: expected a mapping of parameter values, got 'kernel=3'"),
    (_base(datasets=[{"name": "demo", "options": "x"}]),
     "datasets[0].options: expected a mapping of loader options, got 'x'"),
    (_base(datasets=[{"name": "demo", "options": ["tracks", 2]}]),
     "datasets[0].options: expected a mapping of loader options, got ['tracks', 2]"),
    (_base(datasets=[{"name": "demo", "options": {"tracks": "two"}}]),
     "datasets[0].options.tracks: expected int in [1, 4], got 'two'"),
    (_base(datasets=[{"name": "demo", "pattern": 5}]), "datasets[0].pattern: expected a glob pattern (string), got 5"),
    (_base(providers=[{"provider": "oracle:irm", "options": "x"}]),
     "providers[0].options: expected a mapping of option values, got 'x'"),
    (_base(datasets=[{"name": "demo", "limit": 0}]), "datasets[0].limit: expected int ≥ 1, got 0"),
], ids=["empty provider", "params string", "options string", "options list", "tracks two", "pattern int",
        "provider options string", "limit 0"])
def test_user_found_cases_are_named_errors(spec, line):
    assert _err(spec) == f"spec has 1 error(s):\n  {line}"


def test_cli_limit_0_is_an_error_not_no_limit(capsys, tmp_path):
    from stemlab.cli import main

    assert main(["run", "--dataset", "demo", "--provider", "oracle:irm", "--limit", "0", "--dry-run",
                 "-o", str(tmp_path / "o")]) == 2
    assert "datasets[0].limit: expected int ≥ 1, got 0" in capsys.readouterr().err


def test_many_problems_in_one_error_each_with_its_path():
    msg = _err({
        "datasets": [{"name": "musdb18", "split": "valid", "subset": "test", "stems": ["a"]}],
        "providers": ["demucs:htdemucs?shifts=-1&overlap=7",
                      {"provider": "aistemsplitter", "budget": {"usd": -1, "eur": 2}, "sandbox": "yes"}],
        "metric_options": {"win": float("nan"), "nan_policy": "x", "bogus": 1},
        "alignment": [1],
        "metrics": ["usdr", "sdr9"],
        "executor_options": {"num_cpus": -1},
    })
    lines = msg.splitlines()
    assert lines[0] == f"spec has {len(lines) - 1} error(s):"
    for needle in (
        "datasets[0].stems: not an option of dataset 'musdb18'; valid: ['names', 'split', 'subset']",
        "datasets[0].split: split 'valid' is part of subset 'train', not 'test'",
        "providers[0].params.shifts: expected int in [0, 20], got -1",
        "providers[0].params.overlap: expected float in [0.0, 0.95], got 7.0",
        "providers[1].sandbox: expected true/false, got 'yes'",
        "providers[1].budget.eur: unknown key; valid: ['credits', 'usd']",
        "providers[1].budget.usd: expected a number ≥ 0, got -1",
        "metric_options.bogus: unknown key; valid: "
        "['device', 'filters_len', 'hop', 'nan_policy', 'reference_bits', 'win']",
        "metric_options.win: expected a number > 0, got nan",
        "metric_options.nan_policy: expected 'museval' or 'target', got 'x'",
        "alignment: expected a mapping, got [1]",
        "metrics[1]: unknown metric 'sdr9'; valid: [",
        "executor_options.num_cpus: expected a number ≥ 0, got -1",
    ):
        assert any(line.strip().startswith(needle) for line in lines), (needle, msg)
    assert len(lines) - 1 == 13


def test_targets_are_checked_against_the_datasets_stems():
    assert "targets[1]: unknown stem 'voice'; valid: ['accompaniment', 'bass', 'drums', 'other', 'vocals']" \
        in _err(_base(targets=["vocals", "voice"]))
    # a folder without a stems list can hold any stem name
    spec = load_spec(_base(datasets=[{"name": "folder", "root": "/tmp/x"}], targets=["guitar"]))
    assert spec.targets == ("guitar",)
    assert load_spec(_base(targets=[])).targets is None


# ------------------------------------------------------------- compatibility

GOLDEN = [
    ({"datasets": ["demo"], "providers": ["oracle:irm", "baseline:hpss"]},
     ["a24a9a795c87e37f", "55772c25ec715b75", "baddaad830dfd621"]),
    ({"name": "g", "datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 4.0}, "limit": 1, "pattern": "*"},
                                {"name": "folder", "root": "/tmp/songs", "stems": ["vocals", "drums"]}],
      "providers": ["demucs:htdemucs?shifts=1",
                    {"provider": "aistemsplitter:htdemucs", "sandbox": True, "max_concurrency": 2,
                     "budget": {"usd": 1, "credits": 5}, "label": "ast"},
                    {"provider": "baseline:hpss", "params": {"nfft": 2048}}],
      "metrics": ["usdr", "si_sdr"], "metric_options": {"win": 2, "nan_policy": "target"},
      "alignment": {"max_shift_ms": 100}, "budget": {"usd": 3}, "concurrency": {"local": 2}, "targets": ["vocals"]},
     ["cfed938726766cd9", "0b38c48e3eee27e2", "64a692a0a6ea4508"]),
]


@pytest.mark.parametrize("raw,hashes", GOLDEN)
def test_hashes_are_those_of_the_untyped_spec(raw, hashes):
    """Computed with the hand-checked spec.py this replaced: an output
    directory claimed before keeps its owner, cached scores stay valid."""
    s = load_spec(raw)
    assert [s.spec_hash, s.output_hash, s.metrics_hash] == hashes


def test_runner_facing_attributes():
    s = load_spec(_base(providers=["aistemsplitter", {"provider": "oracle:irm", "sandbox": True, "timeout": 5}],
                        sandbox=False, alignment={"max_shift_ms": 100}, executor_options={"address": "auto"},
                        budget={"usd": 2}, concurrency={"remote": 3}, retries={"max_attempts": 4},
                        timeouts={"job_seconds": 60}))
    assert [p.sandbox for p in s.providers] == [False, None]  # remote: the spec's default; local: none
    assert s.providers[1].timeout == 5 and s.providers[0].spec == "aistemsplitter"
    # sections: dict() holds what was written (the runner forwards it), attributes every value
    assert dict(s.alignment) == {"enabled": True, "max_shift_ms": 100.0} and s.alignment.force is False
    assert dict(s.metric_options) == {} and s.metric_options.win == 1.0
    assert dict(s.executor_options) == {"address": "auto"}
    assert (s.budget_usd, s.local_concurrency, s.remote_concurrency, s.max_attempts, s.job_timeout) == \
        (2.0, 1, 3, 4, 60.0)
    assert s.raw["sandbox"] is False and isinstance(s.datasets[0], DatasetSel)
    assert isinstance(s.providers[0], ProviderSel) and isinstance(s.providers[0].ref, ProviderRef)
    with pytest.raises(ValidationError):
        s.name = "other"  # frozen


def test_remote_alignment_force_default_survives():
    """runner.score_stems does ``alignment.setdefault("force", True)`` for remote
    providers: ``force`` must be absent unless written."""
    from stemlab.metrics.scoring import ALIGN_OPTIONS, METRIC_OPTIONS
    from stemlab.runs.spec import AlignmentOptions, MetricOptions

    s = load_spec(_base())
    a = dict(s.alignment)
    a.setdefault("force", True)
    assert a == {"enabled": True, "force": True}
    assert dict(load_spec(_base(alignment={"force": False})).alignment) == {"enabled": True, "force": False}
    # the models' defaults are the scoring layer's
    assert {k: getattr(MetricOptions(), k) for k in METRIC_OPTIONS} == METRIC_OPTIONS
    assert set(MetricOptions.model_fields) == set(METRIC_OPTIONS)
    assert {k: getattr(AlignmentOptions(), k) for k in ALIGN_OPTIONS} == ALIGN_OPTIONS
    assert set(AlignmentOptions.model_fields) == set(ALIGN_OPTIONS)


def test_nan_policies_match_evaluate():
    from stemlab.metrics.evaluation import NAN_POLICIES
    from stemlab.runs import spec as S

    assert tuple(S._NAN_POLICIES) == tuple(NAN_POLICIES)


def test_dataset_options_are_typed_per_dataset():
    s = load_spec(_base(datasets=[{"name": "demo", "options": {"tracks": 2, "seconds": 3}},
                                  {"name": "MUSDB", "root": "~/m", "split": "test"}]))
    demo, mus = s.datasets
    assert dict(demo.kwargs) == {"tracks": 2, "seconds": 3.0} and demo.options.tracks == 2
    assert (
        mus.dataset == "musdb18" and dict(mus.kwargs) == {"split": "test"} and mus.root == str(Path("~/m").expanduser())
    )
    assert "datasets[0].options.colour: unknown key; valid: ['names', 'seconds', 'seed', 'subset', 'tracks']" in \
        _err(_base(datasets=[{"name": "demo", "options": {"colour": 1}}]))


def test_results_reopen_datasets_through_the_typed_spec(tmp_path):
    """Results.track() re-opens a run's datasets with DatasetSel (no private
    spec helpers): each entry validated on its own, one that no longer
    validates is left out, ``dataset`` (one entry) is read too."""
    import pandas as pd

    from stemlab.errors import RunError
    from stemlab.runs.results import Results, _dataset_sels

    sels = _dataset_sels({"datasets": [{"name": "demo", "options": {"tracks": 1}}, {"name": "demo", "limit": 0}]})
    assert [dict(s.kwargs) for s in sels] == [{"tracks": 1}]
    with pytest.raises(ValidationError, match="expected int ≥ 1, got 0"):
        DatasetSel.model_validate({"name": "demo", "limit": 0})
    assert [s.dataset for s in _dataset_sels({"dataset": "demo"})] == ["demo"]
    spec = {"datasets": [{"name": "demo", "limit": 0}, {"name": "demo", "options": {"tracks": 2, "seconds": 1.0}}]}
    res = Results(tmp_path, "r", scores=pd.DataFrame(), frames=pd.DataFrame(), jobs=pd.DataFrame(), meta={"spec": spec})
    name = _dataset_sels(spec)[0].open().track_names()[1]
    t = res.track(name)
    assert t.name == name and t.has_references
    with pytest.raises(RunError, match="no track 'nope'"):
        res.track("nope")


def test_json_schema_file_is_the_generated_one():
    committed = json.loads((ROOT / "docs" / "spec.schema.json").read_text(encoding="utf-8"))
    assert committed == RunSpec.json_schema(), "regenerate: python -m stemlab.runs.spec > docs/spec.schema.json"


def test_json_schema_accepts_the_readme_shapes():
    jsonschema = pytest.importorskip("jsonschema")
    schema = RunSpec.json_schema()
    for ok in (_base(), GOLDEN[1][0], {"dataset": "demo", "providers": [{"family": "oracle", "variant": "irm"}],
                                       "metrics": "usdr,si_sdr"}):
        jsonschema.validate(ok, schema)
    for bad in (_base(colour=1), _base(providers=[]), _base(concurrency={"local": 0})):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# ------------------------------------------------------------- ProviderRef

def test_provider_ref_value():
    a = ProviderRef.parse("demucs:htdemucs_ft?shifts=2")
    b = ProviderRef.parse({"provider": "demucs:htdemucs_ft", "params": {"shifts": 2.0, "overlap": 0.25}})
    assert (a.family, a.variant, a.params["shifts"]) == ("demucs", "htdemucs_ft", 2)
    assert str(a) == "demucs:htdemucs_ft?shifts=2" and a == b and a.params_hash == b.params_hash
    assert len(a.params) == len(P.get_class("demucs").params_schema)  # defaults filled in
    assert ProviderRef.parse(str(a)) == a and ProviderRef.parse(a) is a
    assert a.params_hash != ProviderRef.parse("demucs:htdemucs_ft?shifts=3").params_hash
    assert a.params_hash == "da930a5a05e04fce"  # stable across processes and releases
    with pytest.raises(TypeError):
        a.params["shifts"] = 5  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        a.family = "x"  # type: ignore[misc]
    for c in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        assert c == a and hash(c) == hash(a)


def test_provider_ref_options_are_not_identity_and_not_shown():
    r = ProviderRef.parse({"provider": "aistemsplitter", "options": {"api_key": "ast_live_SECRET_1234567890"}})
    assert "SECRET" not in repr(r) and "api_key" in repr(r)
    assert r.params_hash == ProviderRef.parse("aistemsplitter").params_hash
    assert ProviderRef.parse("demucs?device=cpu").options == {"device": "cpu"}  # demucs: device in the string


@pytest.mark.parametrize("spec,where,line", [
    ("demucs:htdemucs?shifts=-1", "providers[2]", "providers[2].params.shifts: expected int in [0, 20], got -1"),
    ("demucs:htdemucs?shifts=-1", None, "demucs.params.shifts: expected int in [0, 20], got -1"),
    ("zzz", "providers[0]", "providers[0]: unknown provider 'zzz'; valid: ["),
    ({"provider": "demucs", "params": [1]}, "p", "p.params: expected a mapping of parameter values, got [1]"),
    ({"params": {}}, "p", "p: expected key 'provider' (e.g. 'demucs:htdemucs')"),
    ({"provider": "demucs", "options": {"device": "gpu"}}, "p", "p.options.device: provider demucs: option device"),
    ("baseline:hpss?nfft=3", "p", "p.params.nfft: expected one of [512, 1024, 2048, 4096, 8192], got 3"),
    ("oracle:irm?colour=1", "p", "p.params.colour: unknown parameter(s) ['colour']; valid: ["),
    ({"provider": "oracle", "options": {"threads": 2}}, "p", "p.options.threads: unknown option(s) ['threads']"),
])
def test_provider_ref_errors_name_the_field(spec, where, line):
    with pytest.raises(ConfigError) as ei:
        ProviderRef.parse(spec, where=where)
    assert str(ei.value).startswith(line)


def test_provider_ref_reports_every_param_at_once():
    with pytest.raises(ConfigError) as ei:
        ProviderRef.parse("demucs:htdemucs?shifts=-1&overlap=7", where="providers[1]")
    assert ei.value.details["errors"] == [
        "providers[1].params.shifts: expected int in [0, 20], got -1",
        "providers[1].params.overlap: expected float in [0.0, 0.95], got 7.0",
    ]


def test_create_from_ref_does_not_parse(monkeypatch):
    ref = ProviderRef.parse("baseline:hpss?nfft=2048")
    monkeypatch.setattr(B, "parse_spec", lambda *a: pytest.fail("parsed again"))
    import stemlab.providers.ref as R

    monkeypatch.setattr(R, "parse_spec", lambda *a: pytest.fail("parsed again"))
    prov = P.create(ref)
    assert prov.id == str(ref) and prov.config == dict(ref.params)
    assert P.create(prov) is prov and ProviderRef.of(prov) == ref


@pytest.mark.parametrize("family", sorted(P.BUILTIN))
def test_every_builtin_variant_round_trips(family):
    cls = P.get_class(family)
    for v in cls.variants or (None,):
        prov = cls(v)
        ref = ProviderRef.parse(prov.id)
        again = P.create(ref)
        assert str(ref) == prov.id == again.id and again.config == prov.config
        assert again.params_hash == prov.params_hash and ref.kind == cls.kind


def test_a_run_parses_each_provider_once_and_builds_it_once(monkeypatch, tmp_path):
    import stemlab.providers.ref as R
    import stemlab.runs.planning as planning_mod

    calls: list[str] = []
    orig = B.parse_spec

    def counted(spec):
        calls.append("parse")
        return orig(spec)

    monkeypatch.setattr(R, "parse_spec", counted)
    monkeypatch.setattr(B, "parse_spec", counted)
    builds: list[str] = []
    orig_create = planning_mod.create_provider

    def create(ref, **kw):
        assert isinstance(ref, ProviderRef)
        builds.append(ref.family)
        return orig_create(ref, **kw)

    monkeypatch.setattr(planning_mod, "create_provider", create)
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 1.0}}],
            "providers": ["oracle:irm", "baseline:hpss?nfft=2048", {"provider": "aistemsplitter", "sandbox": True}],
            "metrics": ["usdr"], "output": str(tmp_path / "o")}
    res = run(spec, quiet=True)
    assert list(res.jobs.status) == ["done"] * 3
    assert len(calls) == 3  # one per provider, in load_spec (was 7: spec, sandbox family, create)
    assert sorted(builds) == ["aistemsplitter", "baseline", "oracle"]
