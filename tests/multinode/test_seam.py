"""The replay/live seam across nodes, as a property: whatever the interleaving of publishes
on either node and moves of a client between nodes (detach, attach with the last id it saw),
the client sees every durable id exactly once, in order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cidadao_trio.broker.base import session_stream
from cidadao_trio.broker.redis import RedisBroker

from ..messages import message
from .helpers import ListSink, cursor, hold_fan_out, offsets, started
from .redis_process import RedisProcess, redis_process

S = session_stream("seam")
_prefixes = itertools.count()

node = st.integers(0, 1)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("pub"), node, st.integers(1, 3)),
        st.tuples(st.just("burst"), node, st.integers(1, 6)),  # runs alongside what follows
        st.tuples(st.just("move"), node),
        st.tuples(st.just("yield"), st.integers(0, 3)),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with redis_process(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


async def _publish(broker: RedisBroker, count: int, published: list[str]) -> None:
    for _ in range(count):
        published.append((await broker.publish(S, message("chat", {"role": "user", "content": "x"}))).id)


async def _scenario(url: str, ops: list[tuple[Any, ...]]) -> None:
    async with trio.open_nursery() as nursery:
        prefix = f"seam{next(_prefixes)}:"
        nodes = [await started(nursery, url, prefix=prefix), await started(nursery, url, prefix=prefix)]
        sink, here = ListSink(), 0
        start = await nodes[0].last_id(S)
        assert (await nodes[0].attach(S, sink, cursor(start))).gap is False
        published: list[str] = []
        with trio.fail_after(20):
            async with trio.open_nursery() as background:
                for op in ops:
                    match op:
                        case ("pub", n, count):
                            await _publish(nodes[n], count, published)
                        case ("burst", n, count):
                            background.start_soon(_publish, nodes[n], count, published)
                        case ("move", n):
                            nodes[here].detach(S, sink)
                            last = sink.durable_ids[-1] if sink.durable_ids else start
                            attachment = await nodes[n].attach(S, sink, cursor(last))
                            assert attachment.gap is False
                            here = n
                        case ("yield", count):
                            for _ in range(count):
                                await trio.sleep(0)
            expected = sorted(published, key=lambda i: cursor(i).offset)
            assert offsets(expected) == list(range(1, len(expected) + 1))
            # A last message from the other node: anything doubled would arrive before it.
            await _publish(nodes[1 - here], 1, expected)
            await sink.wait_durable(len(expected))
            assert sink.durable_ids == expected
        nursery.cancel_scope.cancel()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_every_durable_id_exactly_once_in_order_across_nodes(
    shared_redis: RedisProcess, ops: list[tuple[Any, ...]]
) -> None:
    trio.run(_scenario, shared_redis.url, ops)


# --- the races behind the property, forced one by one ---------------------------------


async def _chats(broker: RedisBroker, count: int) -> list[str]:
    published: list[str] = []
    await _publish(broker, count, published)
    return published


async def test_attach_reads_on_when_the_fan_out_got_ahead_of_its_read(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    """Messages published during attach's XRANGE and already handled by the fan-out are
    replayed by attach itself (the fan-out will not offer them again)."""
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    before = await _chats(a, 2)
    read = b._range
    during: list[str] = []

    async def stale_read(stream: str, after: int | None) -> Any:
        result = await read(stream, after)
        if not during:
            during.extend(await _chats(a, 2))
            with trio.fail_after(10):
                while b._local[S].delivered < 4:  # the fan-out has handled them
                    await trio.sleep(0.01)
        return result

    b._range = stale_read  # type: ignore[method-assign]
    sink = ListSink()
    attachment = await b.attach(S, sink, cursor(before[0]))
    assert attachment.replayed == 3
    after = await _chats(a, 1)
    assert await sink.wait_durable(4) == before[1:] + during + after


async def test_a_replayed_message_is_not_offered_again_when_the_fan_out_catches_up(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    """The fan-out lags (its messages are in flight) while a second sink replays them:
    the first sink still gets them live, the second only once, from the replay."""
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    first, second = ListSink(), ListSink()
    start = await b.last_id(S)
    await b.attach(S, first, None)
    gate = hold_fan_out(b)
    published = await _chats(a, 3)
    assert (await b.attach(S, second, cursor(start))).replayed == 3
    assert first.durable_ids == []
    gate.set()
    more = await _chats(a, 1)
    assert await first.wait_durable(4) == published + more
    assert await second.wait_durable(4) == published + more


async def test_a_message_lost_by_pub_sub_is_read_back_when_the_next_one_arrives(
    nursery: trio.Nursery, redis: RedisProcess
) -> None:
    a = await started(nursery, redis.url)
    b = await started(nursery, redis.url)
    sink = ListSink()
    await b.attach(S, sink, None)
    send = b._inbox_send.send_nowait
    dropped: list[Any] = []

    def lossy(item: Any) -> None:
        if item is not None and not dropped:
            dropped.append(item)  # as if Redis never delivered it
            return
        send(item)

    b._inbox_send.send_nowait = lossy  # type: ignore[method-assign]
    published = await _chats(a, 3)
    assert await sink.wait_durable(3) == published
    assert len(dropped) == 1
