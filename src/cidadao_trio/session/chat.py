"""Behaviour of ``/api/v1/ws/chat/{session_id}`` (PROTOCOL.md §3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial

import attrs
import orjson
import trio

from ..auth import ANONYMOUS_OWNER, Principal, may_open_session, may_see_investigation
from ..broker.base import session_stream
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.events import Event, Subscribed, Unsubscribed, UserMessage, UserTyping
from ..protocol.inbound import (
    Cancel,
    Chat,
    ClientMessage,
    ReplyTo,
    Subscribe,
    Typing,
    Unsubscribe,
)
from .claims import acting_on, claim_key, in_flight
from .debounce import TypingDebounce
from .follow import follow, unfollow
from .hub import ChatSession, Hub
from .participant import Participant
from .turns import Resend, Turn


@attrs.define(eq=False)
class ChatEndpoint:
    hub: Hub
    session_id: str
    last_id: str | None = None
    typing: TypingDebounce = attrs.field(factory=TypingDebounce)
    _session: ChatSession | None = None

    @property
    def session(self) -> ChatSession:
        assert self._session is not None, "open() first"
        return self._session

    @property
    def stream(self) -> str:
        return session_stream(self.session_id)

    def permits(self, principal: Principal) -> bool:
        owner = self._session.owner_key if self._session is not None else None
        return may_open_session(principal, self.session_id, owner)

    async def prepare(self) -> None:
        """Load the session before authentication, so the connection knows who may open it."""
        if self._session is None:
            self._session = await self.hub.session(self.session_id)
            self._session.connections += 1  # before any await, so release() cannot drop it

    async def open(self, client: Participant) -> None:
        await self.prepare()
        if not self.permits(client.principal):
            client.close(CloseCode.POLICY, "forbidden", ErrorCode.FORBIDDEN)
            return
        await self.hub.claim(self.session, client.principal)
        self.session.members.add(client)
        self.typing = TypingDebounce(self.hub.settings.typing_debounce)
        followed = await self.hub.broker.followed_by(self.stream)
        identity = {"session_id": self.session.id}
        await self.hub.open_stream(client, self.stream, self.last_id, identity, followed)

    async def upgraded(self, client: Participant) -> bool:
        return await self.hub.claim_anonymous(self.session, client)

    async def close(self, client: Participant) -> None:
        self.hub.close_stream(client, self.stream)
        if self._session is not None:
            self._session.members.discard(client)
            self._session.connections -= 1
            self.hub.release(self._session)

    async def handle(self, client: Participant, message: ClientMessage) -> None:
        command, reply_to = message.command, message.id
        broker = self.hub.broker
        match command:  # ping and auth are answered by the connection itself
            case Chat(message=text, context=context):
                queue = self.session.turns
                if queue.is_full:
                    client.error(
                        ErrorCode.OVERLOADED,
                        "Há mensagens demais aguardando resposta nesta sessão.",
                        reply_to,
                        self.hub.settings.overload_retry_after,
                    )
                    return
                await self._chat(client, Turn(
                    text, context, reply_to, client.principal, self.session.owner_key == ANONYMOUS_OWNER
                ))
            case Typing(is_typing=is_typing):
                if self.typing.allow(trio.current_time()):
                    await broker.publish(self.stream, UserTyping(is_typing=is_typing), origin=client.id)
            case Subscribe(investigation_id=investigation_id):
                access = await self.hub.lookup(investigation_id)
                if access is None or not may_see_investigation(client.principal, access.owner_key, access.public):
                    client.error(ErrorCode.NOT_FOUND, "Investigação não encontrada.", reply_to)
                    return
                if not access.public and self.session.owner_key == ANONYMOUS_OWNER:
                    client.error(
                        ErrorCode.FORBIDDEN,
                        "Investigações privadas só podem ser acompanhadas em uma sessão autenticada.",
                        reply_to,
                    )
                    return
                async with self._once(client, reply_to, partial(self._unanswered, reply_to, Subscribed)) as accepted:
                    if accepted:
                        await follow(broker, self.session_id, investigation_id, reply_to)
            case Unsubscribe(investigation_id=investigation_id):
                async with self._once(client, reply_to, partial(self._unanswered, reply_to, Unsubscribed)) as accepted:
                    if accepted:
                        await unfollow(broker, self.session_id, investigation_id, reply_to)
            case Cancel(reply_to=target):
                async with self._once(client, reply_to) as accepted:
                    if accepted:
                        await self.hub.runner.cancel(self.session.turns, target)

    async def _chat(self, client: Participant, turn: Turn) -> None:
        """Accept a chat turn: recorded open, its id claimed, its message echoed, queued —
        in that order, each write behind the one before, so a crash between any two leaves
        the open record for the restart to settle (``TurnRunner.end_interrupted``): with its
        echo in the stream it ends failed, without, its claim is let go for the resend."""
        runner = self.hub.runner
        await runner.open(self.session_id, turn)
        queued = False

        async def settle() -> bool:  # a resend: its node may be gone, leaving it open
            nonlocal queued
            outcome = await runner.take_over(self.session.turns, turn)
            queued = outcome is Resend.QUEUED
            return outcome is Resend.FREED

        try:
            async with self._once(client, turn.reply_to, settle) as accepted:
                if accepted:
                    echo = UserMessage(content=turn.message, reply_to=turn.reply_to)
                    await self.hub.broker.publish(self.stream, echo, origin=client.id)
                    runner.submit(self.session.turns, turn)
                    queued = True
        finally:
            if not queued:  # a DUPLICATE, or the store refused: no turn here
                with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(Exception):
                    await runner.close(self.session_id, turn)

    async def _unanswered(self, message_id: ReplyTo, answer: type[Event]) -> bool:
        """A resent (un)subscribe whose answer the session stream lacks, claimed but not in
        flight here: the node that claimed it died first. Its claim is let go (True)."""
        key = claim_key(message_id)
        if in_flight(self.session_id, key):
            return False
        for delivery in await self.hub.broker.retained(self.stream):
            if delivery.type == answer.type and '"reply_to"' in delivery.text:
                data = orjson.loads(delivery.text).get("data") or {}
                if claim_key(data.get("reply_to")) == key:
                    return False
        await self.hub.records.forget_message(self.session_id, key)
        await self.hub.broker.flush()  # the claim is asked for again at once: let it be gone
        return True

    @asynccontextmanager
    async def _once(
        self, client: Participant, message_id: ReplyTo, settle: Callable[[], Awaitable[bool]] | None = None
    ) -> AsyncIterator[bool]:
        """Run a message's effect once per client ``id`` (§2): yields False, after answering
        ``DUPLICATE``, for an id the session already accepted, here or on another node. The
        id is kept as long as the session's history; an effect that fails lets it go, so a
        resend after ``UNAVAILABLE`` is executed. ``settle``, asked when the id is taken,
        says whether it let the id go (the node that took it died before using it)."""
        if message_id is None:
            yield True
            return
        key = claim_key(message_id)
        records = self.hub.records
        ttl = self.hub.settings.history_seconds
        if not await records.accept_message(self.session_id, key, ttl) and not (
            settle is not None and await settle() and await records.accept_message(self.session_id, key, ttl)
        ):
            client.error(ErrorCode.DUPLICATE, reply_to=message_id)
            yield False
            return
        try:
            with acting_on(self.session_id, key):
                yield True
        except BaseException:
            # StoreUnavailable too: then the id stays, and a resend is answered DUPLICATE
            with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(Exception):
                await records.forget_message(self.session_id, key)
            raise
