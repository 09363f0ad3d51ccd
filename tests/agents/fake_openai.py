"""A fake OpenAI-compatible chat-completions server: real HTTP/1.1 and SSE on loopback.

Each test scripts what the next requests get (a status, deltas, a hold, a cut, junk) and
reads back what the server saw: request headers and bodies, how many were in flight at
once, and whether the client hung up before the reply finished (the model would stop
generating there).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import h11
import trio


@attrs.define
class Script:
    """What one request is answered with."""

    deltas: list[str] = attrs.field(factory=lambda: ["Segundo os dados, ", "o total é ", "R$ 10,00."])
    status: int = 200
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    hold_after: int | None = None  # send this many deltas, then wait for ``release``
    cut_after: int | None = None  # send this many deltas, then close without [DONE]
    malformed: bool = False  # a data: line that is not JSON
    delay: float = 0.0  # seconds before each delta (a model's pace; benchmarks only)


@attrs.define(eq=False)
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]
    disconnected: trio.Event = attrs.field(factory=trio.Event)  # client hung up mid-reply
    finished: bool = False  # the whole reply was generated (sent up to [DONE])


@attrs.define(eq=False)
class FakeOpenAI:
    port: int = 0
    scripts: deque[Script] = attrs.field(factory=deque)
    default: Script = attrs.field(factory=Script)
    release: trio.Event = attrs.field(factory=trio.Event)
    seen: list[Seen] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _arrived: trio.Event = attrs.field(factory=trio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def wait_requests(self, count: int) -> None:
        while len(self.seen) < count:
            await self._arrived.wait()
            self._arrived = trio.Event()

    async def wait_in_flight(self, count: int) -> None:
        while self.in_flight < count:
            await self._arrived.wait()
            self._arrived = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            request, body = await _read_request(conn, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        seen = Seen({k.decode().lower(): v.decode() for k, v in request.headers}, json.loads(body or b"{}"))
        self.seen.append(seen)
        script = self.scripts.popleft() if self.scripts else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._arrived.set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_hangup, stream, seen, nursery.cancel_scope)
                await self._answer(conn, stream, script, seen)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            if not seen.finished:
                seen.disconnected.set()
        finally:
            self.in_flight -= 1
            self._arrived.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, script: Script, seen: Seen) -> None:
        async def send(event: Any) -> None:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

        if script.status != 200:
            payload = json.dumps({"error": {"message": "fake refusal", "code": script.status}}).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(payload))), *script.headers]
            await send(h11.Response(status_code=script.status, headers=headers))
            await send(h11.Data(data=payload))
            await send(h11.EndOfMessage())
            return
        await send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")]))
        await send(h11.Data(data=b": keep-alive comment\n\n"))
        first = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        await send(h11.Data(data=f"data: {json.dumps(first)}\n\n".encode()))
        for n, delta in enumerate(script.deltas):
            if script.delay:
                await trio.sleep(script.delay)
            if n == script.hold_after:
                await self.release.wait()
            if n == script.cut_after:
                return  # the connection closes without [DONE] nor the chunked terminator
            if script.malformed:
                await send(h11.Data(data=b"data: {not json\n\n"))
                continue
            event = {"choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
            await send(h11.Data(data=f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()))
        if script.hold_after is not None and script.hold_after >= len(script.deltas):
            await self.release.wait()
        seen.finished = True  # everything generated: a hang-up after [DONE] is no cancellation
        await send(h11.Data(data=b"data: [DONE]\n\n"))
        await send(h11.EndOfMessage())


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[h11.Request, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError


async def _watch_hangup(stream: trio.SocketStream, seen: Seen, scope: trio.CancelScope) -> None:
    """The client sends nothing after its request: any read returning means it hung up."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    if not seen.finished:
        seen.disconnected.set()
    scope.cancel()


@asynccontextmanager
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
        fake.port = listeners[0].socket.getsockname()[1]
        yield fake
        nursery.cancel_scope.cancel()


def refused_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
