"""RedisBroker's fan-out during a burst: pub/sub messages arriving back to back are
offered in one window (one write per connection), a message after a quiet spell at once,
and a window is cut in steps by the offers it makes (entries times sinks).

The clock runs at real speed (Redis I/O needs it) and the test jumps it past the gather.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from cidadao_trio.broker import redis as redis_broker
from cidadao_trio.broker.base import Delivery, FanOut, session_stream

from ..messages import message
from .helpers import WAIT, hold_fan_out, offsets, started
from .redis_process import RedisProcess

S = session_stream("s1")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(rate=1.0)  # pytest-trio runs the test on it


class WindowSink:
    """Records the durable ids it got, grouped by the fan-out window that flushed them."""

    def __init__(self) -> None:
        self.windows: list[list[str]] = []
        self._open: list[str] | None = None
        self._changed = trio.Event()

    def offer(self, delivery: Delivery) -> None:
        assert FanOut.depth, "the fan-out offers inside a window"
        if self._open is None:
            self._open = []
            FanOut.offered.append(self)
        self._open.append(delivery.id)

    def flush(self) -> None:
        assert self._open is not None
        self.windows.append(self._open)
        self._open = None
        self._changed.set()
        self._changed = trio.Event()

    async def wait_windows(self, count: int) -> None:
        with trio.fail_after(WAIT):
            while len(self.windows) < count:
                await self._changed.wait()


async def chat(broker: redis_broker.RedisBroker, text: str) -> str:
    return (await broker.publish(S, message("chat", {"role": "user", "content": text}))).id


async def wait_queued(broker: redis_broker.RedisBroker, count: int) -> None:
    """Until ``count`` pub/sub messages wait in the node's inbox (yielding, not sleeping)."""
    with trio.fail_after(WAIT):
        while broker._inbox.statistics().current_buffer_used < count:
            await trio.sleep(0)


async def test_messages_arriving_back_to_back_are_offered_in_one_window(
    nursery: trio.Nursery, redis: RedisProcess, clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_broker, "GATHER_AFTER", 60.0)  # whatever this machine's speed
    monkeypatch.setattr(redis_broker, "GATHER", 5.0)  # under coredis's own timeouts (10 s)
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = WindowSink()
    await b.attach(S, sink, None)
    first = await chat(a, "m0")
    await sink.wait_windows(1)  # the first message after a quiet spell: at once
    later = [await chat(a, f"m{i}") for i in range(1, 4)]  # three script calls, three pub/sub messages
    await wait_queued(b, 2)  # the fan-out holds the first of them, gathering
    assert sink.windows == [[first]]
    clock.jump(5.0)
    await sink.wait_windows(2)
    assert sink.windows == [[first], later]


async def test_a_message_after_a_quiet_spell_is_not_held(
    nursery: trio.Nursery, redis: RedisProcess, clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_broker, "GATHER_AFTER", 1.0)
    monkeypatch.setattr(redis_broker, "GATHER", 3600.0)  # a held message would fail the wait below
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = WindowSink()
    await b.attach(S, sink, None)
    first = await chat(a, "m0")
    await sink.wait_windows(1)
    clock.jump(1.5)  # quiet for longer than GATHER_AFTER
    second = await chat(a, "m1")
    await sink.wait_windows(2)
    assert sink.windows == [[first], [second]]


async def test_a_window_is_cut_in_steps_by_entries_not_by_pub_sub_messages(
    nursery: trio.Nursery, redis: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_broker, "FAN_OUT_STEP", 2)  # offers per step
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = WindowSink()
    await b.attach(S, sink, None)
    gate = hold_fan_out(b)
    ids: list[str] = []

    async def publish(text: str) -> None:
        ids.append(await chat(a, text))

    for pair in range(2):  # two publishes at once: one script call, one message of two entries
        async with trio.open_nursery() as both:
            both.start_soon(publish, f"m{pair}a")
            both.start_soon(publish, f"m{pair}b")
    await wait_queued(b, 1)  # the fan-out holds one, the other waits behind it
    gate.set()
    await sink.wait_windows(2)
    assert offsets([i for window in sink.windows for i in window]) == [1, 2, 3, 4]
    assert [len(window) for window in sink.windows] == [2, 2]
