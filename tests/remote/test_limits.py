"""The per-account limits (``stemlab.services._remote.limits``): the
semantics that rule out an off-the-shelf limiter such as aiolimiter — waits
in the caller's clock, limits that hold across event loops and threads,
tightening, and a fresh configuration once every owner has closed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stemlab.sandbox import ScaledClock
from stemlab.services._remote.limits import (
    JobSlots,
    RateLimiter,
    _reset_registry,
    account_key,
    release_limits,
    shared_limits,
)


class VirtualClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@pytest.fixture(autouse=True)
def _fresh_registry():
    _reset_registry()
    yield
    _reset_registry()


def test_rate_is_spaced_in_the_callers_clock_with_a_burst() -> None:
    clock = VirtualClock()

    async def times(lim: RateLimiter, n: int) -> list[float]:
        out = []
        for _ in range(n):
            await lim.acquire(clock)
            out.append(clock.now())
        return out

    assert asyncio.run(times(RateLimiter(2.0), 5)) == [0.0, 0.5, 1.0, 1.5, 2.0]
    clock.t = 100.0
    assert asyncio.run(times(RateLimiter(1.0, burst=3), 5)) == [100.0, 100.0, 100.0, 101.0, 102.0]
    assert asyncio.run(times(RateLimiter(None), 3)) == [102.0] * 3 and RateLimiter(0).rate is None


def test_one_limiter_holds_across_threads_and_event_loops() -> None:
    clock = ScaledClock(0.01, busy_scale=None)  # 10 virtual requests/s = 1000 real/s
    lim, slots = RateLimiter(10.0), JobSlots(1)
    stamps: list[float] = []
    lock = threading.Lock()

    async def worker() -> None:
        for _ in range(5):
            async with slots:
                await lim.acquire(clock)
                with lock:
                    stamps.append(clock.now())
                await asyncio.sleep(0.001)

    threads = [threading.Thread(target=asyncio.run, args=(worker(),)) for _ in range(3)]
    start = clock.now()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stamps.sort()
    assert len(stamps) == 15 and slots.peak == 1 and slots.active == 0
    assert stamps[-1] - start >= 14 / 10.0 - 1e-6  # 10/s over all threads together (not per loop)


def test_cancelled_waiter_hands_its_slot_on() -> None:
    async def main() -> list[str]:
        slots, order = JobSlots(1), []

        async def job(name: str, hold: float) -> None:
            async with slots:
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(job("a", 0.05))
        await asyncio.sleep(0)
        doomed = asyncio.create_task(job("b", 0))
        last = asyncio.create_task(job("c", 0))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.gather(first, last)
        assert slots.active == 0 and slots.peak == 1
        return order

    assert asyncio.run(main()) == ["a", "c"]


def test_shared_limits_tighten_then_start_afresh_once_every_owner_closed() -> None:
    key = account_key("svc", "http://x/", "secret-key")
    assert key == ("svc", "http://x", account_key("svc", "http://x", "secret-key")[2])
    assert "secret-key" not in repr(key)
    a = shared_limits(key, rate=5.0, max_concurrency=4, owner=1)
    b = shared_limits(key, rate=2.0, max_concurrency=8, owner=2)  # the lowest of each wins
    assert a is b and (a.limiter.rate, a.slots.limit) == (2.0, 4)
    assert shared_limits(key, rate=None, max_concurrency=9, owner=3).limiter.rate == 2.0
    for owner in (1, 2):
        release_limits(key, owner)
    assert shared_limits(key, rate=9.0, max_concurrency=9).limiter.rate == 2.0  # owner 3 still open
    release_limits(key, 3)
    fresh = shared_limits(key, rate=9.0, max_concurrency=9, owner=4)  # a later run is not held to old caps
    assert fresh is not a and (fresh.limiter.rate, fresh.slots.limit) == (9.0, 9)
    other = shared_limits(account_key("svc", "http://x", "another-key"), rate=1.0, max_concurrency=1)
    assert other is not fresh


def test_limits_are_not_reset_while_a_job_still_runs() -> None:
    key = account_key("svc", "http://x", "k")

    async def main() -> None:
        s = shared_limits(key, rate=1.0, max_concurrency=1, owner=1)
        async with s.slots:
            release_limits(key, 1)
            assert shared_limits(key, rate=50.0, max_concurrency=50, owner=2) is s  # still counted
        release_limits(key, 2)
        assert shared_limits(key, rate=50.0, max_concurrency=50) is not s

    asyncio.run(main())
