"""The token bucket's arithmetic (injected time) and its asyncio wrapper."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.sender.ratelimit import RateLimiter, TokenBucket


def test_burst_is_free_then_requests_are_spaced_by_the_rate():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)
    # 0.3 s later 3 tokens came back, 2 were owed: the next one is free, the one after waits
    assert bucket.reserve(0.3) == pytest.approx(0.0)
    assert bucket.reserve(0.3) == pytest.approx(0.1)


def test_refill_never_exceeds_burst():
    bucket = TokenBucket(rate=100, burst=5, now=0.0)
    assert bucket.tokens(1000.0) == 5
    for _ in range(5):
        assert bucket.reserve(1000.0) == 0.0
    assert bucket.reserve(1000.0) == pytest.approx(0.01)


def test_time_going_backwards_does_not_add_tokens():
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.reserve(10.0) == 0.0
    assert bucket.reserve(5.0) == pytest.approx(1.0)


def test_cancel_gives_the_token_back():
    bucket = TokenBucket(rate=1, burst=1, now=0.0)
    bucket.reserve(0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    bucket.cancel(0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_bad_parameters(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1000),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_granted_times_never_beat_the_rate(rate, burst, gaps):
    """Over any window, the requests let through are at most burst + rate * window."""
    bucket = TokenBucket(rate=rate, burst=burst, now=0.0)
    now, granted = 0.0, []
    for gap in gaps:
        now += gap
        granted.append(now + bucket.reserve(now))
    assert granted == sorted(granted)  # first come, first served
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            window = granted[j] - granted[i]
            assert j - i + 1 <= burst + rate * window + 1e-6


async def test_rate_limiter_sleeps_per_reservation():
    clock = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(rate=4, burst=2, clock=lambda: clock[0], sleep=fake_sleep)
    waits = [await limiter.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0.25, 0.5, 0.75])
    assert slept == pytest.approx([0.25, 0.5, 0.75])


async def test_unlimited_limiter_never_waits():
    limiter = RateLimiter(rate=None)
    assert [await limiter.acquire() for _ in range(100)] == [0.0] * 100


async def test_cancelled_waiter_returns_its_token():
    limiter = RateLimiter(rate=1, burst=1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.bucket is not None and limiter.bucket.tokens(limiter._clock()) > -0.5
