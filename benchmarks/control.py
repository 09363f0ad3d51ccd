"""A tiny HTTP/1.1 control endpoint on its own loopback port (trio), for the benchmark harness.

Not part of the product: our server (``harness_server.py``) and the floor (``floor.py``) use
it so the orchestrator can ask them to publish events at a rate and report counters.
One request per connection, ``Connection: close``, JSON out; the request head is bounded.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trio

Route = Callable[[dict[str, str]], Awaitable[Mapping[str, Any]]]
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            data += chunk
        return data
    return None


async def _respond(stream: trio.SocketStream, status: int, body: Mapping[str, Any]) -> None:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(head + payload)


def handler(routes: Mapping[tuple[str, str], Route]) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            head = await _read_head(stream)
            if head is None:
                return
            try:
                method, target, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
            except ValueError:
                await _respond(stream, 400, {"error": "bad request line"})
                return
            url = urlsplit(target)
            route = routes.get((method, url.path))
            if route is None:
                await _respond(stream, 404, {"error": f"no route {method} {url.path}"})
                return
            try:
                result = await route(dict(parse_qsl(url.query)))
            except Exception as exc:  # report, never crash the server under test
                await _respond(stream, 500, {"error": repr(exc)})
                return
            await _respond(stream, 200, result)

    return handle


async def serve(
    port: int,
    routes: Mapping[tuple[str, str], Route],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started()
    await trio.serve_listeners(handler(routes), listeners)
