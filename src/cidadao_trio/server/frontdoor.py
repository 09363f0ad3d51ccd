"""The front door: read one HTTP request head with h11, then answer it or hand it to WebSocket.

trio-websocket answers a plain GET with a bare 400 and knows nothing of routes, so every
TCP connection starts here. Only WebSocket paths are upgraded; ids, auth and overload are
refused *after* the upgrade (a browser sees nothing of a refused handshake but 1006).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import h11
import trio

MAX_HEAD_BYTES = 16 * 1024
RECEIVE_CHUNK = 4096

CHAT_PATH = re.compile(r"/api/v1/ws/chat/(?P<id>[^/]*)")
INVESTIGATION_PATH = re.compile(r"/api/v1/ws/investigations/(?P<id>[^/]*)")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class RequestHead:
    method: str
    path: str
    query: Mapping[str, str]
    headers: tuple[tuple[bytes, bytes], ...]
    raw: bytes  # every byte read so far, replayed to the WebSocket library

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def wants_websocket(self) -> bool:
        upgrade = (self.header(b"upgrade") or b"").lower()
        connection = (self.header(b"connection") or b"").lower()
        return upgrade == b"websocket" and b"upgrade" in connection


def new_parser() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


async def read_head(stream: trio.abc.ReceiveStream, parser: h11.Connection) -> RequestHead:
    """Read until h11 has a full request head; raise :class:`BadRequest` on garbage."""
    raw = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if len(raw) > MAX_HEAD_BYTES else 400
            raise BadRequest(status, str(exc)) from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise BadRequest(400, "connection closed before the request head")
            raw += data
            parser.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            if len(raw) > MAX_HEAD_BYTES:  # h11 bounds only heads that arrive incomplete
                raise BadRequest(431, "request head too large")
            target = urlsplit(event.target.decode("ascii", "replace"))
            query = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
            return RequestHead(
                event.method.decode("ascii", "replace"),
                unquote(target.path),
                query,
                tuple((bytes(k), bytes(v)) for k, v in event.headers),
                bytes(raw),
            )
        raise BadRequest(400, "expected an HTTP request")


async def send_response(
    stream: trio.abc.SendStream,
    parser: h11.Connection,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """Send a complete response and mark the connection as closing (one request per TCP)."""
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("connection", "close"),
        ("cache-control", "no-store"),
        *extra_headers,
    ]
    reason = HTTPStatus(status).phrase.encode()
    data = parser.send(h11.Response(status_code=status, headers=headers, reason=reason))
    data += parser.send(h11.Data(data=body)) or b""
    data += parser.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
