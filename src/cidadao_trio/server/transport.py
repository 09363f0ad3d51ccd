"""The thin layer over trio-websocket: hand an upgrade read by h11 over to the library."""

from __future__ import annotations

import trio
from trio_websocket import WebSocketConnection, wrap_server_stream

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


async def accept_websocket(
    nursery: trio.Nursery, head: bytes, stream: trio.abc.Stream, max_message_bytes: int
) -> WebSocketConnection:
    """Complete the handshake whose request head h11 already read from ``stream``."""
    request = await wrap_server_stream(
        nursery,
        ReplayStream(head, stream),
        message_queue_size=MESSAGE_QUEUE_SIZE,
        max_message_size=max_message_bytes,
    )
    return await request.accept()
