"""One WebSocket connection: its own nursery with a reader, a writer, a heartbeat and a guard.

Cancelling the connection's scope stops all four; whatever ended it (idle, heartbeat,
slow consumer, protocol abuse, a bug, server shutdown) records a :class:`CloseIntent`
first, and :meth:`Connection.finish` turns that into an optional final ``error`` and a
close frame, under a short shielded deadline so a dead peer cannot hold us.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..broker.base import Delivery
from ..config import Settings
from ..protocol.codes import DEFAULT_MESSAGES, CloseCode, ErrorCode
from ..protocol.envelope import encode, encode_batch, ephemeral_id
from ..protocol.inbound import ClientMessage, Ping, ProtocolError, ReplyTo, parse
from ..session.client import Client
from ..session.outbox import Outbox

log = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 64
BATCH_MAX_BYTES = 64 * 1024
CLOSE_GRACE_SECONDS = 2.0

_connection_ids = itertools.count(1)


class Endpoint(Protocol):
    async def open(self, client: Client) -> None: ...
    async def handle(self, client: Client, message: ClientMessage) -> None: ...
    async def close(self, client: Client) -> None: ...


@attrs.frozen
class CloseIntent:
    code: CloseCode
    reason: str
    final_text: str | None = None  # an ``error`` envelope sent just before the close frame


def error_text(
    code: ErrorCode,
    message: str | None = None,
    reply_to: ReplyTo = None,
    retry_after: float | None = None,
) -> str:
    data: dict[str, Any] = {"code": str(code), "message": message or DEFAULT_MESSAGES[code]}
    if reply_to is not None:
        data["reply_to"] = reply_to
    if retry_after is not None:
        data["retry_after"] = retry_after
    return encode("error", data, ephemeral_id())


class Connection(Client):
    def __init__(self, ws: WebSocketConnection, settings: Settings, *, batch: bool = False) -> None:
        self.id = next(_connection_ids)
        self.ws = ws
        self.settings = settings
        self.batch = batch
        self.outbox = Outbox(self.id, settings.outbox_messages, settings.outbox_bytes)
        self.intent: CloseIntent | None = None
        self._scope = trio.CancelScope()

    # --- Client, as the session layer sees it -------------------------------------------

    def send(self, type: str, data: Mapping[str, Any]) -> None:
        eid = ephemeral_id()
        self.outbox.offer(Delivery(type, encode(type, data, eid), eid, False))

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
    ) -> None:
        if self.intent is None:
            final = error_text(error, retry_after=retry_after) if error is not None else None
            self.intent = CloseIntent(code, reason, final)
            log.info("closing connection %d: %d %s", self.id, code, reason)
        self._scope.cancel()

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, endpoint: Endpoint) -> None:
        """Serve until the peer leaves or something closes us; never raises."""
        try:
            with self._scope:
                if self.intent is not None:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._heartbeat)
                    nursery.start_soon(self._guard_slow_consumer)
                    await endpoint.open(self)
                    await self._read(endpoint)
                    nursery.cancel_scope.cancel()
        except Exception:
            log.exception("connection %d failed", self.id)
            self.intent = None
            self.close(CloseCode.INTERNAL_ERROR, "internal error", ErrorCode.INTERNAL_ERROR)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await endpoint.close(self)
                except Exception:
                    log.exception("connection %d: endpoint cleanup failed", self.id)
                await self.finish()

    async def finish(self) -> None:
        intent = self.intent or CloseIntent(CloseCode.NORMAL, "")
        with trio.move_on_after(CLOSE_GRACE_SECONDS):
            try:
                if intent.final_text is not None:
                    await self.ws.send_message(intent.final_text)
                await self.ws.aclose(intent.code, intent.reason)
            except ConnectionClosed:
                pass

    async def _read(self, endpoint: Endpoint) -> None:
        idle = self.settings.idle_timeout
        with trio.CancelScope(deadline=trio.current_time() + idle) as idle_scope:
            while True:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed:
                    return
                idle_scope.deadline = trio.current_time() + idle
                if isinstance(message, bytes):
                    self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
                    return
                try:
                    parsed = parse(message)
                except ProtocolError as refused:
                    self.error(refused.code, refused.message, refused.reply_to)
                    continue
                if isinstance(parsed.command, Ping):
                    self.send("pong", {} if parsed.id is None else {"reply_to": parsed.id})
                else:
                    await endpoint.handle(self, parsed)
        if idle_scope.cancelled_caught:
            self.close(CloseCode.NORMAL, "idle timeout")

    async def _write(self) -> None:
        outbox = self.outbox
        while True:
            await outbox.wait_ready()
            if self.batch:
                await trio.lowlevel.checkpoint()  # let producers that are ready add theirs
                items = outbox.take(BATCH_MAX_MESSAGES, BATCH_MAX_BYTES)
                if len(items) > 1:
                    text = encode_batch((item.text for item in items), len(items))
                else:
                    text = items[0].text
            else:
                text = outbox.take()[0].text
            try:
                await self.ws.send_message(text)
            except ConnectionClosed:
                self._scope.cancel()
                return

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(self.settings.heartbeat_interval)
            with trio.move_on_after(self.settings.heartbeat_timeout) as waiting:
                try:
                    await self.ws.ping()
                except ConnectionClosed:
                    return
            if waiting.cancelled_caught:
                self.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
                return

    async def _guard_slow_consumer(self) -> None:
        outbox = self.outbox
        timeout = self.settings.slow_consumer_timeout
        while True:
            since = outbox.full_since
            if outbox.overflowed or (since is not None and trio.current_time() >= since + timeout):
                self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                return
            with trio.move_on_at(since + timeout if since is not None else float("inf")):
                await outbox.wait_full_changed()
