"""Secrets never leave: a harness run through the sandboxed AI Stem Splitter
and Suno with fake keys in the environment — including a failing job whose
error text echoes the key, DEBUG logging of the HTTP stack and a log file —
then every byte written under the output and cache dirs (ledger SQLite,
parquet/CSV/JSON, stem cache, logs), the captured stdout/stderr and every
log record are scanned for the key strings. Also: ``repr()`` of providers,
options and HTTP clients, and a missing key → ``ProviderUnavailable`` that
names the variable and no value."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import stemlab.providers as P
from stemlab._secrets import ENV_VARS
from stemlab.errors import ProviderUnavailable
from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from stemlab.sandbox import SANDBOXES, SandboxPool
from tests.remote._stemcheck import aligned_score


def _fake(var: str) -> str:
    return f"FAKE-{var.lower().replace('_', '-')}-7Qz9xK2mVb4Lr8Tw"


KEYS = {var: _fake(var) for var in ENV_VARS.values()}


class EnvKeyPool(SandboxPool):
    """Sandboxes that accept the env keys; providers get no api_key option,
    so they read $AISTEMSPLITTER_API_KEY / $SUNO_API_KEY themselves."""

    def options_for(self, family):
        opts = super().options_for(family)
        opts.pop("api_key")
        return opts


def _scan(root: Path, needles: list[bytes]) -> tuple[int, list[str]]:
    files, hits = 0, []
    for f in sorted(root.rglob("*")):
        if f.is_file():
            files += 1
            data = f.read_bytes()
            hits += [f"{f}: {n.decode()}" for n in needles if n in data]
    return files, hits


@pytest.fixture
def fake_env(monkeypatch, tmp_path):
    for var, value in KEYS.items():
        monkeypatch.setenv(var, value)
    cache = tmp_path / "cache"
    monkeypatch.setenv("STEMLAB_CACHE", str(cache))
    return cache


def test_harness_run_writes_no_key_anywhere(fake_env, tmp_path, caplog, capfd, monkeypatch):
    aiss, suno = KEYS["AISTEMSPLITTER_API_KEY"], KEYS["SUNO_API_KEY"]
    monkeypatch.setattr(runner_mod, "score_stems", aligned_score)
    out = tmp_path / "out"
    out.mkdir()
    log_file = out / "run.log"
    fh = logging.FileHandler(log_file)
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(fh)
    caplog.set_level(logging.DEBUG)  # request dumps of stemlab.remote.http, httpx, httpcore
    # the second AISS job fails, and the service's message quotes the key back
    pool = EnvKeyPool(
        scale=0.005,
        faults={"aistemsplitter": f"job:fail(code=KEY_REJECTED,message=key {aiss} is not allowed)+1"},
        options={"aistemsplitter": {"api_keys": [aiss]}, "suno": {"api_keys": [suno]}},
    )
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 2, "seconds": 2.0}}],
            "providers": ["aistemsplitter", "suno"], "metrics": ["usdr"], "output": str(out)}
    try:
        with pool:
            res = run(spec, quiet=True, sandboxes=pool)
            sb = pool.running["aistemsplitter"]
            assert sb.ledger.jobs and all(j.account.startswith("acct_") for j in sb.ledger.jobs.values())
            # the providers really authenticated with the env keys (the sandboxes know no other)
            assert sb.api_keys == [aiss] and pool.running["suno"].api_keys == [suno]
    finally:
        root.removeHandler(fh)
        fh.close()
    jobs = res.jobs
    assert sorted(jobs.status) == ["done", "done", "done", "failed"], jobs.error.tolist()
    err = jobs[jobs.status == "failed"].error.iloc[0]
    assert "KEY_REJECTED: key *** is not allowed" in err  # redacted, not dropped

    # the HTML/Markdown/CSV report of the run is written too (it embeds the spec and the errors)
    from stemlab.reports import build_report

    build_report(out, out / "report.html", clips=False)
    needles = [k.encode() for k in KEYS.values()]
    files, hits = _scan(out, needles)
    cfiles, chits = _scan(fake_env, needles)
    assert files >= 8 and (out / "ledger.sqlite").is_file() and log_file.stat().st_size > 0
    written = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert {".sqlite", ".log", ".html"} <= written and written & {".parquet", ".csv", ".json"}
    assert "KEY_REJECTED: key *** is not allowed" in (out / "report.html").read_text()
    assert hits == [] and chits == [], hits + chits
    text = log_file.read_text()
    assert "***" in text  # the failure was logged, redacted
    records = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert any(r.name.startswith(("stemlab.remote", "httpx")) and r.levelno == logging.DEBUG for r in caplog.records)
    captured = capfd.readouterr()
    for k in KEYS.values():
        assert k not in records and k not in captured.out and k not in captured.err


def test_reprs_hold_no_key(fake_env):
    fams = [f for f in SANDBOXES if getattr(P.get_class(f), "kind", "") == "remote"]
    assert {"aistemsplitter", "suno"} <= set(fams)
    for fam in fams:
        p = P.create(fam, base_url="http://127.0.0.1:9")
        assert p.status().ready, p.status().detail  # the key came from the env
        explicit = P.create(fam, base_url="http://127.0.0.1:9", api_key="explicit-key-ABCDEF123456")

        async def client_repr(prov):
            c = prov._client()
            try:
                return repr(c) + repr(c.auth) + str(prov.provenance())
            finally:
                await prov.aclose()

        texts = [repr(p), str(p), repr(p.options), repr(explicit), repr(explicit.options), str(explicit.options),
                 f"{explicit.options['api_key']}", asyncio.run(client_repr(p)), asyncio.run(client_repr(explicit))]
        blob = "\n".join(texts)
        for k in list(KEYS.values()) + ["explicit-key-ABCDEF123456"]:
            assert k not in blob, (fam, k)
        assert "redacted" in repr(explicit.options["api_key"])


def test_missing_key_names_the_variable(fake_env, monkeypatch):
    import numpy as np

    from stemlab import Track

    t = Track.from_arrays("t", np.zeros((2, 44100), np.float32) + 0.01, 44100, suno_clip_id="clip-1")
    fams = [f for f in SANDBOXES if getattr(P.get_class(f), "kind", "") == "remote"]
    for fam in fams:
        prov_cls = P.get_class(fam)
        var = ENV_VARS.get(prov_cls.service or fam)
        assert var, f"{fam}: no documented env variable in stemlab._secrets.ENV_VARS"
        monkeypatch.delenv(var)
        p = P.create(fam, base_url="http://127.0.0.1:9")
        st = p.status()
        assert not st.ready and f"${var}" in st.detail
        with pytest.raises(ProviderUnavailable) as ei:
            p.separate(t)
        msg = str(ei.value)
        assert f"${var}" in msg and "api_key" in msg
        for k in KEYS.values():  # the other services' keys are still set: none may appear
            assert k not in msg
        monkeypatch.setenv(var, KEYS[var])


def test_api_key_written_into_the_spec_is_not_written_out(fake_env, tmp_path):
    """The spec is stored with the results (run.json, ledger, HTML report):
    a key a user put in a provider's options must be masked there."""
    key = "ast_live_INSPEC_4f8a2b9c7d1e"
    out = tmp_path / "o"
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 1.0}}],
            "providers": [{"provider": "aistemsplitter", "sandbox": False,
                           "options": {"base_url": "http://127.0.0.1:9", "api_key": key, "max_attempts": 1}}],
            "metrics": ["usdr"], "output": str(out)}
    res = run(spec, quiet=True)
    assert list(res.jobs.status) == ["failed"] and "cannot reach the service" in res.jobs.error.iloc[0]
    assert res.meta["spec"]["providers"][0]["options"] == {"base_url": "http://127.0.0.1:9", "api_key": "***",
                                                           "max_attempts": 1}
    files, hits = _scan(out, [key.encode()] + [k.encode() for k in KEYS.values()])
    assert files >= 3 and hits == []
