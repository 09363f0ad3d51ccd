"""How an unreachable Redis is told to the operator: one line when it goes away, a reminder
now and then, one line when it is back — never a line per retry (every task retries)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

REMINDER_EVERY = 60.0  # seconds between "still unreachable" lines during one outage


def reason(exc: BaseException) -> str:
    """The innermost cause, in one line: a nursery's group says nothing by itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@attrs.define
class OutageLog:
    log: logging.Logger
    clock: Callable[[], float]
    retry_cap: float  # the longest pause between two attempts, for the operator's line
    reminder_every: float = REMINDER_EVERY
    since: float | None = None  # when the current outage began
    _reminded: float = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        now = self.clock()
        if self.since is None:
            self.since = self._reminded = now
            self.log.warning(
                "redis unreachable (%s): retrying every %.0f s at most; /readyz answers 503 until it is back",
                reason(exc),
                self.retry_cap,
            )
        elif now - self._reminded >= self.reminder_every:
            self._reminded = now
            self.log.warning("redis still unreachable after %.0f s (%s); retrying", now - self.since, reason(exc))
        else:
            self.log.debug("redis attempt failed: %s", reason(exc))

    def recovered(self) -> None:
        if self.since is not None:
            self.log.warning("redis reachable again after %.1f s", self.clock() - self.since)
            self.since = None
