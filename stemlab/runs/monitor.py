"""What a run shows while it runs: per-job peak memory, and progress — bars
on a terminal, periodic log lines off one (CI, papermill, nohup)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from .jobs import Job

__all__ = ["ProgressBars", "ProgressLog", "RssSampler"]


class RssSampler:
    """Samples the process RSS (MiB) every ``interval`` s; jobs read the peak
    seen while they ran (approximate when jobs overlap — documented in the row)."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self._peaks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stemlab-rss", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = self._proc.memory_info().rss / 2**20
            except Exception:  # pragma: no cover - process is exiting
                return
            with self._lock:
                for k in self._peaks:
                    self._peaks[k] = max(self._peaks[k], rss)

    def start(self, key: str) -> None:
        with self._lock:
            self._peaks[key] = self._proc.memory_info().rss / 2**20

    def stop(self, key: str) -> float:
        with self._lock:
            return round(self._peaks.pop(key, 0.0), 1)

    def close(self) -> None:
        self._stop.set()


def _dur(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressLog:
    """Progress as log lines: one at the start, one every ``every`` seconds
    while jobs run (done/total, failures, elapsed, ETA from the rate so far)
    and one at the end — what a run off a terminal prints instead of bars."""

    def __init__(self, total: int, providers: int, *, every: float, file: TextIO | None = None) -> None:
        self.total = total
        self.finished = 0
        self.failed = 0
        self.every = every
        self._file = file
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._emit(f"stemlab: {total} job(s) of {providers} provider(s) to run; progress every {every:g} s")
        self._thread = threading.Thread(target=self._loop, name="stemlab-progress", daemon=True)
        self._thread.start()

    def _emit(self, line: str) -> None:
        f = self._file or sys.stderr
        print(line, file=f, flush=True)

    def line(self) -> str:
        with self._lock:
            done, failed = self.finished, self.failed
        el = time.monotonic() - self._t0
        left = self.total - done
        eta = f"ETA ~{_dur(el / done * left)}" if done and left else ("ETA unknown" if left else "finished")
        return (f"stemlab: {done}/{self.total} jobs finished ({failed} failed) · {_dur(el)} elapsed · {eta}")

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._emit(self.line())

    def done(self, ok: bool) -> None:
        with self._lock:
            self.finished += 1
            self.failed += 0 if ok else 1

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._emit(self.line())


class ProgressBars:
    """One tqdm bar per provider label, counting finished jobs (``enabled``:
    on a terminal); ``log_every`` seconds: log lines instead (off a terminal)."""

    def __init__(self, jobs: list[Job], *, enabled: bool, log_every: float | None = None,
                 file: TextIO | None = None) -> None:
        from tqdm import tqdm

        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.label] = counts.get(j.label, 0) + 1
        self._bars = {
            label: tqdm(total=n, desc=label[:40], unit="job", disable=not enabled, leave=True, position=i)
            for i, (label, n) in enumerate(counts.items())
        }
        self._log = ProgressLog(len(jobs), len(counts), every=log_every, file=file) \
            if log_every and not enabled and jobs else None

    def done(self, job: Job, ok: bool = True) -> None:
        bar = self._bars.get(job.label)
        if bar is not None:
            bar.update(1)
        if self._log is not None:
            self._log.done(ok)

    def close(self) -> None:
        for b in self._bars.values():
            b.close()
        if self._log is not None:
            self._log.close()
