"""A Trio client for the real-time protocol (PROTOCOL.md), used by the CLI, tests and benchmarks.

A connection can drop at any time (restart, network, slow consumer), so the client owns
the whole reconnect story: exponential backoff with full jitter, ``retry_after`` honoured,
no retry after a policy close (1008), resume from the last durable id, replays
de-duplicated, offset gaps recorded, ``batch`` envelopes unpacked, sends queued while
offline, and safe resends (PROTOCOL.md §2): every message carries a UUID, and one written
but not yet acknowledged when its connection dropped is sent again, in order, on the next
(the server runs an id once; ``DUPLICATE`` for a resend is an acknowledgement, not an
error). The bookkeeping that needs no I/O (:class:`CursorTracker`, :class:`Backoff`,
:class:`OfflineQueue`, :class:`Unacknowledged`, URL helpers) is separate so it can be
tested without sockets.

One task at a time should consume :meth:`RealtimeClient.messages` or
:meth:`RealtimeClient.chat`; sending is safe from any task.
"""

from __future__ import annotations

import contextlib
import itertools
import random as _random
import secrets
import ssl
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import attrs
import orjson
import trio
import trio_websocket

from .protocol.envelope import EPHEMERAL_PREFIX, DurableId

__all__ = [
    "Backoff",
    "ClientClosed",
    "ClientError",
    "ClientRefused",
    "CursorTracker",
    "Gap",
    "OfflineQueue",
    "QueueFull",
    "RealtimeClient",
    "Unacknowledged",
    "endpoint_url",
    "fetch_json",
    "http_base",
    "unpack",
    "with_query",
]

Message = dict[str, Any]
UrlSource = str | Callable[[], str]
Dial = Callable[[str], Awaitable[trio.abc.Stream]]

# Messages a reply acknowledges (PROTOCOL.md §2), resent after a reconnect until it does:
# the ones the server keys by id, and ping (harmless to repeat; ``ping()`` then survives).
ACKNOWLEDGED_TYPES = frozenset({"chat", "subscribe", "unsubscribe", "cancel", "ping"})

POLICY_CLOSE = 1008
ABNORMAL_CLOSE = 1006  # never sent on the wire: what a lost connection looks like
RETRYABLE_HTTP = frozenset({408, 429})


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Base class of what the client raises on purpose."""


class ClientRefused(ClientError):
    """The server refused us for a reason a retry cannot fix (close 1008, HTTP 4xx)."""

    def __init__(self, code: int, reason: str = "", error_code: str | None = None, message: str = "") -> None:
        super().__init__(code, reason, error_code)
        self.code = code
        self.reason = reason
        self.error_code = error_code
        self.message = message  # the server's Portuguese explanation, if it sent one

    def __str__(self) -> str:
        why = self.message or self.reason or "sem motivo informado"
        return f"conexão recusada ({self.code}, {self.error_code or '-'}): {why}"


class QueueFull(ClientError):
    """The offline queue is at its bound: the caller must slow down or give up."""


class ClientClosed(ClientError):
    """The client was closed; nothing more can be sent."""


# --------------------------------------------------------------------------- sans-IO parts


@attrs.frozen
class Gap:
    """Durable ids were skipped: ``expected`` was next, ``got`` arrived instead."""

    expected: str
    got: str


@attrs.define
class CursorTracker:
    """Where we are in a stream: the resume cursor, replay de-duplication and gap detection.

    Offsets grow by exactly one per durable message of a stream, so comparing offsets
    within one epoch is enough to drop replayed duplicates (bounded memory, unlike a set of
    ids) and to notice skipped ones. After ``HISTORY_GAP`` the server restarts us from its
    own cursor, possibly in a new epoch, so :meth:`reset` accepts whatever comes next.
    """

    last_id: str | None = None
    gaps: list[Gap] = attrs.field(factory=list)
    duplicates: int = 0
    _cursor: DurableId | None = attrs.field(default=None, init=False)
    _rebase: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._cursor = DurableId.parse(self.last_id) if self.last_id else None

    def observe(self, message: Message) -> bool:
        """Record ``message``; False means it is a replayed duplicate to drop."""
        raw = message.get("id")
        if not isinstance(raw, str) or raw.startswith(EPHEMERAL_PREFIX):
            return True
        got = DurableId.parse(raw)
        if got is None:
            return True  # not an id we understand: pass it on, keep the cursor
        previous = self._cursor
        if previous is not None and not self._rebase:
            if got.epoch == previous.epoch and got.offset <= previous.offset:
                self.duplicates += 1
                return False
            if got.epoch != previous.epoch or got.offset > previous.offset + 1:
                self.gaps.append(Gap(str(DurableId(previous.epoch, previous.offset + 1)), raw))
        self._cursor, self._rebase, self.last_id = got, False, raw
        return True

    def reset(self) -> None:
        """After HISTORY_GAP: accept the next durable id as the new base.

        ``last_id`` is kept until then: reconnecting with the stale cursor earns another
        digest, which is right, while dropping it would silently skip history.
        """
        self._rebase = True


def unpack(envelope: Message) -> list[Message]:
    """The envelopes a frame carries: a ``batch``'s members in order, or the frame itself."""
    if envelope.get("type") != "batch":
        return [envelope]
    members = (envelope.get("data") or {}).get("messages")
    return [m for m in members if isinstance(m, dict)] if isinstance(members, list) else []


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^attempt)).

    Full jitter spreads a crowd of clients that lost the same server across the window,
    so a restart is not met by a synchronized stampede.
    """

    base: float = 0.5
    cap: float = 30.0
    random: _random.Random = attrs.field(factory=_random.Random, eq=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        window = min(self.cap, self.base * 2 ** min(attempt, 64))
        jittered = self.random.uniform(0, window)
        return max(jittered, retry_after or 0.0)


@attrs.define(eq=False)
class Outgoing:
    seq: int
    id: str
    text: str
    acknowledged: bool = False  # its type is answered by a reply naming it (§2)
    writes: int = 0  # how many connections it was written to


class OfflineQueue:
    """Bounded FIFO of unsent messages; an item leaves only once it was written.

    Peek-then-pop means a message whose write failed with the connection is sent again
    on the next one instead of being lost.
    """

    def __init__(self, limit: int = 1000, on_change: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._items: deque[Outgoing] = deque()
        self._changed = trio.Event()
        self._on_change = on_change

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        if len(self._items) >= self.limit:
            raise QueueFull(f"fila de envio cheia ({self.limit} mensagens)")
        self._items.append(item)
        self._wake()

    def requeue(self, item: Outgoing) -> None:
        """Put a sent-but-refused message back in front, keeping send order."""
        index = 0
        while index < len(self._items) and self._items[index].seq < item.seq:
            index += 1
        self._items.insert(index, item)
        self._wake()

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def done(self, item: Outgoing) -> None:
        if self._items and self._items[0] is item:
            self._items.popleft()
            self._wake()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        if self._on_change is not None:
            self._on_change()


class Unacknowledged:
    """Messages written but not yet acknowledged, to resend after a reconnect (§2).

    A message leaves on the first reply naming it (``reply_to``): for ``chat`` the
    ``chat {role:"user"}`` echo, ``subscribed``/``unsubscribed``, ``pong``, or an error —
    ``DUPLICATE`` included, which says the session already accepted it. A ``cancel`` has no
    reply of its own, so it waits for the next reconnect's resend and its ``DUPLICATE``.
    Ids written more than once are remembered (boundedly) so that their ``DUPLICATE``
    is recognised as the answer to a resend, whenever it arrives.
    """

    def __init__(self, remember: int = 1024) -> None:
        self._items: dict[str, Outgoing] = {}
        self._resent: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def __len__(self) -> int:
        return len(self._items)

    def written(self, item: Outgoing) -> None:
        item.writes += 1
        if item.writes > 1:
            self._resent[item.id] = None
            self._resent.move_to_end(item.id)
            while len(self._resent) > self._remember:
                self._resent.popitem(last=False)
        if item.acknowledged:
            self._items[item.id] = item

    def answered(self, reply_to: object) -> Outgoing | None:
        """The message ``reply_to`` names, no longer waiting for an answer."""
        return self._items.pop(reply_to, None) if isinstance(reply_to, str) else None

    def was_resent(self, reply_to: object) -> bool:
        return isinstance(reply_to, str) and reply_to in self._resent

    def take_all(self) -> list[Outgoing]:
        """Everything still unanswered, in send order (the connection is gone)."""
        items = sorted(self._items.values(), key=lambda item: item.seq)
        self._items.clear()
        return items


def with_query(url: str, **params: str | None) -> str:
    """``url`` with query parameters set (None removes one); others are kept."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def endpoint_url(base: str, kind: str, id: str) -> str:
    """The WebSocket URL of ``/api/v1/ws/{kind}/{id}`` on a server given as http(s) or ws(s)."""
    parts = urlsplit(base.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path}/api/v1/ws/{kind}/{quote(id, safe='')}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def http_base(url: str) -> str:
    """``scheme://host:port`` over HTTP for a ws(s) or http(s) URL (links to reports)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def decode(text: str | bytes) -> Message | None:
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _bearer(token: str | None) -> list[tuple[bytes, bytes]] | None:
    return [(b"authorization", f"Bearer {token}".encode())] if token else None


# --------------------------------------------------------------------------- HTTP


async def fetch_json(url: str, *, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """GET ``url`` (http or https) and decode a JSON body; ``(status, None)`` if it is not JSON.

    The server answers one request per TCP connection, so this needs no HTTP library.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or "localhost"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: application/json", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    with trio.fail_after(timeout):
        stream: trio.abc.Stream
        if secure:
            stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl.create_default_context())
        else:
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ClientError(f"resposta HTTP inválida de {parts.netloc}")
    status = int(status_line[1])
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, None


# --------------------------------------------------------------------------- the client


@attrs.define
class _Attempt:
    """What one connection ended with; decides whether and when to reconnect."""

    greeted: bool = False
    code: int = ABNORMAL_CLOSE
    reason: str = ""
    error: Message | None = None  # the last error the server sent on this connection

    @property
    def retry_after(self) -> float | None:
        value = (self.error or {}).get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class RealtimeClient:
    """A resilient connection to one endpoint (a chat session or an investigation).

    ``url`` is the WebSocket URL, or a callable returning it, asked before every attempt
    (a server that restarts on another port). ``token`` goes in an ``Authorization:
    Bearer`` header. ``last_id`` resumes from a cursor persisted by an earlier run.
    ``dial``, if given, opens the byte stream to the server for a URL (a tunnel, a Unix
    socket, an in-memory server) instead of TCP/TLS to the URL's host.
    """

    def __init__(
        self,
        url: UrlSource,
        *,
        token: str | None = None,
        batch: bool = False,
        last_id: str | None = None,
        backoff: Backoff | None = None,
        queue_limit: int = 1000,
        inbox_size: int = 1000,
        open_timeout: float = 10.0,
        wait_connected: float | None = 10.0,
        keepalive: float | None = 60.0,
        on_retry: Callable[[float, str], None] | None = None,
        dial: Dial | None = None,
    ) -> None:
        self.url = url
        self.dial = dial
        self.on_retry = on_retry  # told (delay, why) before each pause between attempts
        self.token = token
        self.batch = batch
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.wait_connected = wait_connected
        self.keepalive = keepalive
        self.tracker = CursorTracker(last_id)
        self.queue = OfflineQueue(queue_limit, self._notify)
        self.unacknowledged = Unacknowledged()
        self.resent = 0  # messages written again after a reconnect
        self.already_accepted = 0  # resends the server answered DUPLICATE (it had them)
        self.resumed = False
        self.connected = False
        self.attempts = 0  # connection attempts, successful or not
        self.connections = 0  # connections the server greeted
        self.history_gaps = 0  # HISTORY_GAP errors received
        self.delays: list[float] = []  # every reconnect delay slept, for observability
        self.server: Message = {}  # the last ``connection`` data (limits, timers)
        self.last_error: Message | None = None
        self.refused: ClientRefused | None = None
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](inbox_size)
        self._held: deque[Message] = deque()  # read by chat() but not part of its turn
        self._ping_waiters: dict[str, trio.Event] = {}
        self._internal_pings: set[str] = set()
        self._sent: dict[str, Outgoing] = {}  # recent sends, to resend after RATE_LIMIT
        self._pause_until = 0.0
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(4)  # ids are unique within the session (§2), not this client
        self._seq = itertools.count(1)
        self._changed = trio.Event()
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._closing = False
        self._finished = False
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None

    # --- state --------------------------------------------------------------------------

    @property
    def last_id(self) -> str | None:
        return self.tracker.last_id

    @property
    def gaps(self) -> list[Gap]:
        return self.tracker.gaps

    def current_url(self) -> str:
        """The URL of the next attempt: the base plus the resume cursor and batch flag."""
        base = self.url() if callable(self.url) else self.url
        return with_query(base, last_id=self.tracker.last_id, batch="1" if self.batch else None)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Sleep until ``predicate`` holds; woken on every state change, never polling."""
        while not predicate():
            await self._changed.wait()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{self._tag}-{next(self._ids)}"

    @staticmethod
    def new_id() -> str:
        """A fresh message id: a UUID, unique within the session whoever sends (§2)."""
        return str(uuid.uuid4())

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._supervise)
        if self.wait_connected is not None:
            try:
                with trio.fail_after(self.wait_connected):
                    await self._wait_until(lambda: self.connected or self._finished)
                if self.refused is not None:
                    raise self.refused
            except BaseException as failed:
                await self.__aexit__(type(failed), failed, failed.__traceback__)
                raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close gracefully, then end the background tasks.

        The caller's exception is not fed to the nursery, so it propagates unchanged
        rather than wrapped in an ExceptionGroup; only a bug in the client's own tasks
        surfaces from the nursery.
        """
        assert self._nursery is not None
        try:
            await self._shutdown(graceful=exc_type is None)
        finally:
            self._nursery.cancel_scope.cancel()
            manager, self._nursery_manager = self._nursery_manager, None
            await manager.__aexit__(None, None, None)

    async def _shutdown(self, *, graceful: bool) -> None:
        if graceful and self.connected:
            with trio.move_on_after(2.0):  # a short grace to send what was queued
                with contextlib.suppress(ClientError):
                    await self.flush()
        self._closing = True
        self._notify()
        if self._ws is not None:
            with trio.move_on_after(1.0):
                await self._ws.aclose()

    async def flush(self) -> None:
        """Wait until everything queued was written (bound it with a cancel scope)."""
        await self._wait_until(lambda: not len(self.queue) or self._finished)
        if len(self.queue):
            self._raise_if_finished()

    async def _supervise(self) -> None:
        """Connect, serve, back off, repeat — until closed or refused."""
        attempt = 0
        try:
            while not self._closing:
                self.attempts += 1
                outcome = await self._connect_once(self.current_url())
                if outcome.greeted:
                    attempt = 0  # reset on the server's greeting, not on a bare socket
                if self._closing:
                    return
                refusal = _refusal(outcome)
                if refusal is not None:
                    self.refused = refusal
                    return
                delay = self.backoff.delay(attempt, outcome.retry_after)
                attempt += 1
                self.delays.append(delay)
                if self.on_retry is not None:
                    self.on_retry(delay, outcome.reason or str(outcome.code))
                await trio.sleep(delay)
        finally:
            self._finished = True
            self.connected = False
            for waiter in self._ping_waiters.values():
                waiter.set()
            self._inbox_send.close()
            self._notify()

    async def _connect_once(self, url: str) -> _Attempt:
        outcome = _Attempt()
        try:
            async with self._open(url) as ws:
                self._ws = ws
                try:
                    async with trio.open_nursery() as nursery:
                        greeted = trio.Event()
                        nursery.start_soon(self._write, ws, greeted)
                        await self._read(ws, outcome, greeted)
                        nursery.cancel_scope.cancel()
                finally:
                    self._ws = None
                    self.connected = False
                    self._resend_unacknowledged()
                    self._notify()
        except trio_websocket.ConnectionRejected as rejected:
            outcome.code, outcome.reason = rejected.status_code, f"HTTP {rejected.status_code}"
        except (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError) as failed:
            outcome.reason = type(failed).__name__
        return outcome

    @contextlib.asynccontextmanager
    async def _open(self, url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """The WebSocket of one attempt: over TCP/TLS, or over the stream ``dial`` opens."""
        if self.dial is None:
            async with trio_websocket.open_websocket_url(
                url,
                extra_headers=_bearer(self.token),
                connect_timeout=self.open_timeout,
                disconnect_timeout=1.0,
            ) as ws:
                yield ws
            return
        parts = urlsplit(url)
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
        async with trio.open_nursery() as nursery:
            with trio.fail_after(self.open_timeout):
                stream = await self.dial(url)
                # trio-websocket types its stream as TCP or TLS; it uses only the Stream API
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, parts.netloc, resource, extra_headers=_bearer(self.token)  # type: ignore[arg-type]
                )
            try:
                yield ws
            finally:
                with trio.move_on_after(1.0):
                    await ws.aclose()
                nursery.cancel_scope.cancel()

    def _resend_unacknowledged(self) -> None:
        """The connection is gone: what it did not acknowledge goes back in the queue, in
        front of anything newer, for the next connection to send first (§2)."""
        for item in self.unacknowledged.take_all():
            self.queue.requeue(item)

    async def _read(self, ws: trio_websocket.WebSocketConnection, outcome: _Attempt, greeted: trio.Event) -> None:
        while True:
            try:
                raw = await ws.get_message()
            except trio_websocket.ConnectionClosed as closed:
                if closed.reason is not None:
                    outcome.code, outcome.reason = closed.reason.code, closed.reason.reason or ""
                return
            envelope = decode(raw)
            if envelope is None:
                continue  # the server only sends JSON objects; ignore anything else
            for message in unpack(envelope):
                await self._dispatch(message, outcome, greeted)

    async def _dispatch(self, message: Message, outcome: _Attempt, greeted: trio.Event) -> None:
        kind = message.get("type")
        raw = message.get("data")
        data: Message = raw if isinstance(raw, dict) else {}
        reply_to = data.get("reply_to")
        if not (kind == "error" and data.get("code") == "RATE_LIMIT"):  # that one is requeued
            self.unacknowledged.answered(reply_to)
        if kind == "connection":
            self.server, self.resumed = data, bool(data.get("resumed"))
            self.connections += 1
            self._internal_pings.clear()  # pongs of an old connection never come
            self.connected = outcome.greeted = True
            greeted.set()
            self._notify()
        elif kind == "error" and data.get("code") == "DUPLICATE" and self.unacknowledged.was_resent(reply_to):
            self.already_accepted += 1
            return  # our resend of a message the server had accepted: an acknowledgement (§7)
        elif kind == "error":
            self._on_error(data, outcome)
        elif kind == "pong" and isinstance(reply_to, str) and reply_to in self._ping_waiters:
            self._ping_waiters[reply_to].set()
            return
        elif kind == "pong" and isinstance(reply_to, str) and reply_to in self._internal_pings:
            self._internal_pings.discard(reply_to)
            return
        if self.tracker.observe(message):
            await self._inbox_send.send(message)

    def _on_error(self, data: Message, outcome: _Attempt) -> None:
        outcome.error = self.last_error = data
        code = data.get("code")
        if code == "HISTORY_GAP":
            self.history_gaps += 1
            self.tracker.reset()
        elif code == "RATE_LIMIT":
            wait = outcome.retry_after or 1.0
            self._pause_until = max(self._pause_until, trio.current_time() + wait)
            dropped = self._sent.pop(str(data.get("reply_to")), None)
            if dropped is not None:  # without reply_to we cannot tell which one it was
                self.unacknowledged.answered(dropped.id)
                self.queue.requeue(dropped)

    async def _write(self, ws: trio_websocket.WebSocketConnection, greeted: trio.Event) -> None:
        """Drain the queue in order once greeted (after auth and replay); ping when idle."""
        await greeted.wait()
        try:
            while True:
                item = self.queue.peek()
                if item is None:
                    await self._idle(ws)
                    continue
                if trio.current_time() < self._pause_until:
                    await trio.sleep_until(self._pause_until)
                    continue
                await ws.send_message(item.text)
                self.queue.done(item)
                self.unacknowledged.written(item)
                if item.writes > 1:
                    self.resent += 1
                self._remember(item)
        except trio_websocket.ConnectionClosed:
            return  # the reader sees the close and reports it

    async def _idle(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Wait for something to send; after ``keepalive`` seconds send a ping, so a quiet
        client is not closed for idleness."""
        with trio.move_on_after(self.keepalive if self.keepalive else float("inf")) as waited:
            await self.queue.wait_changed()
        if waited.cancelled_caught:
            id = self._new_id("ka-")
            self._internal_pings.add(id)
            await ws.send_message(orjson.dumps({"type": "ping", "id": id}).decode())

    def _remember(self, item: Outgoing) -> None:
        self._sent[item.id] = item
        while len(self._sent) > 64:
            del self._sent[next(iter(self._sent))]

    def _raise_if_finished(self) -> None:
        if self.refused is not None:
            raise self.refused
        if self._finished or self._closing:
            raise ClientClosed("cliente encerrado")

    # --- sending ------------------------------------------------------------------------

    async def send(self, type: str, data: Message | None = None, id: str | None = None) -> str:
        """Queue a message (sent at once when connected, after reconnecting otherwise).

        Every message gets an ``id`` (a UUID unless given) so replies and refusals can be
        matched to it; the id is returned. A message of :data:`ACKNOWLEDGED_TYPES` is sent
        again after a reconnect until a reply names it (§2). Raises :class:`QueueFull` at
        the queue bound and ``ValueError`` for a message larger than the server accepts (it
        would be closed with 1009).
        """
        self._raise_if_finished()
        id = id or self.new_id()
        text = orjson.dumps({"type": type, "data": data or {}, "id": id}).decode()
        limit = self.server.get("max_message_bytes")
        if isinstance(limit, int) and len(text.encode()) > limit:
            raise ValueError(f"mensagem de {len(text.encode())} bytes excede o limite de {limit}")
        if len(self.queue) + len(self.unacknowledged) >= self.queue.limit:
            raise QueueFull(f"fila de envio cheia ({self.queue.limit} mensagens sem resposta)")
        self.queue.put(Outgoing(next(self._seq), id, text, type in ACKNOWLEDGED_TYPES))
        await trio.lowlevel.checkpoint()
        return id

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip of an application ping, in seconds (queued if offline)."""
        id = self._new_id("p")
        waiter = self._ping_waiters[id] = trio.Event()
        try:
            started = trio.current_time()
            await self.send("ping", None, id)
            with trio.fail_after(timeout):
                await waiter.wait()
            self._raise_if_finished()
            return trio.current_time() - started
        finally:
            self._ping_waiters.pop(id, None)

    # --- receiving ----------------------------------------------------------------------

    async def _receive(self, deadline: float = float("inf")) -> Message | None:
        """The next message off the wire; None once the client is closed."""
        try:
            with trio.fail_at(deadline):
                return await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.refused is not None:
                raise self.refused from None
            return None

    async def messages(self, idle_timeout: float | None = None) -> AsyncIterator[Message]:
        """Every decoded envelope, in order, replays de-duplicated, batches unpacked.

        Ends when the client closes; raises :class:`ClientRefused` after a refusal and
        ``trio.TooSlowError`` if ``idle_timeout`` passes without a message.
        """
        while True:
            if self._held:
                yield self._held.popleft()
                continue
            deadline = trio.current_time() + idle_timeout if idle_timeout is not None else float("inf")
            message = await self._receive(deadline)
            if message is None:
                return
            yield message

    async def chat(self, text: str, *, timeout: float = 60.0, context: Message | None = None) -> AsyncIterator[Message]:
        """Send ``text`` and yield this turn's messages, through ``chat_complete`` and the
        ``typing`` false after it. Messages of anything else that arrive meanwhile are kept
        for :meth:`messages`, so nothing is lost. ``trio.TooSlowError`` after ``timeout``.
        A connection lost meanwhile is survived: the message is resent if unacknowledged,
        and a ``DUPLICATE`` means the server has it, so the turn is awaited on the stream.
        """
        data: Message = {"message": text, **({"context": context} if context else {})}
        id = await self.send("chat", data)
        deadline = trio.current_time() + timeout
        completed = False
        while True:
            if completed:  # typing is ephemeral: a reconnect may have swallowed it
                deadline = min(deadline, trio.current_time() + 2.0)
            try:
                message = await self._receive(deadline)
            except trio.TooSlowError:
                if completed:
                    return
                raise
            if message is None:
                return
            if not _in_turn(message, id):
                self._held.append(message)
                continue
            yield message
            kind, data = message.get("type"), message.get("data") or {}
            if kind == "chat_complete":
                completed = True
            elif kind == "error" and data.get("code") not in ("RATE_LIMIT", "DUPLICATE"):
                return  # refused (the client resends after RATE_LIMIT itself; DUPLICATE: accepted)
            elif completed and kind == "typing" and data.get("isTyping") is False:
                return


def _in_turn(message: Message, id: str) -> bool:
    data = message.get("data") or {}
    if data.get("reply_to") == id:
        return True
    return message.get("type") == "typing" and "agent" in data  # agent typing has no reply_to


def _refusal(outcome: _Attempt) -> ClientRefused | None:
    """Closes a retry cannot fix: 1008 (auth, forbidden, abuse, bad id) and HTTP 4xx."""
    error = outcome.error or {}
    if outcome.code == POLICY_CLOSE:
        return ClientRefused(outcome.code, outcome.reason, error.get("code"), str(error.get("message", "")))
    if 400 <= outcome.code < 500 and outcome.code not in RETRYABLE_HTTP:
        return ClientRefused(outcome.code, outcome.reason)
    return None
