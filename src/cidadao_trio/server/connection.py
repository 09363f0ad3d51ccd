"""One WebSocket connection: two tasks, its reader and its writer, in its own nursery.

Deliveries need no task: at the end of a committed window the broker flushes each
outbox it offered to (``session.outbox.fan_out``), and a connection whose socket is free
writes everything pending right there, in one non-blocking send from the publishing task
(several frames in one ``writev``; with ``batch=1``, as few ``batch`` frames as the
64-message / 64 KiB limits allow). The writer task wakes only for what that could not do:
a socket that would block (it waits for writability), offers made outside a window, and
the connection's timers (slow consumer, token expiry), which are deadlines of its wait
rather than tasks of their own. Pings come from the server's one heartbeat task
(``server.heartbeat``), which calls :meth:`Connection.beat` and :meth:`Connection.pong_due`.

Cancelling the connection's scope stops both; whatever ended it (idle, heartbeat, slow
consumer, protocol abuse, a bug, server shutdown) records a :class:`CloseIntent` first,
and :meth:`Connection.finish` turns that into an optional final ``error`` and a close
frame, under a short shielded deadline so a dead peer cannot hold us.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import time
from collections import OrderedDict
from typing import Any, Protocol

import attrs
import trio

from ..auth import AuthError, Principal
from ..broker.base import Delivery, StoreUnavailable
from ..config import Settings
from ..metrics import Metrics
from ..protocol.codes import DEFAULT_MESSAGES, CloseCode, ErrorCode
from ..protocol.envelope import encode, encode_batch, ephemeral_id, utc_timestamp
from ..protocol.events import AuthOk, Error, Event, Pong
from ..protocol.frames import text_frame
from ..protocol.inbound import Auth, ClientMessage, Ping, ProtocolError, ReplyTo, parse
from ..session.access import Gatekeeper
from ..session.outbox import Outbox
from ..session.participant import Participant
from ..session.ratelimit import RateLimiter
from .admission import Admission
from .heartbeat import Heartbeat
from .transport import ConnectionClosed, WebSocket

log = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 64
BATCH_MAX_BYTES = 64 * 1024
CLOSE_GRACE_SECONDS = 2.0

_connection_ids = itertools.count(1)


class BatchFrames:
    """Subscribers of one stream usually take the same run of messages in one batch: the
    ``batch`` envelope and its frame are then built once, not once per connection."""

    def __init__(self, size: int = 64) -> None:
        self._recent: OrderedDict[tuple[int, ...], tuple[list[Delivery], str, bytes]] = OrderedDict()
        self._size = size

    def frame(self, items: list[Delivery]) -> tuple[str, bytes]:
        key = tuple(map(id, items))
        hit = self._recent.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], items, strict=True)):  # ids reused?
            return hit[1], hit[2]
        text = encode_batch((item.text for item in items), len(items))
        frame = text_frame(text.encode())
        self._recent[key] = (items, text, frame)
        if len(self._recent) > self._size:
            self._recent.popitem(last=False)
        return text, frame

    def frames(self, items: list[Delivery]) -> list[bytes]:
        """``items`` in as few frames as the limits allow (a lone message keeps its own frame)."""
        return [group[0].frame if len(group) == 1 else self.frame(group)[1] for group in batch_groups(items)]


def batch_groups(items: list[Delivery]) -> list[list[Delivery]]:
    """``items`` in order, in as few runs as a ``batch`` may hold (PROTOCOL.md §5: at most
    64 messages or 64 KiB each; a message bigger than that is a run of its own)."""
    out: list[list[Delivery]] = []
    start, count = 0, len(items)
    while start < count:
        end, size = start + 1, items[start].size
        while end < count and end - start < BATCH_MAX_MESSAGES and size + items[end].size <= BATCH_MAX_BYTES:
            size += items[end].size
            end += 1
        out.append(items[start:end])
        start = end
    return out


_batches = BatchFrames()


class Endpoint(Protocol):
    async def prepare(self) -> None: ...
    def permits(self, principal: Principal) -> bool: ...
    async def upgraded(self, client: Participant) -> bool:
        """The client authenticated late; True if that claimed its (anonymous) session."""
    async def open(self, client: Participant) -> None: ...
    async def handle(self, client: Participant, message: ClientMessage) -> None: ...
    async def close(self, client: Participant) -> None: ...


@attrs.frozen
class CloseIntent:
    code: CloseCode
    reason: str
    final_text: str | None = None  # an ``error`` envelope sent just before the close frame


def _peek_id(text: str) -> ReplyTo:
    """The client's ``id`` of a message we refuse unread, so the client knows which one."""
    try:
        return parse(text).id
    except ProtocolError as refused:
        return refused.reply_to


def _store_unavailable(failure: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable behind ``failure`` (also a nursery's group holding only that)."""
    while isinstance(failure, BaseExceptionGroup) and len(failure.exceptions) == 1:
        failure = failure.exceptions[0]
    return failure if isinstance(failure, StoreUnavailable) else None


def auth_refusal_message(refused: AuthError) -> str:
    """What a refused token is told (WebSocket, SSE and HTTP alike); never the token."""
    return f"Autenticação recusada: {refused}."


def error_text(
    code: ErrorCode,
    message: str | None = None,
    reply_to: ReplyTo = None,
    retry_after: float | None = None,
) -> str:
    error = Error(code=str(code), message=message or DEFAULT_MESSAGES[code], reply_to=reply_to, retry_after=retry_after)
    return encode(error.type, error.data(), ephemeral_id())


class Connection(Participant):
    def __init__(
        self,
        ws: WebSocket,
        settings: Settings,
        gate: Gatekeeper,
        metrics: Metrics,
        *,
        batch: bool = False,
        admission: Admission | None = None,
        address: str = "local",
        heartbeat: Heartbeat,
    ) -> None:
        self.id = next(_connection_ids)
        self.alive = True  # until run() ends: the heartbeat forgets it then
        self.heartbeat = heartbeat  # the server's: it pings this connection
        self.ws = ws
        self.settings = settings
        self.gate = gate
        self.metrics = metrics
        self.batch = batch
        self.principal = Principal.anonymous()
        self.admission = admission or Admission(
            settings.max_connections_per_principal, settings.max_pending_auth_per_address
        )
        self.address = address  # the peer's, for the pre-auth cap
        self._counted: str | None = None  # the principal key this connection is counted under
        self.outbox = Outbox(
            self.id,
            settings.outbox_messages,
            settings.outbox_bytes,
            hard_messages=2 * settings.outbox_messages + settings.history_messages,
            hard_bytes=4 * settings.outbox_bytes,
            on_full_changed=self._wake_writer,
            deliver=self._deliver,
        )
        self.limiter = RateLimiter.per_window(
            settings.rate_messages,
            settings.rate_window,
            settings.rate_burst,
            settings.abuse_refusals,
            settings.rate_window,
        )
        self.intent: CloseIntent | None = None
        self.context: dict[str, Any] = {"conn": self.id}  # for logs: ids, never tokens
        self._scope = trio.CancelScope()
        self._auth_wait: trio.CancelScope | None = None  # the first-message wait, cancelled by close()
        self._pending: str | bytes | None = None  # a first message read while authenticating
        self._token_deadline = float("inf")  # trio time of the token's exp
        self._lingers = batch and settings.batch_linger > 0  # the writer gathers before it sends
        self._pong: trio.Event | None = None  # the answer to the ping out now, if one is
        self._ping_wanted: trio.Event | None = None  # a ping the writer task sends (no nowait writes)
        self._closing: trio.CancelScope | None = None  # the writer's wait, bounded by _closes_at

    # --- Participant, as the session layer sees it --------------------------------------

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
        text = error_text(code, message, reply_to, retry_after)
        self.outbox.offer(Delivery("error", text, "", False))

    def close(
        self,
        code: CloseCode,
        reason: str,
        error: ErrorCode | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        if self.intent is None:
            final = None
            if error is not None:
                final = error_text(error, message, retry_after=retry_after)
            self.intent = CloseIntent(code, reason, final)
            log.info("closing connection: %d %s", code, reason, extra=self._log(code=int(code), reason=reason))
        if self._auth_wait is not None:
            self._auth_wait.cancel()
        self._scope.cancel()

    def _log(self, **fields: Any) -> dict[str, Any]:
        return {**self.context, "sub": self.principal.sub, **fields}

    # --- authentication ----------------------------------------------------------------

    async def authenticate(self, token: str | None, endpoint: Endpoint) -> bool:
        """Settle who this is before the greeting (§6); on refusal, record the close.

        Without a token in the URL or a header, a first ``auth`` message decides: with
        ``auth=required`` we wait ``auth_timeout`` for it. With ``optional``, an anonymous
        client the endpoint admits is greeted at once (an ``auth`` message may upgrade it
        later); where anonymous would be refused (a session someone owns, a private
        investigation) we wait ``auth_timeout`` too. A first message of another kind is
        kept and handled once the connection is open. While it waits, a connection counts
        against its address's pre-auth cap; once settled, against its principal's cap.
        """
        first: ClientMessage | None = None
        if token is None:
            await endpoint.prepare()
            if self.gate.required or not endpoint.permits(Principal.anonymous()):
                first = await self._wait_for_first_message()
                if self.intent is not None:
                    return False
            if first is not None and isinstance(first.command, Auth):
                token = first.command.token
            elif self.gate.required:
                self.metrics.auth_failures.labels("missing").inc()
                self.close(CloseCode.POLICY, "unauthorized", ErrorCode.UNAUTHORIZED)
                return False
        try:
            principal = self.gate.identify(token)
        except AuthError as refused:
            log.info("token refused", extra=self._log(reason=refused.reason))
            self.metrics.auth_failures.labels(refused.reason).inc()
            self.close(CloseCode.POLICY, "unauthorized", ErrorCode.UNAUTHORIZED, message=auth_refusal_message(refused))
            return False
        if not self.admission.take(principal.key):
            self._refuse_overload("too many connections for this user")
            return False
        self._counted = principal.key
        self._use(principal)
        if first is not None and isinstance(first.command, Auth):
            self._acknowledge_token(first.id)
        return True

    def release_admission(self) -> None:
        if self._counted is not None:
            self.admission.release(self._counted)
            self._counted = None

    def _refuse_overload(self, reason: str) -> None:
        self.close(
            CloseCode.TRY_AGAIN_LATER, reason, ErrorCode.OVERLOADED,
            retry_after=self.settings.overload_retry_after,
        )

    async def _wait_for_first_message(self) -> ClientMessage | None:
        if not self.admission.begin_pending(self.address):
            self._refuse_overload("too many unauthenticated connections from this address")
            return None
        try:
            return await self._first_message(self.gate.auth_timeout)
        finally:
            self.admission.end_pending(self.address)

    async def _first_message(self, window: float) -> ClientMessage | None:
        """Read one message within ``window``; keep it in ``_pending`` unless it is ``auth``."""
        with trio.move_on_after(window) as self._auth_wait:
            try:
                message = await self.ws.receive_message()
            except ConnectionClosed:
                return None
            try:
                parsed = parse(message) if isinstance(message, str) else None
            except ProtocolError:
                parsed = None
            if parsed is not None and isinstance(parsed.command, Auth):
                return parsed
            self._pending = message
            return parsed
        return None

    async def _renew_token(self, token: str, reply_to: ReplyTo, endpoint: Endpoint) -> None:
        """An ``auth`` on an open connection: renew its token, or upgrade an anonymous one."""
        try:
            fresh = self.gate.identify(token)
        except AuthError as refused:
            self.metrics.auth_failures.labels(refused.reason).inc()
            self.error(ErrorCode.UNAUTHORIZED, auth_refusal_message(refused), reply_to)
            return
        if not self.principal.is_anonymous and fresh.sub != self.principal.sub:
            self.error(ErrorCode.FORBIDDEN, "O novo token pertence a outro usuário.", reply_to)
            return
        if not endpoint.permits(fresh):
            self.error(ErrorCode.FORBIDDEN, "Este token não dá acesso a este canal.", reply_to)
            return
        if not self.admission.move(self._counted, fresh.key):
            self.error(
                ErrorCode.OVERLOADED, "Conexões demais abertas para este usuário.", reply_to,
                self.settings.overload_retry_after,
            )
            return
        self._counted = fresh.key
        upgrading = self.principal.is_anonymous
        self._use(fresh)
        claimed = await endpoint.upgraded(self) if upgrading else False
        self._acknowledge_token(reply_to, claimed)
        self._wake_writer()  # its token deadline moved

    def _use(self, principal: Principal) -> None:
        self.principal = principal
        expires = principal.expires_at
        self._token_deadline = (
            float("inf")
            if expires is None
            else trio.current_time() + max(0.0, expires + self.settings.jwt_leeway - time.time())
        )

    def _acknowledge_token(self, reply_to: ReplyTo, session_claimed: bool = False) -> None:
        expires = self.principal.expires_at
        at = None if expires is None else utc_timestamp(dt.datetime.fromtimestamp(expires, dt.UTC))
        self.send(AuthOk(expires_at=at, reply_to=reply_to, session_claimed=True if session_claimed else None))

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, endpoint: Endpoint) -> None:
        """Serve until the peer leaves or something closes us; never raises."""
        log.info("connection opened", extra=self._log())
        try:
            with self._scope:
                if self.intent is not None:
                    return
                self.heartbeat.join(self)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write)
                    await endpoint.open(self)
                    await self._read(endpoint)
                    nursery.cancel_scope.cancel()
        except Exception as failure:
            self.intent = None
            unavailable = _store_unavailable(failure)
            if unavailable is not None:  # e.g. a new session's owner could not be recorded
                log.warning("store unavailable: %s", unavailable, extra=self._log())
                self.close(
                    CloseCode.TRY_AGAIN_LATER, "store unavailable", ErrorCode.UNAVAILABLE,
                    retry_after=unavailable.retry_after,
                )
            else:
                log.exception("connection failed", extra=self._log())
                self.close(CloseCode.INTERNAL_ERROR, "internal error", ErrorCode.INTERNAL_ERROR)
        finally:
            self.alive = False
            with trio.CancelScope(shield=True):
                try:
                    await endpoint.close(self)
                except Exception:
                    log.exception("endpoint cleanup failed", extra=self._log())
                await self.finish()

    async def finish(self) -> None:
        intent = self.intent or CloseIntent(CloseCode.NORMAL, "")
        closed_by_peer = self.ws.closed
        self.metrics.disconnected(closed_by_peer.code if closed_by_peer else intent.code)
        with trio.move_on_after(CLOSE_GRACE_SECONDS):
            try:
                if intent.final_text is not None:
                    await self.ws.send_frames((text_frame(intent.final_text.encode()),))
            except ConnectionClosed:
                pass
            await self.ws.close(intent.code, intent.reason)

    async def _read(self, endpoint: Endpoint) -> None:
        idle = self.settings.idle_timeout
        with trio.CancelScope(deadline=trio.current_time() + idle) as idle_scope:
            while True:
                if self._pending is not None:
                    message, self._pending = self._pending, None
                else:
                    try:
                        message = await self.ws.receive_message()
                    except ConnectionClosed:
                        return
                now = trio.current_time()
                idle_scope.deadline = now + idle
                if isinstance(message, bytes):
                    self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
                    return
                decision = self.limiter.check(now)
                if not decision.allowed:
                    self.metrics.rate_limited.inc()
                    if decision.abusive:
                        self.close(CloseCode.POLICY, "too many messages")
                        return
                    self.error(
                        ErrorCode.RATE_LIMIT, reply_to=_peek_id(message), retry_after=round(decision.retry_after, 3)
                    )
                    continue
                try:
                    parsed = parse(message)
                except ProtocolError as refused:
                    self.metrics.message_in("other")
                    self.error(refused.code, refused.message, refused.reply_to)
                    continue
                self.metrics.message_in(parsed.type)
                if isinstance(parsed.command, Ping):
                    self.send(Pong(reply_to=parsed.id))
                elif isinstance(parsed.command, Auth):
                    await self._renew_token(parsed.command.token, parsed.id, endpoint)
                else:
                    try:
                        await endpoint.handle(self, parsed)
                    except StoreUnavailable as unavailable:
                        self.error(ErrorCode.UNAVAILABLE, reply_to=parsed.id, retry_after=unavailable.retry_after)
        if idle_scope.cancelled_caught:
            self.close(CloseCode.NORMAL, "idle timeout")

    # --- writing -----------------------------------------------------------------------

    def _deliver(self) -> None:
        """The outbox's flush at the end of a committed window, in the publishing task:
        write everything pending now if the socket is free, else leave it to the writer."""
        if self.intent is not None:
            return
        ws = self.ws
        if self._lingers or not ws.free:
            self.outbox.wake()
            return
        try:
            if not ws.send_frames_nowait(self._frames()):
                self.outbox.wake()  # the kernel is full: the writer finishes once it is writable
        except ConnectionClosed:
            self._scope.cancel()
        except Exception:  # a bug here must end this connection, not the publisher's task
            log.exception("delivery failed", extra=self._log())
            self.close(CloseCode.INTERNAL_ERROR, "internal error", ErrorCode.INTERNAL_ERROR)

    def _frames(self) -> list[bytes]:
        """Take everything pending as frames: one per message, or ``batch`` frames."""
        items = self.outbox.take_all()
        if not items:
            return []
        message_out = self.metrics.message_out
        run_type, run = items[0].type, 0
        for item in items:  # a counter's inc per run of one type, not per message
            if item.type is not run_type and item.type != run_type:
                message_out(run_type, run)
                run_type, run = item.type, 0
            run += 1
        message_out(run_type, run)
        frames = _batches.frames(items) if self.batch and len(items) > 1 else [item.frame for item in items]
        self.metrics.frame_out(len(frames))
        return frames

    def _wake_writer(self) -> None:
        """Fullness changed or the token was renewed: the writer's deadlines moved."""
        self.outbox.wake()
        if self._closing is not None:
            self._closing.deadline = self._closes_at()

    def _closes_at(self) -> float:
        """When a timer closes the connection: slow consumer, token expiry."""
        outbox = self.outbox
        if outbox.overflowed:
            return -math.inf
        return min(self._closes_at_full(), self._token_deadline)

    # --- the heartbeat (``server.heartbeat`` calls these every ``heartbeat_interval``) ---

    def beat(self) -> trio.Event | None:
        """Ping now, from the heartbeat's task: the event its pong sets (also when the
        writer task sends it), or None. No ping goes out while the last one is unanswered,
        or while the socket does not take what we write: a stalled peer is the
        slow-consumer rule's."""
        pong = self._pong
        ws = self.ws
        if self.intent is not None or (pong is not None and not pong.is_set()) or ws.writing:
            return None
        if not ws.free:  # TLS or an in-memory stream: the writer task sends it
            self._pong = self._ping_wanted = trio.Event()
            self.outbox.wake()
            return self._pong
        try:
            self._pong = ws.ping_nowait()
        except ConnectionClosed:
            self._scope.cancel()
            return None
        if ws.writing:
            self.outbox.wake()  # the kernel took part of it: the writer finishes the frame
        return self._pong

    def pong_due(self, pong: trio.Event) -> None:
        """``heartbeat_timeout`` after the ping ``pong`` answers: no pong by now drops the
        connection (1011). A later ping's answer does not count for this one."""
        if pong is self._pong and not pong.is_set():
            self.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")

    async def _write(self) -> None:
        """What a delivery could not do at once, and the connection's timers.

        Woken by an offer outside a fan-out window, a socket that would block, a change
        of the outbox's fullness, a renewed token or a ping to send on a stream that
        cannot be written without a task; otherwise parked until the next deadline, or
        with none at all (an idle connection costs no timer). Slow consumer: an outbox
        full for ``slow_consumer_timeout`` (or past its hard ceiling) closes 1013, even
        while a write waits for the socket (the wait's deadline moves with the outbox).
        Token expiry: ``TOKEN_EXPIRED`` + 1008 at ``exp`` unless an ``auth`` renewed it.
        """
        settings = self.settings
        outbox = self.outbox
        ws = self.ws
        while True:
            now = trio.current_time()
            if now >= self._closes_at():
                if outbox.overflowed or now >= self._closes_at_full():
                    self.metrics.slow_consumers.inc()
                    self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                else:
                    self.close(CloseCode.POLICY, "token expired", ErrorCode.TOKEN_EXPIRED)
                return
            try:
                with trio.move_on_at(self._closes_at()) as self._closing:
                    if self._ping_wanted is None:  # (one asked for while we were busy: now)
                        await outbox.wait_ready()
                    if (pong := self._ping_wanted) is not None:
                        self._ping_wanted = None
                        if ws.writing:  # not sent: not awaited either (a stalled peer, as above)
                            self._pong = None
                        else:
                            await ws.ping(pong)
                    if self._lingers and len(outbox) < BATCH_MAX_MESSAGES:
                        await trio.sleep(settings.batch_linger)  # gather before sending: fuller frames
                    if ws.writing:
                        await ws.send_frames(())  # first what the kernel did not take earlier
                    frames = self._frames()
                    if frames:
                        await ws.send_frames(frames)
                self._closing = None
            except ConnectionClosed:
                self._scope.cancel()
                return

    def _closes_at_full(self) -> float:
        since = self.outbox.full_since
        return since + self.settings.slow_consumer_timeout if since is not None else math.inf
