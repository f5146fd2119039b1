"""A scaled clock shared by a sandbox and the clients pointed at it.

``ScaledClock(scale=0.01)`` makes 100 virtual (service) seconds pass per
real second: queue and processing delays, poll intervals, backoff and
``Retry-After`` waits all run in virtual seconds, so a test sees the whole
lifecycle of a multi-minute job in milliseconds while every number the
client logs or records stays in realistic service seconds.

The emulator's own work — really separating, encoding and decoding audio —
takes *real* seconds that must not be multiplied by ``1/scale`` (on a busy
2-core machine 10 real seconds of DSP would otherwise become 1000 service
seconds and trip every client's ``max_wait``). The sandbox runs that work
under :meth:`ScaledClock.hold`: while any hold is active virtual time runs at
``1/busy_scale`` (default: real time), exactly as if the emulated service
were a bit slower; every waiting client sees the same, consistent time.

A hold slows time for every job at once, so with many concurrent jobs (the
emulator is then almost always busy) the sandbox crawls at real time. Sandboxes
therefore hold their clock only when asked (``Sandbox(hold_clock=True)``, for
realistic per-job timings); by default they give their clients a ``max_wait``
long enough in *real* seconds instead (:meth:`Sandbox.provider_options`), and
timings then include the emulator's compute ×1/scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["ScaledClock"]

#: longest real sleep slice while the clock is held (bounds the overshoot
#: when a hold ends in the middle of a sleep)
_HELD_SLICE = 0.02


class ScaledClock:
    """Virtual seconds: ``now()`` advances ``1/scale`` times faster than
    wall time (``1/busy_scale`` times while held); ``sleep(s)`` returns once
    ``s`` virtual seconds have passed. Thread-safe."""

    def __init__(self, scale: float = 0.01, *, busy_scale: float | None = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"ScaledClock: scale must be > 0, got {scale!r}")
        #: busy_scale None → holds are no-ops: virtual time always runs at 1/scale
        self.holds_enabled = busy_scale is not None
        if busy_scale is None:
            busy_scale = scale
        if not busy_scale > 0:
            raise ValueError(f"ScaledClock: busy_scale must be > 0, got {busy_scale!r}")
        self.scale = float(scale)
        self.busy_scale = float(busy_scale)
        self._lock = threading.Lock()
        self._anchor_real = time.monotonic()
        self._anchor_virtual = 0.0
        self._holds = 0

    # real seconds per virtual second, now
    def _per(self) -> float:
        return self.busy_scale if self._holds else self.scale

    def _rebase(self) -> None:  # caller holds the lock
        t = time.monotonic()
        self._anchor_virtual += (t - self._anchor_real) / self._per()
        self._anchor_real = t

    def now(self) -> float:
        with self._lock:
            return self._anchor_virtual + (time.monotonic() - self._anchor_real) / self._per()

    @property
    def held(self) -> bool:
        return self._holds > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Run virtual time at ``1/busy_scale`` for the duration of the block
        (the emulator's real work). Nestable, from any thread."""
        if not self.holds_enabled:  # nothing to slow down, and sleep() need not slice
            yield
            return
        with self._lock:
            self._rebase()
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._rebase()
                self._holds -= 1

    async def sleep(self, seconds: float) -> None:
        target = self.now() + max(0.0, float(seconds))
        while True:
            remaining = target - self.now()
            if remaining <= 0:
                return
            with self._lock:
                held, per = bool(self._holds), self._per()
            real = remaining * per
            await asyncio.sleep(min(real, _HELD_SLICE) if held else real)

    def real(self, seconds: float) -> float:
        """Real seconds that ``seconds`` virtual seconds take (unheld)."""
        return float(seconds) * self.scale

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale:g})"
