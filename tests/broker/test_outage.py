"""An unreachable Redis is told once, reminded now and then, and its return is told once."""

from __future__ import annotations

import logging

import pytest

from cidadao_trio.broker.outage import OutageLog, reason


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_outage_a_reminder_and_one_line_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog(logging.getLogger("test.outage"), clock, retry_cap=2.0, reminder_every=60.0)
    caplog.set_level(logging.INFO, "test.outage")
    for second in range(0, 120, 1):  # two tasks retrying every second for two minutes
        clock.now = float(second)
        outage.failed(ConnectionRefusedError("Unable to connect to 127.0.0.1:6379"))
        outage.failed(ExceptionGroup("nursery", [OSError("Connection refused")]))
    clock.now = 125.0
    outage.recovered()
    outage.recovered()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "redis unreachable (Unable to connect to 127.0.0.1:6379): retrying every 2 s at most; "
        "/readyz answers 503 until it is back",
        "redis still unreachable after 60 s (Unable to connect to 127.0.0.1:6379); retrying",
        "redis reachable again after 125.0 s",
    ]
    assert not outage.down


def test_reason_is_the_innermost_first_line() -> None:
    group = ExceptionGroup("Exceptions from Trio nursery (1 sub-exception)", [OSError("refused\nmore")])
    assert reason(group) == "refused"
    assert reason(TimeoutError()) == "TimeoutError"
