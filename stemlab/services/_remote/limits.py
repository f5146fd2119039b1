"""Rate limiting and job-concurrency caps shared by every instance of a
remote provider that talks to the same service account in this process.

Both primitives are *loop-agnostic*: a provider may be driven from the
runner's event loop, from ``asyncio.run`` inside :meth:`Provider.separate`,
or from several threads at once, and the limits still hold process-wide.
(``Retry-After`` is honoured by the client's retry policy, :mod:`.client`.)

Hand-written on purpose: aiolimiter, pyrate-limiter and aiologic were
weighed. Every wait here goes through the caller's :class:`Clock` (limits are
in service time, which the sandbox's scaled clock runs fast in tests), and one
account's limits must hold across event loops and threads. aiolimiter's
``AsyncLimiter`` sleeps on its loop's own timer, belongs to one loop (a second
live loop gets "attached to a different loop" errors, a later one a warning and
dropped waiters), is not thread-safe and fixes its rate at construction, so
it cannot be tightened; pyrate-limiter waits on its own too, and neither caps
concurrent jobs. aiologic's loop- and thread-agnostic semaphore has no
tightenable limit and no ``active``/``peak`` counts. Adapting any of them
would take more code than the GCRA and the semaphore below.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Clock", "RealClock", "RateLimiter", "JobSlots", "SharedLimits", "shared_limits", "release_limits",
           "account_key"]


class Clock(Protocol):
    """Where a client reads the time and sleeps. :class:`RealClock` in
    production; the sandbox's scaled clock makes minutes of service time pass
    in milliseconds in tests (every wait — polls, backoff, Retry-After, rate
    limiting — goes through it)."""

    def now(self) -> float:  # seconds, monotonic
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall time: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    scale = 1.0

    def now(self) -> float:
        import time

        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "RealClock()"


class RateLimiter:
    """Requests per second with a small burst (GCRA: the generic cell rate
    algorithm, i.e. a token bucket without a refill task).

    ``rate`` None or ≤ 0 → unlimited. Thread-safe and loop-agnostic: the
    lock only computes how long the caller must wait; the wait itself is an
    ``await clock.sleep``."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        self._lock = threading.Lock()
        self.rate = rate if rate and rate > 0 else None
        self.burst = max(1, int(burst))
        self._tat: float | None = None  # theoretical arrival time of the next request

    def set_rate(self, rate: float | None) -> None:
        with self._lock:
            self.rate = rate if rate and rate > 0 else None

    def reserve(self, now: float) -> float:
        """Claim the next slot; return how many seconds to wait for it."""
        with self._lock:
            if self.rate is None:
                return 0.0
            interval = 1.0 / self.rate
            tau = interval * (self.burst - 1)
            tat = now if self._tat is None else max(self._tat, now)
            wait = max(0.0, tat - tau - now)
            self._tat = tat + interval
            return wait

    async def acquire(self, clock: Clock) -> float:
        """Wait for the next slot; returns the seconds waited."""
        wait = self.reserve(clock.now())
        if wait > 0:
            await clock.sleep(wait)
        return wait


class JobSlots:
    """A counting semaphore for running jobs that works across event loops
    and threads (``asyncio.Semaphore`` is bound to one loop)."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self.limit = max(1, int(limit))
        self.active = 0
        self.peak = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = max(1, int(limit))

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.active < self.limit and not self._waiters:
                self.active += 1
                self.peak = max(self.peak, self.active)
                return
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    raise
            # the slot was handed to us just as we were cancelled: pass it on
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def _grant(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            self.release()
        elif not fut.done():
            fut.set_result(None)

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if loop.is_closed() or fut.cancelled():
                    continue
                loop.call_soon_threadsafe(self._grant, fut)  # the slot moves over; active unchanged
                return
            self.active = max(0, self.active - 1)

    async def __aenter__(self) -> JobSlots:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


@dataclass
class SharedLimits:
    limiter: RateLimiter
    slots: JobSlots
    owners: set[int] = field(default_factory=set)  # ids of the providers using them


_registry_lock = threading.Lock()
_registry: dict[tuple[str, str, str], SharedLimits] = {}


def account_key(service: str, base_url: str, api_key: str | None) -> tuple[str, str, str]:
    """(service, base URL, sha256 fingerprint of the key) — the key itself is
    never stored."""
    fp = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return (service, base_url.rstrip("/"), fp)


def shared_limits(
    key: tuple[str, str, str],
    *,
    rate: float | None,
    max_concurrency: int,
    owner: int | None = None,
) -> SharedLimits:
    """The limiter and job slots of one service account, created on first use.

    Later instances asking for different numbers tighten them (the lowest
    rate and concurrency any instance configured win), so two providers
    pointed at one account can never exceed its limits together. ``owner``
    (a provider) registers its use until :func:`release_limits`; once every
    owner has released them, the next user configures them afresh (a later
    run with other caps is not held to an earlier run's)."""
    with _registry_lock:
        s = _registry.get(key)
        if s is None or (not s.owners and s.slots.active == 0):
            s = SharedLimits(RateLimiter(rate), JobSlots(max_concurrency))
            _registry[key] = s
            if owner is not None:
                s.owners.add(owner)
            return s
        if owner is not None:
            s.owners.add(owner)
    if rate and rate > 0 and (s.limiter.rate is None or rate < s.limiter.rate):
        s.limiter.set_rate(rate)
    if max_concurrency < s.slots.limit:
        s.slots.set_limit(max_concurrency)
    return s


def release_limits(key: tuple[str, str, str], owner: int) -> None:
    """``owner`` no longer uses the account's limits (see :func:`shared_limits`)."""
    with _registry_lock:
        s = _registry.get(key)
        if s is not None:
            s.owners.discard(owner)


def _reset_registry() -> None:  # tests
    with _registry_lock:
        _registry.clear()

