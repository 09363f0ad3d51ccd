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
import itertools
import os
from collections import deque
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

    Every byte written goes through here: control frames (pings, pongs, close) and the
    data frames. On plain TCP the bytes the kernel has not taken yet wait in one queue of
    whole frames (the first possibly partly sent), and every write goes to its end, so a
    write cancelled midway (a slow consumer closed while the kernel buffer was full)
    loses nothing and splits nothing: the next write finishes the frame first, and a
    close frame follows complete frames or, if they cannot leave before the close
    deadline, the stream is closed with no close frame at all (PROTOCOL.md §5). Other
    streams keep trio's own contract: a TLS stream whose write was cancelled is broken and
    ends in that same TCP drop; in-memory streams write whole chunks.

    The fan-out writes without a task: :meth:`send_frames_nowait` hands frames to the
    kernel from the caller's task (one ``os.writev`` on the socket trio already keeps
    non-blocking); only when the kernel does not take everything does a task wait, in
    :meth:`send_frames`, for writability (``trio.lowlevel.wait_writable``).
    """

    def __init__(self, inner: trio.abc.Stream, sock: trio.socket.SocketType | None) -> None:
        self._inner = inner
        self._socket = sock
        self._lock = trio.Lock()
        self._queued: deque[memoryview] = deque()  # accepted, not yet in the kernel: whole frames
        self.close_started = False  # a close frame went (or is going) out: no data after it

    @property
    def counts_bytes(self) -> bool:
        """Plain TCP: writes are tracked to the byte and may go out without a task."""
        return self._socket is not None

    @property
    def writing(self) -> bool:
        """A write is under way or left bytes queued (the peer is not reading)."""
        return self._lock.locked() or bool(self._queued)

    @property
    def free(self) -> bool:
        """Plain TCP with nothing being written: :meth:`send_frames_nowait` may be called."""
        return self._socket is not None and not self._queued and not self._lock.locked()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write one or more whole control frames; a close frame ends the data frames."""
        if data[:1] == bytes((CLOSE_FRAME_START,)):
            self.close_started = True
        if self._socket is None:
            async with self._lock:
                await self._inner.send_all(data)
            return
        self._queued.append(memoryview(bytes(data)))
        async with self._lock:
            await self._drain()

    async def send_data_frame(self, frame: bytes) -> None:
        await self.send_frames((frame,))

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write whole data frames (none: finish what is queued); ``ClosedResourceError``
        once a close began. Cancel-safe on TCP: what did not go stays queued, whole."""
        if self.close_started:
            raise trio.ClosedResourceError("the close handshake has begun")
        if self._socket is None:
            if frames:
                async with self._lock:
                    if self.close_started:
                        raise trio.ClosedResourceError("the close handshake has begun")
                    await self._inner.send_all(frames[0] if len(frames) == 1 else b"".join(frames))
            return
        if frames:
            if self.free:
                if self.send_frames_nowait(frames):
                    return
            else:
                self._queued.extend(map(memoryview, frames))
        if self._queued:
            async with self._lock:
                await self._drain()

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """Hand whole data frames to the kernel now, from the caller's task (only when
        :attr:`free`). True if it took every byte; else the rest is queued, in order, for
        :meth:`send_frames` (the connection's writer task) to finish once writable."""
        if self.close_started:
            raise trio.ClosedResourceError("the close handshake has begun")
        assert self.free, "only a free TCP stream writes from the caller's task"
        sent = self._write_nowait(frames)
        if len(frames) == 1:
            if sent == len(frames[0]):
                return True
            self._queued.append(memoryview(frames[0])[sent:])
            return False
        for index, frame in enumerate(frames):
            if sent < len(frame):
                self._queued.append(memoryview(frame)[sent:])
                self._queued.extend(map(memoryview, frames[index + 1 :]))
                return False
            sent -= len(frame)
        return True

    def _write_nowait(self, buffers: Sequence[bytes | memoryview]) -> int:
        """One ``os.write``/``os.writev`` of ``buffers``; the bytes the kernel took (0 if none)."""
        assert self._socket is not None
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was already closed")
        try:
            if len(buffers) == 1:
                return os.write(fd, buffers[0])
            return os.writev(fd, buffers if len(buffers) <= IOV_MAX else buffers[:IOV_MAX])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc

    async def _drain(self) -> None:
        """Send the queue (under the lock), waiting for writability whenever the kernel is full."""
        assert self._socket is not None
        queued = self._queued
        while queued:
            offered = list(itertools.islice(queued, IOV_MAX))
            sent = self._write_nowait(offered)
            full = sent < sum(map(len, offered))  # the kernel's buffer is full
            while sent:
                head = queued[0]
                if sent < len(head):
                    queued[0] = head[sent:]
                    break
                sent -= len(head)
                queued.popleft()
            if full:
                await trio.lowlevel.wait_writable(self._socket)

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

    @property
    def free(self) -> bool:
        """Open, on plain TCP, and nothing being written: :meth:`send_frames_nowait` may write."""
        return self._wire.free and self.closed is None and self._parser.state is ConnectionState.OPEN

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write pre-built text frames (``protocol.frames.text_frame``), whole and in order;
        with none, finish what an earlier write left queued.

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

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """:meth:`send_frames` from the caller's task, without blocking (only when :attr:`free`).

        False if the kernel did not take every byte: the rest is queued, whole and in
        order, and ``send_frames(())`` (the connection's writer task) finishes it.
        """
        if self._deflate is not None:
            frames = [self._deflated(frame) for frame in frames]
        try:
            return self._wire.send_frames_nowait(frames)
        except GONE:
            raise ConnectionClosed(self.closed or LOST) from None

    def _deflated(self, frame: bytes) -> bytes:
        assert self._deflate is not None
        if payload_size(frame) < self._deflate.min_size:
            return frame
        return text_frame(self._deflate.compress(frame_payload(frame)), compressed=True)

    async def ping(self, pong: trio.Event | None = None) -> trio.Event:
        """Send a ping and return the event its pong sets (``pong``, if made beforehand),
        without waiting for it: waiting would need a task per connection just to wait, and
        the server's one heartbeat task checks the event instead."""
        pong, frame = self._ping_frame(pong)
        try:
            await self._wire.send_all(frame)
        except GONE:
            raise ConnectionClosed(self.closed or LOST) from None
        return pong

    def ping_nowait(self) -> trio.Event:
        """:meth:`ping` from the caller's task, without blocking (only when :attr:`free`):
        the server's one heartbeat task pings every connection this way. If the kernel did
        not take the whole frame, :attr:`writing` is true and ``send_frames(())`` finishes it."""
        pong, frame = self._ping_frame()
        try:
            self._wire.send_frames_nowait((frame,))
        except GONE:
            raise ConnectionClosed(self.closed or LOST) from None
        return pong

    def _ping_frame(self, pong: trio.Event | None = None) -> tuple[trio.Event, bytes]:
        if self.closed is not None or self._parser.state is not ConnectionState.OPEN:
            raise ConnectionClosed(self.closed or LOST)
        payload = os.urandom(4)
        while payload in self._pongs:
            payload = os.urandom(4)
        pong = self._pongs[payload] = pong if pong is not None else trio.Event()
        return pong, self._parser.send(Ping(payload))

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
