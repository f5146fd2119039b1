"""What a run shows while it runs: per-job peak memory and progress bars."""

from __future__ import annotations

import threading

from .jobs import Job

__all__ = ["ProgressBars", "RssSampler"]


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


class ProgressBars:
    """One tqdm bar per provider label, counting finished jobs."""

    def __init__(self, jobs: list[Job], *, enabled: bool) -> None:
        from tqdm import tqdm

        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.label] = counts.get(j.label, 0) + 1
        self._bars = {
            label: tqdm(total=n, desc=label[:40], unit="job", disable=not enabled, leave=True, position=i)
            for i, (label, n) in enumerate(counts.items())
        }

    def done(self, job: Job) -> None:
        bar = self._bars.get(job.label)
        if bar is not None:
            bar.update(1)

    def close(self) -> None:
        for b in self._bars.values():
            b.close()
