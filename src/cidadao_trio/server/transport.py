"""Our server-side WebSocket: wsproto's frame parser driven directly over one trio stream.

h11 has already read the upgrade request (``frontdoor.py``) and our data frames are
already built (``protocol/frames.py``), so the library-level machinery of a WebSocket
package has nothing left to do: :func:`accept_websocket` answers the upgrade with a 101 it
writes itself, and :class:`WebSocket` hands wsproto's
:class:`~wsproto.connection.Connection` the bytes it reads (frames, UTF-8, control
frames, close handshake, inflating through :class:`~.extensions.BoundedDeflate`) while
every byte it writes goes through one :class:`WholeFrameStream`. There is no reader
task: the connection's own reader calls :meth:`WebSocket.receive_message`, which
answers pings and close frames as they come.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Sequence

import attrs
import trio
from wsproto.connection import Connection as FrameParser
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason as Code

from ..protocol.frames import frame_payload, payload_size, text_frame
from .extensions import BoundedDeflate, MessageLimit, negotiate
from .frontdoor import RequestHead

RECEIVE_CHUNK = 16 * 1024
IOV_MAX = 1024  # frames per writev (POSIX's minimum IOV_MAX is 16; Linux allows 1024)
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
CLOSE_FRAME_START = 0x88  # FIN + close opcode: the first byte of every close frame we send

# What our close frame says when wsproto refused a client frame (its own text names
# library internals): RFC 6455 §7.4.1.
REFUSALS: dict[int, str] = {
    Code.PROTOCOL_ERROR: "protocol error",
    Code.INVALID_FRAME_PAYLOAD_DATA: "invalid payload",
    Code.MESSAGE_TOO_BIG: "message too big",
}


@attrs.frozen
class CloseReason:
    code: int
    reason: str | None = None


class ConnectionClosed(Exception):
    """The WebSocket is closed (or closing): nothing more can be read or sent."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        self.reason = reason


LOST = CloseReason(Code.ABNORMAL_CLOSURE, "connection lost")
GONE = (trio.BrokenResourceError, trio.ClosedResourceError)  # what a stream raises once the peer is gone


class WholeFrameStream(trio.abc.Stream):
    """The connection's stream for writing: no write ever starts inside a frame.

    Every write passes here under one lock: control frames (pings, pongs, close) and the
    data frames. On plain TCP each write is counted byte by byte, so when one is
    cancelled midway (a slow consumer closed while the kernel buffer was full) its unsent
    tail is kept and the next write sends it first: a close frame follows a complete
    frame, or, if the tail cannot leave before the close deadline, the stream is closed
    with no close frame at all (PROTOCOL.md §5). Other streams keep trio's own contract:
    a TLS stream whose write was cancelled is broken and ends in that same TCP drop;
    in-memory streams write whole chunks.
    """

    def __init__(self, inner: trio.abc.Stream, sock: trio.socket.SocketType | None) -> None:
        self._inner = inner
        self._socket = sock
        self._lock = trio.Lock()
        self._tail = memoryview(b"")  # what a cancelled or partial write left unsent
        self.close_started = False  # a close frame went (or is going) out: no data after it

    @property
    def counts_bytes(self) -> bool:
        """Plain TCP: writes are tracked to the byte and may go out without a reschedule."""
        return self._socket is not None

    @property
    def writing(self) -> bool:
        """A write is under way or left a frame unfinished (the peer is not reading)."""
        return self._lock.locked() or bool(self._tail)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write one or more whole control frames; a close frame ends the data frames."""
        if data[:1] == bytes((CLOSE_FRAME_START,)):
            self.close_started = True
        async with self._lock:
            await self._write(bytes(data))

    async def send_data_frame(self, frame: bytes) -> None:
        await self.send_frames((frame,))

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write whole data frames; raise ``ClosedResourceError`` once a close began.

        The fan-out hot path: when nothing else is being written, the frames go out with
        one plain ``os.write``/``os.writev`` and no trio reschedule; only what the kernel
        did not take waits for the socket (parking this task, not the caller's peers).
        """
        if self.close_started:
            raise trio.ClosedResourceError("the close handshake has begun")
        if self._socket is None or self.writing:
            async with self._lock:
                if self.close_started:
                    raise trio.ClosedResourceError("the close handshake has begun")
                await self._write(frames[0] if len(frames) == 1 else b"".join(frames))
            return
        self._lock.acquire_nowait()
        try:
            self._tail = self._write_nowait(frames)
            await self._send_tail()
        finally:
            self._lock.release()

    def _write_nowait(self, frames: Sequence[bytes]) -> memoryview:
        """Hand ``frames`` to the kernel without blocking; return what it did not take."""
        assert self._socket is not None
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        try:
            sent = os.write(fd, frames[0]) if len(frames) == 1 else os.writev(fd, frames[:IOV_MAX])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc
        if len(frames) == 1:
            return memoryview(frames[0])[sent:]
        if sent == sum(map(len, frames)):
            return memoryview(b"")
        return memoryview(b"".join(frames))[sent:]

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


class WebSocket:
    """One accepted server-side WebSocket; its surface is all the connection needs.

    ``receive_message`` is called by one task at a time (the connection's reader) and is
    cancel-safe: a message partly received when it is cancelled is completed by the next
    call. Writes may come from any task; :class:`WholeFrameStream` orders them.
    """

    def __init__(
        self, wire: WholeFrameStream, deflate: BoundedDeflate | None, max_message_bytes: int, trailing: bytes = b""
    ) -> None:
        self._wire = wire
        self._deflate = deflate if deflate is not None and deflate.enabled() else None
        extensions: list[Extension] = [MessageLimit(max_message_bytes)]  # counts after inflating
        if self._deflate is not None:
            extensions.insert(0, self._deflate)
        self._parser = FrameParser(ConnectionType.SERVER, extensions, trailing)
        self._text: list[str] = []  # the fragments of the message being read
        self._binary: list[bytes] = []
        self._pongs: dict[bytes, trio.Event] = {}
        self.closed: CloseReason | None = None  # why it ended, once the peer or we closed it

    @property
    def compressing(self) -> bool:
        """permessage-deflate was negotiated (messages of ``min_size`` or more go deflated)."""
        return self._deflate is not None

    @property
    def writing(self) -> bool:
        """A write is under way or stalled (a stalled peer is not pinged)."""
        return self._wire.writing

    # --- receiving -------------------------------------------------------------------

    async def receive_message(self) -> str | bytes:
        """The next whole message; raises :class:`ConnectionClosed` once the socket closed.

        A frame wsproto refuses (bad UTF-8: 1007, a protocol error: 1002, a message over the
        limit: 1009) gets its close frame here, as RFC 6455 §7.1.7 asks, before the raise.
        """
        while True:
            if self.closed is not None:
                raise ConnectionClosed(self.closed)
            for event in self._parser.events():
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        text, self._text = "".join(self._text), []
                        return text
                elif isinstance(event, BytesMessage):
                    self._binary.append(bytes(event.data))
                    if event.message_finished:
                        data, self._binary = b"".join(self._binary), []
                        return data
                elif isinstance(event, Ping):
                    await self._answer_ping(event)
                elif isinstance(event, Pong):
                    pong = self._pongs.pop(bytes(event.payload), None)
                    if pong is not None:
                        pong.set()
                elif isinstance(event, CloseConnection):
                    await self._closed_by(event)
                    break
            else:
                await self._receive_more()

    async def _receive_more(self) -> None:
        try:
            data = await self._wire.receive_some(RECEIVE_CHUNK)
        except GONE:
            data = b""
        self._parser.receive_data(bytes(data) if data else None)  # None: TCP ended (1006)

    async def _answer_ping(self, ping: Ping) -> None:
        if self._parser.state is not ConnectionState.OPEN:
            return  # our close frame has gone: no pong may follow it
        try:
            await self._wire.send_all(self._parser.send(ping.response()))
        except GONE:
            self.closed = LOST

    async def _closed_by(self, event: CloseConnection) -> None:
        state = self._parser.state
        if state is ConnectionState.OPEN:  # wsproto refused a frame; the peer knows nothing yet
            self.closed = CloseReason(event.code, REFUSALS.get(event.code, event.reason))
            await self._send_close(self.closed)
        elif state is ConnectionState.REMOTE_CLOSING:  # the peer closed: answer with its code
            self.closed = CloseReason(event.code, event.reason or None)
            await self._send_close(self.closed)
        else:  # TCP ended, or this is the answer to our own close frame
            self.closed = self.closed or CloseReason(event.code, event.reason or None)

    # --- sending ---------------------------------------------------------------------

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write pre-built text frames (``protocol.frames.text_frame``), whole and in order.

        With permessage-deflate, a frame whose payload is ``min_size`` or more is deflated
        for this connection first; every other frame goes out as the shared bytes.
        """
        if self.closed is not None or self._parser.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.closed or LOST)
        if self._deflate is not None:
            frames = [self._deflated(frame) for frame in frames]
        try:
            await self._wire.send_frames(frames)
        except GONE:
            raise ConnectionClosed(self.closed or LOST) from None

    def _deflated(self, frame: bytes) -> bytes:
        assert self._deflate is not None
        if payload_size(frame) < self._deflate.min_size:
            return frame
        return text_frame(self._deflate.compress(frame_payload(frame)), compressed=True)

    async def ping(self) -> trio.Event:
        """Send a ping and return the event its pong sets, without waiting for it.

        Waiting here would need a task per connection just to wait; this lets one task
        keep every timer of a connection.
        """
        if self.closed is not None or self._parser.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.closed or LOST)
        payload = os.urandom(4)
        while payload in self._pongs:
            payload = os.urandom(4)
        pong = self._pongs[payload] = trio.Event()
        try:
            await self._wire.send_all(self._parser.send(Ping(payload)))
        except GONE:
            raise ConnectionClosed(self.closed or LOST) from None
        return pong

    # --- closing ---------------------------------------------------------------------

    async def close(self, code: int = Code.NORMAL_CLOSURE, reason: str | None = None) -> None:
        """The close handshake: our close frame, the peer's answer, then the stream closes.

        Callers bound it with a deadline (a dead peer must not hold us). If that deadline
        strikes while an unfinished frame is still going out, the stream closes with no
        close frame, never one inside that frame (PROTOCOL.md §5).
        """
        try:
            state = self._parser.state
            if state is ConnectionState.OPEN:
                self.closed = CloseReason(code, reason)
                await self._send_close(self.closed)
                await self._await_answer()
            elif state is ConnectionState.REMOTE_CLOSING and self.closed is not None:
                await self._send_close(self.closed)  # the answer a cancelled read did not send
        finally:
            await self._wire.aclose()

    async def _send_close(self, reason: CloseReason) -> None:
        with contextlib.suppress(*GONE):
            await self._wire.send_all(self._parser.send(CloseConnection(reason.code, reason.reason)))

    async def _await_answer(self) -> None:
        """Read until the peer's close frame (or the end of TCP); messages are dropped."""
        while True:
            for event in self._parser.events():
                if isinstance(event, CloseConnection):
                    return
            try:
                data = await self._wire.receive_some(RECEIVE_CHUNK)
            except GONE:
                return
            if not data:
                return
            self._parser.receive_data(bytes(data))


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + ACCEPT_GUID).digest())


async def accept_websocket(
    stream: trio.abc.Stream,
    head: RequestHead,
    max_message_bytes: int,
    deflate_min_size: int | None = None,
) -> WebSocket:
    """Answer the upgrade h11 read from ``stream`` (already checked valid) with our 101."""
    key = head.header(b"sec-websocket-key")
    assert key is not None, "frontdoor.upgrade_refusal lets no upgrade without a key through"
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_token(key),
    ]
    deflate = None
    if deflate_min_size is not None:
        deflate = BoundedDeflate(max_message_bytes, deflate_min_size)
        offers = [value for name, value in head.headers if name == b"sec-websocket-extensions"]
        agreed = negotiate(offers, deflate)
        if agreed is not None:
            lines.append(b"Sec-WebSocket-Extensions: " + agreed)
    await stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n")
    sock = stream.socket if isinstance(stream, trio.SocketStream) else None
    return WebSocket(WholeFrameStream(stream, sock), deflate, max_message_bytes, head.trailing)
