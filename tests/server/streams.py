"""Helpers for the SSE and server-API tests: a real server on 127.0.0.1 shared by a test
module (its own thread and Trio loop), an SSE reader over httpx, and an in-memory SSE
client for tests on a virtual clock."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import h11
import httpx
import trio
import trio.testing

from cidadao_trio.server.server import Server

from ..harness import tcp_server

SAFETY = 20.0  # seconds; a safety net for a wait on a real socket, never a measured delay
API_KEY = "backend-key-for-tests-0123456789"


@attrs.frozen
class Shared:
    port: int
    server: Server  # read only from the test's thread (counts); its loop is the server thread's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def threaded_server(**overrides: Any) -> Iterator[Shared]:
    """``tcp_server`` in a thread of its own, for every test of a module (one start-up)."""
    started: list[Any] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        stop = trio.Event()
        async with tcp_server(**overrides) as (server, port):
            started.extend([server, port, trio.lowlevel.current_trio_token(), stop])
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as failed:  # shown by the fixture, not lost in the thread
            failure.append(failed)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(SAFETY), "the server did not start"
    if failure:
        raise failure[0]
    server, port, token, stop = started
    try:
        yield Shared(port, server)
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(SAFETY)
        if failure:
            raise failure[0]


@attrs.frozen
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str | None

    @property
    def type(self) -> str:
        return str(self.data["type"])


class SseReader:
    """The events of one ``text/event-stream`` response, parsed as a browser would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self) -> SseEvent:
        fields: dict[str, str] = {}
        with trio.fail_after(SAFETY):
            async for line in self._lines:
                if line == "":
                    if "data" in fields:
                        return SseEvent(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"))
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value
        raise EOFError("the stream ended")

    async def until(self, type: str) -> list[SseEvent]:
        """Events up to and including the first of ``type``."""
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event.type == type:
                return seen

    async def ended(self) -> list[SseEvent]:
        """What comes before the server ends the stream."""
        seen = []
        try:
            while True:
                seen.append(await self.next())
        except EOFError:
            return seen


@asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **kwargs: Any) -> AsyncIterator[SseReader]:
    async with client.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)


def api(key: str = API_KEY, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


# --- in memory, for a virtual clock --------------------------------------------------------


class MemorySse:
    """An SSE client over an in-memory stream the server serves (``Server.spawn``)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = h11.Connection(h11.CLIENT)
        self.status = 0
        self.body = b""
        self.ended = False
        self._buffer = ""

    async def _event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            self.parser.receive_data(bytes(data))
            if not data:
                return self.parser.next_event()

    async def start(self, path: str, headers: list[tuple[str, str]] | None = None) -> int:
        request = h11.Request(method="GET", target=path, headers=[("host", "localhost"), *(headers or [])])
        await self.stream.send_all(self.parser.send(request) + (self.parser.send(h11.EndOfMessage()) or b""))
        response = await self._event()
        assert isinstance(response, h11.Response)
        self.status = response.status_code
        return self.status

    async def chunk(self) -> str | None:
        """The next piece of the body, or None at its end (or when the server cut it)."""
        try:
            event = await self._event()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended = True
            return None
        if isinstance(event, h11.Data):
            return bytes(event.data).decode()
        self.ended = True
        return None

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` envelopes (comments and ``retry`` skipped)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            while "\n\n" not in self._buffer:
                piece = await self.chunk()
                if piece is None:
                    return found
                self._buffer += piece
            block, self._buffer = self._buffer.split("\n\n", 1)
            for line in block.split("\n"):
                if line.startswith("data: "):
                    found.append(json.loads(line[6:]))
        return found

    async def read_all(self) -> str:
        text = self._buffer
        while (piece := await self.chunk()) is not None:
            text += piece
        return text


@asynccontextmanager
async def memory_sse(server: Server, *, lockstep: bool = False) -> AsyncIterator[MemorySse]:
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client, served = pair()
    server.spawn(served)
    try:
        yield MemorySse(client)
    finally:
        await trio.aclose_forcefully(client)
