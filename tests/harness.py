"""In-memory server and clients for deterministic tests (no sockets, virtual time)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio.testing
import trio_websocket
from trio_websocket import WebSocketConnection
from wsproto.utilities import LocalProtocolError

from cidadao_trio.broker.base import Delivery
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.config import Settings
from cidadao_trio.investigations.engine import Investigation
from cidadao_trio.investigations.model import Contract
from cidadao_trio.server.server import Server

TEST_DEFAULTS: dict[str, Any] = {"reply_chunk_delay": 0.0, "store": "memory", "drain_timeout": 2.0}


@asynccontextmanager
async def running_server(dataset: Sequence[Contract] = (), **overrides: Any) -> AsyncIterator[Server]:
    server = Server(Settings(**{**TEST_DEFAULTS, **overrides}), dataset=dataset)
    async with server.running():
        yield server


def register_investigation(
    server: Server, investigation_id: str, owner_key: str = "anon", public: bool = True
) -> None:
    """Make an investigation known (finished, no events) so endpoints accept it."""
    assert server.engine is not None
    record = Investigation(investigation_id, "teste", "todos os contratos", owner_key, public, status="completed")
    server.engine.records[investigation_id] = record


@asynccontextmanager
async def connect(
    server: Server,
    path: str,
    *,
    lockstep: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client over an in-memory stream pair served by ``server``."""
    if lockstep:
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
    else:
        client_stream, server_stream = trio.testing.memory_stream_pair()
    server.spawn(server_stream)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, client_stream, "localhost", path, extra_headers=headers
            )
            try:
                yield ws
            finally:
                with trio.move_on_after(1):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except* LocalProtocolError:
        pass  # trio-websocket answers a ping that races our close; harmless here


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str)
    decoded = json.loads(message)
    assert isinstance(decoded, dict)
    return decoded


async def receive_until(
    ws: WebSocketConnection, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Collect messages up to and including the first one ``done`` accepts."""
    seen = []
    while True:
        message = await receive(ws)
        seen.append(message)
        if done(message):
            return seen


async def send(ws: WebSocketConnection, type: str, data: dict[str, Any] | None = None, **extra: Any) -> None:
    message: dict[str, Any] = {"type": type, **extra}
    if data is not None:
        message["data"] = data
    await ws.send_message(json.dumps(message))


def is_turn_end(message: dict[str, Any]) -> bool:
    return message["type"] == "typing" and message["data"].get("isTyping") is False and "agent" in message["data"]


@attrs.define
class CloseCapture:
    code: int | None = None
    reason: str | None = None


async def wait_closed(ws: WebSocketConnection) -> CloseCapture:
    """Drain until the server closes; return its close code and reason."""
    try:
        while True:
            await ws.get_message()
    except trio_websocket.ConnectionClosed as closed:
        return CloseCapture(closed.reason.code, closed.reason.reason)


async def http_get(server: Server, target: str) -> tuple[int, bytes]:
    """One plain HTTP GET through the front door, over an in-memory stream."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server.spawn(server_stream)
    await client_stream.send_all(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    response = b""
    while chunk := await client_stream.receive_some():
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@asynccontextmanager
async def tcp_server(**overrides: Any) -> AsyncIterator[tuple[Server, int]]:
    """A server on a free loopback port (real sockets), with the test defaults."""
    settings = Settings(host="127.0.0.1", port=0, store="memory", reply_chunk_delay=0.0, **overrides)
    server = Server(settings, dataset=())
    async with server.running(), trio.open_nursery() as nursery:
        listeners = await nursery.start(server.serve_tcp)
        yield server, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


class ListSink:
    """A broker sink that keeps every delivery offered to it, in order."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    def offer(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.got]

    @property
    def durable_ids(self) -> list[str]:
        return [d.id for d in self.got if d.durable]

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(d.text) for d in self.got]

    def data(self) -> list[dict[str, Any]]:
        return [payload["data"] for payload in self.payloads()]


async def until_committed(broker: LocalBroker, condition: Callable[[], bool]) -> None:
    """Virtual time runs ahead of the store's worker thread (no deadline can count it):
    wait for the thread (a read queued behind the write) and the writer task, then look;
    a bounded number of times."""
    for _ in range(100):
        await broker.query(lambda: None)
        await trio.testing.wait_all_tasks_blocked()
        if condition():
            return
        await trio.sleep(0.5)
    raise AssertionError("condition never held")
