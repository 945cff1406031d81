"""A token bucket holding the request rate under a ceiling, shared by concurrent deliveries.

:class:`TokenBucket` is the arithmetic (time passed in, no clock read), :class:`RateLimiter`
its asyncio wrapper. Every request takes one token; tokens refill at ``rate`` per second up to
``burst``. A caller that finds the bucket empty reserves the next free slot and sleeps until
then, so waiting callers are served first come, first served and never exceed the rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Token-bucket arithmetic with reservations; ``reserve`` may drive the level negative."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (negative: reserved ahead)."""
        self._refill(now)
        return self._tokens

    def reserve(self, now: float) -> float:
        """Take one token at ``now``; return the seconds to wait before using it (0: at once)."""
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def cancel(self, now: float) -> None:
        """Give back a token reserved but not used (the waiter was cancelled)."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + 1.0)


class RateLimiter:
    """``await limiter.acquire()`` before each request; ``rate=None`` means no ceiling."""

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.bucket = (
            TokenBucket(rate, burst if burst is not None else max(1.0, rate), clock()) if rate else None
        )

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited."""
        if self.bucket is None:
            return 0.0
        delay = self.bucket.reserve(self._clock())
        if delay > 0:
            try:
                await self._sleep(delay)
            except asyncio.CancelledError:
                self.bucket.cancel(self._clock())
                raise
        return delay
