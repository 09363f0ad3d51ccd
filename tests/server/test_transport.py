"""The server's own WebSocket (server/transport.py), tested directly over trio's test streams.

A wsproto client plays the browser; raw frames play the clients wsproto would not build
(unmasked, bad UTF-8). Partial writes need a real socket (only ``socket.send`` reports how
many bytes left), so those cases use a socket pair with small buffers.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import wsproto
import wsproto.events as ev
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason as Code

from cidadao_trio.broker.base import Delivery
from cidadao_trio.protocol.frames import frame_payload, text_frame
from cidadao_trio.server.connection import BATCH_MAX_BYTES, BATCH_MAX_MESSAGES, BatchFrames
from cidadao_trio.server.extensions import BoundedDeflate
from cidadao_trio.server.frontdoor import new_parser, read_head
from cidadao_trio.server.transport import ConnectionClosed, WebSocket, accept_websocket

from ..harness import register_investigation, tcp_server
from ..messages import message

LIMIT = 1024


class Peer:
    """The client end: a wsproto client connection over one side of a stream pair."""

    def __init__(self, stream: trio.abc.Stream, deflate: bool = False) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.extensions = [PerMessageDeflate()] if deflate else []
        self.raw = b""  # every byte received after the 101

    def request(self) -> bytes:
        return self.ws.send(ev.Request(host="localhost", target="/ws", extensions=self.extensions))

    async def send(self, event: ev.Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def next_event(self) -> ev.Event:
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some()
            if not data:
                raise EOFError
            if self.ws.state is not wsproto.ConnectionState.CONNECTING:
                self.raw += data
            self.ws.receive_data(bytes(data))

    async def until(self, kind: type[ev.Event]) -> ev.Event:
        while not isinstance(event := await self.next_event(), kind):
            pass
        return event


async def open_pair(
    *, deflate_offer: bool = False, deflate_min_size: int | None = None, first: bytes = b""
) -> tuple[WebSocket, Peer, trio.abc.Stream]:
    """A server WebSocket accepted through the front door's h11 parser, and its peer.

    ``first`` is sent in the same write as the request head (a client that does not wait
    for the 101): it must reach the WebSocket, not be lost with the head.
    """
    client, server = trio.testing.memory_stream_pair()
    peer = Peer(client, deflate=deflate_offer)
    await client.send_all(peer.request() + first)
    head = await read_head(server, new_parser())
    ws = await accept_websocket(server, head, LIMIT, deflate_min_size)
    accepted = await peer.next_event()
    assert isinstance(accepted, ev.AcceptConnection)
    return ws, peer, client


def masked(first_byte: int, payload: bytes) -> bytes:
    """A client frame with a zero mask (the payload reads as is), which wsproto won't build."""
    assert len(payload) < 126
    return bytes((first_byte, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload


# --- handshake and messages ---------------------------------------------------------------


async def test_a_frame_sent_with_the_request_head_is_the_first_message() -> None:
    frame = masked(0x81, b'{"type":"ping"}')
    ws, _, _ = await open_pair(first=frame)
    assert await ws.receive_message() == '{"type":"ping"}'
    assert not ws.compressing


async def test_fragments_with_a_ping_between_them_are_one_message() -> None:
    ws, peer, _ = await open_pair()
    await peer.send(ev.TextMessage("Olá, ", message_finished=False))
    await peer.send(ev.Ping(b"between"))
    await peer.send(ev.TextMessage("€ mundo", message_finished=True))
    assert await ws.receive_message() == "Olá, € mundo"
    pong = await peer.next_event()
    assert isinstance(pong, ev.Pong) and pong.payload == b"between"
    await peer.send(ev.BytesMessage(b"\x00\x01"))
    assert await ws.receive_message() == b"\x00\x01"


async def test_a_partly_received_message_survives_a_cancelled_read(autojump_clock: trio.testing.MockClock) -> None:
    ws, peer, _ = await open_pair()
    await peer.send(ev.TextMessage("meia ", message_finished=False))
    with trio.move_on_after(1) as waited:
        await ws.receive_message()
    assert waited.cancelled_caught
    await peer.send(ev.TextMessage("mensagem", message_finished=True))
    assert await ws.receive_message() == "meia mensagem"


# --- what wsproto refuses: a close frame with the code, then ConnectionClosed --------------


async def expect_refusal(ws: WebSocket, peer: Peer, code: int) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.receive_message()
    assert closed.value.reason.code == code
    assert ws.closed is not None and ws.closed.code == code
    close = await peer.until(ev.CloseConnection)
    assert isinstance(close, ev.CloseConnection) and close.code == code
    assert close.reason in ("protocol error", "invalid payload", "message too big")  # not wsproto's text
    with pytest.raises(ConnectionClosed):
        await ws.send_frames((text_frame(b"{}"),))  # nothing after a close frame
    await ws.close()  # the stream ends; nothing else is written
    assert await peer.stream.receive_some() == b""


async def test_invalid_utf8_closes_1007() -> None:
    ws, peer, client = await open_pair()
    await client.send_all(masked(0x81, b"\xff\xfe not utf-8"))
    await expect_refusal(ws, peer, 1007)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x81\x02hi",  # not masked
        masked(0x80, b"orphan"),  # a continuation with no message to continue
        masked(0xC1, b"rsv1 without deflate"),  # a reserved bit nothing negotiated
        masked(0x09, b"ping without FIN"),  # a fragmented control frame
    ],
    ids=["unmasked", "orphan-continuation", "reserved-bit", "fragmented-ping"],
)
async def test_protocol_errors_close_1002(frame: bytes) -> None:
    ws, peer, client = await open_pair()
    await client.send_all(frame)
    await expect_refusal(ws, peer, 1002)


async def test_the_limit_counts_utf8_bytes_and_closes_1009() -> None:
    ws, peer, _ = await open_pair()
    await peer.send(ev.TextMessage("€" * (LIMIT // 3)))  # 1,023 bytes, 341 characters
    assert await ws.receive_message() == "€" * (LIMIT // 3)
    await peer.send(ev.TextMessage("€" * (LIMIT // 3 + 1)))  # 1,026 bytes, 342 characters
    await expect_refusal(ws, peer, 1009)


async def test_fragments_add_up_to_the_limit() -> None:
    ws, peer, _ = await open_pair()
    for _ in range(3):
        await peer.send(ev.TextMessage("x" * 400, message_finished=False))
    await expect_refusal(ws, peer, 1009)


# --- pings, the peer's close, our close ---------------------------------------------------


async def test_our_ping_returns_the_event_its_pong_sets() -> None:
    ws, peer, _ = await open_pair()
    pong = await ws.ping()
    ping = await peer.next_event()
    assert isinstance(ping, ev.Ping) and not pong.is_set()
    await peer.send(ping.response())
    await peer.send(ev.TextMessage("depois"))
    assert await ws.receive_message() == "depois"
    assert pong.is_set()


async def test_the_peers_close_is_answered_with_its_code() -> None:
    ws, peer, _ = await open_pair()
    await peer.send(ev.CloseConnection(code=4000, reason="tchau"))
    with pytest.raises(ConnectionClosed) as closed:
        await ws.receive_message()
    assert (closed.value.reason.code, closed.value.reason.reason) == (4000, "tchau")
    answer = await peer.next_event()
    assert isinstance(answer, ev.CloseConnection) and answer.code == 4000
    with pytest.raises(ConnectionClosed):
        await ws.ping()


async def test_tcp_ending_is_1006() -> None:
    ws, _, client = await open_pair()
    await client.aclose()
    with pytest.raises(ConnectionClosed) as closed:
        await ws.receive_message()
    assert closed.value.reason.code == Code.ABNORMAL_CLOSURE


async def test_close_waits_for_the_answer_then_closes_the_stream() -> None:
    ws, peer, _ = await open_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.close, 1013, "slow consumer")
        close = await peer.next_event()
        assert isinstance(close, ev.CloseConnection) and (close.code, close.reason) == (1013, "slow consumer")
        await peer.send(close.response())
    assert await peer.stream.receive_some() == b""  # the server closed TCP after the handshake


async def test_close_under_a_deadline_does_not_wait_for_a_silent_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer, _ = await open_pair()
    await peer.send(ev.Ping(b"late"))  # read during the close: no pong after our close frame
    with trio.move_on_after(2) as grace:
        await ws.close(1001, "server shutting down")
    assert grace.cancelled_caught
    close = await peer.next_event()
    assert isinstance(close, ev.CloseConnection) and close.code == 1001
    assert await peer.stream.receive_some() == b""


# --- deflate -------------------------------------------------------------------------------


async def test_deflate_is_negotiated_only_when_enabled_and_offered() -> None:
    ws, _, _ = await open_pair(deflate_offer=True, deflate_min_size=None)
    assert not ws.compressing
    ws, _, _ = await open_pair(deflate_offer=False, deflate_min_size=64)
    assert not ws.compressing
    ws, _, _ = await open_pair(deflate_offer=True, deflate_min_size=64)
    assert ws.compressing


async def test_deflated_messages_both_ways_and_small_frames_left_alone() -> None:
    ws, peer, _ = await open_pair(deflate_offer=True, deflate_min_size=64)
    text = "Transparência nos gastos públicos. " * 20  # 720 bytes: the client deflates it
    await peer.send(ev.TextMessage(text))
    assert await ws.receive_message() == text
    small, large = json.dumps({"n": 1}).encode(), json.dumps({"pad": "x" * 500}).encode()
    await ws.send_frames((text_frame(small), text_frame(large)))
    first, second = await peer.next_event(), await peer.next_event()
    assert isinstance(first, ev.TextMessage) and first.data == small.decode()
    assert isinstance(second, ev.TextMessage) and second.data == large.decode()
    assert peer.raw.startswith(text_frame(small))  # the shared bytes, RSV1 clear
    assert peer.raw[len(text_frame(small))] == 0xC1  # the large one: FIN, RSV1, text
    assert len(peer.raw) < len(text_frame(small)) + len(large)


async def test_a_deflate_bomb_closes_1009() -> None:
    ws, peer, _ = await open_pair(deflate_offer=True, deflate_min_size=64)
    await peer.send(ev.TextMessage("\x00" * 10_000_000))  # ~10 KB on the wire
    await expect_refusal(ws, peer, 1009)


def test_inflating_never_produces_more_than_the_budget() -> None:
    deflate = BoundedDeflate(max_message_bytes=LIMIT, min_size=64)
    assert deflate.accept("permessage-deflate; client_max_window_bits") is not None
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(b"a" * 50_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    text = wsproto.frame_protocol.Opcode.TEXT
    rsv1 = wsproto.frame_protocol.RsvBits(True, False, False)
    deflate.frame_inbound_header(None, text, rsv1, len(bomb))  # type: ignore[arg-type]
    chunk = deflate.frame_inbound_payload_data(None, bomb[:4096])  # type: ignore[arg-type]
    assert chunk is Code.MESSAGE_TOO_BIG  # after one bounded decompress, not 50 MB
    deflate = BoundedDeflate(max_message_bytes=LIMIT, min_size=64)
    deflate.accept("permessage-deflate")
    fits = zlib.compressobj(wbits=-15)
    data = fits.compress(b"a" * LIMIT) + fits.flush(zlib.Z_SYNC_FLUSH)
    deflate.frame_inbound_header(None, text, rsv1, len(data) - 4)  # type: ignore[arg-type]
    inflated = deflate.frame_inbound_payload_data(None, data[:-4])  # type: ignore[arg-type]
    tail = deflate.frame_inbound_complete(None, True)  # type: ignore[arg-type]
    assert isinstance(inflated, bytes) and isinstance(tail, bytes) and inflated + tail == b"a" * LIMIT


# --- writes: whole frames, in order; a partial frame is finished first ---------------------


@asynccontextmanager
async def socket_websocket() -> AsyncIterator[tuple[WebSocket, trio.socket.SocketType]]:
    """A server WebSocket on one end of a socket pair with small buffers (partial writes)."""
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = trio.SocketStream(ours)
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await theirs.send(client.send(ev.Request(host="localhost", target="/ws")))
    head = await read_head(stream, new_parser())
    ws = await accept_websocket(stream, head, LIMIT)
    response = b""
    while b"\r\n\r\n" not in response:
        response += await theirs.recv(4096)
    assert response.startswith(b"HTTP/1.1 101 ")
    with theirs:
        yield ws, theirs
        await stream.aclose()


async def read_to_eof(sock: trio.socket.SocketType) -> bytes:
    data = b""
    with trio.fail_after(30):
        while chunk := await sock.recv(65536):
            data += chunk
    return data


def big_frame(n: int) -> bytes:
    return text_frame(json.dumps({"n": n, "pad": "x" * 300_000}).encode())


async def test_several_frames_in_one_send_arrive_whole_and_in_order() -> None:
    frames = [text_frame(json.dumps({"n": n}).encode()) for n in range(50)] + [big_frame(50)]
    async with socket_websocket() as (ws, peer), trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_frames, frames)
        received = b""
        with trio.fail_after(30):
            while len(received) < sum(map(len, frames)):
                received += await peer.recv(65536)
    assert received == b"".join(frames)


async def test_a_ping_waits_for_the_partly_written_frame(autojump_clock: trio.testing.MockClock) -> None:
    frame = big_frame(1)
    async with socket_websocket() as (ws, peer):
        with trio.move_on_after(1) as stalled:
            await ws.send_frames((frame,))  # the peer reads nothing: the write stalls
        assert stalled.cancelled_caught and ws.writing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.ping)
            received = b""
            with trio.fail_after(30):
                while len(received) < len(frame) + 6:
                    received += await peer.recv(65536)
    assert received[: len(frame)] == frame  # the frame finished, then the ping
    assert received[len(frame)] == 0x89 and not ws.writing


async def test_close_during_a_partial_write_completes_the_frame_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frame = big_frame(2)
    async with socket_websocket() as (ws, peer):
        with trio.move_on_after(1):
            await ws.send_frames((frame,))
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def reader() -> None:
                received.append(await read_to_eof(peer))

            nursery.start_soon(reader)
            with trio.move_on_after(2):
                await ws.close(1013, "slow consumer")  # no answer comes: the deadline ends it
    close = b"\x88\x0f" + struct.pack("!H", 1013) + b"slow consumer"
    assert received[0] == frame + close


async def test_a_frame_that_cannot_be_finished_ends_tcp_without_a_close_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frame = big_frame(3)
    async with socket_websocket() as (ws, peer):
        with trio.move_on_after(1):
            await ws.send_frames((frame,))
        with trio.move_on_after(2) as grace:  # the peer still reads nothing
            await ws.close(1013, "slow consumer")
        assert grace.cancelled_caught
        data = await read_to_eof(peer)
        assert frame.startswith(data) and len(data) < len(frame)  # cut mid-frame, no close
        with pytest.raises(ConnectionClosed):
            await ws.send_frames((frame,))


# --- writes from the publishing task (no task per delivery) -------------------------------


def small_frames(count: int) -> list[bytes]:
    return [text_frame(json.dumps({"n": n}).encode()) for n in range(count)]


async def receive_exactly(sock: trio.socket.SocketType, size: int) -> bytes:
    data = b""
    with trio.fail_after(30):
        while len(data) < size:
            chunk = await sock.recv(65536)
            assert chunk, "the stream ended early"
            data += chunk
    return data


async def test_frames_go_out_in_one_nonblocking_send_from_the_callers_task() -> None:
    frames = small_frames(40)
    async with socket_websocket() as (ws, peer):
        assert ws.free
        assert ws.send_frames_nowait(frames)  # no await: written before we ever yield
        assert ws.free and not ws.writing
        assert await receive_exactly(peer, sum(map(len, frames))) == b"".join(frames)


async def test_what_the_kernel_did_not_take_is_finished_by_the_writer_whole_and_in_order() -> None:
    frames = small_frames(5) + [big_frame(7)] + small_frames(5)
    async with socket_websocket() as (ws, peer):
        assert not ws.send_frames_nowait(frames)  # 300 KB into a 4 KB buffer: a partial write
        assert ws.writing and not ws.free
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send_frames, ())  # the writer task: nothing new, finish the rest
            received = await receive_exactly(peer, sum(map(len, frames)))
    assert received == b"".join(frames) and ws.free


async def test_a_socket_that_would_block_parks_the_writer_until_it_is_writable() -> None:
    first, then = big_frame(8), small_frames(3)
    async with socket_websocket() as (ws, peer):
        assert not ws.send_frames_nowait((first,))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send_frames, ())
            await trio.testing.wait_all_tasks_blocked()
            assert ws.writing  # parked on writability: the peer reads nothing yet
            nursery.start_soon(ws.send_frames, then)  # queued behind the unfinished frame
            await trio.testing.wait_all_tasks_blocked()
            assert not ws.free
            received = await receive_exactly(peer, len(first) + sum(map(len, then)))
    assert received == first + b"".join(then)


async def test_a_cancelled_write_keeps_its_frames_for_the_next(autojump_clock: trio.testing.MockClock) -> None:
    first, second = big_frame(9), small_frames(2)
    async with socket_websocket() as (ws, peer):
        with trio.move_on_after(1) as stalled:
            await ws.send_frames((first, *second))
        assert stalled.cancelled_caught and ws.writing
        later = small_frames(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send_frames, later)
            received = await receive_exactly(peer, len(first) + sum(map(len, second + later)))
    assert received == first + b"".join(second + later)


async def test_close_during_a_partial_nowait_write_completes_the_frame_then_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frame = big_frame(10)
    async with socket_websocket() as (ws, peer), trio.open_nursery() as nursery:
        assert not ws.send_frames_nowait((frame,))
        received: list[bytes] = []

        async def reader() -> None:
            received.append(await read_to_eof(peer))

        nursery.start_soon(reader)
        with trio.move_on_after(2):
            await ws.close(1013, "slow consumer")
    close = b"\x88\x0f" + struct.pack("!H", 1013) + b"slow consumer"
    assert received[0] == frame + close


async def test_no_data_frame_after_the_close_frame_began(autojump_clock: trio.testing.MockClock) -> None:
    async with socket_websocket() as (ws, peer):
        with trio.move_on_after(0.5):
            await ws.close(1000, "bye")
        assert not ws.free
        with pytest.raises(ConnectionClosed):
            ws.send_frames_nowait(small_frames(1))
        await peer.recv(65536)


async def test_a_parked_writer_on_a_lockstep_stream_keeps_frames_whole() -> None:
    """Streams that cannot count bytes (TLS, test streams): writes are serialized whole."""
    client, server = trio.testing.lockstep_stream_pair()
    peer = Peer(client)
    accepted: list[WebSocket] = []

    async def accept() -> None:
        head = await read_head(server, new_parser())
        accepted.append(await accept_websocket(server, head, LIMIT))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        await client.send_all(peer.request())
        assert isinstance(await peer.next_event(), ev.AcceptConnection)
    (ws,) = accepted
    frame = text_frame(json.dumps({"pad": "y" * 5000}).encode())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_frames, (frame,))
        await trio.testing.wait_all_tasks_blocked()
        assert ws.writing  # parked: the peer has not read
        nursery.start_soon(ws.ping)
        await trio.testing.wait_all_tasks_blocked()
        message = await peer.next_event()
        ping = await peer.next_event()
    assert isinstance(message, ev.TextMessage) and json.loads(message.data)["pad"] == "y" * 5000
    assert isinstance(ping, ev.Ping) and not ws.writing


def test_no_private_attribute_of_another_library() -> None:
    """Issue 13/14: the transport uses wsproto's and trio's public API only."""
    import re
    from pathlib import Path

    from cidadao_trio.server import extensions, transport

    for module in (transport, extensions):
        source = Path(module.__file__ or "").read_text()
        foreign = re.findall(r"\b(?!self\b)[a-z]\w*\._[a-z]\w*", source)  # ws._pings, conn._send
        assert foreign == [], f"{module.__name__}: {foreign}"
        ours = set(re.findall(r"self\.(_\w+)(?:: [^=]+)? = ", source)) | set(re.findall(r"def (_\w+)", source))
        inherited = set(re.findall(r"self\.(_\w+)", source)) - ours  # e.g. a base class's self._decompressor
        assert inherited == set(), f"{module.__name__}: {inherited}"


# --- through the server: a burst to TCP subscribers ----------------------------------------


def count_tasks() -> int:
    """Every live task of this run (the task tree from the root, public trio API)."""
    count, pending = 0, [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is not None:
            count += 1
            for nursery in task.child_nurseries:
                pending.extend(nursery.child_tasks)
    return count


async def tcp_peer(port: int, target: str) -> Peer:
    """A wsproto client on a real loopback socket (no task of its own), past the greeting."""
    peer = Peer(await trio.open_tcp_stream("127.0.0.1", port))
    request = ev.Request(host="localhost", target=f"/api/v1/ws/investigations/{target}")
    await peer.stream.send_all(peer.ws.send(request))
    with trio.fail_after(10):
        assert isinstance(await peer.next_event(), ev.AcceptConnection)
        greeting = await peer.until(ev.TextMessage)
    assert json.loads(greeting.data)["type"] == "connection"  # type: ignore[attr-defined]
    return peer


async def frames_until(peer: Peer, messages: int) -> list[dict[str, object]]:
    """Whole frames (one TextMessage each) until ``messages`` messages have arrived."""
    frames: list[dict[str, object]] = []
    counted = 0
    with trio.fail_after(10):
        while counted < messages:
            event = await peer.until(ev.TextMessage)
            frame = json.loads(event.data)  # type: ignore[attr-defined]
            frames.append(frame)
            counted += frame["data"]["count"] if frame["type"] == "batch" else 1
    return frames


async def test_a_burst_reaches_tcp_subscribers_in_full_batches_with_two_tasks_each() -> None:
    async with tcp_server() as (server, port):
        register_investigation(server, "INV-B")
        idle = count_tasks()
        batched, plain = await tcp_peer(port, "INV-B?batch=1"), await tcp_peer(port, "INV-B")
        assert count_tasks() - idle <= 2 * 2  # a reader and a writer per connection, no more
        for n in range(150):  # no yield between publishes: one committed window
            await server.broker.publish(
                "investigation:INV-B", message("anomaly_detected", {"investigation_id": "INV-B", "n": n}))
        batches = await frames_until(batched, 150)
        singles = await frames_until(plain, 150)
        for peer in (batched, plain):
            await peer.stream.aclose()
    assert [b["type"] for b in batches] == ["batch"] * 3
    assert [b["data"]["count"] for b in batches] == [64, 64, 22]  # type: ignore[index]
    members = [m for b in batches for m in b["data"]["messages"]]  # type: ignore[index]
    assert [m["data"]["n"] for m in members] == list(range(150))
    assert [s["data"]["n"] for s in singles] == list(range(150))  # type: ignore[index]


def test_batch_frames_fill_to_the_message_and_byte_limits() -> None:
    def delivery(n: int, pad: int = 0) -> Delivery:
        return Delivery("anomaly_detected", json.dumps({"n": n, "pad": "x" * pad}), f"e-{n}", True)

    batches = BatchFrames()
    small = [delivery(n) for n in range(BATCH_MAX_MESSAGES * 2 + 1)]
    frames = batches.frames(small)
    assert len(frames) == 2 + 1 and frames[2] == small[-1].frame  # a lone message keeps its frame
    assert batches.frames(small)[0] is frames[0]  # the same run: built once, shared
    large = [delivery(n, pad=20_000) for n in range(7)]  # three fit in 64 KiB
    counts = [json.loads(frame_text(f))["data"]["count"] for f in batches.frames(large)[:2]]
    assert counts == [3, 3] and 3 * large[0].size <= BATCH_MAX_BYTES < 4 * large[0].size


def frame_text(frame: bytes) -> str:
    return bytes(frame_payload(frame)).decode()
