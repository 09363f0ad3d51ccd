"""The front door: read one HTTP request head with h11, then answer it or hand it to WebSocket.

Every TCP connection starts here; the WebSocket transport (``transport.py``) takes over
only once this head is read. Only WebSocket paths are upgraded; ids, auth and overload
are refused *after* the upgrade (a browser sees nothing of a refused handshake but 1006).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import h11
import orjson
import trio

MAX_HEAD_BYTES = 16 * 1024
RECEIVE_CHUNK = 4096

CHAT_PATH = re.compile(r"/api/v1/ws/chat/(?P<id>[^/]*)")
INVESTIGATION_PATH = re.compile(r"/api/v1/ws/investigations/(?P<id>[^/]*)")


TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

# Every error a route answers: (code, Portuguese message). Bodies never echo the request
# (PROTOCOL.md §1): h11's own messages quote the offending line, token included.
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Requisição HTTP malformada."),
    401: ("UNAUTHORIZED", "Autenticação necessária."),
    404: ("NOT_FOUND", "Recurso não encontrado."),
    403: ("FORBIDDEN", "Acesso negado."),
    405: ("METHOD_NOT_ALLOWED", "Método não permitido: use GET ou HEAD."),
    408: ("REQUEST_TIMEOUT", "O corpo da requisição não chegou a tempo."),
    409: ("CONFLICT", "A requisição conflita com o estado atual."),
    411: ("LENGTH_REQUIRED", "Envie o corpo com Content-Length ou em partes (chunked)."),
    413: ("PAYLOAD_TOO_LARGE", "Corpo da requisição grande demais."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "O corpo deve ser JSON (application/json)."),
    422: ("UNPROCESSABLE", "A requisição não pôde ser processada."),
    429: ("RATE_LIMIT", "Requisições demais; tente novamente em instantes."),
    426: ("UPGRADE_REQUIRED", "Este caminho fala WebSocket: envie um pedido de Upgrade (versão 13)."),
    431: ("HEADERS_TOO_LARGE", "Cabeçalho da requisição grande demais."),
    503: ("UNAVAILABLE", "Serviço indisponível no momento; tente novamente."),
}


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


def error_response(status: int, message: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    """The JSON error body of §1, ``{"error": CODE, "message": ...}``; nothing from the request."""
    code, default = HTTP_ERRORS[status]
    return HttpResponse(status, orjson.dumps({"error": code, "message": message or default}), JSON, headers)


def json_error(
    status: int, code: str, message: str, *, retry_after: float | None = None, **members: object
) -> HttpResponse:
    """An error body with a protocol code (§7) of its own, e.g. 429 ``OVERLOADED``; with
    ``retry_after`` also a ``Retry-After`` header (whole seconds, rounded up)."""
    body: dict[str, object] = {"error": code, "message": message, **members}
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        body["retry_after"] = retry_after
        headers = (("retry-after", str(max(1, math.ceil(retry_after)))),)
    return HttpResponse(status, orjson.dumps(body), JSON, headers)


class BadRequest(Exception):
    """A request head h11 refused; ``status`` says why, nothing quotes the request."""

    def __init__(self, status: int) -> None:
        super().__init__(HTTP_ERRORS[status][1])
        self.status = status

    @property
    def response(self) -> HttpResponse:
        return error_response(self.status)


@attrs.frozen
class RequestHead:
    method: str
    path: str
    query: Mapping[str, str]
    headers: tuple[tuple[bytes, bytes], ...]
    trailing: bytes = b""  # bytes read past the head: a client's first WebSocket frames

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def wants_websocket(self) -> bool:
        upgrade = (self.header(b"upgrade") or b"").lower()
        connection = (self.header(b"connection") or b"").lower()
        return self.method == "GET" and upgrade == b"websocket" and b"upgrade" in connection

    @property
    def head_only(self) -> bool:
        """A HEAD request: answered like GET, without the body."""
        return self.method == "HEAD"

    def method_refusal(self, allowed: tuple[str, ...] = ("GET", "HEAD")) -> HttpResponse | None:
        """405 for a method the route does not serve (GET and HEAD, unless it says)."""
        if self.method in allowed:
            return None
        message = f"Método não permitido: use {' ou '.join(allowed)}."
        return error_response(405, message, headers=(("allow", ", ".join(allowed)),))

    def upgrade_refusal(self) -> HttpResponse | None:
        """On a WebSocket path, why this request cannot be upgraded (RFC 6455 §4.2.1), if so."""
        if not self.wants_websocket:
            return error_response(426, headers=(("upgrade", "websocket"),))
        if self.header(b"sec-websocket-version") != b"13":
            return error_response(426, headers=(("sec-websocket-version", "13"),))
        if not _valid_websocket_key(self.header(b"sec-websocket-key")):
            return error_response(400)
        return None


def _valid_websocket_key(value: bytes | None) -> bool:
    """RFC 6455 §4.1: the key is the base64 of 16 random bytes (24 characters)."""
    key = (value or b"").strip()
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def new_parser() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


async def read_head(stream: trio.abc.ReceiveStream, parser: h11.Connection) -> RequestHead:
    """Read until h11 has a full request head; raise :class:`BadRequest` on garbage."""
    raw = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            raise BadRequest(431 if len(raw) > MAX_HEAD_BYTES else 400) from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise BadRequest(400)  # closed before the request head
            raw += data
            parser.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            if len(raw) > MAX_HEAD_BYTES:  # h11 bounds only heads that arrive incomplete
                raise BadRequest(431)
            target = urlsplit(event.target.decode("ascii", "replace"))
            query = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
            return RequestHead(
                event.method.decode("ascii", "replace"),
                unquote(target.path),
                query,
                tuple((bytes(k), bytes(v)) for k, v in event.headers),
                parser.trailing_data[0],
            )
        raise BadRequest(400)  # not an HTTP request


async def read_body(
    stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead, limit: int, timeout: float
) -> bytes:
    """The request's body, after its head: at most ``limit`` bytes (else 413), whole
    within ``timeout`` seconds (else 408). Answers ``Expect: 100-continue`` (curl sends
    it for bodies over 1 KiB and waits a second for it otherwise)."""
    declared = head.header(b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BadRequest(413)  # refused before a byte of it is read
    if parser.they_are_waiting_for_100_continue:
        await stream.send_all(parser.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    body = bytearray()
    with trio.move_on_after(timeout):
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                raise BadRequest(400) from None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_CHUNK * 16)
                if not data:
                    raise BadRequest(400)  # closed before the body ended
                parser.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise BadRequest(413)
                continue
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            raise BadRequest(400)
    raise BadRequest(408)


async def send_response(
    stream: trio.abc.SendStream, parser: h11.Connection, response: HttpResponse, *, head_only: bool = False
) -> None:
    """Send a complete response and mark the connection as closing (one request per TCP).

    ``head_only`` (a HEAD request): the same status and headers, ``content-length``
    included, and no body.
    """
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("connection", "close"),
        ("cache-control", "no-store"),
        *response.headers,
    ]
    reason = HTTPStatus(response.status).phrase.encode()
    data = parser.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    if not head_only:
        data += parser.send(h11.Data(data=response.body)) or b""
    data += parser.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
