"""The never-pay-twice ledger: one SQLite (WAL) row per job.

A job is keyed by (mixture content hash, provider family, provider params
hash). Its state machine::

    planned ─► submitting ─► submitted(remote id) ─► separated ─► done
       │            │                 │                   │
       └────────────┴─────────────────┴───────────────────┴─► failed / budget / cancelled

Local jobs go ``planned → running → separated → done``. Each transition is
committed (``synchronous=FULL``) before the caller continues, and
``submitting`` is committed *before* any request that can cost money — so a
crash at any point leaves either no paid request, or a row that says one may
have been made (``in_doubt``), or the remote id to poll. On resume a job with
a remote id is polled, never resubmitted; one caught in ``submitting`` is
reconciled through the service before anything is resent.

Every remote job's row is also mirrored, durably (fsync), to
``<output>/cache/paid/<job_key>.json`` whenever it changes, and the stem
cache's manifests record what each separation cost: if ``ledger.sqlite`` is
lost, :meth:`Ledger.plan` restores each job's row from its record instead of
planning it afresh — never pay twice holds while either survives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..types import Cost

__all__ = ["Ledger", "JobRow", "LedgerJournal", "TERMINAL", "PAID_STATES"]

log = logging.getLogger("stemlab.runs.ledger")

TERMINAL = frozenset({"done", "failed", "budget", "cancelled", "skipped"})
#: states in which money may have been (or was) spent
PAID_STATES = frozenset({"submitting", "submitted", "separated", "done", "failed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_key TEXT PRIMARY KEY,
    run_id TEXT,
    dataset TEXT, track TEXT, mixture_hash TEXT,
    provider TEXT, family TEXT, kind TEXT, params_hash TEXT, params_json TEXT,
    state TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    remote_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    est_usd REAL, est_credits REAL,
    cost_usd REAL, credits REAL, credit_unit TEXT, compute_seconds REAL, cost_estimated INTEGER,
    error_kind TEXT, error TEXT,
    phases_json TEXT NOT NULL DEFAULT '{}',
    info_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL, updated_at REAL, submitting_at REAL, submitted_at REAL, finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_provider ON jobs(provider);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_key TEXT, ts REAL, state TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at REAL, finished_at REAL, spec_hash TEXT, meta_json TEXT
);
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT, size INTEGER, mtime_ns INTEGER, extra TEXT, hash TEXT,
    PRIMARY KEY (path, size, mtime_ns, extra)
);
"""


@dataclass
class JobRow:
    job_key: str
    run_id: str | None
    dataset: str
    track: str
    mixture_hash: str
    provider: str
    family: str
    kind: str
    params_hash: str
    params_json: str
    state: str
    idempotency_key: str
    remote_id: str | None = None
    attempts: int = 0
    est_usd: float | None = None
    est_credits: float | None = None
    cost_usd: float | None = None
    credits: float | None = None
    credit_unit: str | None = None
    compute_seconds: float | None = None
    cost_estimated: int | None = None
    error_kind: str | None = None
    error: str | None = None
    phases_json: str = "{}"
    info_json: str = "{}"
    created_at: float | None = None
    updated_at: float | None = None
    submitting_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None

    @property
    def phases(self) -> dict[str, float]:
        return json.loads(self.phases_json or "{}")

    @property
    def info(self) -> dict[str, Any]:
        return json.loads(self.info_json or "{}")

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def in_doubt(self) -> bool:
        return self.state == "submitting" and not self.remote_id


_COLS = [f for f in JobRow.__dataclass_fields__]


class Ledger:
    """SQLite ledger in ``<output>/ledger.sqlite``; safe across threads of one
    process and across processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            check = self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        if not check or check[0] != "ok":
            raise self._damaged(check[0] if check else "no answer to an integrity check")
        self._lock = threading.RLock()
        self.paid_dir = self.path.parent / "cache" / "paid"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --------------------------------------------------------------- helpers
    def _damaged(self, why: object) -> RunError:
        return RunError(
            f"{self.path}: the ledger is damaged ({why}); move it aside (e.g. to ledger.sqlite.bad) and rerun — "
            "stemlab rebuilds every paid job from cache/paid and the stem cache, so nothing is paid again",
            file=str(self.path))

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The lock, with SQLite's errors as :class:`RunError`."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as e:
                raise RunError(f"ledger read failed ({e})", file=str(self.path)) from None
            except sqlite3.DatabaseError as e:
                raise self._damaged(e) from None

    def _write(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, tuple(args))
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass
                if not isinstance(e, sqlite3.OperationalError):
                    raise self._damaged(e) from None
                raise RunError(f"ledger write failed ({e}); is the disk full?", file=str(self.path)) from None

    def event(self, job_key: str, state: str, detail: str = "") -> None:
        self._write(
            "INSERT INTO events(job_key, ts, state, detail) VALUES (?,?,?,?)", (job_key, time.time(), state, detail)
        )

    # ------------------------------------------------------------------ runs
    def begin_run(self, spec_hash: str, meta: Mapping[str, Any]) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._write(
            "INSERT INTO runs(run_id, started_at, spec_hash, meta_json) VALUES (?,?,?,?)",
            (run_id, time.time(), spec_hash, json.dumps(dict(meta), default=str)),
        )
        return run_id

    def end_run(self, run_id: str) -> None:
        self._write("UPDATE runs SET finished_at=? WHERE run_id=?", (time.time(), run_id))

    # ------------------------------------------------------------------ jobs
    def get(self, job_key: str) -> JobRow | None:
        with self._reading():
            cur = self._db.execute(f"SELECT {', '.join(_COLS)} FROM jobs WHERE job_key=?", (job_key,))
            row = cur.fetchone()
        return JobRow(*row) if row else None

    def jobs(self) -> list[JobRow]:
        with self._reading():
            cur = self._db.execute(f"SELECT {', '.join(_COLS)} FROM jobs ORDER BY created_at, job_key")
            return [JobRow(*r) for r in cur.fetchall()]

    def plan(self, *, job_key: str, run_id: str, dataset: str, track: str, mixture_hash: str, provider: str,
             family: str, kind: str, params_hash: str, params: Mapping[str, Any], estimate: Cost) -> JobRow:
        """Insert a planned job, or return the existing row untouched (resume);
        a job with a paid-job record but no row (lost ledger) is restored."""
        existing = self.get(job_key)
        if existing is not None:
            return existing
        restored = self._restore(job_key)
        if restored is not None:
            return restored
        now = time.time()
        self._write(
            """INSERT OR IGNORE INTO jobs(job_key, run_id, dataset, track, mixture_hash, provider, family, kind,
                params_hash, params_json, state, idempotency_key, est_usd, est_credits, created_at, updated_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (job_key, run_id, dataset, track, mixture_hash, provider, family, kind, params_hash,
             json.dumps(dict(params), sort_keys=True, default=str), "planned", "stemlab-" + uuid.uuid4().hex,
             estimate.usd, estimate.credits, now, now),
        )
        self.event(job_key, "planned")
        row = self.get(job_key)
        assert row is not None
        return row

    def update(self, job_key: str, *, state: str | None = None, detail: str = "", **fields: Any) -> None:
        """Set fields (and the state) of a job; committed before returning."""
        sets = dict(fields)
        if state is not None:
            sets["state"] = state
            if state == "submitting":
                sets.setdefault("submitting_at", time.time())
            elif state == "submitted":
                sets.setdefault("submitted_at", time.time())
            elif state in TERMINAL:
                sets.setdefault("finished_at", time.time())
        sets["updated_at"] = time.time()
        bad = sorted(set(sets) - set(_COLS))
        if bad:
            raise RunError(f"ledger: unknown column(s) {bad}")
        cols = ", ".join(f"{k}=?" for k in sets)
        self._write(f"UPDATE jobs SET {cols} WHERE job_key=?", (*sets.values(), job_key))
        if state is not None:
            self.event(job_key, state, detail)
        self._mirror(job_key)

    # ------------------------------------------------------ paid-job records
    def _mirror(self, job_key: str) -> None:
        """Write a remote job's row to ``cache/paid/<key>.json`` (atomic, fsync)
        once money may be at stake."""
        row = self.get(job_key)
        if row is None or row.kind != "remote" or (row.state == "planned" and not row.remote_id):
            return
        data = {c: getattr(row, c) for c in _COLS}
        try:
            self.paid_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.paid_dir / f".{job_key}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.paid_dir / f"{job_key}.json")
        except OSError as e:
            raise RunError(f"cannot write the paid-job record in {self.paid_dir} ({e.strerror or e}); "
                           "is the disk full?", file=str(self.paid_dir)) from None

    def paid_record(self, job_key: str) -> dict[str, Any] | None:
        """The mirrored row of a remote job (None when absent or unreadable)."""
        p = self.paid_dir / f"{job_key}.json"
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("paid-job record %s is unreadable (%s)", p, e)
            return None
        if not isinstance(data, dict) or data.get("job_key") != job_key or not isinstance(data.get("state"), str):
            log.warning("paid-job record %s is not a job row; ignored", p)
            return None
        return data

    def _restore(self, job_key: str) -> JobRow | None:
        rec = self.paid_record(job_key)
        if rec is None:
            return None
        vals = {c: rec.get(c) for c in _COLS}
        vals["phases_json"] = vals.get("phases_json") or "{}"
        vals["info_json"] = vals.get("info_json") or "{}"
        vals["attempts"] = int(vals.get("attempts") or 0)
        if not vals.get("idempotency_key"):
            vals["idempotency_key"] = "stemlab-" + uuid.uuid4().hex
        self._write(f"INSERT OR IGNORE INTO jobs({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
                    [vals[c] for c in _COLS])
        self.event(job_key, str(vals["state"]), "restored from cache/paid (the ledger had no row)")
        log.warning("ledger had no row for paid job %s (%s on %s, %s%s): restored from %s", job_key,
                    vals.get("provider"), vals.get("track"), vals["state"],
                    f", remote id {vals['remote_id']}" if vals.get("remote_id") else "", self.paid_dir)
        return self.get(job_key)

    def merge_json(self, job_key: str, column: str, values: Mapping[str, Any], add: bool = False) -> None:
        if column not in ("phases_json", "info_json"):
            raise RunError(f"ledger: {column} is not a JSON column")
        with self._lock:
            row = self.get(job_key)
            if row is None:
                return
            cur = json.loads(getattr(row, column) or "{}")
            for k, v in values.items():
                cur[k] = (cur.get(k, 0.0) + v) if add and isinstance(v, (int, float)) else v
            self.update(job_key, **{column: json.dumps(cur, default=str)})

    def charged(self, provider: str | None = None) -> tuple[float, float]:
        """(USD, credits) actually charged (or possibly charged: in doubt jobs
        count at their estimate) over all runs in this ledger — orphans
        included: extra jobs a service made of one submit, found when
        reconciling (``info.orphans``), are paid for too."""
        q = "SELECT state, cost_usd, credits, est_usd, est_credits, info_json FROM jobs"
        args: tuple[Any, ...] = ()
        if provider is not None:
            q += " WHERE provider=?"
            args = (provider,)
        usd = credits = 0.0
        with self._reading():
            for state, c_usd, c_cr, e_usd, e_cr, info in self._db.execute(q, args).fetchall():
                if state not in PAID_STATES:
                    continue
                if c_usd is not None or c_cr is not None:
                    usd += c_usd or 0.0
                    credits += c_cr or 0.0
                elif state in ("submitting", "submitted"):
                    usd += e_usd or 0.0
                    credits += e_cr or 0.0
                o_usd, o_cr = _orphan_cost(info)
                usd += o_usd
                credits += o_cr
        return usd, credits

    # ----------------------------------------------------------- hash cache
    def cached_hash(self, path: Path, extra: str, compute) -> str:
        """Content hash of a file's decoded audio, cached by (path, size,
        mtime): planning a big dataset decodes each track once, ever."""
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, extra)
        with self._reading():
            row = self._db.execute(
                "SELECT hash FROM hashes WHERE path=? AND size=? AND mtime_ns=? AND extra=?", key
            ).fetchone()
        if row:
            return str(row[0])
        h = compute()
        self._write("INSERT OR REPLACE INTO hashes(path, size, mtime_ns, extra, hash) VALUES (?,?,?,?,?)", (*key, h))
        return h

    def cached_file_hash(self, path: Path) -> str:
        """sha256 of a file's bytes, cached by (path, size, mtime)."""
        from .._hashing import file_sha256

        return self.cached_hash(path, "file-sha256", lambda: file_sha256(path))

    def journal(self, job_key: str) -> LedgerJournal:
        return LedgerJournal(self, job_key)


def _orphan_cost(info_json: str | None) -> tuple[float, float]:
    """(USD, credits) of the orphan jobs recorded in a row's info."""
    if not info_json or "orphans" not in info_json:
        return 0.0, 0.0
    try:
        orphans = json.loads(info_json).get("orphans") or []
    except (ValueError, AttributeError):
        return 0.0, 0.0
    usd = sum(float(o.get("usd") or 0.0) for o in orphans if isinstance(o, dict))
    credits = sum(float(o.get("credits") or 0.0) for o in orphans if isinstance(o, dict))
    return usd, credits


@dataclass
class LedgerJournal:
    """The :class:`~stemlab.providers.base.JobJournal` a remote provider uses;
    every call is durable before it returns."""

    ledger: Ledger
    job_key: str
    phases: dict[str, float] = field(default_factory=dict)

    def _row(self) -> JobRow:
        row = self.ledger.get(self.job_key)
        if row is None:  # pragma: no cover - defensive
            raise RunError(f"ledger: job {self.job_key} vanished")
        return row

    @property
    def idempotency_key(self) -> str:
        return self._row().idempotency_key

    @property
    def remote_id(self) -> str | None:
        return self._row().remote_id

    @property
    def in_doubt(self) -> bool:
        return self._row().in_doubt

    def submitting(self, estimate: Cost) -> None:
        self.ledger.update(
            self.job_key, state="submitting", est_usd=estimate.usd, est_credits=estimate.credits,
            attempts=self._row().attempts + 1,
        )

    def submitted(self, remote_id: str, cost: Cost, info: Mapping[str, Any] | None = None) -> None:
        self.ledger.update(
            self.job_key, state="submitted", detail=remote_id, remote_id=remote_id, cost_usd=cost.usd,
            credits=cost.credits, credit_unit=cost.credit_unit, cost_estimated=int(cost.estimated),
        )
        if info:
            self.ledger.merge_json(self.job_key, "info_json", dict(info))

    def phase(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + float(seconds)
        self.ledger.merge_json(self.job_key, "phases_json", {name: float(seconds)}, add=True)

    def note(self, key: str, value: Any) -> None:
        self.ledger.merge_json(self.job_key, "info_json", {key: value})
