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
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..protocol.frames import payload_size

# trio-websocket's internal queue between its reader and ours; our reader always drains.
MESSAGE_QUEUE_SIZE = 4


class ReplayStream(trio.abc.Stream):
    """A stream that first replays bytes already read (the request head), then the socket."""

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
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
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)

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

    extensions: list[PerMessageDeflate] = []


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
    ``send_all`` costs several trio reschedules. For a plain TCP connection with no
    extension negotiated, a server frame is the same bytes for everyone, so we write the
    shared frame with one ``os.write`` under the library's own stream lock (so nothing
    interleaves with its pongs and close frames) and fall back to ``send_all`` only for
    what the kernel did not take. TLS uses the library's path, and so do the messages
    permessage-deflate compresses (below ``min_size`` it leaves them alone, so the shared
    frame is right there too).
    """

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        inner = getattr(ws._stream, "_inner", None)
        self._fd = inner.socket.fileno() if isinstance(inner, trio.SocketStream) else None

    def _direct(self, size: int) -> bool:
        ws = self._ws
        connection = ws._wsproto.connection
        return (
            self._fd is not None
            and connection is not None
            and connection.state == ConnectionState.OPEN
            and all(isinstance(e, BoundedDeflate) and e.leaves_alone(size) for e in connection._proto.extensions)
            and not ws._stream_lock.locked()
        )

    async def send(self, frame: bytes, text: str) -> None:
        """Raises ``ConnectionClosed`` when the peer is gone, like ``send_message``."""
        ws = self._ws
        if not self._direct(payload_size(frame)):
            await ws.send_message(text)
            return
        assert self._fd is not None
        ws._stream_lock.acquire_nowait()
        try:
            try:
                sent = os.write(self._fd, frame)
            except BlockingIOError:
                sent = 0
            if sent < len(frame):
                await ws._stream.send_all(memoryview(frame)[sent:])
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed(LibraryCloseReason(1006, "connection lost")) from None
        finally:
            ws._stream_lock.release()


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
    connection = _ServerWebSocket(
        ReplayStream(head, stream),
        WSConnection(ConnectionType.SERVER),
        message_queue_size=MESSAGE_QUEUE_SIZE,
        max_message_size=max_message_bytes,
    )
    if deflate_min_size is not None:
        connection.extensions = [BoundedDeflate(max_message_bytes, deflate_min_size)]
    nursery.start_soon(connection._reader_task)
    request = await connection._get_request()
    return await request.accept()
