"""The state every connection of this server shares: settings, broker, chat sessions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import attrs

from ..auth import ANONYMOUS_OWNER, Principal, may_open_session
from ..broker.base import Broker
from ..config import Settings
from ..metrics import Metrics
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.envelope import DurableId
from ..protocol.events import Connected
from ..records.base import Records
from .digest import read_digest
from .participant import Participant
from .presence import PresenceBoard
from .turns import TurnQueue, TurnRunner


@attrs.define(eq=False)
class ChatSession:
    id: str
    turns: TurnQueue
    owner_key: str | None = None  # the first principal to open it (PROTOCOL.md §6)
    connections: int = 0  # counted from prepare(), before a connection is open
    members: set[Participant] = attrs.field(factory=set)  # open connections, to close on a claim

    @property
    def idle(self) -> bool:
        return self.connections == 0 and not self.turns.worker_running


class Visibility(Protocol):
    """Who may see an investigation (its engine record satisfies this)."""

    @property
    def owner_key(self) -> str: ...

    @property
    def public(self) -> bool: ...


async def _nothing(investigation_id: str) -> None:
    return None


@attrs.define(eq=False)
class Hub:
    settings: Settings
    broker: Broker
    runner: TurnRunner
    metrics: Metrics
    records: Records  # who owns each session
    sessions: dict[str, ChatSession] = attrs.field(factory=dict)
    lookup: Callable[[str], Awaitable[Visibility | None]] = _nothing
    # who is connected where, in counts (§9); app.py runs its ticker
    presence: PresenceBoard = attrs.field(
        default=attrs.Factory(lambda hub: PresenceBoard(hub.broker), takes_self=True), kw_only=True
    )

    async def session(self, session_id: str) -> ChatSession:
        session = self.sessions.get(session_id)
        if session is None:
            owner = await self.records.session_owner(session_id)
            queue = TurnQueue(session_id, self.settings.max_pending_turns, on_idle=partial(self._release, session_id))
            session = self.sessions.setdefault(session_id, ChatSession(session_id, queue, owner))
        return session

    async def claim(self, session: ChatSession, principal: Principal) -> None:
        """A new session belongs to the first principal that opens it."""
        if session.owner_key is None:
            session.owner_key = principal.owner_key
            await self.records.save_session_owner(session.id, session.owner_key)

    async def claim_anonymous(self, session: ChatSession, claimer: Participant) -> bool:
        """An anonymous session becomes ``claimer``'s (its late ``auth``, §6).

        Every other connection of the session that may no longer open it is closed
        FORBIDDEN: whoever held the id before the claim must not go on reading.
        """
        principal = claimer.principal
        if principal.is_anonymous or session.owner_key not in (None, ANONYMOUS_OWNER):
            return False
        session.owner_key = principal.owner_key
        await self.records.save_session_owner(session.id, session.owner_key)
        for member in list(session.members):
            if member is not claimer and not may_open_session(member.principal, session.id, session.owner_key):
                member.close(CloseCode.POLICY, "session claimed", ErrorCode.FORBIDDEN)
        return True

    def release(self, session: ChatSession) -> None:
        """Forget an idle session's in-memory state; the store remembers its owner."""
        if session.idle and self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def _release(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            self.release(session)

    async def open_stream(
        self,
        client: Participant,
        stream: str,
        last_id: str | None,
        identity: dict[str, Any],
        followed: list[str],
        replay_all: bool = False,
    ) -> None:
        """Greet the client, replay from its cursor (or a digest of ``followed``), go live.

        Without a cursor a client gets only live messages, unless ``replay_all`` (an
        investigation's own stream: everything retained so far, then live).
        """
        broker = self.broker
        cursor = DurableId.parse(last_id) if last_id else None
        resumed = cursor is not None and await broker.cursor_is_valid(stream, cursor)
        if last_id is None and not replay_all:
            # Live from here: pin the position now, so nothing published while we greet
            # the client (a round trip to Redis, say) falls between the greeting and live.
            cursor = DurableId.parse(await broker.last_id(stream))
        settings = self.settings
        client.send(Connected(
            identity=identity, resumed=resumed, heartbeat_s=settings.heartbeat_interval,
            idle_timeout_s=settings.idle_timeout, max_message_bytes=settings.max_message_bytes,
        ))
        if last_id and not resumed:
            # Anything committed while the digest is built is replayed from here.
            cursor = DurableId.parse(await broker.last_id(stream))
            client.error(ErrorCode.HISTORY_GAP)
            with client.outbox.replaying():  # §5: a digest is never coalesced or dropped
                for delivery in await read_digest(broker, followed):
                    client.outbox.offer(delivery)
        with client.outbox.replaying():  # nor is a replay (the hard ceiling includes retention)
            attached = await broker.attach(stream, client.outbox, cursor, from_oldest=replay_all and last_id is None)
            if resumed and attached.gap:
                # Retention passed the cursor between the greeting and the attach: the replay
                # the greeting promised cannot be given. The client is told, late, then gets
                # the digest and live from a pinned position, in §5's order.
                broker.detach(stream, client.outbox)
                resumed = False
                cursor = DurableId.parse(await broker.last_id(stream))
                client.error(ErrorCode.HISTORY_GAP)
                for delivery in await read_digest(broker, followed):
                    client.outbox.offer(delivery)
                await broker.attach(stream, client.outbox, cursor)
        if last_id:
            self.metrics.resumes.labels("resumed" if resumed else "history_gap").inc()
        await self.presence.join(client, stream)  # counted once live (its counts come after the replay)

    def close_stream(self, client: Participant, stream: str) -> None:
        """The client leaves ``stream``: no more deliveries, no longer counted (§9).

        Every endpoint's ``close`` calls this, whether or not ``open_stream`` finished.
        """
        self.broker.detach(stream, client.outbox)
        self.presence.leave(client, stream)
