"""Regressions of issue 11 items 4 and 8: what goes on the wire at the frame level.

Item 4: a slow consumer closed while a frame was partly written saw that frame's start,
then a close frame inside it (an abnormal close instead of 1013). Item 8: the 64 KiB
inbound limit counted characters, so 65,536 ``€`` (196,608 bytes) were accepted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing
import websockets
import wsproto
import wsproto.events

from cidadao_trio.protocol.frames import text_frame
from cidadao_trio.server.transport import WholeFrameStream

from ..harness import (
    connect,
    receive,
    register_investigation,
    running_server,
    send,
    tcp_server,
    wait_closed,
)
from ..messages import message
from ..process import serve

LIMIT = 64 * 1024
EURO_BYTES = len("€".encode())  # 3


# --- a reader of raw server frames ------------------------------------------------------


@attrs.frozen
class Frame:
    opcode: int
    payload: bytes
    complete: bool  # False: the stream ended inside this frame (a TCP drop mid-frame)


def parse_server_frames(data: bytes) -> list[Frame]:
    """Split unmasked server frames; a last frame cut by EOF is returned incomplete."""
    frames, at = [], 0
    while at < len(data):
        head = data[at : at + 2]
        if len(head) < 2:
            frames.append(Frame(-1, data[at:], False))
            break
        opcode, length, start = head[0] & 0x0F, head[1] & 0x7F, at + 2
        assert head[1] & 0x80 == 0, "server frames are never masked"
        if length == 126:
            (length,), start = struct.unpack("!H", data[start : start + 2]), start + 2
        elif length == 127:
            (length,), start = struct.unpack("!Q", data[start : start + 8]), start + 8
        payload = data[start : start + length]
        frames.append(Frame(opcode, payload, len(payload) == length))
        at = start + length
    return frames


def assert_no_close_inside_a_frame(frames: list[Frame]) -> Frame | None:
    """Every data frame is JSON text (no control byte: no close frame hidden inside);
    a close, if any, is the last frame and complete. Returns that close frame."""
    assert frames, "the server sent nothing"
    for index, frame in enumerate(frames):
        if frame.opcode == 0x1:
            assert all(byte >= 0x20 for byte in frame.payload), f"frame {index} has a frame inside it"
            if frame.complete:
                json.loads(frame.payload)
        elif frame.opcode == 0x8:
            assert index == len(frames) - 1 and frame.complete, "a close frame is last and whole"
            return frame
        else:
            assert frame.opcode == 0x9, f"unexpected opcode {frame.opcode}"
    return None


# --- item 4, sans server: the stream every write goes through ------------------------------


@asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[WholeFrameStream, trio.socket.SocketType]]:
    """A WholeFrameStream over one end of a socket pair whose buffers are small."""
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wire = WholeFrameStream(trio.SocketStream(ours), ours)
    with theirs:
        yield wire, theirs
        await wire.aclose()


async def read_to_eof(sock: trio.socket.SocketType) -> bytes:
    data = b""
    while chunk := await sock.recv(65536):
        data += chunk
    return data


CLOSE_1013 = b"\x88\x0f" + struct.pack("!H", 1013) + b"slow consumer"


async def test_a_cancelled_write_is_finished_before_the_close_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frame = text_frame(json.dumps({"pad": "x" * 500_000}).encode())
    async with socket_pair() as (wire, peer):
        with trio.move_on_after(1) as stalled:
            await wire.send_data_frame(frame)  # the peer does not read: the write stalls
        assert stalled.cancelled_caught and wire.writing
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def reader() -> None:
                received.append(await read_to_eof(peer))

            nursery.start_soon(reader)
            await wire.send_all(CLOSE_1013)  # what the library writes when it closes
            await wire.aclose()
        assert received[0] == frame + CLOSE_1013
        assert not wire.writing


async def test_a_frame_that_cannot_be_finished_gets_no_close_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frame = text_frame(json.dumps({"pad": "x" * 500_000}).encode())
    async with socket_pair() as (wire, peer):
        with trio.move_on_after(1):
            await wire.send_data_frame(frame)
        with trio.move_on_after(2) as deadline:  # the close grace: the peer still reads nothing
            await wire.send_all(CLOSE_1013)
        assert deadline.cancelled_caught
        await wire.aclose()
        data = await read_to_eof(peer)
        assert frame.startswith(data) and len(data) < len(frame)  # a TCP drop mid-frame, no close
        with pytest.raises(trio.ClosedResourceError):
            await wire.send_data_frame(frame)  # after a close began, never another data frame


# --- item 4, end to end: a real socket with a small receive buffer ---------------------------


async def open_raw_websocket(port: int, target: str, rcvbuf: int) -> tuple[trio.socket.SocketType, bytes]:
    """A client socket that reads nothing by itself; returns it and the bytes after the 101."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = client.send(wsproto.events.Request(host="127.0.0.1", target=target))
    while request:
        request = request[await sock.send(request) :]
    data = b""
    while b"\r\n\r\n" not in data:
        data += await sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, rest


async def test_slow_consumer_sees_whole_frames_then_1013_or_a_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tcp_server(outbox_messages=8, slow_consumer_timeout=1.0) as (server, port):
        register_investigation(server, "INV-1")
        sock, data = await open_raw_websocket(port, "/api/v1/ws/investigations/INV-1", rcvbuf=4096)
        with sock:
            while not server.connections:
                await trio.sleep(0.01)
            (connection,) = server.connections
            published = 0
            while connection.intent is None:  # the client reads nothing: publish until closed
                await server.broker.publish(
                    "investigation:INV-1",
                    message("anomaly_detected", {"investigation_id": "INV-1", "n": published, "detail": "x" * 3000}),
                )
                published += 1
                await trio.sleep(0.01)
            assert (connection.intent.code, connection.intent.reason) == (1013, "slow consumer")
            while server.connections:  # finish() has run: the close frame went, or TCP did
                await trio.sleep(0.1)
            data += await read_to_eof(sock)
    frames = parse_server_frames(data)
    assert sum(f.opcode == 0x1 for f in frames) >= 2  # the greeting and some anomalies
    close = assert_no_close_inside_a_frame(frames)
    if close is not None:
        assert close.payload == struct.pack("!H", 1013) + b"slow consumer"


# --- item 8: the inbound limit counts UTF-8 bytes -------------------------------------------


async def test_65536_euro_signs_close_1009(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server, connect(server, "/api/v1/ws/chat/s1") as ws:
        await receive(ws)
        await ws.send_message("€" * 65536)  # 65,536 characters, 196,608 bytes
        assert (await wait_closed(ws)).code == 1009


async def test_limit_is_bytes_not_characters(autojump_clock: trio.testing.MockClock) -> None:
    over = "€" * (LIMIT // EURO_BYTES + 1)  # 21,846 characters: 65,538 bytes
    under = "€" * (LIMIT // EURO_BYTES)  # 65,535 bytes
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/s1") as ws:
            await receive(ws)
            await ws.send_message(under)
            assert (await receive(ws))["data"]["code"] == "INVALID_JSON"  # refused, still open
            await send(ws, "ping", id="p")
            assert (await receive(ws))["type"] == "pong"
            await ws.send_message(over)
            assert (await wait_closed(ws)).code == 1009


async def test_fragments_and_pings_between_them_count_as_one_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_server() as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        server.spawn(server_stream)
        peer = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await client_stream.send_all(peer.send(wsproto.events.Request(host="localhost", target="/api/v1/ws/chat/f")))
        events: list[wsproto.events.Event] = []
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in events):
            peer.receive_data(bytes(await client_stream.receive_some()))
            events += peer.events()
        piece = "€" * 4000  # 12,000 bytes a fragment, 4,000 characters
        for _ in range(6):  # 72,000 bytes in all, 24,000 characters
            await client_stream.send_all(peer.send(wsproto.events.TextMessage(piece, message_finished=False)))
            await client_stream.send_all(peer.send(wsproto.events.Ping(b"x")))
        await client_stream.send_all(peer.send(wsproto.events.TextMessage("", message_finished=True)))
        closes: list[wsproto.events.CloseConnection] = []
        with trio.fail_after(5):
            while not closes:
                peer.receive_data(bytes(await client_stream.receive_some()))
                closes = [e for e in peer.events() if isinstance(e, wsproto.events.CloseConnection)]
        assert closes[0].code == 1009


def test_deflated_euro_signs_are_counted_after_inflating() -> None:
    async def scenario(port: int) -> tuple[str, int | None, str]:
        url = f"ws://127.0.0.1:{port}/api/v1/ws/chat/zip"
        async with websockets.connect(url, compression="deflate") as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await ws.recv()
            await ws.send("€" * (LIMIT // EURO_BYTES))  # deflates to a few hundred bytes
            error = json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]["code"]
            await ws.send("€" * (LIMIT // EURO_BYTES + 1))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            return extensions, ws.close_code, error

    with serve() as server:
        extensions, code, error = asyncio.run(scenario(server.port))
    assert "permessage-deflate" in extensions
    assert error == "INVALID_JSON"
    assert code == 1009
