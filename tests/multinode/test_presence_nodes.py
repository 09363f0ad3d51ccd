"""Presence across nodes (PROTOCOL.md §9, issue 17): counts add up over every live node in
Redis, and a node that dies without a word stops counting once its heartbeat score passes
(the WebSocket heartbeat's interval + timeout). Real Redis, so real time: the boards are
ticked by hand under a clock the test moves; the two-server test ticks every 50 ms and
every wait is bounded. One Redis for the module, each test under its own key prefix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from cidadao_trio.broker.base import investigation_stream
from cidadao_trio.broker.presence_redis import RedisTally
from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.config import Settings
from cidadao_trio.server.server import Server
from cidadao_trio.session.outbox import Outbox
from cidadao_trio.session.presence import PresenceBoard

from ..harness import connect, receive, register_investigation, send
from .helpers import LIMIT, WAIT, started
from .redis_process import RedisProcess, redis_process

INV = "INV-2026-001"
TIMEOUT = 40.0  # the default heartbeat interval + heartbeat timeout


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with redis_process(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


def prefix() -> str:
    return f"t{os.urandom(4).hex()}:"


@attrs.define(eq=False)
class Tab:
    id: int
    outbox: Outbox = attrs.field()

    @outbox.default
    def _outbox(self) -> Outbox:
        return Outbox(self.id, 256, 1 << 20)

    def counts(self) -> list[int]:
        return [json.loads(d.text)["data"]["watching"] for d in self.outbox.take(10_000, 1 << 30)]


@attrs.define
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_counts_add_up_over_nodes_and_a_dead_node_drops_out_within_the_timeout(
    shared_redis: RedisProcess,
) -> None:
    clock, keys = Clock(), prefix()
    stream = investigation_stream(INV)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            on_a = await started(nursery, shared_redis.url, prefix=keys)
            on_b = await started(nursery, shared_redis.url, prefix=keys)
            tally_a = RedisTally(on_a, TIMEOUT, node="a", clock=clock)
            a = PresenceBoard(on_a, tally_a)
            b = PresenceBoard(on_b, RedisTally(on_b, TIMEOUT, node="b", clock=clock))
            here, there, also_there = Tab(1), Tab(2), Tab(3)
            await a.join(here, stream)
            await b.join(there, stream)
            await b.join(also_there, stream)
            await a.tick()
            await b.tick()
            assert there.counts() == [3] and also_there.counts() == [3]  # a's tab was reported first
            await a.tick()
            assert here.counts() == [3] and await a.watching(INV) == 3 == await b.watching(INV)

            # b dies: no withdraw, no more heartbeats. a keeps ticking (its own heartbeat).
            clock.now += TIMEOUT - 1
            await a.tick()
            assert here.counts() == [] and await a.watching(INV) == 3  # not yet
            clock.now += 2
            await a.tick()
            assert here.counts() == [1] and await a.watching(INV) == 1
            swept = await on_a.call(lambda c, _: c.hgetall(keys + "presence:" + stream))
            assert list(swept) == [tally_a.node]  # b's field removed

            # b was only cut off: back, it finds itself expired and writes all its counts again
            await b.tick()
            await a.tick()
            assert here.counts() == [3]
            assert there.counts() == [] and also_there.counts() == []  # 3 is what they last knew

            # a shutdown in good order stops counting at once
            await b.withdraw()
            await a.tick()
            assert here.counts() == [1]
            nursery.cancel_scope.cancel()


async def hello(ws: Any) -> None:
    assert (await receive(ws))["type"] == "connection"


async def settles(ws: Any, member: str, expected: int) -> None:
    """Counts of ``member`` arrive until one is ``expected`` (each node's share reaches
    Redis at its own tick, so a total may pass through a partial sum on the way)."""
    with trio.fail_after(WAIT):
        while True:
            message = await receive(ws)
            if message["type"] == "presence" and member in message["data"]:
                assert set(message["data"]) in ({"investigation_id", "watching"}, {"session_id", "connections"})
                if message["data"][member] == expected:
                    return


async def test_two_servers_count_each_others_tabs_and_watchers(shared_redis: RedisProcess) -> None:
    url = shared_redis.url
    settings: dict[str, Any] = {
        "store": "memory", "host": "127.0.0.1", "port": 0, "reply_chunk_delay": 0.0,
        "drain_timeout": 2.0, "presence_interval": 0.05,
    }
    a = Server(Settings(**settings, node_name="a"), broker=RedisBroker(url, prefix=(keys := prefix())), dataset=())
    b = Server(Settings(**settings, node_name="b"), broker=RedisBroker(url, prefix=keys), dataset=())
    with trio.fail_after(LIMIT):
        async with a.running(), b.running():
            for server in (a, b):
                register_investigation(server, INV)
            async with connect(a, f"/api/v1/ws/investigations/{INV}") as watcher:
                await hello(watcher)
                async with connect(a, "/api/v1/ws/chat/s1") as tab_a, connect(b, "/api/v1/ws/chat/s1") as tab_b:
                    await hello(tab_a)
                    await hello(tab_b)
                    await settles(tab_a, "connections", 2)
                    await settles(tab_b, "connections", 2)
                    await send(tab_b, "subscribe", {"investigation_id": INV}, id="sub")  # on the other node
                    await settles(watcher, "watching", 3)  # its own connection and both tabs of s1
                    await settles(tab_a, "watching", 3)
                    await settles(tab_b, "watching", 3)
                await settles(watcher, "watching", 1)


async def test_a_node_behind_a_lost_change_log_reads_every_count_again(shared_redis: RedisProcess) -> None:
    """Each node reads only the topics changed since it last looked; when the log is gone
    (Redis restarted empty, say) the sequence number is behind the reader's: it reads all."""
    keys = prefix()
    stream = investigation_stream(INV)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            on_a = await started(nursery, shared_redis.url, prefix=keys)
            on_b = await started(nursery, shared_redis.url, prefix=keys)
            a = PresenceBoard(on_a, RedisTally(on_a, TIMEOUT, node="a"))
            b = PresenceBoard(on_b, RedisTally(on_b, TIMEOUT, node="b"))
            here = Tab(1)
            await a.join(here, stream)
            for n in range(5):  # the log moves on: a's cursor is at 6 or so
                await b.join(Tab(10 + n), stream)
                await b.tick()
                await a.tick()
            assert here.counts()[-1] == 6
            await on_a.call(lambda c, _: c.delete([keys + "presence-seq", keys + "presence-changes"]))
            await b.join(Tab(20), stream)
            await b.tick()  # logged as change 1: behind what a has read
            await a.tick()
            assert here.counts() == [7]
            nursery.cancel_scope.cancel()
