"""Sinks and brokers for the multi-node tests (real Redis, real time, bounded waits)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import trio

from cidadao_trio.broker.base import Delivery
from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.config import Settings
from cidadao_trio.investigations.model import Contract
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.server.server import Server

WAIT = 10.0  # seconds any single wait for Redis I/O may take before the test fails
LIMIT = 30.0  # seconds a whole server-level test may take


def node(url: str, dataset: Sequence[Contract] = (), **overrides: Any) -> Server:
    """One server of a cluster: its own process state, the shared Redis for the rest."""
    settings = Settings(
        **{
            "store": "memory",
            "host": "127.0.0.1",
            "port": 0,
            "reply_chunk_delay": 0.0,
            "investigation_step_delay": 0.01,
            "drain_timeout": 2.0,
            **overrides,
        }
    )
    return Server(settings, broker=RedisBroker(url), dataset=dataset)


class ListSink:
    """Records every offer and wakes whoever waits for a count."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []
        self._changed = trio.Event()

    def offer(self, delivery: Delivery) -> None:
        self.got.append(delivery)
        self._changed.set()
        self._changed = trio.Event()

    @property
    def durable_ids(self) -> list[str]:
        return [d.id for d in self.got if d.durable]

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(d.text) for d in self.got]

    async def wait_until(self, done: Callable[[ListSink], bool], timeout: float = WAIT) -> None:
        with trio.fail_after(timeout):
            while not done(self):
                await self._changed.wait()

    async def wait_durable(self, count: int, timeout: float = WAIT) -> list[str]:
        await self.wait_until(lambda s: len(s.durable_ids) >= count, timeout)
        return self.durable_ids


async def started(nursery: trio.Nursery, url: str, **kwargs: Any) -> RedisBroker:
    broker = RedisBroker(url, **kwargs)
    await nursery.start(broker.run)
    return broker


async def wait_healthy(broker: RedisBroker, healthy: bool = True, timeout: float = WAIT) -> None:
    """Poll the flag (it is what /readyz reads); the deadline keeps the loop bounded."""
    with trio.fail_after(timeout):
        while broker.healthy is not healthy:
            await trio.sleep(0.01)


def cursor(text: str) -> DurableId:
    parsed = DurableId.parse(text)
    assert parsed is not None, text
    return parsed


def offsets(ids: list[str]) -> list[int]:
    return [cursor(i).offset for i in ids]


async def greeted(ws: Any) -> dict[str, Any]:
    """The ``connection`` message, then a ping answered: the server has attached the stream.

    The greeting is sent before the stream is attached; a ping is read only after, so its
    pong proves that anything published from now on reaches this client.
    """
    from ..harness import receive, send

    hello = await receive(ws)
    assert hello["type"] == "connection", hello
    await send(ws, "ping", id="attached")
    pong = await receive(ws)
    while pong["type"] == "presence":  # another tab of the session may be counted meanwhile (§9)
        pong = await receive(ws)
    assert pong == {**pong, "type": "pong", "data": {"reply_to": "attached"}}, pong
    return hello


def hold_fan_out(broker: RedisBroker) -> trio.Event:
    """Make the node's fan-out wait before each window of deliveries until the returned event is set."""
    gate = trio.Event()
    deliver = broker._deliver_window

    async def held(first: tuple[str, str] | None) -> None:
        await gate.wait()
        await deliver(first)

    broker._deliver_window = held  # type: ignore[method-assign]
    return gate
