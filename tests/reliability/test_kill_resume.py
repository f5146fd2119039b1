"""Kill/resume proof: SIGKILL the runner at random points while it drives a
sandboxed service, resume, and check that nothing is lost or paid twice.

The sandboxes live in this (test) process, so their own ledgers of jobs and
charges survive every kill; each runner is a forked child process (fast: no
re-import) that the crash-point hook (``STEMLAB_CRASH_AT``, see
:mod:`stemlab._crash`) SIGKILLs at the n-th pass of a named point:

``remote.before_submit`` (ledger says *submitting*, request not sent),
``remote.after_submit`` (service created the job, id not yet recorded),
``remote.poll``, ``remote.after_download``, ``cache.write`` (files written,
entry not renamed), ``run.before_score``, ``run.after_score``.

Every seed kills the runner twice at random points, then resumes to the end.
Asserted per seed: the service saw exactly one job and one charge per
(track, remote provider) — zero duplicate submissions, zero duplicate charges
— and the final scores equal an uninterrupted run's. ``STEMLAB_KILL_SEEDS``
raises the number of seeds (default 20) for the long proof.
"""

from __future__ import annotations

import os
import signal
import time
import traceback

import numpy as np
import pandas as pd
import pytest

from stemlab import _crash
from stemlab.runs import load_results
from stemlab.runs import runner as runner_mod
from stemlab.runs.runner import Runner
from tests.fakes import fake_score

POINTS = {
    # point → how many times it is passed in one clean run (n is drawn in 1..max)
    "remote.before_submit": 1,
    "remote.after_submit": 1,
    "remote.poll": 3,
    "remote.after_download": 1,
    "cache.write": 2,
    "run.before_score": 2,
    "run.after_score": 2,
}
SEEDS = int(os.environ.get("STEMLAB_KILL_SEEDS", "20"))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class _ParentSandbox:
    """Points a forked runner at a sandbox that lives in the test process."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox

    def options_for(self, family: str) -> dict:
        return self.sandbox.provider_options()

    def register(self, track) -> None:  # the parent registered the tracks
        pass

    def close(self) -> None:
        pass


def _spec(out) -> dict:
    return {
        "datasets": [{"name": "demo", "options": {"tracks": 1, "seconds": 3.0}}],
        "providers": [{"provider": "aistemsplitter:htdemucs", "sandbox": True}, "baseline:mixture"],
        "metrics": ["usdr"],
        "output": str(out),
        "concurrency": {"local": 1, "remote": 2},
    }


def _child_run(spec: dict, out, sandbox, crash: str | None, timeout: float = 60.0) -> int:
    """Run the runner in a forked child; returns its exit code or −signal."""
    # fork only while the sandbox is idle: a sandbox thread busy separating (and
    # possibly importing a module) at fork time can leave a lock held forever
    t_idle = time.monotonic() + 10
    while getattr(sandbox, "_tasks", None) and time.monotonic() < t_idle:
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            import faulthandler

            faulthandler.dump_traceback_later(timeout - 2, exit=True)  # a hang shows its stacks
            os.environ["STEMLAB_CRASH_AT"] = crash or ""
            _crash._plan = None
            _crash._counts.clear()
            Runner(spec, output=out, quiet=True, sandboxes=_ParentSandbox(sandbox)).run()
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the exit code
            traceback.print_exc()
        finally:
            os._exit(code)
    t_end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > t_end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"runner child hung past {timeout} s (crash plan {crash!r})")
        time.sleep(0.02)


def _sandbox(demo_small):
    from stemlab.sandbox import get_sandbox_class

    sb = get_sandbox_class("aistemsplitter")(scale=0.005, seed=0).start()
    for t in demo_small:
        sb.register_track(t)
    return sb


def _scores(out) -> pd.DataFrame:
    s = load_results(out).scores
    cols = ["track", "provider", "target", "metric"]
    return s[cols + ["value"]].sort_values(cols).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _fake_scorer(monkeypatch):
    monkeypatch.setattr(runner_mod, "score_stems", fake_score)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in this process: it also imports everything a
    run needs here, before any fork (a module import in progress in a sandbox
    thread at fork time would deadlock the child on the import lock)."""
    import stemlab.datasets as D

    tracks = list(D.load("demo", tracks=1, seconds=3.0))
    sb = _sandbox(tracks)
    mp = pytest.MonkeyPatch()
    mp.setattr(runner_mod, "score_stems", fake_score)
    try:
        out = tmp_path_factory.mktemp("ref")
        Runner(_spec(out), output=out, quiet=True, sandboxes=_ParentSandbox(sb)).run()
        assert len(sb.ledger.jobs) == len(tracks)
        return tracks, _scores(out)
    finally:
        mp.undo()
        sb.stop()


def test_sigkill_at_random_points_then_resume(tmp_path, reference):
    demo_small, ref = reference
    n_tracks = len(demo_small)
    assert len(ref) == 2 * n_tracks * 4  # 2 providers × tracks × 4 targets (uSDR)

    rng = np.random.default_rng(2026)
    table = []
    kills = 0
    for seed in range(SEEDS):
        out = tmp_path / f"s{seed}"
        sb = _sandbox(demo_small)
        try:
            plan = []
            for _ in range(2):
                point = str(rng.choice(sorted(POINTS)))
                n = int(rng.integers(1, POINTS[point] + 1))
                plan.append(f"{point}:{n}")
                rc = _child_run(_spec(out), out, sb, plan[-1])
                assert rc in (0, -signal.SIGKILL), f"seed {seed}: {plan[-1]} exited {rc}"
                kills += rc == -signal.SIGKILL
            assert _child_run(_spec(out), out, sb, None) == 0, f"seed {seed}: resume after {plan} failed"
            creates_new = sum(1 for _, how in sb.ledger.creates if how == "new")
            dup_charges = sb.ledger.duplicate_charges()
            table.append((seed, " → ".join(plan), len(sb.ledger.jobs), creates_new, len(dup_charges)))
            assert len(sb.ledger.jobs) == n_tracks, (
                f"seed {seed} ({plan}): {len(sb.ledger.jobs)} jobs for {n_tracks} tracks"
            )
            assert creates_new == n_tracks
            assert dup_charges == {}
            assert len(sb.ledger.charges) == n_tracks
            got = _scores(out)
            pd.testing.assert_frame_equal(got, ref, check_exact=False, atol=1e-6)
            jobs = load_results(out).jobs
            assert set(jobs.status) == {"done"}
        finally:
            sb.stop()
    print("\nseed | kill plan | service jobs | new creates | duplicate charges")
    for row in table:
        print(" | ".join(map(str, row)))
    print(f"{kills} SIGKILLs delivered over {SEEDS} seeds; duplicates: 0")
    assert kills >= SEEDS  # most planned kills must really have happened


def test_ctrl_c_finishes_the_ledger_then_resume(tmp_path, reference):
    """SIGINT (Ctrl-C) mid-run: the runner stops, leaves no job 'running' in
    the ledger, writes the results it has; a resume completes without a
    second submission or charge."""
    from stemlab.runs.ledger import Ledger

    tracks, ref = reference
    sb = _sandbox(tracks)
    out = tmp_path / "int"
    spec = _spec(out)
    try:
        pid = os.fork()
        if pid == 0:  # child: a run that SIGINTs itself right after the paid submit
            code = 1
            try:
                os.environ["STEMLAB_CRASH_AT"] = ""
                _crash._plan = {}
                real = _crash.crashpoint

                def interrupt(name: str) -> None:
                    if name == "remote.poll":
                        os.kill(os.getpid(), signal.SIGINT)
                    real(name)

                import stemlab.services._remote.http as http_mod

                http_mod.crashpoint = interrupt
                Runner(spec, output=out, quiet=True, sandboxes=_ParentSandbox(sb)).run()
                code = 0
            except KeyboardInterrupt:
                code = 130
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
        led = Ledger(out / "ledger.sqlite")
        try:
            states = {r.provider: r.state for r in led.jobs()}
        finally:
            led.close()
        assert "running" not in states.values(), states
        assert states["aistemsplitter:htdemucs [sandbox]"] == "submitted", states  # remote id kept → polled on resume
        assert (out / "jobs.parquet").exists()  # results written for what finished
        assert _child_run(spec, out, sb, None) == 0
        assert len(sb.ledger.jobs) == 1 and sb.ledger.duplicate_charges() == {}
        assert set(load_results(out).jobs.status) == {"done"}
        pd.testing.assert_frame_equal(_scores(out), ref, check_exact=False, atol=1e-6)
    finally:
        sb.stop()
