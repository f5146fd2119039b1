"""A scaled clock shared by a sandbox and the clients pointed at it.

``ScaledClock(scale=0.01)`` makes 100 virtual (service) seconds pass per
real second: queue and processing delays, poll intervals, backoff and
``Retry-After`` waits all run in virtual seconds, so a test sees the whole
lifecycle of a multi-minute job in milliseconds while every number the
client logs or records stays in realistic service seconds.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["ScaledClock"]


class ScaledClock:
    """Virtual seconds: ``now()`` advances ``1/scale`` times faster than
    wall time; ``sleep(s)`` sleeps ``s × scale`` real seconds."""

    def __init__(self, scale: float = 0.01) -> None:
        if not scale > 0:
            raise ValueError(f"ScaledClock: scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) / self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, float(seconds)) * self.scale)

    def real(self, seconds: float) -> float:
        """Real seconds that ``seconds`` virtual seconds take."""
        return float(seconds) * self.scale

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale:g})"
