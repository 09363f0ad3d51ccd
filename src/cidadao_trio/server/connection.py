"""One WebSocket connection: its own nursery with a reader, a writer, a heartbeat and a guard.

Cancelling the connection's scope stops all four; whatever ended it (idle, heartbeat,
slow consumer, protocol abuse, a bug, server shutdown) records a :class:`CloseIntent`
first, and :meth:`Connection.finish` turns that into an optional final ``error`` and a
close frame, under a short shielded deadline so a dead peer cannot hold us.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
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
from .transport import ConnectionClosed, WebSocket

log = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 64
BATCH_MAX_BYTES = 64 * 1024
CLOSE_GRACE_SECONDS = 2.0

_connection_ids = itertools.count(1)


class _BatchFrames:
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


_batches = _BatchFrames()


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


def _auth_message(refused: AuthError) -> str:
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
    ) -> None:
        self.id = next(_connection_ids)
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
            on_full_changed=self._attention_needed,
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
        self._auth_wait = trio.CancelScope()  # the first-message wait, cancelled by close()
        self._pending: str | bytes | None = None  # a first message read while authenticating
        self._attention = trio.Event()  # wakes _guard: fullness changed, token renewed
        self._token_deadline = float("inf")  # trio time of the token's exp

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
            self.close(CloseCode.POLICY, "unauthorized", ErrorCode.UNAUTHORIZED, message=_auth_message(refused))
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
            self.error(ErrorCode.UNAUTHORIZED, _auth_message(refused), reply_to)
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
        self._attention.set()

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
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._guard)
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

    async def _write(self) -> None:
        outbox = self.outbox
        while True:
            await outbox.wait_ready()
            linger = self.settings.batch_linger
            if self.batch and linger > 0 and len(outbox) < BATCH_MAX_MESSAGES:
                await trio.sleep(linger)  # gather before sending: fuller frames
            items = outbox.take(BATCH_MAX_MESSAGES if self.batch else 1, BATCH_MAX_BYTES)
            if len(items) > 1:
                _, frame = _batches.frame(items)
            else:
                frame = items[0].frame
            for item in items:
                self.metrics.message_out(item.type)
            self.metrics.frames_out.inc()
            try:
                await self.ws.send_frames((frame,))
            except ConnectionClosed:
                self._scope.cancel()
                return

    async def _guard(self) -> None:
        """Every rarely-firing timer of the connection, in one task (memory per connection).

        Heartbeat: a ping every ``heartbeat_interval``; no pong ``heartbeat_timeout`` later
        drops the connection (1011). Slow consumer: an outbox full for
        ``slow_consumer_timeout`` (or past its hard ceiling) closes 1013. Token expiry:
        ``TOKEN_EXPIRED`` + 1008 at ``exp`` unless an ``auth`` message renewed it.
        """
        settings = self.settings
        next_ping = trio.current_time() + settings.heartbeat_interval
        pong: trio.Event | None = None
        pong_deadline = float("inf")
        while True:
            now = trio.current_time()
            since = self.outbox.full_since
            full_deadline = since + settings.slow_consumer_timeout if since is not None else float("inf")
            if self.outbox.overflowed or now >= full_deadline:
                self.metrics.slow_consumers.inc()
                self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                return
            if now >= self._token_deadline:
                self.close(CloseCode.POLICY, "token expired", ErrorCode.TOKEN_EXPIRED)
                return
            if pong is not None and pong.is_set():
                pong, pong_deadline = None, float("inf")
            if now >= pong_deadline:
                self.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
                return
            if now >= next_ping:
                next_ping = now + settings.heartbeat_interval
                if pong is None and not self.ws.writing:  # a stalled send is the guard's
                    with trio.move_on_after(settings.heartbeat_timeout):
                        try:
                            pong = await self.ws.ping()
                        except ConnectionClosed:
                            return
                    pong_deadline = now + settings.heartbeat_timeout
            wake_at = min(full_deadline, self._token_deadline, pong_deadline, next_ping)
            with trio.move_on_at(wake_at):
                await self._attention.wait()
            self._attention = trio.Event()

    def _attention_needed(self) -> None:
        self._attention.set()
