"""The thin layer over trio-websocket: hand an upgrade read by h11 over to the library."""

from __future__ import annotations

import os
import zlib

import trio
import wsproto.events
from trio_websocket import CloseReason as LibraryCloseReason
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..protocol.frames import payload_size

# trio-websocket's internal queue between its reader and ours; our reader always drains.
MESSAGE_QUEUE_SIZE = 4


class ReplayStream(trio.abc.Stream):
    """A stream that first replays bytes already read (the request head), then the socket."""

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._inner, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


CLOSE_FRAME_START = 0x88  # FIN + close opcode: the first byte of every close frame we send


class WholeFrameStream(trio.abc.Stream):
    """The connection's stream as the library sees it: no write ever starts inside a frame.

    Every write passes here under one lock: the library's frames (pongs, pings, close,
    compressed messages) and our shared pre-built frames. On plain TCP each write is
    counted byte by byte, so when one is cancelled midway (a slow consumer closed while
    the kernel buffer was full) its unsent tail is kept and the next write sends it
    first: a close frame follows a complete frame, or, if the tail cannot leave before
    the close deadline, the library drops TCP with no close frame at all (PROTOCOL.md
    §5). Other streams keep trio's own contract: a TLS stream whose write was cancelled
    is broken and ends in that same TCP drop; in-memory streams write whole chunks.
    """

    def __init__(self, inner: trio.abc.Stream, sock: trio.socket.SocketType | None) -> None:
        self._inner = inner
        self._socket = sock
        self._lock = trio.Lock()
        self._tail = memoryview(b"")  # what a cancelled write left unsent
        self.close_started = False  # a close frame went (or is going) out: no data after it

    @property
    def counts_bytes(self) -> bool:
        """Plain TCP: writes are tracked to the byte, shared frames may skip the library."""
        return self._socket is not None

    @property
    def writing(self) -> bool:
        """A write is under way or left a frame unfinished (the peer is not reading)."""
        return self._lock.locked() or bool(self._tail)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._lock:
            if data[:1] == bytes((CLOSE_FRAME_START,)):
                self.close_started = True
            await self._write(bytes(data))

    async def send_data_frame(self, frame: bytes) -> None:
        """Write one complete data frame; raise ``ClosedResourceError`` once a close began.

        The fan-out hot path: when nothing else is being written, the frame goes out with
        one plain ``os.write`` and no trio reschedule; only a remainder the kernel did not
        take waits for the socket.
        """
        if self.close_started:
            raise trio.ClosedResourceError("the close handshake has begun")
        if self._socket is None or self._lock.locked() or self._tail:
            async with self._lock:
                if self.close_started:
                    raise trio.ClosedResourceError("the close handshake has begun")
                await self._write(frame)
            return
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        self._lock.acquire_nowait()
        try:
            try:
                sent = os.write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            if sent < len(frame):
                self._tail = memoryview(frame)[sent:]
                await self._send_tail()
        finally:
            self._lock.release()

    async def _write(self, data: bytes) -> None:
        if self._socket is None:
            await self._inner.send_all(data)
            return
        await self._send_tail()  # finish the frame a cancelled write left behind
        self._tail = memoryview(data)
        await self._send_tail()

    async def _send_tail(self) -> None:
        assert self._socket is not None
        while self._tail:
            try:
                sent = await self._socket.send(self._tail)  # cancel-safe: exact count
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            self._tail = self._tail[sent:]

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._inner, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


class MessageLimit(Extension):
    """Bounds each inbound message in UTF-8 bytes (PROTOCOL.md §7), whatever its type.

    trio-websocket's ``max_message_size`` counts the *characters* of a text message, so
    65,536 ``€`` (196,608 bytes) would pass a 64 KiB limit. This counts payload bytes as
    wsproto decodes them, after permessage-deflate inflated them (it runs after
    :class:`BoundedDeflate`), and closes 1009 as soon as a message grows past the limit,
    before it is buffered whole. It is not a negotiated extension: no client offers its
    name, and ``enabled()`` keeps it in every connection's frame pipeline.
    """

    name = "x-cidadao-message-limit"

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._size = 0
        self._data_frame = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return False

    def accept(self, offer: str) -> bool | str | None:
        return None  # never negotiated: it needs nothing from the peer

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        self._data_frame = not opcode.iscontrol()  # a ping between fragments is not counted
        return RsvBits(False, False, False)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if self._data_frame:
            self._size += len(data)
            if self._size > self._max:
                return CloseReason.MESSAGE_TOO_BIG
        return data

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        if fin and self._data_frame:
            self._size = 0
        return None


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate with two guards wsproto lacks.

    Inbound, a message may not inflate past ``max_message_bytes`` (a decompression bomb
    is closed 1009 after at most one bounded ``decompress`` call). Outbound, messages
    below ``min_size`` are sent uncompressed (RSV1 clear): deflating a 200-byte pong
    costs more CPU than the bytes it saves. The server keeps no compression context
    between messages, so an idle connection holds no 256 KiB zlib state.
    """

    def __init__(self, max_message_bytes: int, min_size: int) -> None:
        super().__init__(server_no_context_takeover=True)
        self._budget = max_message_bytes
        self._inflated = 0
        self._min_size = min_size

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        try:
            inflated = self._decompressor.decompress(bytes(data), self._budget - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._decompressor.unconsumed_tail or self._inflated > self._budget:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        compressed = self._inbound_compressed and self._inbound_is_compressible
        data_frame = self._inbound_is_compressible  # a ping between fragments ends no message
        tail = super().frame_inbound_complete(proto, fin)
        if compressed and isinstance(tail, bytes):
            self._inflated += len(tail)  # the final flush counts too
            if self._inflated > self._budget:
                return CloseReason.MESSAGE_TOO_BIG
        if fin and data_frame:
            self._inflated = 0
        return tail

    def leaves_alone(self, size: int) -> bool:
        return size < self._min_size

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        if opcode is not Opcode.CONTINUATION and fin and self.leaves_alone(len(data)):
            return (rsv, data)
        return super().frame_outbound(proto, opcode, rsv, data, fin)


class _ServerWebSocket(WebSocketConnection):
    """trio-websocket 0.12 with one fix: a frame wsproto rejects gets its close frame.

    On invalid UTF-8 (1007) or a protocol error (1002) wsproto emits a CloseConnection
    event while still OPEN; the library then drops TCP without telling the peer why,
    and a browser sees 1006. We send the close frame first, as RFC 6455 §7.1.7 asks.
    """

    async def _handle_close_connection_event(self, event: wsproto.events.CloseConnection) -> None:
        if self._wsproto.state == ConnectionState.OPEN:
            try:
                await self._send(wsproto.events.CloseConnection(code=event.code, reason=event.reason))
            except Exception:  # the peer is gone; closing below is all that is left
                pass
        await super()._handle_close_connection_event(event)

    async def _accept(
        self, request: wsproto.events.Request, subprotocol: str | None, extra_headers: list[tuple[bytes, bytes]]
    ) -> None:
        """trio-websocket's accept, plus the extensions the client offered and we allow."""
        self._subprotocol = subprotocol
        self._path = request.target
        await self._send(
            wsproto.events.AcceptConnection(
                subprotocol=subprotocol, extra_headers=extra_headers, extensions=self.extensions
            )
        )
        self._open_handshake.set()

    extensions: list[Extension] = []
    wire: WholeFrameStream | None = None  # the stream every write of this connection goes through


async def send_ping(ws: WebSocketConnection) -> trio.Event:
    """Send a ping and return the event its pong sets, without waiting for it.

    ``WebSocketConnection.ping`` waits for the pong, which needs a task per connection
    just to wait; this lets one task keep every timer of a connection.
    """
    payload = os.urandom(4)
    while payload in ws._pings:
        payload = os.urandom(4)
    pong = trio.Event()
    ws._pings[payload] = pong
    await ws._send(wsproto.events.Ping(payload=payload))
    return pong


class FrameSender:
    """Sends a connection's messages; shared pre-built frames go straight to the socket.

    trio-websocket re-encodes and re-frames every message per connection, and each
    ``send_all`` costs several trio reschedules. For a plain TCP connection, a server
    frame is the same bytes for everyone, so the shared frame goes to the connection's
    :class:`WholeFrameStream` (one ``os.write`` when the kernel takes it, serialized with
    the library's pongs and close frames by that stream's lock). TLS uses the library's
    path, and so do the messages permessage-deflate compresses (below ``min_size`` it
    leaves them alone, so the shared frame is right there too).
    """

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._wire = ws.wire if isinstance(ws, _ServerWebSocket) else None
        self._deflate = [e for e in getattr(ws, "extensions", ()) if isinstance(e, BoundedDeflate)]

    def _direct(self, size: int) -> bool:
        return (
            self._wire is not None
            and self._wire.counts_bytes
            and self._ws.closed is None
            and all(not e.enabled() or e.leaves_alone(size) for e in self._deflate)
        )

    async def send(self, frame: bytes, text: str) -> None:
        """Raises ``ConnectionClosed`` when the peer is gone, like ``send_message``."""
        if not self._direct(payload_size(frame)):
            await self._ws.send_message(text)
            return
        assert self._wire is not None
        try:
            await self._wire.send_data_frame(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed(LibraryCloseReason(1006, "connection lost")) from None


def write_in_progress(ws: WebSocketConnection) -> bool:
    """True while a write to ``ws`` is under way or stalled (a stalled peer is not pinged)."""
    wire = ws.wire if isinstance(ws, _ServerWebSocket) else None
    return wire is not None and wire.writing


async def accept_websocket(
    nursery: trio.Nursery,
    head: bytes,
    stream: trio.abc.Stream,
    max_message_bytes: int,
    deflate_min_size: int | None = None,
) -> WebSocketConnection:
    """Complete the handshake whose request head h11 already read from ``stream``.

    Mirrors ``trio_websocket.wrap_server_stream``, with our connection class.
    """
    sock = stream.socket if isinstance(stream, trio.SocketStream) else None
    wire = WholeFrameStream(ReplayStream(head, stream), sock)
    connection = _ServerWebSocket(
        wire,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=MESSAGE_QUEUE_SIZE,
        max_message_size=max_message_bytes,  # characters; MessageLimit counts the bytes
    )
    connection.wire = wire
    extensions: list[Extension] = []
    if deflate_min_size is not None:
        extensions.append(BoundedDeflate(max_message_bytes, deflate_min_size))
    extensions.append(MessageLimit(max_message_bytes))  # after inflating
    connection.extensions = extensions
    nursery.start_soon(connection._reader_task)
    request = await connection._get_request()
    return await request.accept()
