"""A rolling SIGTERM of every node completes every turn in progress (issue 20, PROTOCOL §3.1,
§7): two real ``cidadao-trio serve`` processes over one test Redis; each citizen has a chat
turn streaming when its node is told to stop. The draining node closes with 1001 and keeps
streaming the turn into the session's stream; the citizen resumes on the other node with
``last_id`` (resending, with the same id, whatever it has not seen echoed, §2) and reads the
rest of the reply there. Each node is restarted before the next one is stopped.

Real processes and real time: every wait polls a condition or a process under a deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import attrs
import websockets

from cidadao_trio.protocol.envelope import EPHEMERAL_PREFIX, DurableId

from ..process import ServerProcess, serve
from .redis_process import RedisProcess

SAFETY = 30.0  # seconds any single wait may take on a loaded machine; never a measured delay
CHUNK_DELAY = 0.2  # seconds between chunks: a turn streams six chunks over about 1 s
NODES = ("a", "b")  # stopped and restarted in this order
TURNS = tuple(f"q{k + 1}" for k in range(len(NODES)))  # turn k is streaming when node k stops
PER_NODE = 3  # citizens connected to each node at first
QUESTION = "Olá, tudo bem?"


async def until(condition: Callable[[], bool], what: str, tasks: list[asyncio.Task[None]]) -> None:
    """Poll state the citizens record, under a deadline; a citizen that failed fails the test."""
    deadline = time.monotonic() + SAFETY
    while not condition():
        for task in tasks:
            if task.done():
                task.result()  # raises what ended it
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {SAFETY} s: {what}")
        await asyncio.sleep(0.01)


@attrs.define
class Cluster:
    """The nodes alive and accepting; a node leaves the list before it is told to stop."""

    stack: ExitStack
    settings: dict[str, Any]
    live: dict[str, ServerProcess] = attrs.Factory(dict)
    exit_codes: dict[str, list[int]] = attrs.Factory(dict)

    def start(self, *names: str) -> None:
        """Start the nodes at once (each takes a second or two to listen); every one that
        started is killed on the way out even if another failed to."""
        managers = [serve(node_name=name, **self.settings) for name in names]
        with ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(manager.__enter__) for manager in managers]
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                self.stack.push(manager.__exit__)
        for name, future in zip(names, futures, strict=True):
            self.live[name] = future.result()  # raises the first failure, if any

    def port(self) -> int | None:
        return next((node.port for node in self.live.values()), None)

    async def stop(self, name: str) -> None:
        """SIGTERM by PID and wait for the exit: the drain is bounded by --drain-timeout."""
        node = self.live.pop(name)
        node.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.process.wait, SAFETY)
        self.exit_codes.setdefault(name, []).append(code)

    async def restart(self, name: str) -> None:
        await self.stop(name)
        await asyncio.to_thread(self.start, name)


@attrs.define
class Citizen:
    """One session on one connection at a time: reconnects to a live node with ``last_id``
    and resends every chat it has not seen echoed (§2)."""

    session: str
    port: int
    ws: Any = None
    connections: int = 0
    last_id: str | None = None
    durable: list[str] = attrs.Factory(list)
    unechoed: dict[str, str] = attrs.Factory(dict)
    asked_on: dict[str, int] = attrs.Factory(dict)  # reply_to -> connection it was sent on
    chunks: dict[str, list[dict[str, Any]]] = attrs.Factory(dict)
    completes: dict[str, list[tuple[int, dict[str, Any]]]] = attrs.Factory(dict)  # with its connection
    closes: list[int] = attrs.Factory(list)
    duplicates: int = 0

    async def run(self, cluster: Cluster) -> None:
        port: int | None = self.port
        while True:
            if port is None:
                await asyncio.sleep(0.01)  # between two nodes' lives: none accepting yet
                port = cluster.port()
                continue
            query = f"?last_id={self.last_id}" if self.last_id else ""
            try:
                async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/{self.session}{query}") as ws:
                    greeting = json.loads(await asyncio.wait_for(ws.recv(), SAFETY))
                    assert greeting["type"] == "connection", greeting
                    assert greeting["data"]["resumed"] is (self.last_id is not None), greeting
                    self.connections += 1
                    self.ws = ws
                    for message_id, text in list(self.unechoed.items()):
                        await ws.send(json.dumps({"type": "chat", "data": {"message": text}, "id": message_id}))
                    try:
                        async for raw in ws:
                            self._observe(json.loads(raw))
                    finally:
                        self.ws = None
                    assert ws.close_code is not None
                    self.closes.append(ws.close_code)
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus):
                await asyncio.sleep(0.01)  # refused while stopping: try a node that accepts
            port = cluster.port()

    async def ask(self, message_id: str) -> None:
        """Send on the connection in use; if it is going away, the resend carries it."""
        self.unechoed[message_id] = QUESTION
        self.asked_on[message_id] = self.connections
        if self.ws is not None:
            with suppress(websockets.ConnectionClosed):
                await self.ws.send(json.dumps({"type": "chat", "data": {"message": QUESTION}, "id": message_id}))

    def streaming(self, reply_to: str) -> bool:
        return bool(self.chunks.get(reply_to)) and reply_to not in self.completes

    def _observe(self, message: dict[str, Any]) -> None:
        kind, data = message["type"], message["data"]
        if not message["id"].startswith(EPHEMERAL_PREFIX):
            self.durable.append(message["id"])
            self.last_id = message["id"]
        if kind == "chat" and data["role"] == "user":
            self.unechoed.pop(data["reply_to"], None)
        elif kind == "chat" and data["role"] == "assistant":
            self.chunks.setdefault(data["reply_to"], []).append(data)
        elif kind == "chat_complete":
            self.completes.setdefault(data["reply_to"], []).append((self.connections, data))
        elif kind == "error" and data["code"] == "DUPLICATE":
            self.duplicates += 1
            self.unechoed.pop(data["reply_to"], None)


def everyone_streaming(citizens: list[Citizen], turn: str) -> Callable[[], bool]:
    """Whether every citizen is reading ``turn``'s reply, which has not ended yet."""
    return lambda: all(c.streaming(turn) for c in citizens)


@contextmanager
def nodes(redis: RedisProcess) -> Iterator[Cluster]:
    settings = {"store": "redis", "redis_url": redis.url, "reply_chunk_delay": CHUNK_DELAY, "drain_timeout": 8}
    with ExitStack() as stack:
        cluster = Cluster(stack, settings)
        cluster.start(*NODES)
        yield cluster


async def _roll(cluster: Cluster) -> list[Citizen]:
    """Turn k is asked by everyone, and node k stopped once every reply to it streams."""
    citizens = [Citizen(f"rolling-{name}-{n}", cluster.live[name].port) for name in NODES for n in range(PER_NODE)]
    running = [asyncio.create_task(c.run(cluster)) for c in citizens]
    try:
        await until(lambda: all(c.connections == 1 for c in citizens), "every citizen connected", running)
        for turn, node in zip(TURNS, NODES, strict=True):
            for citizen in citizens:
                await citizen.ask(turn)
            await until(everyone_streaming(citizens, turn), f"every {turn} streaming", running)
            await cluster.restart(node)
        await until(lambda: all(len(c.completes) == len(TURNS) for c in citizens), "every turn complete", running)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    for name in list(cluster.live):  # the restarted nodes drain too, with nothing in progress
        await cluster.stop(name)
    return citizens


def test_a_rolling_sigterm_of_every_node_completes_every_turn_in_progress(redis: RedisProcess) -> None:
    with nodes(redis) as cluster:
        citizens = asyncio.run(_roll(cluster))
    assert cluster.exit_codes == {name: [0, 0] for name in NODES}
    for citizen in citizens:
        for turn in TURNS:
            assert [data["status"] for _, data in citizen.completes[turn]] == ["completed"], (citizen.session, turn)
            (_, complete), chunks = citizen.completes[turn][0], citizen.chunks[turn]
            assert [c["chunk_index"] for c in chunks] == list(range(len(chunks))), (citizen.session, turn)
            assert complete["content"] == "".join(c["content"] for c in chunks)
        ids = [DurableId.parse(i) for i in citizen.durable]
        assert all(ids) and len({i.epoch for i in ids if i}) == 1, citizen.durable
        assert [i.offset for i in ids if i] == list(range(1, len(ids) + 1)), citizen.durable  # each once, no gap
        assert citizen.unechoed == {} and citizen.duplicates == 0
    # A citizen of node i is moved at each stop from node i on (to the first node alive), so
    # it is on node k when node k stops, for every k >= i: its turn k was in progress there;
    # it was closed with 1001 and read the end of the reply on its next connection.
    for i, name in enumerate(NODES):
        for citizen in citizens[i * PER_NODE : (i + 1) * PER_NODE]:
            moves = len(NODES) - i
            assert citizen.closes == [1001] * moves and citizen.connections == 1 + moves, (name, citizen)
            for k, turn in enumerate(TURNS):
                resumed = citizen.completes[turn][0][0] > citizen.asked_on[turn]
                assert resumed is (k >= i), (name, citizen.session, turn)
