"""Hostile services: every hostile sandbox mode × every remote family,
through the real harness (:func:`stemlab.runs.run` with a
:class:`~stemlab.sandbox.SandboxPool`), with fake API keys holding ``+/=&``
read from the environment variables.

Each cell runs one 2-s demo track through one sandboxed family whose
sandbox misbehaves on one endpoint *role* (as in the fault matrix: submit,
status, download, output; plus ``list`` — the job list reconciliation reads
— and ``account`` — MVSEP's plan check, whose key travels in the query) and
asserts:

* no secret — raw, percent-encoded (either case), base64, JSON/repr-escaped
  (:func:`stemlab._secrets.renderings`) — in any file under the output
  directory (ledger.sqlite, jobs/scores tables, run.json …) or the service
  caches, in any log record (caplog at DEBUG for ``stemlab``, ``httpx``,
  ``httpcore``), in the job's error text, nor in anything the second,
  *recording* server (another loopback port, the redirect target) received
  — headers, query or body;
* redirects: a request carrying the key never follows a redirect to another
  origin (the recorder gets nothing from it); a download (no key) may;
* memory: the traced peak (``tracemalloc``, reset before the run) at most
  the same family's clean run + 100 MB (a 200-MB gzip bomb or a 300-MB
  answer never inflates in memory);
* money: no job charged twice (the sandbox's own ledger), at most one job
  created and charged for the track — a service that ignores
  ``Idempotency-Key`` is reconciled through its job list, or the job is left
  in doubt where there is no list;
* the outcome: ``recovered`` (the job is done, its scores equal the clean
  run's) or ``failed`` / ``in_doubt`` — a failed job row whose
  ``error_kind`` is a stemlab error class and whose message matches the
  precise reason; never a traceback (no other exception class, no
  "unexpected error" log) and never a hang (bounded wall time per cell).

The table of outcomes is printed at the end of the module (``HOSTILE
SERVICES``); ``docs/reliability.md`` lists every case with its test.
"""

from __future__ import annotations

import logging
import re
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import stemlab.errors as E
import stemlab.providers as P
from stemlab._secrets import ENV_VARS, renderings
from stemlab.runs import run
from stemlab.runs import runner as runner_mod
from stemlab.sandbox import SandboxPool, get_sandbox_class
from tests.reliability.test_fault_matrix import FAMILIES, _endpoint
from tests.remote._stemcheck import aligned_score

from ._tables import show, text_table

SCALE = 0.002  # 500 service seconds per real second
MB = 2**20
#: every cell: small caps so a bomb is refused early, and the fault matrix's fast polling
BASE_OPTIONS: dict[str, Any] = {"poll_initial": 1.0, "poll_interval": 1.0, "poll_max_interval": 2.0, "seed": 0,
                                "max_response_bytes": 1 * MB, "max_download_bytes": 16 * MB,
                                "request_timeout": 20.0, "download_timeout": 20.0}
#: drip cells: total deadlines of a second, so a dripped answer is cut fast
DRIP = {"request_timeout": 0.6, "download_timeout": 0.6, "upload_timeout": 1.0}
MEMORY_SLACK = 100 * MB
CELL_SECONDS = 45.0


def _fake_key(var: str) -> str:
    """A fake key with the characters that percent-encoding changes."""
    stem = var.lower().replace("_api_key", "").replace("_", "-")
    return f"FAKE+{stem}/k3y=Qz9&xK2+mVb4/Lr8=Tw"


KEYS = {var: _fake_key(var) for var in ENV_VARS.values()}
NEEDLES = sorted({r for k in KEYS.values() for r in renderings(k)}, key=len, reverse=True)
#: where reconciliation reads the job list, and MVSEP's plan check (key in the query of a GET)
EXTRA_ROLES = {"list": {"aistemsplitter": "list", "mvsep": "history"}, "account": {"mvsep": "user"}}


@dataclass(frozen=True)
class Case:
    label: str
    #: (role, "KIND(args)*COUNT") pairs; "{rec}" in args is the recording server's URL
    faults: tuple[tuple[str, str], ...]
    expect: str = "recovered"  # recovered | failed | in_doubt
    reason: str = ""  # regex the job's error must match
    options: dict[str, Any] = field(default_factory=dict)  # provider options
    sandbox: dict[str, Any] = field(default_factory=dict)  # sandbox constructor options
    #: family → why the case does not apply to it
    na: dict[str, str] = field(default_factory=dict)
    #: family → (expect, reason) where a service legitimately differs
    overrides: dict[str, tuple[str, str]] = field(default_factory=dict)
    redirect: bool = False  # the recording server is the redirect target

    def expected(self, family: str) -> tuple[str, str]:
        return self.overrides.get(family, (self.expect, self.reason))


_NO_KEY_SVC = "its service dedups by no key (every create is new): the plain create:drop case"
_SUNO_NA = ("Suno's submit is the status request itself (GET stems of a clip): the clip id is the dedup key, "
            "there is no separate create to drop or to charge twice")
_REDIR = r"redirected to another origin \(http://127\.0\.0\.1\); credentials are never sent to another origin"

CASES = [
    Case("gzip bomb: status JSON (200 MB)", (("status", "gzip_bomb(mb=200)"),)),
    Case("gzip bomb: status JSON every time", (("status", "gzip_bomb(mb=200)*50"),), "failed",
         r"answer larger than 1048576 bytes decoded; refused"),
    # the service made (and charged) the job; its answer cannot be read: found in the job list
    Case("gzip bomb: paid submit's answer", (("submit", "gzip_bomb(mb=200)"),)),
    Case("gzip bomb: stem download", (("download", "gzip_bomb(mb=200)"),), "failed",
         r"download of (stem )?'?\w+'? of (job|song) \S+: answer larger than 16777216 bytes decoded; refused "
         r"\(option max_download_bytes\)"),
    Case("huge: 300-MB status JSON", (("status", "huge(mb=300)"),)),
    Case("huge: 300-MB paid submit answer", (("submit", "huge(mb=300)"),)),
    Case("huge: download > max_download_bytes", (("download", "huge(mb=64)"),), "failed",
         r"download of (stem )?'?\w+'? of (job|song) \S+: answer larger than 16777216 bytes decoded; refused"),
    Case("huge: download, Content-Length 64 MB", (("download", "huge(mb=64,length=true)"),), "failed",
         r"answer is 67108864 bytes, above the limit of 16777216 bytes; refused \(option max_download_bytes\)"),
    Case("drip: status (1 byte/0.5 s)", (("status", "drip(seconds=0.5)"),), options=DRIP),
    Case("drip: paid submit's answer", (("submit", "drip(seconds=0.5)"),), options=DRIP),
    Case("drip: stem download", (("download", "drip(seconds=0.5)"),), options=DRIP),
    Case("redirect: paid submit → other origin (307)", (("submit", "redirect(to={rec},status=307)"),), "failed",
         _REDIR, redirect=True),
    Case("redirect: status → other origin (307)", (("status", "redirect(to={rec},status=307)"),), redirect=True),
    Case("redirect: download → other origin (302)", (("download", "redirect(to={rec},status=302)"),),
         redirect=True),
    Case("redirect: plan check, key in query (307)", (("account", "redirect(to={rec},status=307)"),),
         redirect=True, na={"aistemsplitter": "no account call in a run", "dango": "no account call in a run",
                            "suno": "no account call in a run"}),
    Case("redirect: job list while reconciling", (("submit", "drop"), ("list", "redirect(to={rec},status=307)*5")),
         "in_doubt", r"job list could not be read .*redirected to another origin", redirect=True,
         na={"dango": "reconciles by asking the song's status (the status cells cover it)",
             "suno": "no job list (the clip id is the key)"}),
    Case("non-audio stem (HTML page, 200)", (("output", "non_audio"),), "failed",
         r"stem '\w+' \(html, \d+ bytes\) does not decode"),
    Case("ignores Idempotency-Key + create answer dropped", (("submit", "drop"),),
         sandbox={"honor_idempotency": False}, na={"suno": _SUNO_NA}),
    Case("… and the service has no job list", (("submit", "drop"),), "in_doubt",
         r"may have reached the service .* has no job list to check; the job stays in doubt .*--retry-in-doubt",
         sandbox={"honor_idempotency": False, "list_supported": False},
         na={"mvsep": "MVSEP always has its separation history", "dango": "Dango reconciles through status",
             "suno": _SUNO_NA}),
]

ROWS: list[dict[str, Any]] = []


class EnvKeyPool(SandboxPool):
    """Sandboxes that accept the env keys; providers get no api_key option,
    so they read ``$<SERVICE>_API_KEY`` themselves."""

    def options_for(self, family):
        opts = super().options_for(family)
        opts.pop("api_key")
        return opts


class Recorder:
    """A loopback server on another port that records every request
    (method, path, query, headers, body) and answers 200 ``{"recorded": true}``."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from stemlab.services._remote.serve import BackgroundServer

        self.seen: list[dict[str, Any]] = []

        async def record(request):
            self.seen.append({"method": request.method, "path": request.url.path,
                              "query": request.url.query, "headers": list(request.headers.items()),
                              "body": await request.body()})
            return JSONResponse({"recorded": True})

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        app = Starlette(routes=[Route("/{path:path}", record, methods=methods)])
        self._server = BackgroundServer(app)

    def start(self) -> Recorder:
        self._server.start()
        return self

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    def blob(self, since: int = 0) -> str:
        """Everything received after the ``since``-th request, as text."""
        parts = []
        for r in self.seen[since:]:
            parts += [r["method"], r["path"], r["query"], *(f"{k}: {v}" for k, v in r["headers"]),
                      r["body"].decode("latin-1")]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def recorder():
    rec = Recorder().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def keys_env():
    mp = pytest.MonkeyPatch()
    for var, value in KEYS.items():
        mp.setenv(var, value)
    mp.setattr(runner_mod, "score_stems", aligned_score)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def traced():
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    yield
    if started:
        tracemalloc.stop()


@pytest.fixture(scope="module", autouse=True)
def _print_table(request):
    yield
    if ROWS:
        show(request, _table(ROWS))


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = text_table("HOSTILE SERVICES (sandbox, through the harness)", rows,
                     ("family", "case", "outcome", "detail", "jobs", "dup", "rec", "+MB", "s"), detail_width=90)
    n = [r for r in rows if r["outcome"] != "n/a"]
    out.append(f"{len(n)} cells: {sum(r['outcome'] == 'recovered' for r in n)} recovered, "
               f"{sum(r['outcome'] == 'failed' for r in n)} failed with a reason, "
               f"{sum(r['outcome'] == 'in_doubt' for r in n)} left in doubt, "
               f"{sum(r['dup'] for r in n)} duplicate charges, {sum(r['leaks'] for r in n)} secrets leaked")
    out.append("jobs: jobs created (= charged) on the service; dup: duplicate charges; rec: requests the "
               "recording server got (none of them with a key); +MB: traced peak above the clean run's")
    return out


def _resolve(family: str, role: str) -> str | None:
    if role in EXTRA_ROLES:
        return EXTRA_ROLES[role].get(family)
    probe = get_sandbox_class(family)()  # not started: route names only
    return _endpoint(probe, role)


def _plan(family: str, case: Case, rec_url: str) -> str | None:
    """The fault spec of one cell, or None when the family lacks a role."""
    parts = []
    for role, kind in case.faults:
        endpoint = _resolve(family, role)
        if endpoint is None:
            return None
        after = ""
        if role == "status" and endpoint == _resolve(family, "submit"):  # Suno: one endpoint
            after = "+1"
        parts.append(f"{endpoint}:{kind.replace('{rec}', rec_url)}{after}")
    return ";".join(parts)


def _harness(family: str, out: Path, faults: str | None, options: dict[str, Any],
             sandbox: dict[str, Any]) -> dict[str, Any]:
    """One harness run of one track through ``family``'s sandbox."""
    var = ENV_VARS[P.get_class(family).service or family]
    pool = EnvKeyPool(scale=SCALE, faults={family: faults} if faults else None,
                      options={family: {"api_keys": [KEYS[var]], **sandbox}})
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 2.0}}],
            "providers": [{"provider": family, "sandbox": True, "options": {**BASE_OPTIONS, **options}}],
            "metrics": ["usdr"], "output": str(out)}
    exc = res = None
    cur0 = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    with pool:
        try:
            res = run(spec, quiet=True, sandboxes=pool)
        except Exception as e:  # noqa: BLE001 - a harness crash: reported by the cell
            exc = e
        secs = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - cur0
        sb = pool.running.get(family)
        ledger = sb.ledger if sb is not None else None
        fired = sum(sb.faults_fired().values()) if sb is not None else 0
    new = [j for j, k in ledger.creates if k == "new"] if ledger else []
    charged = {c.job_id for c in ledger.charges} if ledger else set()
    row = res.jobs.iloc[0].to_dict() if res is not None and len(res.jobs) else {}
    score = None
    if res is not None and len(res.scores):
        score = float(res.scores[res.scores.metric == "sdr_aligned"].value.mean())
    return {"res": res, "exc": exc, "row": row, "secs": secs, "peak": peak, "fired": fired,
            "dup": len(ledger.duplicate_charges()) if ledger else 0, "jobs": len(set(new)), "new": len(new),
            "charged_jobs": len(charged), "score": score}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, keys_env, traced):
    """The clean run of every family: its traced peak and scores (after a
    warm-up run, so that first-use imports count in no baseline)."""
    _harness(FAMILIES[0], tmp_path_factory.mktemp("warm-up"), None, {}, {})
    out = {}
    for fam in FAMILIES:
        r = _harness(fam, tmp_path_factory.mktemp(f"clean-{fam}"), None, {}, {})
        assert r["exc"] is None and r["row"].get("status") == "done", (fam, r["exc"], r["row"])
        out[fam] = r
    return out


def _outcome(r: dict[str, Any]) -> tuple[str, str]:
    if r["exc"] is not None:
        return "CRASH", f"{type(r['exc']).__name__}: {r['exc']}"
    row = r["row"]
    status, err = row.get("status"), str(row.get("error") or "")
    if status == "done":
        return "recovered", "job done, scores as the clean run's"
    if row.get("error_kind") == "InDoubt":
        return "in_doubt", f"{row.get('error_kind')}: {err}"
    return str(status), f"{row.get('error_kind')}: {err}"


def _stemlab_error_names() -> set[str]:
    """Names of every StemlabError class (the client's TooLarge and
    RedirectRefused included), never TypeError, ValueError …"""
    import stemlab.services._remote.client  # noqa: F401 - defines subclasses

    out, todo = set(), [E.StemlabError]
    while todo:
        c = todo.pop()
        out.add(c.__name__)
        todo += c.__subclasses__()
    return out


def _leaks(texts: list[str]) -> list[str]:
    return sorted({n for n in NEEDLES for t in texts if n in t})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_hostile(family, case, clean, recorder, tmp_path, caplog, keys_env, traced):
    for name in ("stemlab", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    row = {"family": family, "case": case.label, "outcome": "n/a", "detail": "", "jobs": "-", "dup": 0, "rec": "-",
           "+MB": "-", "s": "-", "leaks": 0}
    spec = None if family in case.na else _plan(family, case, recorder.url + "/elsewhere")
    if spec is None:
        row["detail"] = case.na.get(family) or f"{family} has no endpoint for {[r for r, _ in case.faults]}"
        ROWS.append(row)
        pytest.skip(row["detail"])
    seen0 = len(recorder.seen)
    out = tmp_path / "out"
    r = _harness(family, out, spec, case.options, case.sandbox)
    outcome, detail = _outcome(r)
    base = clean[family]
    extra_mb = (r["peak"] - base["peak"]) / MB
    # --- no secret anywhere: files, service caches, logs, error text, the recording server
    texts = [f.read_bytes().decode("latin-1") for f in sorted(out.rglob("*")) if f.is_file()]
    cache = Path(__import__("os").environ["STEMLAB_CACHE"]) / "remote"
    texts += [f.read_bytes().decode("latin-1") for f in sorted(cache.rglob("*")) if f.is_file()]
    texts += [f"{rec.name} {rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records]
    texts += [detail, recorder.blob(seen0)]
    leaks = _leaks(texts)
    row.update(outcome=outcome, detail=detail.replace("\n", " "), jobs=r["jobs"], dup=r["dup"],
               rec=len(recorder.seen) - seen0, s=f"{r['secs']:.1f}", leaks=len(leaks), **{"+MB": f"{extra_mb:.0f}"})
    ROWS.append(row)

    assert r["exc"] is None, f"the harness raised: {detail}"
    assert not leaks, f"secret renderings leaked: {leaks}"
    assert r["fired"] >= 1, f"fault {spec} never fired"
    # never a traceback: no unexpected-error log, only stemlab error classes in the row
    assert not [x for x in caplog.records if x.exc_info or "unexpected error" in x.getMessage()]
    kind = r["row"].get("error_kind")
    if kind is not None:
        assert kind in _stemlab_error_names(), f"error_kind {kind} is not a stemlab error class: {detail}"
    # money: one job at most, charged once
    assert r["dup"] == 0 and r["new"] <= 1 and r["charged_jobs"] <= 1, r
    # bounded memory and time
    assert r["peak"] <= base["peak"] + MEMORY_SLACK, f"traced peak {r['peak'] / MB:.0f} MB vs clean " \
                                                     f"{base['peak'] / MB:.0f} MB"
    assert r["secs"] < CELL_SECONDS
    # redirects: a request with the key never followed one to another origin
    if case.redirect:
        for got in recorder.seen[seen0:]:
            assert got["method"] == "GET" and not got["body"], got  # only key-less downloads/status reads follow
    if family == "mvsep":  # its token travels in query strings: httpx's INFO line shows it, redacted
        assert any(x.name.startswith("httpx") and "api_token=***" in x.getMessage() for x in caplog.records)
    expect, reason = case.expected(family)
    assert outcome == expect, detail
    if reason:
        assert re.search(reason, detail), (reason, detail)
    if outcome == "recovered":
        assert r["score"] is not None and abs(r["score"] - base["score"]) < 0.5, (r["score"], base["score"])


BAD_KEYS = [("trailing \\n", "\n", "a control character"), ("CRLF", "\r\n", "a control character"),
            ("NUL", "\x00", "a control character"), ("non-ASCII", "é", "a non-ASCII character")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("label,tail,words", BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_a_key_with_a_stray_character_is_a_named_config_error(family, label, tail, words, tmp_path, keys_env,
                                                              monkeypatch, caplog):
    """A key read with a trailing newline/CR (a CRLF .env file, a secret
    made from a file), a NUL or a non-ASCII character is refused before any
    request: a ConfigError naming the variable (or the option) and never the
    value; environment variables cannot hold a NUL, so that one is given as
    the ``api_key`` option."""
    from stemlab.errors import ConfigError

    caplog.set_level(logging.DEBUG)
    var = ENV_VARS[P.get_class(family).service or family]
    bad = KEYS[var] + tail
    options: dict[str, Any] = {}
    if "\x00" in tail:
        options["api_key"] = bad
    else:
        monkeypatch.setenv(var, bad)
    pool = EnvKeyPool(scale=SCALE, options={family: {"api_keys": [KEYS[var]]}})
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 2.0}}],
            "providers": [{"provider": family, "sandbox": True, "options": options}],
            "metrics": ["usdr"], "output": str(tmp_path / "out")}
    with pool, pytest.raises(ConfigError) as ei:
        run(spec, quiet=True, sandboxes=pool)
    msg = str(ei.value)
    where = "providers[0].options.api_key: " if options else f"providers[0]: ${var}: "
    assert f"{where}" in msg and f"the key contains {words}" in msg, msg
    sb = pool.running.get(family)
    assert sb is None or not sb.requests  # nothing was sent
    texts = [msg] + [f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    if (tmp_path / "out").exists():
        texts += [f.read_bytes().decode("latin-1") for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert not _leaks(texts) and not any(bad.strip() in t for t in texts)


@pytest.mark.timeout(120)
def test_in_doubt_job_is_not_resubmitted_by_a_plain_rerun(tmp_path, keys_env):
    """A service that ignores Idempotency-Key and has no job list; the
    create's answer is cut: the job is left in doubt (1 job charged). A plain
    rerun of the same spec must not submit it again (it stays 'submitting',
    in doubt); only an explicit retry-in-doubt does."""
    fam = "aistemsplitter"
    pool = EnvKeyPool(scale=SCALE, faults={fam: "create:drop"},
                      options={fam: {"api_keys": [KEYS["AISTEMSPLITTER_API_KEY"]], "honor_idempotency": False,
                                     "list_supported": False}})
    spec = {"datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 2.0}}],
            "providers": [{"provider": fam, "sandbox": True, "options": dict(BASE_OPTIONS)}],
            "metrics": ["usdr"], "output": str(tmp_path / "out")}
    with pool:
        first = run(spec, quiet=True, sandboxes=pool)
        assert first.jobs.error_kind.tolist() == ["InDoubt"] and first.jobs.status.tolist() == ["submitting"]
        again = run(spec, quiet=True, sandboxes=pool)  # the same spec again, no retry flag
        charged = {c.job_id for c in pool.running[fam].ledger.charges}
        assert len(charged) == 1, f"the rerun resubmitted the job in doubt: {len(charged)} jobs charged"
        assert again.jobs.status.tolist() == ["submitting"] and "--retry-in-doubt" in again.jobs.error.iloc[0]
        # the user checked the account and asks explicitly: submitted again (this service charges again)
        third = run(spec, quiet=True, sandboxes=pool, retry_in_doubt=True)
        charged = {c.job_id for c in pool.running[fam].ledger.charges}
    assert third.jobs.status.tolist() == ["done"] and len(charged) == 2
