"""Token bucket, abuse counter and their combination (session/ratelimit.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cidadao_trio.session.ratelimit import (
    ALLOWED,
    AbuseCounter,
    RateDecision,
    RateLimiter,
    TokenBucket,
)

T0 = 1_000.0


def test_burst_passes_then_refused_with_retry_after() -> None:
    bucket = TokenBucket()
    assert [bucket.take(T0) for _ in range(20)] == [None] * 20
    retry = bucket.take(T0)
    assert retry == pytest.approx(0.6)
    assert bucket.take(T0 + 0.3) == pytest.approx(0.3)


def test_waiting_retry_after_is_enough() -> None:
    bucket = TokenBucket()
    for _ in range(20):
        bucket.take(T0)
    retry = bucket.take(T0)
    assert retry is not None
    assert bucket.take(T0 + retry) is None
    assert bucket.take(T0 + retry) == pytest.approx(0.6)


def test_refills_over_time_up_to_burst_only() -> None:
    bucket = TokenBucket()
    for _ in range(20):
        bucket.take(T0)
    later = T0 + 6.0  # 6 s * 100/60 = 10 tokens
    assert sum(bucket.take(later) is None for _ in range(15)) == 10
    much_later = later + 3600.0  # an hour idle still buys only a burst
    assert sum(bucket.take(much_later) is None for _ in range(30)) == 20


def test_steady_rate_is_sustained() -> None:
    bucket = TokenBucket()
    # one message every 0.6 s forever: always allowed, even after draining the burst
    for _ in range(20):
        bucket.take(T0)
    assert all(bucket.take(T0 + 0.6 * i) is None for i in range(1, 500))


def test_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(T0) is None
    assert bucket.take(T0 - 100.0) == pytest.approx(1.0)
    assert bucket.take(T0 + 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"rate": -1.0}, {"burst": 0}])
def test_bucket_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(**kwargs)  # type: ignore[arg-type]


@given(
    rate=st.floats(min_value=0.01, max_value=100.0),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=150),
    start=st.floats(min_value=0.0, max_value=1e6),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[float], start: float
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    times = list(itertools.accumulate(steps, initial=start))
    allowed_at = [t for t in times if bucket.take(t) is None]
    # every window [allowed_at[i], allowed_at[j]] holds at most burst + rate * length
    for i, first in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            count = j - i + 1
            assert count <= burst + rate * (allowed_at[j] - first) + 1e-6


@given(
    rate=st.floats(min_value=0.01, max_value=100.0),
    burst=st.integers(min_value=1, max_value=50),
    extra=st.integers(min_value=1, max_value=30),
    now=st.floats(min_value=0.0, max_value=1e6),
)
def test_refusal_always_names_a_wait_that_works(
    rate: float, burst: int, extra: int, now: float
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    for _ in range(burst):
        assert bucket.take(now) is None
    for _ in range(extra):
        retry = bucket.take(now)
        assert retry is not None and retry > 0
        now += retry
        assert bucket.take(now) is None


def test_abuse_closes_at_fiftieth_refusal_within_window() -> None:
    counter = AbuseCounter()
    assert not any(counter.record(T0 + i) for i in range(49))
    assert counter.record(T0 + 49.0) is True


def test_abuse_window_is_sliding_and_strict() -> None:
    counter = AbuseCounter()
    assert not any(counter.record(T0) for _ in range(49))
    assert counter.record(T0 + 60.0) is False  # the first 49 are exactly 60 s old: outside
    assert counter.record(T0 + 60.0) is False
    tight = AbuseCounter()
    assert not any(tight.record(T0) for _ in range(49))
    assert tight.record(T0 + 59.9) is True


def test_abuse_spread_out_never_closes_and_memory_is_bounded() -> None:
    counter = AbuseCounter()
    # one refusal every 1.25 s: 49 of them within any 60 s, never 50
    assert not any(counter.record(T0 + 1.25 * i) for i in range(10_000))
    assert len(counter._times) == counter.limit


def test_rate_limiter_flood() -> None:
    limiter = RateLimiter()
    decisions = [limiter.check(T0) for _ in range(69)]
    assert decisions[:20] == [ALLOWED] * 20
    refused = decisions[20:]
    assert all(not d.allowed and not d.abusive for d in refused)
    assert all(d.retry_after == pytest.approx(0.6) for d in refused)
    final = limiter.check(T0)  # the 50th refusal
    assert final == RateDecision(False, pytest.approx(0.6), True)  # type: ignore[arg-type]


def test_rate_limiter_occasional_overrun_is_not_abuse() -> None:
    limiter = RateLimiter()
    # bursts of 25 messages every 30 s: 5 refusals each, 10 per minute, for an hour
    decisions = [limiter.check(T0 + 30.0 * b) for b in range(120) for _ in range(25)]
    assert sum(not d.allowed for d in decisions) == 5 * 120
    assert not any(d.abusive for d in decisions)


def test_per_window_builds_protocol_limits() -> None:
    limiter = RateLimiter.per_window(messages=10, window=1.0, burst=2, abuse_limit=3,
                                     abuse_window=5.0)
    assert limiter.bucket.rate == 10.0 and limiter.bucket.burst == 2
    assert [limiter.check(0.0).allowed for _ in range(3)] == [True, True, False]
    assert limiter.check(0.0).abusive is False
    assert limiter.check(0.0).abusive is True
