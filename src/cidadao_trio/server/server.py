"""The server: accepts TCP, routes each request, runs WebSocket connections, drains on exit."""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import h11
import trio

from ..app import App, open_app, open_broker, open_records
from ..auth import bearer_token
from ..broker.base import Broker
from ..config import Settings
from ..investigations.engine import InvestigationEngine
from ..investigations.model import Contract
from ..metrics import Metrics
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.ids import is_valid_path_id
from ..records.base import Records
from ..session.access import Gatekeeper
from ..session.chat import ChatEndpoint
from ..session.hub import Hub
from ..session.watch import WatchEndpoint
from .admission import Admission
from .backend_api import ApiKeys, BackendApi
from .connection import Connection, Endpoint
from .frontdoor import (
    CHAT_PATH,
    INVESTIGATION_PATH,
    BadRequest,
    RequestHead,
    new_parser,
    read_head,
    send_response,
)
from .heartbeat import Heartbeat
from .http_api import HttpApi, HttpResponse
from .sse import ChatPosts, SseService
from .transport import WebSocket, accept_websocket

log = logging.getLogger(__name__)

Handoff = Callable[[], Awaitable[None]]  # a request served past the handshake deadline (SSE, POST)


FRAMES_PER_ACTIVITY = 100  # frames sent that count as one sign of work (one accept counts as one)


class Server:
    """Sockets in front of the application (``app.py``): accept, admit, serve, drain."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker | None = None,
        dataset: Sequence[Contract] | None = None,
        records: Records | None = None,
    ) -> None:
        self.settings = settings
        self._dataset = dataset
        self.connections: set[Connection] = set()
        self._app: App | None = None
        self.metrics = Metrics(outbox_bytes=self._outbox_bytes, investigations=self._investigations_by_status)
        self.broker = broker or open_broker(settings, self.metrics)
        self.records = records or open_records(self.broker)
        self.gate = Gatekeeper.from_settings(settings)
        self.admission = Admission(settings.max_connections_per_principal, settings.max_pending_auth_per_address)
        self.heartbeat = Heartbeat(settings.heartbeat_interval, settings.heartbeat_timeout)  # pings every connection
        self.draining = False
        self.accepted = 0  # streams handed to handle_stream: the garbage collector's sign of work
        self._http: HttpApi | None = None
        self._backend: BackendApi | None = None
        self.api_keys = ApiKeys.parse(settings.api_keys)
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._idle = trio.Event()
        self._idle.set()
        self.sse = SseService(
            settings, self.gate, self.admission, self.metrics, lambda: self.hub, self._open_connections,
            lambda: self.draining,
        )
        self.chat_posts = ChatPosts(settings, self.gate, self.metrics, lambda: self.hub)

    def activity(self) -> int:
        """Grows with the server's work: each accept, and frames sent by the hundred
        (heartbeats aside). The garbage collector's full collections wait for it to stand
        still, so a fan-out holds them off, and a few clients' pongs or presence counts do not."""
        return self.accepted + self.metrics.frames_sent // FRAMES_PER_ACTIVITY

    def _open_connections(self) -> int:
        return len(self.connections) + len(self.sse.streams)

    def _outbox_bytes(self) -> float:
        return sum(c.outbox.pending_bytes for c in (*self.connections, *self.sse.streams))

    def _investigations_by_status(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self._app.engine.records.values())) if self._app else {}

    @property
    def app(self) -> App:
        assert self._app is not None, "use `async with server.running()`"
        return self._app

    @property
    def hub(self) -> Hub:
        return self.app.hub

    @property
    def http(self) -> HttpApi:
        assert self._http is not None, "use `async with server.running()`"
        return self._http

    @property
    def engine(self) -> InvestigationEngine:
        return self.app.engine

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Open the application, then own the connections; drain them on the way out."""
        async with open_app(
            self.settings, metrics=self.metrics, broker=self.broker, records=self.records, dataset=self._dataset
        ) as app:
            self._app = app
            self._http = HttpApi(
                self.gate, app.engine, self._not_ready, self.metrics, self.api_keys, watching=app.hub.presence.watching
            )
            self._backend = BackendApi(
                self.api_keys, app.engine, app.broker, app.records, self.settings.handshake_timeout
            )
            async with trio.open_nursery() as connections:
                self._nursery = connections
                connections.start_soon(self.heartbeat.run)
                try:
                    yield self
                finally:
                    with trio.CancelScope(shield=True):
                        await self.drain()
                    connections.cancel_scope.cancel()

    async def serve_tcp(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept on ``host:port`` until :meth:`drain` stops accepting."""
        assert self._nursery is not None
        listeners: list[Any] = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host or None)
        if self.settings.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
            context.set_alpn_protocols(["http/1.1"])
            listeners = [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]
        with self._accepting:
            await trio.serve_listeners(
                self.handle_stream, listeners, handler_nursery=self._nursery, task_status=task_status
            )

    def spawn(self, stream: trio.abc.Stream) -> None:
        """Serve an already-connected stream (tests hand in in-memory streams here)."""
        assert self._nursery is not None, "use `async with server.running()`"
        self._nursery.start_soon(self.handle_stream, stream)

    async def drain(self) -> None:
        """Stop accepting, close every connection with 1001, then, within ``drain_timeout``,
        let the turns in progress finish (they stream into their session's stream, which a
        client resumes on another node or after the restart) before the services stop, and
        hand the running investigations over (another node adopts them at once; one node's
        next start resumes them)."""
        self.draining = True
        self._accepting.cancel()
        for connection in list(self.connections):
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        self.sse.close_all()
        deadline = trio.current_time() + self.settings.drain_timeout
        if self._app is not None:
            await self._app.turns.finish(deadline)
            await self._app.engine.hand_over(deadline)
        with trio.move_on_at(deadline):
            await self._idle.wait()
            await self.sse.wait_idle()

    # --- one TCP connection --------------------------------------------------------------

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted stream; a bug here is logged, never raised to the server."""
        self.accepted += 1
        try:
            await self._handle(stream)
        except* Exception:
            log.exception("unhandled error on a connection")
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        ws = None
        handoff: Handoff | None = None
        head: RequestHead | None = None
        with trio.move_on_after(self.settings.handshake_timeout):
            routed = await self._route(stream)
            if routed is None:
                return
            if isinstance(routed, RequestHead):
                head = routed
                settings = self.settings
                ws = await accept_websocket(
                    stream,
                    head,
                    settings.max_message_bytes,
                    settings.deflate_min_size if settings.deflate else None,
                )
            else:
                handoff = routed
        if handoff is not None:
            await handoff()  # its own deadlines: a stream has none, a POST's body has one
            return
        if ws is None:
            log.info("handshake timeout")
            return
        assert head is not None  # ws exists only once the head was read
        serving = self._run_websocket(ws, head, _peer_address(stream))
        del head, routed  # an open connection keeps no request head (it drops it once read)
        await serving

    async def _route(self, stream: trio.abc.Stream) -> RequestHead | Handoff | None:
        """Answer plain HTTP here; return the head of a WebSocket upgrade to accept, or
        what serves an event stream (§10) or a POST (§8, §10) past the handshake deadline.

        Error bodies are JSON and never echo the request (§1); HEAD gets GET's answer
        without the body.
        """
        parser = new_parser()
        try:
            head = await read_head(stream, parser)
        except BadRequest as bad:
            await _respond_quietly(stream, parser, bad.response)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if self.sse.matches(head) and head.method_refusal() is None:
            return lambda: self.sse.serve(stream, parser, head)
        if head.method == "POST" and BackendApi.matches(head):
            return lambda: self._answer_backend(stream, parser, head)
        if self.chat_posts.matches(head):
            if (refused := head.method_refusal(("POST",))) is not None:
                await _respond_quietly(stream, parser, refused)
                return None
            return lambda: self._answer_post(stream, parser, head)
        answer = head.method_refusal()
        if answer is None:
            websocket_path = CHAT_PATH.fullmatch(head.path) or INVESTIGATION_PATH.fullmatch(head.path)
            answer = head.upgrade_refusal() if websocket_path else await self.http.handle(head)
        if answer is not None:
            await _respond_quietly(stream, parser, answer, head_only=head.head_only)
            return None
        return head

    async def _answer_post(self, stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead) -> None:
        answer = await self.chat_posts.handle(stream, parser, head)
        await _respond_quietly(stream, parser, answer)

    async def _answer_backend(self, stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead) -> None:
        assert self._backend is not None
        answer = await self._backend.handle(stream, parser, head)
        await _respond_quietly(stream, parser, answer)

    async def _run_websocket(self, ws: WebSocket, head: RequestHead, address: str) -> None:
        connection = Connection(
            ws, self.settings, self.gate, self.metrics,
            batch=head.query.get("batch") == "1", admission=self.admission, address=address,
            heartbeat=self.heartbeat,
        )
        endpoint = self._admit(connection, head)
        token = head.query.get("token") or bearer_token(head.headers)
        del head  # all it held for us is read: not kept for the connection's lifetime
        if endpoint is None:
            await connection.finish()
            return
        # Counted from here on, authenticated or not: the cap bounds pre-auth waits too.
        if not self.connections:
            self._idle = trio.Event()
        self.connections.add(connection)
        try:
            if await connection.authenticate(token, endpoint) and self.draining:
                connection.close(CloseCode.GOING_AWAY, "server shutting down")
            await self._serve(connection, endpoint)
        finally:
            connection.release_admission()
            self.connections.discard(connection)
            if not self.connections:
                self._idle.set()

    async def _serve(self, connection: Connection, endpoint: Endpoint) -> None:
        kind = "chat" if isinstance(endpoint, ChatEndpoint) else "investigation"
        if connection.intent is None:
            self.metrics.connects.labels(kind).inc()
        self.metrics.connections_open.labels(kind).inc()
        try:
            await connection.run(endpoint)
        finally:
            self.metrics.connections_open.labels(kind).dec()

    def _admit(self, connection: Connection, head: RequestHead) -> Endpoint | None:
        """The refusals that need no token: draining, capacity, origin, a bad id."""
        settings = self.settings
        if self.draining:
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        elif self._open_connections() >= settings.max_connections:
            connection.close(
                CloseCode.TRY_AGAIN_LATER, "server overloaded", ErrorCode.OVERLOADED,
                retry_after=settings.overload_retry_after,
            )
        elif not self.gate.origin_allowed(head.header(b"origin")):
            connection.close(CloseCode.POLICY, "origin not allowed", ErrorCode.FORBIDDEN)
        else:
            return self._endpoint_for(head, connection)
        return None

    def _endpoint_for(self, head: RequestHead, connection: Connection) -> Endpoint | None:
        last_id = head.query.get("last_id") or None
        chat = CHAT_PATH.fullmatch(head.path)
        match = chat or INVESTIGATION_PATH.fullmatch(head.path)
        assert match is not None
        path_id = match["id"]
        if not is_valid_path_id(path_id):
            connection.close(CloseCode.POLICY, "bad id", ErrorCode.INVALID_MESSAGE)
            return None
        if chat:
            connection.context["session"] = path_id
            return ChatEndpoint(self.hub, path_id, last_id)
        connection.context["investigation"] = path_id
        return WatchEndpoint(self.hub, path_id, last_id)

    def _not_ready(self) -> str | None:
        if self.draining:
            return "draining"
        if not self.broker.healthy:
            return "store unavailable"
        return None


async def _respond_quietly(
    stream: trio.abc.Stream, parser: h11.Connection, response: HttpResponse, *, head_only: bool = False
) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        await send_response(stream, parser, response, head_only=head_only)


def _peer_address(stream: trio.abc.Stream) -> str:
    """The peer's IP, for the pre-auth cap; in-memory test streams share one address."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            peer = stream.socket.getpeername()
        except OSError:
            return "unknown"
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)
    return "local"
