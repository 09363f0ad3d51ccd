"""End to end: ``cidadao-trio serve`` in a subprocess, real sockets on 127.0.0.1.

HTTP is spoken over raw sockets; WebSocket through the ``websockets`` package (asyncio),
run with ``asyncio.run`` inside plain synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..process import ServerProcess, serve

SAFETY = 10.0  # seconds; a safety net, never a measured delay
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DURABLE_ID = re.compile(r"(?P<epoch>[A-Za-z0-9]+)-(?P<offset>[0-9]+)")
DURABLE_TYPES = {"chat", "chat_complete", "subscribed", "unsubscribed", "investigation_progress",
                 "anomaly_detected", "agent_finding", "report_ready", "investigation_failed"}


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    """The suite's shared process: these tests only talk to it (each on its own session
    ids); those that need other settings or stop it start their own."""
    return shared_server


# --- raw HTTP ----------------------------------------------------------------------------


def exchange(server: ServerProcess, request: bytes, *, reset_ok: bool = False) -> bytes:
    """Send raw bytes, then read until the server closes; a timeout fails the test."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=SAFETY) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            if not reset_ok:
                raise
    return received


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), raw
    headers = dict(line.lower().split(": ", 1) for line in lines)
    assert int(headers["content-length"]) == len(body), raw
    return int(status_line.split()[1]), headers, body


def request(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/nope", 404),
        ("GET", "/api/v1/ws/chat/abc", 426),
        ("POST", "/healthz", 405),
    ],
)
def test_http_routes(server: ServerProcess, method: str, path: str, status: int) -> None:
    got, headers, body = parse_response(exchange(server, request(method, path, "Content-Length: 0")))
    assert got == status, body
    if path == "/healthz" and method == "GET":
        assert body.strip() == b"ok"
    if status == 426:
        assert headers["upgrade"].lower() == "websocket"


def test_garbage_before_handshake_gets_400_then_close(server: ServerProcess) -> None:
    status, _, _ = parse_response(exchange(server, b"\x00\xff garbage\r\n\r\n"))
    assert status == 400


def test_huge_request_head_is_refused_then_closed(server: ServerProcess) -> None:
    huge = request("GET", "/api/v1/ws/chat/abc", "X-Filler: " + "a" * (32 * 1024))
    # The server closes with part of our head unread, so Linux may end with a reset.
    status, _, _ = parse_response(exchange(server, huge, reset_ok=True))
    assert status in (431, 400)


def test_half_sent_handshake_is_closed_after_handshake_timeout() -> None:
    with serve(handshake_timeout=0.5) as server:
        half = b"GET /api/v1/ws/chat/abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        assert exchange(server, half) == b""  # EOF well before the SAFETY socket timeout
        status, _, _ = parse_response(exchange(server, request("GET", "/healthz")))
        assert status == 200


# --- WebSocket, with the `websockets` package ----------------------------------------------


def open_ws(server: ServerProcess, session: str) -> Any:
    return connect(server.ws_url(f"/api/v1/ws/chat/{session}"), proxy=None, open_timeout=SAFETY)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next envelope, checked against PROTOCOL.md §2 and §4."""
    message = json.loads(await asyncio.wait_for(ws.recv(), SAFETY))
    assert set(message) == {"type", "data", "timestamp", "id"}, message
    assert isinstance(message["data"], dict), message
    assert TIMESTAMP.fullmatch(message["timestamp"]), message
    if message["type"] in DURABLE_TYPES:
        assert DURABLE_ID.fullmatch(message["id"]), message
    else:
        assert message["id"].startswith("e-"), message
    return message


async def send(ws: ClientConnection, type: str, id: str | None = None, **data: Any) -> None:
    await ws.send(json.dumps({"type": type, "data": data, **({"id": id} if id else {})}))


async def connected(ws: ClientConnection, session: str) -> None:
    hello = await receive(ws)
    assert hello["type"] == "connection", hello
    assert hello["data"]["status"] == "connected"
    assert hello["data"]["session_id"] == session
    assert hello["data"]["resumed"] is False


async def close_code(ws: ClientConnection) -> int | None:
    """Read (and drop) whatever is left until the server closes; the code the client saw."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), SAFETY)
    return ws.close_code


async def assert_ping_pong(ws: ClientConnection, id: str) -> None:
    await send(ws, "ping", id)
    pong = await receive(ws)
    assert pong["type"] == "pong" and pong["data"] == {"reply_to": id}, pong


async def fresh_connection_works(server: ServerProcess, session: str) -> None:
    async with open_ws(server, session) as ws:
        await connected(ws, session)
        await assert_ping_pong(ws, "again")


def test_ping_and_a_chat_turn(server: ServerProcess) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with open_ws(server, "s1") as ws:
            await connected(ws, "s1")
            await assert_ping_pong(ws, "p1")
            await send(ws, "chat", "c1", message="Olá")
            turn = [await receive(ws)]
            while not (turn[-1]["type"] == "typing" and turn[-1]["data"]["isTyping"] is False):
                assert len(turn) < 200, turn
                turn.append(await receive(ws))
            return turn

    turn = asyncio.run(scenario())
    user, typing_on, *chunks, complete, typing_off = turn
    assert user["type"] == "chat" and user["data"]["role"] == "user", user
    assert user["data"]["content"] == "Olá"
    assert typing_on["type"] == "typing" and typing_on["data"]["isTyping"] is True, typing_on
    assert chunks, turn
    for index, chunk in enumerate(chunks):
        assert chunk["type"] == "chat", chunk
        data = chunk["data"]
        assert (data["role"], data["chunk"], data["chunk_index"]) == ("assistant", True, index)
        assert (data["agent_id"], data["reply_to"]) == ("drummond", "c1")
    assert complete["type"] == "chat_complete", complete
    assert complete["data"]["status"] == "completed"
    assert complete["data"]["agent_id"] == "drummond"
    assert complete["data"]["reply_to"] == "c1"
    assert complete["data"]["content"] == "".join(c["data"]["content"] for c in chunks)
    assert typing_off["type"] == "typing", typing_off

    durable = [DURABLE_ID.fullmatch(m["id"]) for m in (user, *chunks, complete)]
    assert len({m["epoch"] for m in durable}) == 1, durable
    offsets = [int(m["offset"]) for m in durable]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def test_invalid_utf8_text_frame_closes_1007_and_server_keeps_serving(server: ServerProcess) -> None:
    async def scenario() -> int | None:
        async with open_ws(server, "utf8") as ws:
            await connected(ws, "utf8")
            await ws.send(b"\xff\xfe not utf-8", text=True)  # a text frame, unvalidated
            code = await close_code(ws)
        await fresh_connection_works(server, "utf8")
        return code

    assert asyncio.run(scenario()) == 1007


def test_bad_neighbours_do_not_disturb_a_second_connection(server: ServerProcess) -> None:
    async def scenario() -> int | None:
        async with open_ws(server, "steady") as steady, open_ws(server, "rude") as rude:
            await connected(steady, "steady")
            await connected(rude, "rude")
            garbage = await asyncio.to_thread(exchange, server, b"\x00garbage\r\n\r\n")
            assert parse_response(garbage)[0] == 400
            await rude.send("{not json")
            error = await receive(rude)
            assert error["type"] == "error" and error["data"]["code"] == "INVALID_JSON", error
            await assert_ping_pong(rude, "still-open")
            await rude.send(b"\x00\x01binary")
            code = await close_code(rude)
            await assert_ping_pong(steady, "s-1")
        await fresh_connection_works(server, "rude")
        return code

    assert asyncio.run(scenario()) == 1003


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_websockets_with_1001_and_exits_0(signum: signal.Signals) -> None:
    with serve() as server:

        async def scenario() -> int | None:
            async with open_ws(server, "bye") as ws:
                await connected(ws, "bye")
                server.process.send_signal(signum)
                return await close_code(ws)

        assert asyncio.run(scenario()) == 1001
        assert server.process.wait(timeout=SAFETY) == 0
