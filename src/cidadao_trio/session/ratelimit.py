"""Per-connection inbound rate limiting (PROTOCOL.md §7). Pure: the clock is passed in.

A refused message gets `error RATE_LIMIT` with `retry_after` and is dropped; a client that
keeps hammering (50 refusals within 60 s by default) is abusive and is closed with 1008.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

import attrs

__all__ = ["ALLOWED", "AbuseCounter", "RateDecision", "RateLimiter", "TokenBucket"]

# Slack (in tokens) so that a client waiting exactly `retry_after` is let through instead
# of being told to wait another 1e-12 s because of float rounding on large clock values.
_EPSILON = 1e-6


_Number = TypeVar("_Number", int, float)


def _positive(_inst: object, attr: attrs.Attribute[_Number], value: _Number) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0")


@attrs.define
class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; one token per message. Starts full."""

    rate: float = attrs.field(default=100 / 60, validator=_positive)
    burst: int = attrs.field(default=20, validator=_positive)
    _tokens: float = attrs.field(init=False)
    _last: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.burst)

    def take(self, now: float) -> float | None:
        """Take a token: None if allowed, else seconds (> 0) until one is available."""
        if self._last is None or now > self._last:  # a clock going backwards refills nothing
            if self._last is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1 - _EPSILON:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / self.rate


@attrs.define
class AbuseCounter:
    """Counts refusals in a sliding window; memory is bounded by `limit`."""

    limit: int = attrs.field(default=50, validator=_positive)
    window: float = attrs.field(default=60.0, validator=_positive)
    _times: deque[float] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._times = deque(maxlen=self.limit)

    def record(self, now: float) -> bool:
        """Record a refusal; True when `limit` of them fell within `window` seconds."""
        self._times.append(now)
        return len(self._times) == self.limit and now - self._times[0] < self.window


@attrs.frozen
class RateDecision:
    """Outcome of `RateLimiter.check`. `abusive` implies not `allowed`: close with 1008."""

    allowed: bool
    retry_after: float = 0.0
    abusive: bool = False


ALLOWED = RateDecision(True)


@attrs.define
class RateLimiter:
    """A connection's bucket plus its abuse counter, so callers make one call per message."""

    bucket: TokenBucket = attrs.Factory(TokenBucket)
    abuse: AbuseCounter = attrs.Factory(AbuseCounter)

    @classmethod
    def per_window(
        cls,
        messages: int = 100,
        window: float = 60.0,
        burst: int = 20,
        abuse_limit: int = 50,
        abuse_window: float = 60.0,
    ) -> RateLimiter:
        """Build from the §7 way of saying it: `messages` per `window` seconds."""
        return cls(TokenBucket(messages / window, burst), AbuseCounter(abuse_limit, abuse_window))

    def check(self, now: float) -> RateDecision:
        retry_after = self.bucket.take(now)
        if retry_after is None:
            return ALLOWED
        return RateDecision(False, retry_after, self.abuse.record(now))
