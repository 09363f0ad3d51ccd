"""The thin layer over trio-websocket: hand an upgrade read by h11 over to the library."""

from __future__ import annotations

import trio
import wsproto.events
from trio_websocket import WebSocketConnection
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState

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


async def accept_websocket(
    nursery: trio.Nursery, head: bytes, stream: trio.abc.Stream, max_message_bytes: int
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
    nursery.start_soon(connection._reader_task)
    request = await connection._get_request()
    return await request.accept()
