"""The QuietCollector: young collections only, promotions frozen, garbage among frozen
objects (a closed connection's cycles) reclaimed by a thaw when quiet or past a bound."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio

from cidadao_trio.server.collector import NEVER, QuietCollector

from ..harness import connect, receive, register_investigation, running_server, send, wait_closed
from ..messages import message


class Node:
    """A cycle, as a closed connection leaves them (tasks, scopes, bound methods)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def restored_gc() -> Iterator[None]:
    """The collector changes process-wide state: put CPython's back for the other tests."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def frozen_cycle(collector: QuietCollector) -> weakref.ref[Node]:
    """A cycle promoted by a middle collection and frozen by a sweep, then dropped."""
    node = Node()
    gc.collect(1)  # a gen-1 collection: the collector counts a promotion
    collector.sweep()
    ref = weakref.ref(node)
    del node
    gc.collect()  # frozen: an ordinary full collection does not reach it
    assert ref() is not None
    return ref


async def test_thresholds_are_young_only_while_it_runs() -> None:
    collector = QuietCollector(young=900, middle=7)
    callbacks = len(gc.callbacks)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        assert gc.get_threshold() == (900, 7, NEVER)
        nursery.cancel_scope.cancel()
    assert len(gc.callbacks) == callbacks  # its counter is gone with it


async def test_a_quiet_server_reclaims_frozen_garbage(autojump_clock: trio.abc.Clock) -> None:
    collector = QuietCollector(quiet_seconds=5.0, thaw_growth=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        ref = frozen_cycle(collector)
        assert collector.thaws == 0
        await trio.sleep(11.0)  # two quiet windows of 5 s
        assert collector.thaws >= 1
        assert ref() is None
        nursery.cancel_scope.cancel()


async def test_no_thaw_while_the_server_accepts(autojump_clock: trio.abc.Clock) -> None:
    accepted = 0
    collector = QuietCollector(quiet_seconds=5.0, thaw_growth=0.0, activity=lambda: accepted)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        ref = frozen_cycle(collector)
        for _ in range(60):  # a minute of connections arriving every second
            accepted += 1
            await trio.sleep(1.0)
        assert collector.thaws == 0
        assert ref() is not None
        await trio.sleep(11.0)  # they stop: the next quiet window thaws
        assert collector.thaws == 1
        assert ref() is None
        nursery.cancel_scope.cancel()


async def test_many_promotions_are_not_quiet(autojump_clock: trio.abc.Clock) -> None:
    collector = QuietCollector(quiet_seconds=5.0, quiet_promotions=1.0, thaw_growth=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        ref = frozen_cycle(collector)
        for _ in range(40):  # four middle collections a second: a ramp or a burst
            gc.collect(1)
            await trio.sleep(0.25)
        assert collector.thaws == 0
        assert ref() is not None
        nursery.cancel_scope.cancel()


async def test_load_that_never_pauses_still_thaws_past_the_bound(autojump_clock: trio.abc.Clock) -> None:
    accepted = 0
    collector = QuietCollector(quiet_seconds=5.0, forced_growth=0.0, forced_floor=1, activity=lambda: accepted)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run)
        ref = frozen_cycle(collector)
        for _ in range(3):
            accepted += 1
            await trio.sleep(0.25)
        assert collector.thaws >= 1  # never quiet, but the frozen set grew past the bound
        assert ref() is None
        nursery.cancel_scope.cancel()


async def test_the_servers_activity_counts_accepts_and_frames_not_heartbeats(
    autojump_clock: trio.abc.Clock,
) -> None:
    """What the collector watches: an accept moves it, and so does a fan-out (a thaw
    would pause a burst that begins after a quiet spell); an idle connection's heartbeats
    and a client's few pongs do not (or no full collection would ever find a quiet spell)."""
    async with running_server(heartbeat_interval=5.0, idle_timeout=3600) as server:
        register_investigation(server, "INV-Q")
        before = server.activity()
        async with connect(server, "/api/v1/ws/investigations/INV-Q") as ws:
            await receive(ws)  # the greeting
            opened = server.activity()
            assert opened == before + 1  # accepted
            for n in range(10):  # a quiet client keeping its connection alive
                await send(ws, "ping", id=f"p{n}")
                assert (await receive(ws))["type"] == "pong"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_closed, ws)  # answers the pings
                await trio.sleep(30)  # six heartbeats
                assert server.activity() == opened
                for n in range(120):  # a fan-out
                    await server.broker.publish(
                        "investigation:INV-Q", message("anomaly_detected", {"investigation_id": "INV-Q", "n": n}))
                await server.broker.flush()
                await trio.sleep(0.1)
                assert server.activity() > opened
                nursery.cancel_scope.cancel()
