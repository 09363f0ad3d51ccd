"""Server-Sent Events (PROTOCOL.md §10): the chat and investigation streams for clients
that cannot hold a WebSocket (corporate proxies, some mobile networks).

An SSE response is a participant like a WebSocket connection: the same endpoints
(``ChatEndpoint``, ``WatchEndpoint``) greet it, replay from its cursor and stream to its
bounded outbox, so resume, digests, presence and backpressure are the WebSocket's. What
differs is the wire: one SSE event per envelope (``id:`` the durable id, ``event:`` the
type, ``data:`` the envelope on one line), a ``: ping`` comment every heartbeat, and the
refusals: before the stream starts, an HTTP status with the JSON error body; after, an
``error`` event and the end of the response. Chat clients post their messages to
``POST /api/v1/chat/{session_id}/messages`` (:class:`ChatPosts`).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress

import attrs
import h11
import orjson
import trio

from ..auth import AuthError, Principal, bearer_token
from ..broker.base import Delivery, StoreUnavailable
from ..config import Settings
from ..metrics import Metrics
from ..protocol.codes import DEFAULT_MESSAGES, CloseCode, ErrorCode
from ..protocol.envelope import encode, encode_batch, ephemeral_id
from ..protocol.events import Event
from ..protocol.ids import PATH_ID
from ..protocol.inbound import Auth, ClientMessage, Ping, ProtocolError, ReplyTo, parse
from ..session.access import Gatekeeper
from ..session.chat import ChatEndpoint
from ..session.hub import Hub
from ..session.outbox import Outbox
from ..session.participant import Participant
from ..session.ratelimit import RateLimiter
from ..session.watch import WatchEndpoint
from .admission import Admission
from .connection import CLOSE_GRACE_SECONDS, Endpoint, auth_refusal_message, batch_groups, error_text
from .frontdoor import JSON, BadRequest, HttpResponse, RequestHead, json_error, read_body, send_response
from .transport import WholeFrameStream

log = logging.getLogger(__name__)

SSE_CHAT = re.compile(rf"/api/v1/sse/chat/(?P<id>{PATH_ID})")
SSE_INVESTIGATION = re.compile(rf"/api/v1/sse/investigations/(?P<id>{PATH_ID})")
CHAT_POST = re.compile(rf"/api/v1/chat/(?P<id>{PATH_ID})/messages")
EVENT_STREAM = "text/event-stream; charset=utf-8"
RETRY_MS = 1000  # how soon an EventSource reconnects after the stream ends
PING = b": ping\n\n"
RETRY = f"retry: {RETRY_MS}\n\n".encode()
END_CHUNK = b"0\r\n\r\n"  # the last chunk of a chunked body (RFC 9112 §7.1)
MAX_LIMITERS = 10_000  # rate limiters kept for chat posts (the least recently used go first)

# Negative, so they never meet a WebSocket connection's id (an outbox skips its origin's typing).
_stream_ids = itertools.count(-1, -1)

# The status an error code is answered with before a stream starts (or to a POST).
STATUS_OF: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.DUPLICATE: 409,
    ErrorCode.RATE_LIMIT: 429,
    ErrorCode.OVERLOADED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.UNSUPPORTED: 400,
}


def refusal(code: ErrorCode, message: str | None = None, retry_after: float | None = None) -> HttpResponse:
    """A refused request: the status of ``code``, the JSON body of §1 (never the request)."""
    return json_error(STATUS_OF.get(code, 500), str(code), message or DEFAULT_MESSAGES[code], retry_after=retry_after)


def sse_event(delivery: Delivery) -> bytes:
    """One envelope as one SSE event; ephemeral messages have no ``id:``, so a browser's
    ``Last-Event-ID`` is always the last durable one."""
    head = f"id: {delivery.id}\nevent: {delivery.type}\n" if delivery.durable else f"event: {delivery.type}\n"
    return (head + "data: " + delivery.text + "\n\n").encode()


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (RFC 9112 §7.1), what h11 would write for it."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


class _Chunks:
    """The subscribers of one stream write the same deliveries: each one's SSE event, framed
    as a chunk, is built once for all of them, not once per connection."""

    def __init__(self, size: int = 2048) -> None:
        self._recent: OrderedDict[int, tuple[Delivery, bytes]] = OrderedDict()
        self._size = size

    def chunk(self, delivery: Delivery) -> bytes:
        hit = self._recent.get(id(delivery))
        if hit is not None and hit[0] is delivery:
            return hit[1]
        chunk = http_chunk(sse_event(delivery))
        self._recent[id(delivery)] = (delivery, chunk)
        if len(self._recent) > self._size:
            self._recent.popitem(last=False)
        return chunk


_shared_chunks = _Chunks()


def sse_batch(items: list[Delivery]) -> bytes:
    """A ``batch`` envelope as one event, its ``id:`` the last durable member's (resume
    from there loses none of the members)."""
    text = encode_batch((item.text for item in items), len(items))
    durable = [item.id for item in items if item.durable]
    head = f"id: {durable[-1]}\n" if durable else ""
    return (head + "event: batch\ndata: " + text + "\n\n").encode()


_STREAM_HEADERS = [
    ("content-type", EVENT_STREAM),
    ("cache-control", "no-store"),
    ("connection", "close"),
    ("x-accel-buffering", "no"),  # nginx: pass events through as they come
]


@attrs.frozen
class _Ending:
    reason: str
    final: bytes | None  # an ``error`` event written just before the end


class SseStream(Participant):
    """One open ``text/event-stream`` response, as the session layer sees a connection.

    Like a WebSocket connection (``connection.py``), deliveries need no task: at the end
    of a committed window the outbox's ``deliver`` hook writes what is pending from the
    publishing task, in one non-blocking write of shared chunks (``WholeFrameStream``, so
    no write ever starts inside an event); the writer task wakes only for a socket that
    would block, offers made outside a window, and the ``: ping`` timer.
    """

    def __init__(self, settings: Settings, metrics: Metrics, principal: Principal, *, batch: bool = False) -> None:
        self.id = next(_stream_ids)
        self.settings = settings
        self.metrics = metrics
        self.principal = principal
        self.batch = batch
        self.outbox = Outbox(
            self.id,
            settings.outbox_messages,
            settings.outbox_bytes,
            hard_messages=2 * settings.outbox_messages + settings.history_messages,
            hard_bytes=4 * settings.outbox_bytes,
            on_full_changed=self._wake_guard,
            deliver=self._deliver,
        )
        self.ending: _Ending | None = None
        self.slow = False  # ended as a slow consumer: nothing more is written
        self._wire: WholeFrameStream | None = None
        self._chunked = True  # HTTP/1.1: each write is a chunk; HTTP/1.0: the body ends with the TCP
        self._scope = trio.CancelScope()
        self._waiting = trio.CancelScope()  # the writer's wait, cancelled by close()
        self._attention = trio.Event()
        self._stalled_since: float | None = None  # the writer waits for the peer to read

    # --- Participant --------------------------------------------------------------------

    def send(self, event: Event) -> None:
        eid = ephemeral_id()
        self.outbox.offer(Delivery(event.type, encode(event.type, event.data(), eid), eid, False))

    def error(
        self,
        code: ErrorCode,
        message: str | None = None,
        reply_to: ReplyTo = None,
        retry_after: float | None = None,
    ) -> None:
        self.outbox.offer(Delivery("error", error_text(code, message, reply_to, retry_after), "", False))

    def close(
        self,
        code: CloseCode,
        reason: str,
        error: ErrorCode | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """End the stream after what is being written (and the final ``error`` event, if any)."""
        if self.ending is None:
            final = None
            if error is not None:
                final = sse_event(Delivery("error", error_text(error, message, retry_after=retry_after), "", False))
            self.ending = _Ending(reason, final)
            log.info("closing event stream: %s", reason, extra={"conn": self.id, "sub": self.principal.sub})
        self._waiting.cancel()
        self.outbox.wake()

    # --- the response -------------------------------------------------------------------

    async def run(self, endpoint: Endpoint, stream: trio.abc.Stream, chunked: bool) -> None:
        """Greet, replay and stream until the client leaves or something ends it; never raises."""
        self._chunked = chunked
        self._wire = WholeFrameStream(stream, stream.socket if isinstance(stream, trio.SocketStream) else None)
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_peer, stream)
                    nursery.start_soon(self._guard)
                    nursery.start_soon(self._write_then_stop, nursery.cancel_scope)
                    try:  # the writer runs meanwhile: a long replay waits for the client, not for memory
                        await endpoint.open(self)
                    except StoreUnavailable as unavailable:
                        self.close(CloseCode.TRY_AGAIN_LATER, "store unavailable", ErrorCode.UNAVAILABLE,
                                   retry_after=unavailable.retry_after)
        except Exception:
            log.exception("event stream failed", extra={"conn": self.id})
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await endpoint.close(self)
                except Exception:
                    log.exception("endpoint cleanup failed", extra={"conn": self.id})

    async def _write_then_stop(self, scope: trio.CancelScope) -> None:
        await self._write()
        scope.cancel()

    def _frame(self, data: bytes) -> bytes:
        return http_chunk(data) if self._chunked else data

    def _chunks(self) -> list[bytes]:
        """Everything pending, each its own event (``batch=1``: in ``batch`` events)."""
        items = self.outbox.take_all()
        if not items:
            return []
        message_out = self.metrics.message_out
        for item in items:
            message_out(item.type)
        if self.batch and len(items) > 1:
            groups = batch_groups(items)
            return [self._frame(sse_batch(group) if len(group) > 1 else sse_event(group[0])) for group in groups]
        if self._chunked:
            return [_shared_chunks.chunk(item) for item in items]
        return [sse_event(item) for item in items]

    def _deliver(self) -> None:
        """The outbox's flush, in the publishing task: write now if the socket is free."""
        wire = self._wire
        if self.ending is not None or wire is None or not wire.free:
            self.outbox.wake()
            return
        try:
            if not wire.send_frames_nowait(self._chunks()):
                self.outbox.wake()  # the kernel is full: the writer finishes once it is writable
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._scope.cancel()

    async def _write(self) -> None:
        """The task for what the publishing task could not write, the pings and the end."""
        wire = self._wire
        assert wire is not None
        outbox = self.outbox
        heartbeat = self.settings.heartbeat_interval
        next_ping = trio.current_time() + heartbeat
        try:
            while self.ending is None:
                with trio.move_on_at(next_ping) as self._waiting:  # close() cancels it too
                    await outbox.wait_ready()
                now = trio.current_time()
                if now >= next_ping:
                    next_ping = now + heartbeat
                    await self._send((self._frame(PING),))
                if wire.writing:
                    await self._send(())  # first what the kernel did not take earlier
                if self.ending is not None:
                    break
                chunks = self._chunks()
                if chunks:
                    await self._send(chunks)
            with trio.move_on_after(CLOSE_GRACE_SECONDS):
                final = [self._frame(self.ending.final)] if self.ending.final is not None else []
                await wire.send_frames([*final, *([END_CHUNK] if self._chunked else [])])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client left

    async def _send(self, chunks: Sequence[bytes]) -> None:
        """A write the guard watches: a peer that stops reading stalls it (§5's slow consumer)."""
        wire = self._wire
        assert wire is not None
        if chunks and wire.free:
            if wire.send_frames_nowait(chunks):
                return  # the kernel took it all: nothing to watch
            chunks = ()  # the rest is queued in the wire, whole
        self._stalled_since = trio.current_time()
        self._wake_guard()
        try:
            await wire.send_frames(chunks)
        finally:
            self._stalled_since = None

    async def _watch_peer(self, stream: trio.abc.Stream) -> None:
        """A client that closes its side has left; whatever else it sends is ignored."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await stream.receive_some(4096):
                pass
        self._scope.cancel()

    async def _guard(self) -> None:
        """The slow consumer (§5: the outbox full, or a write stalled, for
        ``slow_consumer_timeout``, or the outbox past its ceiling: the stream is cut, its
        durable messages stay for a resume) and the token's
        expiry (``TOKEN_EXPIRED``: an SSE client cannot renew, it reconnects with a new one)."""
        settings = self.settings
        expires = self.principal.expires_at
        token_deadline = (
            float("inf") if expires is None
            else trio.current_time() + max(0.0, expires + settings.jwt_leeway - time.time())
        )
        while True:
            now = trio.current_time()
            starts = [t for t in (self.outbox.full_since, self._stalled_since) if t is not None]
            full_deadline = min(starts) + settings.slow_consumer_timeout if starts else float("inf")
            if self.outbox.overflowed or now >= full_deadline:
                self.metrics.slow_consumers.inc()
                log.info("closing event stream: slow consumer", extra={"conn": self.id, "sub": self.principal.sub})
                self.slow = True
                self._scope.cancel()  # the writer may be stuck mid-event: cut, write nothing more
                return
            if now >= token_deadline:
                self.close(CloseCode.POLICY, "token expired", ErrorCode.TOKEN_EXPIRED)
                return
            with trio.move_on_at(min(full_deadline, token_deadline)):
                await self._attention.wait()
            self._attention = trio.Event()

    def _wake_guard(self) -> None:
        self._attention.set()


@attrs.define(eq=False)
class SseService:
    """Admits and runs the event streams of one server; counted with its WebSockets."""

    settings: Settings
    gate: Gatekeeper
    admission: Admission
    metrics: Metrics
    hub: Callable[[], Hub]
    open_connections: Callable[[], int]  # WebSockets and event streams, for the server-wide cap
    draining: Callable[[], bool]
    streams: set[SseStream] = attrs.field(factory=set)
    _idle: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._idle.set()

    @staticmethod
    def matches(head: RequestHead) -> bool:
        return SSE_CHAT.fullmatch(head.path) is not None or SSE_INVESTIGATION.fullmatch(head.path) is not None

    def close_all(self) -> None:
        """The drain: every stream ends cleanly (an ``EventSource`` reconnects elsewhere)."""
        for open_stream in list(self.streams):
            open_stream.close(CloseCode.GOING_AWAY, "server shutting down")

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def serve(self, stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead) -> None:
        """Refuse with an HTTP status, or answer 200 and stream until the end.

        A draining server answers 200 and ends at once, as a WebSocket is closed 1001: an
        ``EventSource`` gives up for good on any other status, but reconnects after an end
        (``retry:``), to another node or to this one restarted."""
        if self.draining():
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                await stream.send_all(parser.send(h11.Response(status_code=200, headers=_STREAM_HEADERS)))
                if not head.head_only:
                    await stream.send_all(parser.send(h11.Data(data=RETRY)) or b"")
                await stream.send_all(parser.send(h11.EndOfMessage()) or b"")
            return
        admitted = await self._admit(head)
        if isinstance(admitted, HttpResponse):
            await _respond(stream, parser, admitted, head_only=head.head_only)
            return
        sse, endpoint = admitted
        try:
            if head.head_only:
                await endpoint.close(sse)
                await _respond(stream, parser, HttpResponse(200, b"", EVENT_STREAM), head_only=True)
                return
            await self._stream(stream, parser, sse, endpoint)
        finally:
            self.admission.release(sse.principal.key)

    async def _admit(self, head: RequestHead) -> tuple[SseStream, Endpoint] | HttpResponse:
        settings = self.settings
        if self.open_connections() >= settings.max_connections:
            return json_error(503, str(ErrorCode.OVERLOADED), DEFAULT_MESSAGES[ErrorCode.OVERLOADED],
                              retry_after=settings.overload_retry_after)
        if not self.gate.origin_allowed(head.header(b"origin")):
            return refusal(ErrorCode.FORBIDDEN, "Origem não permitida.")
        principal = identify(self.gate, head, self.metrics)
        if isinstance(principal, HttpResponse):
            return principal
        last_id = (head.header(b"last-event-id") or b"").decode("ascii", "replace").strip() or None
        last_id = last_id or head.query.get("last_id") or None
        hub = self.hub()
        endpoint: Endpoint
        if (chat := SSE_CHAT.fullmatch(head.path)) is not None:
            endpoint = ChatEndpoint(hub, chat["id"], last_id)
            refused = ErrorCode.FORBIDDEN
        else:
            watched = SSE_INVESTIGATION.fullmatch(head.path)
            assert watched is not None
            endpoint = WatchEndpoint(hub, watched["id"], last_id)
            refused = ErrorCode.NOT_FOUND
        sse = SseStream(settings, self.metrics, principal, batch=head.query.get("batch") == "1")
        try:
            await endpoint.prepare()
        except StoreUnavailable as unavailable:
            await endpoint.close(sse)
            return refusal(ErrorCode.UNAVAILABLE, retry_after=unavailable.retry_after)
        if not endpoint.permits(principal):
            await endpoint.close(sse)
            return refusal(refused, "Investigação não encontrada." if refused is ErrorCode.NOT_FOUND else None)
        if not self.admission.take(principal.key):
            await endpoint.close(sse)
            return refusal(ErrorCode.OVERLOADED, "Conexões demais abertas para este usuário.",
                           retry_after=settings.overload_retry_after)
        return sse, endpoint

    async def _stream(
        self, stream: trio.abc.Stream, parser: h11.Connection, sse: SseStream, endpoint: Endpoint
    ) -> None:
        try:
            await stream.send_all(parser.send(h11.Response(status_code=200, headers=_STREAM_HEADERS, reason=b"OK")))
            await stream.send_all(parser.send(h11.Data(data=RETRY)) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await endpoint.close(sse)
            return
        kind = "sse_chat" if isinstance(endpoint, ChatEndpoint) else "sse_investigation"
        self.metrics.connects.labels(kind).inc()
        self.metrics.connections_open.labels(kind).inc()
        if not self.streams:
            self._idle = trio.Event()
        self.streams.add(sse)
        if self.draining():  # the drain began while this one was admitted: it ends like the others
            sse.close(CloseCode.GOING_AWAY, "server shutting down")
        try:
            await sse.run(endpoint, stream, chunked=parser.their_http_version == b"1.1")
        finally:
            self.streams.discard(sse)
            if not self.streams:
                self._idle.set()
            self.metrics.connections_open.labels(kind).dec()


def identify(gate: Gatekeeper, head: RequestHead, metrics: Metrics | None = None) -> Principal | HttpResponse:
    """The request's principal from ``?token=`` or ``Authorization: Bearer`` (§6), or 401."""
    token = head.query.get("token") or bearer_token(head.headers)
    if token is None and gate.required:
        if metrics is not None:
            metrics.auth_failures.labels("missing").inc()
        return refusal(ErrorCode.UNAUTHORIZED)
    try:
        return gate.identify(token)
    except AuthError as refused:
        if metrics is not None:
            metrics.auth_failures.labels(refused.reason).inc()
        return refusal(ErrorCode.UNAUTHORIZED, auth_refusal_message(refused))


async def _respond(
    stream: trio.abc.Stream, parser: h11.Connection, response: HttpResponse, *, head_only: bool = False
) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        await send_response(stream, parser, response, head_only=head_only)


# --- the chat client's messages --------------------------------------------------------


class _Poster(Participant):
    """One posted message as the chat endpoint sees its sender: refusals are kept for the
    HTTP answer instead of being queued to a connection."""

    def __init__(self, principal: Principal) -> None:
        self.id = next(_stream_ids)
        self.principal = principal
        self.outbox = Outbox(self.id, 1, 1)
        self.refused: HttpResponse | None = None

    def send(self, event: Event) -> None:
        return None

    def error(
        self,
        code: ErrorCode,
        message: str | None = None,
        reply_to: ReplyTo = None,
        retry_after: float | None = None,
    ) -> None:
        if self.refused is None:
            self.refused = refusal(code, message, retry_after)

    def close(
        self,
        code: CloseCode,
        reason: str,
        error: ErrorCode | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        self.error(error or ErrorCode.FORBIDDEN, message, retry_after=retry_after)


@attrs.define(eq=False)
class ChatPosts:
    """``POST /api/v1/chat/{session_id}/messages``: an SSE chat client's §3 message, run
    exactly as the WebSocket's (same rate limit, per session and user; same ``DUPLICATE``)."""

    settings: Settings
    gate: Gatekeeper
    metrics: Metrics
    hub: Callable[[], Hub]
    _limiters: OrderedDict[tuple[str, str], RateLimiter] = attrs.field(factory=OrderedDict)

    @staticmethod
    def matches(head: RequestHead) -> bool:
        return CHAT_POST.fullmatch(head.path) is not None

    async def handle(self, stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead) -> HttpResponse:
        match = CHAT_POST.fullmatch(head.path)
        assert match is not None
        session_id = match["id"]
        if not self.gate.origin_allowed(head.header(b"origin")):  # a text/plain POST needs no preflight
            return refusal(ErrorCode.FORBIDDEN, "Origem não permitida.")
        principal = identify(self.gate, head, self.metrics)
        if isinstance(principal, HttpResponse):
            return principal
        try:
            settings = self.settings
            body = await read_body(stream, parser, head, settings.max_message_bytes, settings.handshake_timeout)
        except BadRequest as bad:
            return bad.response
        decision = self._limiter(session_id, principal).check(trio.current_time())
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            return refusal(ErrorCode.RATE_LIMIT, retry_after=round(decision.retry_after, 3))
        try:
            message = parse(body)
        except ProtocolError as refused:
            self.metrics.message_in("other")
            return refusal(refused.code, refused.message)
        self.metrics.message_in(message.type)
        if message.id is None:  # the replies carry a reply_to the client is told
            message = attrs.evolve(message, id=uuid.uuid4().hex)
        if isinstance(message.command, Auth):
            return refusal(ErrorCode.UNSUPPORTED, "Envie o token no cabeçalho Authorization ou em ?token=.")
        if not isinstance(message.command, Ping):
            answer = await self._run(session_id, principal, message)
            if answer is not None:
                return answer
        return HttpResponse(202, orjson.dumps({"reply_to": message.id}), JSON)

    async def _run(self, session_id: str, principal: Principal, message: ClientMessage) -> HttpResponse | None:
        poster = _Poster(principal)
        endpoint = ChatEndpoint(self.hub(), session_id)
        try:
            await endpoint.prepare()
            if not endpoint.permits(principal):
                return refusal(ErrorCode.FORBIDDEN)
            await self.hub().claim(endpoint.session, principal)
            await endpoint.handle(poster, message)
        except StoreUnavailable as unavailable:
            return refusal(ErrorCode.UNAVAILABLE, retry_after=unavailable.retry_after)
        finally:
            with trio.CancelScope(shield=True):
                await endpoint.close(poster)
        return poster.refused

    def _limiter(self, session_id: str, principal: Principal) -> RateLimiter:
        key = (session_id, principal.sub or "")
        limiter = self._limiters.get(key)
        if limiter is None:
            s = self.settings
            limiter = RateLimiter.per_window(
                s.rate_messages, s.rate_window, s.rate_burst, s.abuse_refusals, s.rate_window
            )
            self._limiters[key] = limiter
            if len(self._limiters) > MAX_LIMITERS:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(key)
        return limiter
