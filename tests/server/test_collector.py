"""server/collector.py: full collections only when the server is quiet, and garbage frozen
between them is still reclaimed (a closed connection's cycles must not live for ever)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio

from cidadao_trio.server.collector import NEVER, QuietCollector


class Cycle:
    """Garbage only a collection frees (it refers to itself), like a closed connection's tasks."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def collector_state() -> Iterator[None]:
    """The collector changes process-wide settings: give them back to the other tests."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def frozen_garbage(collector: QuietCollector) -> weakref.ref[Cycle]:
    garbage = Cycle()
    ref = weakref.ref(garbage)
    collector.sweep()  # as after a young collection promoted it: frozen, never walked
    del garbage
    gc.collect()
    assert ref() is not None  # frozen: no ordinary collection frees it
    return ref


async def test_installed_it_leaves_full_collections_to_itself(nursery: trio.Nursery) -> None:
    collector = QuietCollector()
    collector.install()
    try:
        assert gc.get_threshold()[2] == NEVER
    finally:
        collector.uninstall()


async def test_a_quiet_server_thaws_and_frees_the_frozen_garbage(autojump_clock: trio.testing.MockClock,
                                                                 nursery: trio.Nursery) -> None:
    collector = QuietCollector(quiet_seconds=5.0)
    ref = frozen_garbage(collector)
    nursery.start_soon(collector.run)
    await trio.sleep(4.0)
    assert ref() is not None and collector.thaws == 0  # not quiet long enough yet
    await trio.sleep(2.0)
    assert ref() is None and collector.thaws == 1


async def test_no_thaw_while_the_server_works_until_it_rests(autojump_clock: trio.testing.MockClock,
                                                            nursery: trio.Nursery) -> None:
    accepted = [0]
    collector = QuietCollector(quiet_seconds=5.0, activity=lambda: accepted[0])
    ref = frozen_garbage(collector)
    nursery.start_soon(collector.run)
    for _ in range(120):  # a connection every quarter second for 30 s: a ramp
        accepted[0] += 1
        await trio.sleep(0.25)
    assert ref() is not None and collector.thaws == 0  # no full collection during the ramp
    await trio.sleep(6.0)  # then it rests
    assert ref() is None and collector.thaws == 1


async def test_load_that_never_rests_still_gets_a_forced_thaw(autojump_clock: trio.testing.MockClock,
                                                             nursery: trio.Nursery) -> None:
    accepted = [0]
    collector = QuietCollector(quiet_seconds=5.0, activity=lambda: accepted[0], forced_growth=0.0, forced_floor=1)
    ref = frozen_garbage(collector)
    nursery.start_soon(collector.run)
    for _ in range(8):
        accepted[0] += 1
        await trio.sleep(0.25)
    assert ref() is None and collector.thaws >= 1  # memory stays bounded under endless load
