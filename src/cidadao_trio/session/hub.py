"""The state every connection of this server shares: settings, broker, chat sessions."""

from __future__ import annotations

from typing import Any

import attrs

from ..auth import Principal, may_see_investigation
from ..broker.base import Broker
from ..config import Settings
from ..protocol.codes import ErrorCode
from ..protocol.envelope import DurableId
from ..protocol.outbound import CONNECTED_MESSAGE
from .client import Client
from .turns import TurnQueue, TurnRunner


@attrs.define(eq=False)
class ChatSession:
    id: str
    turns: TurnQueue
    owner_key: str | None = None  # the first principal to open it (PROTOCOL.md §6)
    subscriptions: set[str] = attrs.field(factory=set)


@attrs.frozen
class InvestigationAccess:
    owner_key: str
    public: bool


@attrs.define(eq=False)
class Hub:
    settings: Settings
    broker: Broker
    runner: TurnRunner
    sessions: dict[str, ChatSession] = attrs.field(factory=dict)
    investigations: dict[str, InvestigationAccess] = attrs.field(factory=dict)

    def may_see(self, principal: Principal, investigation_id: str) -> bool:
        """Unknown and invisible look the same to a client: both are NOT_FOUND."""
        access = self.investigations.get(investigation_id)
        return access is not None and may_see_investigation(principal, access.owner_key, access.public)

    def session(self, session_id: str) -> ChatSession:
        session = self.sessions.get(session_id)
        if session is None:
            queue = TurnQueue(session_id, self.settings.max_pending_turns)
            session = self.sessions[session_id] = ChatSession(session_id, queue)
        return session

    async def open_stream(
        self, client: Client, stream: str, last_id: str | None, identity: dict[str, Any]
    ) -> None:
        """Greet the client, then replay from its cursor and keep it attached for live ones."""
        cursor = DurableId.parse(last_id) if last_id else None
        resumed = cursor is not None and self.broker.cursor_is_valid(stream, cursor)
        settings = self.settings
        client.send(
            "connection",
            {
                "status": "connected",
                **identity,
                "message": CONNECTED_MESSAGE,
                "resumed": resumed,
                "heartbeat_s": settings.heartbeat_interval,
                "idle_timeout_s": settings.idle_timeout,
                "max_message_bytes": settings.max_message_bytes,
            },
        )
        if last_id and not resumed:
            client.error(ErrorCode.HISTORY_GAP)
        attachment = await self.broker.attach(stream, client.outbox, cursor if resumed else None)
        if attachment.gap and resumed:  # history trimmed between the check and the attach
            client.error(ErrorCode.HISTORY_GAP)
