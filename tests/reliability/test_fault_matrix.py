"""Fault matrix: every remote family that has a sandbox × every fault the
sandbox's fault module supports. Each cell runs the provider end to end on a
2-s demo excerpt against a sandbox injecting one fault and asserts the
outcome:

* ``recovered`` — the same stems as the clean run (≥ 40 dB SDR against it);
* ``degraded`` — stems returned but not the clean ones (e.g. mono), with a
  warning saying so; or re-sampled stems that match after resampling;
* ``failed`` — a :class:`~stemlab.errors.StemlabError` whose message matches
  the precise reason;

and in every cell: no other exception type (never a crash), no job created
or charged twice (the sandbox's own ledger), never more charged than the
clean run. The matrix is printed as a table at the end of the module.

Families join automatically: every registered remote provider family with
an entry in :data:`stemlab.sandbox.SANDBOXES`. Faults are aimed at an
endpoint *role* (submit, status, download …); a sandbox may declare
``fault_endpoints = {"submit": …, "status": …}``, else the role is guessed
from its route names; a role a service lacks (webhooks on Suno) is "n/a".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import stemlab.datasets as D
import stemlab.providers as P
from stemlab.audio import resample
from stemlab.errors import StemlabError
from stemlab.sandbox import SANDBOXES, get_sandbox_class
from stemlab.services._sandbox.faults import KINDS
from tests.remote._stemcheck import aligned_sdr

from ._tables import show, text_table

SECONDS = 2.0
SCALE = 0.002  # 500 service seconds per real second
FAST = {"poll_initial": 1.0, "poll_interval": 1.0, "poll_max_interval": 2.0, "seed": 0}

#: route names tried for each role, in order (a sandbox's ``fault_endpoints`` wins)
ROLE_GUESSES = {
    "submit": ("create", "submit", "separate", "upload_result", "result", "stems"),
    "status": ("status", "get", "query", "info", "stems"),
    "download": ("download",),
}


@dataclass(frozen=True)
class Case:
    label: str
    kind: str  # a kind of stemlab.services._sandbox.faults
    role: str  # submit | status | download | job | output | webhook
    args: str = ""  # "(k=v,…)*COUNT" part of the fault spec
    expect: str = "recovered"  # recovered | degraded | failed
    reason: str = ""  # regex a failure message must match
    options: dict[str, Any] = field(default_factory=dict)
    #: (expect, reason) for services without an idempotent submit (no Idempotency-Key)
    nonidem: tuple[str, str] | None = None
    #: family → (expect, reason) where a service legitimately differs
    overrides: dict[str, tuple[str, str]] = field(default_factory=dict)

    def expected(self, family: str) -> tuple[str, str]:
        if family in self.overrides:
            return self.overrides[family]
        if self.nonidem is not None and not getattr(P.get_class(family), "idempotent_submit", False):
            return self.nonidem
        return self.expect, self.reason


CASES = [
    Case("429 + Retry-After (s)", "http_429", "status", "(retry_after=2)*3"),
    Case("429 + Retry-After (date)", "http_429", "submit", "(retry_after=date,seconds=1)*2"),
    Case("429 storm (5 attempts)", "http_429", "status", "(retry_after=1)*50", "failed",
         r"rate limited .*after 5 attempts"),
    Case("500 burst", "http_500", "status", "*3"),
    Case("500 on submit", "http_500", "submit"),
    # a 5xx on a paid submit is ambiguous (Idempotency-Key or not): the job list is checked before
    # every resend — the service may have made the job — and is the authority; not listed → resent
    Case("500 burst on submit", "http_500", "submit", "*2"),
    Case("502 on download", "http_502", "download", "*2"),
    Case("503 burst on submit", "http_503", "submit", "*3"),
    Case("504 burst", "http_504", "status", "*2"),
    Case("connection reset: submit", "drop", "submit"),
    Case("connection reset: status", "drop", "status", "*2"),
    Case("connection reset: download", "drop", "download"),
    Case("read timeout", "delay", "status", "(seconds=1.6)", options={"timeout": 0.8}),
    Case("job failed", "fail", "job", "(code=PROCESSING_FAILED,message=GPU worker crashed)", "failed",
         r"remote job \S+ failed \(.*GPU worker crashed\) on track 'demo-01-pop'",
         overrides={"dango": ("failed", r"remote job \S+ failed \(1: processing failed .*\) on track 'demo-01-pop'")}),
    Case("stuck past max_wait", "stuck", "job", "", "failed", r"still \w+ after \d+ s \(max_wait 200 s\)",
         {"max_wait": 200.0}),
    Case("expired download URL", "expire", "download"),
    Case("download URL keeps expiring", "expire", "download", "*50", "failed",
         r"HTTP 403 from the download URL.*still refused after (refreshing the job's URLs )?2"),
    Case("truncated download", "truncate", "download"),
    Case("corrupt download", "corrupt", "download"),  # Dango too: the same URL again, within its 20 min, is free
    Case("download corrupt every time", "corrupt", "download", "*50", "failed", r"does not decode"),
    Case("corrupt status answer", "corrupt", "status", "*2"),
    Case("status answers always garbled", "corrupt", "status", "*50", "failed",
         r"expected a JSON answer, got HTTP 200"),
    Case("wrong sample rate", "wrong_rate", "output", "(rate=22050)", "degraded", r"22050"),
    Case("wrong channels (mono)", "wrong_channels", "output", "", "degraded", r"mono stems for a stereo input"),
    Case("wrong length (half)", "wrong_length", "output", "(factor=0.5)", "failed",
         r"truncated or wrong-length output"),
    # hostile answers (tests/reliability/test_hostile.py runs each on every role through the harness)
    Case("gzip bomb (200 MB) as status", "gzip_bomb", "status", "(mb=200)"),
    Case("300-MB status answer", "huge", "status", "(mb=300)"),
    Case("status answer dripped", "drip", "status", "(seconds=0.5)", options={"request_timeout": 1.0}),
    Case("status redirected to another origin", "redirect", "status", "(to=http://127.0.0.1:9/elsewhere,status=307)"),
    Case("stem served as an HTML page", "non_audio", "output", "", "failed",
         r"stem '\w+' \(html, \d+ bytes\) does not decode"),
    Case("duplicate webhook", "webhook_duplicate", "webhook"),
    Case("bad webhook signature", "webhook_bad_signature", "webhook"),
    Case("missing webhook", "webhook_missing", "webhook"),
]


def _families() -> list[str]:
    out = []
    for fam in sorted(SANDBOXES):
        try:
            cls = P.get_class(fam)
        except Exception:  # a sandbox without a registered provider: not a matrix row
            continue
        if getattr(cls, "kind", "") == "remote":
            out.append(fam)
    return out


FAMILIES = _families()
MATRIX: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def excerpt():
    return next(iter(D.load("demo", tracks=1, seconds=SECONDS)))


@pytest.fixture(scope="module", autouse=True)
def _print_matrix(request):
    yield
    if MATRIX:
        show(request, _table(MATRIX))


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = text_table("FAULT MATRIX (sandbox)", rows,
                     ("family", "fault", "spec", "outcome", "detail", "charged", "dup", "s"), detail_width=70)
    n = [r for r in rows if r["outcome"] != "n/a"]
    out.append(f"{len(n)} cells: {sum(r['outcome'] == 'recovered' for r in n)} recovered, "
               f"{sum(r['outcome'] == 'degraded' for r in n)} degraded, {sum(r['outcome'] == 'failed' for r in n)} "
               f"failed with a reason, 0 crashes, {sum(r['dup'] for r in n)} duplicate charges")
    return out


def _endpoint(sb: Any, role: str) -> str | None:
    if role in ("job", "output", "webhook"):
        return role
    declared = getattr(sb, "fault_endpoints", None) or {}
    if role in declared:
        return declared[role]
    names = [r[2] for r in sb._all_routes()]
    return next((n for n in ROLE_GUESSES[role] if n in names), None)


def _sdr(est: np.ndarray, ref: np.ndarray) -> float:
    n = min(est.shape[-1], ref.shape[-1])
    e, r = est[..., :n].astype(np.float64), ref[..., :n].astype(np.float64)
    return float(10 * np.log10((np.sum(r**2) + 1e-12) / (np.sum((r - e) ** 2) + 1e-12)))


def _run(family: str, track: Any, fault: str | None, options: dict[str, Any], webhook: bool) -> dict[str, Any]:
    from stemlab.providers import create
    from stemlab.services._remote.webhooks import WebhookReceiver, WebhookVerifier

    cls = get_sandbox_class(family)
    with cls(faults=fault, seed=0, scale=SCALE) as sb:
        sb.register_track(track)
        rec = None
        try:
            opts = {**sb.provider_options(), **FAST, **options}
            if webhook:
                rec = WebhookReceiver(WebhookVerifier(sb.webhook_secret)).start()
                opts["webhook_receiver"] = rec
            p = create(family, **opts)
            t0 = time.perf_counter()
            sep = exc = None
            try:
                sep = p.separate(track)
            except Exception as e:  # classified below: a non-StemlabError is a crash
                exc = e
            secs = time.perf_counter() - t0
            if rec is not None:  # deliveries land after the job ends; wait for them (bounded)
                deadline = time.monotonic() + 5
                while not getattr(sb, "deliveries", None) and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(0.1)
            new = [j for j, k in sb.ledger.creates if k == "new"]
            return {"sep": sep, "exc": exc, "secs": secs, "charged": sb.ledger.charged(),
                    "dup": len(sb.ledger.duplicate_charges()) + (len(new) - len(set(new))) + max(0, len(new) - 1),
                    "fired": sum(sb.faults_fired().values()), "rejected": list(rec.rejected) if rec else [],
                    "events": len(rec.events) if rec else 0}
        finally:
            if rec is not None:
                rec.stop()


def _plan(family: str, case: Case) -> str | None:
    """The fault spec of one cell, or None when the service lacks the role."""
    probe = get_sandbox_class(family)()  # not started: route names only
    if case.role == "webhook":
        return f"webhook:{case.kind}{case.args}" if hasattr(probe, "webhook_secret") else None
    endpoint = _endpoint(probe, case.role)
    if endpoint is None:
        return None
    after = "+1" if case.role == "status" and endpoint == _endpoint(probe, "submit") else ""  # Suno: same endpoint
    return f"{endpoint}:{case.kind}{case.args}{after}"


@pytest.fixture(scope="module")
def cells(excerpt):
    """Run every cell (clean runs first), four at a time: each cell has its
    own sandbox, clock and provider, and most of a cell's time is waiting."""
    from concurrent.futures import ThreadPoolExecutor

    _ = excerpt.mixture, excerpt.references  # decode once, before the threads share the track
    with ThreadPoolExecutor(max(2, len(FAMILIES))) as ex:
        clean = dict(zip(FAMILIES, ex.map(lambda f: _run(f, excerpt, None, {}, False), FAMILIES)))
    for f, r in clean.items():
        assert r["exc"] is None, f"{f}: the clean run failed: {r['exc']!r}"
    todo = [(f, c, _plan(f, c)) for c in CASES for f in FAMILIES]

    def one(item):
        f, c, spec = item
        if spec is None:
            return None
        try:
            return _run(f, excerpt, spec, c.options, c.role == "webhook")
        except Exception as e:  # a bug in the test machinery itself: reported by the cell's test
            return {"error": e}

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, todo))
    out = {}
    for (f, c, spec), r in zip(todo, results):
        if r is None:
            row = {"family": f, "fault": c.label, "spec": "-", "outcome": "n/a",
                   "detail": f"{f} has no {c.role} endpoint", "charged": "-", "dup": 0, "s": "-"}
        elif "error" in r:
            row = {"family": f, "fault": c.label, "spec": spec, "outcome": "ERROR", "detail": repr(r["error"]),
                   "charged": "-", "dup": 0, "s": "-"}
        else:
            exc = r["exc"]
            outcome, detail = (("failed", f"{type(exc).__name__}: {exc}") if exc is not None
                               else _compare(r["sep"], clean[f]["sep"]))
            row = {"family": f, "fault": c.label, "spec": spec, "outcome": outcome,
                   "detail": detail.replace("\n", " "), "charged": r["charged"], "dup": r["dup"],
                   "s": f"{r['secs']:.1f}"}
        MATRIX.append(row)
        out[(f, c.label)] = (row, r, clean[f])
    return out


def test_every_fault_kind_is_in_the_matrix():
    """A kind added to the fault module without a matrix row fails here."""
    assert {c.kind for c in CASES} == set(KINDS)
    assert FAMILIES, "no remote family with a sandbox"
    assert {"aistemsplitter", "suno"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_fault(family, case, cells):
    row, r, clean = cells[(family, case.label)]
    if r is None:
        pytest.skip(row["detail"])
    assert "error" not in r, row["detail"]
    exc, outcome, detail = r["exc"], row["outcome"], row["detail"]
    # never a crash: only the stemlab error tree leaves a provider
    assert exc is None or isinstance(exc, StemlabError), f"crash: {exc!r}"
    # never a duplicate job or charge; never more than the clean run
    assert r["dup"] == 0
    assert r["charged"] <= clean["charged"]
    assert r["fired"] >= 1, f"fault {row['spec']} never fired"
    expect, reason = case.expected(family)
    assert outcome == expect, detail
    if reason:
        assert re.search(reason, detail), (reason, detail)
    if outcome == "failed":
        assert family in detail or getattr(exc, "details", {}).get("provider")  # says which provider
    if case.role == "webhook":
        got = {"webhook_duplicate": (["replay"], 1), "webhook_bad_signature": (["mismatch"], 0),
               "webhook_missing": ([], 0)}[case.kind]
        assert (r["rejected"], r["events"]) == got


def _compare(sep: Any, clean: Any) -> tuple[str, str]:
    a, b = sep.stems, clean.stems
    if a.names != b.names:
        return "degraded", f"stems {a.names} vs clean {b.names}"
    notes = []
    sdrs = []
    for n in a.names:
        x = a[n]
        if a.sample_rate != b.sample_rate:
            x = resample(x, a.sample_rate, b.sample_rate)
        if x.shape[0] != b[n].shape[0]:
            x = np.repeat(x, b[n].shape[0], axis=0) if x.shape[0] == 1 else x.mean(axis=0, keepdims=True)
        sdrs.append(aligned_sdr(x, b[n]) if a.sample_rate != b.sample_rate else _sdr(x, b[n]))
    if a.sample_rate != b.sample_rate:
        notes.append(f"stems at {a.sample_rate} Hz (clean {b.sample_rate} Hz); after resampling "
                     f"{min(sdrs):.1f} dB vs clean")
        return ("degraded" if min(sdrs) >= 15 else "failed"), "; ".join(notes)
    if a.num_channels != b.num_channels:
        warn = next((w for w in sep.warnings if "mono" in w), "no warning")
        return "degraded", f"{a.num_channels} ch vs clean {b.num_channels}: {warn}"
    if min(sdrs) >= 40:
        return "recovered", f"same stems as clean (min {min(sdrs):.0f} dB)"
    return "degraded", f"stems differ from clean (min {min(sdrs):.1f} dB)"
