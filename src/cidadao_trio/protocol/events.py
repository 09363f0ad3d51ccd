"""Server→client messages as classes (PROTOCOL.md §3), each carrying its delivery policy.

Like h11's events: one small frozen class per message kind; its fields are the ``data``
members, in wire order. The class says what the broker and the outboxes do with it:
``durable`` (stored, given an offset, replayed on resume), ``droppable`` (dropped first when
an outbox is full) and :meth:`Event.coalesce_key` (messages sharing a key replace each
other in a full outbox, latest wins). Nothing else in the code lists message kinds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from .inbound import ReplyTo

CONNECTED_MESSAGE = "Conectado ao Cidadão.AI em tempo real"


def _optional() -> Any:
    """A member that is left out of ``data`` when it is ``None`` (never sent as ``null``)."""
    return attrs.field(default=None, metadata={"omit_if_none": True})


@attrs.frozen(kw_only=True)
class Event:
    type: ClassVar[str]
    durable: ClassVar[bool] = True
    droppable: ClassVar[bool] = False

    def coalesce_key(self) -> str | None:
        return None

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, omit_if_none in _members(type(self)):
            value = getattr(self, name)
            if value is None and omit_if_none:
                continue
            out[name] = value
        return out


_MEMBERS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _members(kind: type[Event]) -> tuple[tuple[str, bool], ...]:
    """A kind's ``data`` members in wire order, read from its fields once (publishing is hot)."""
    members = _MEMBERS.get(kind)
    if members is None:
        fields = attrs.fields(kind)
        members = _MEMBERS[kind] = tuple((f.name, bool(f.metadata.get("omit_if_none"))) for f in fields)
    return members


# --- a chat session (§3, §3.1) ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class UserMessage(Event):
    """A citizen's message, published so every connection of the session sees it."""

    type: ClassVar[str] = "chat"
    role: str = "user"
    content: str
    reply_to: ReplyTo = None


@attrs.frozen(kw_only=True)
class ReplyChunk(Event):
    """One streamed piece of an agent's reply."""

    type: ClassVar[str] = "chat"
    role: str = "assistant"
    content: str
    agent_id: str
    agent_name: str
    chunk: bool = True
    chunk_index: int
    reply_to: ReplyTo = None


@attrs.frozen(kw_only=True)
class ChatComplete(Event):
    type: ClassVar[str] = "chat_complete"
    status: str  # completed | cancelled | failed
    agent_id: str
    agent_name: str
    content: str
    suggested_actions: Sequence[str] = ()
    reply_to: ReplyTo = None
    investigation_id: str | None = _optional()

    def data(self) -> dict[str, Any]:
        out = super().data()
        out["suggested_actions"] = list(self.suggested_actions)
        return out


@attrs.frozen(kw_only=True)
class AgentTyping(Event):
    """An agent is working on a reply (or stopped)."""

    type: ClassVar[str] = "typing"
    durable: ClassVar[bool] = False
    droppable: ClassVar[bool] = True
    agent: str
    agent_id: str
    is_typing: bool

    def data(self) -> dict[str, Any]:
        return {"agent": self.agent, "agent_id": self.agent_id, "isTyping": self.is_typing}


@attrs.frozen(kw_only=True)
class UserTyping(Event):
    """Relayed from another connection of the session."""

    type: ClassVar[str] = "typing"
    durable: ClassVar[bool] = False
    droppable: ClassVar[bool] = True
    is_typing: bool

    def data(self) -> dict[str, Any]:
        return {"role": "user", "isTyping": self.is_typing}


@attrs.frozen(kw_only=True)
class Subscribed(Event):
    type: ClassVar[str] = "subscribed"
    investigation_id: str
    message: str
    reply_to: ReplyTo = None


@attrs.frozen(kw_only=True)
class Unsubscribed(Event):
    type: ClassVar[str] = "unsubscribed"
    investigation_id: str
    message: str
    reply_to: ReplyTo = None


# --- an investigation (§3, §3.2) -------------------------------------------------------


@attrs.frozen(kw_only=True)
class InvestigationProgress(Event):
    type: ClassVar[str] = "investigation_progress"
    investigation_id: str
    update_type: str = "progress"
    progress: int
    status: str
    message: str
    records_processed: int
    anomalies_detected: int

    def coalesce_key(self) -> str | None:
        return f"progress:{self.investigation_id}"


@attrs.frozen(kw_only=True)
class AnomalyDetected(Event):
    type: ClassVar[str] = "anomaly_detected"
    investigation_id: str
    anomaly_id: str
    anomaly_type: str
    severity: str
    confidence: float
    description: str
    details: Mapping[str, Any]
    agent_id: str


@attrs.frozen(kw_only=True)
class AgentFinding(Event):
    type: ClassVar[str] = "agent_finding"
    investigation_id: str
    agent_id: str
    agent_name: str
    finding_type: str
    summary: str
    details: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class ReportReady(Event):
    type: ClassVar[str] = "report_ready"
    investigation_id: str
    summary: Mapping[str, Any]
    formats: Sequence[str]
    url: str
    proof: Mapping[str, Any] | None = _optional()  # §11: the chain head, hashes and signature

    def data(self) -> dict[str, Any]:
        out = super().data()
        out["formats"] = list(self.formats)
        return out


@attrs.frozen(kw_only=True)
class InvestigationFailed(Event):
    type: ClassVar[str] = "investigation_failed"
    investigation_id: str
    reason: str


# --- one connection only (never in a stream) --------------------------------------------


@attrs.frozen(kw_only=True)
class Pong(Event):
    type: ClassVar[str] = "pong"
    durable: ClassVar[bool] = False
    reply_to: ReplyTo = _optional()


@attrs.frozen(kw_only=True)
class AuthOk(Event):
    type: ClassVar[str] = "auth_ok"
    durable: ClassVar[bool] = False
    expires_at: str | None
    reply_to: ReplyTo = _optional()
    session_claimed: bool | None = _optional()  # only ever ``true`` (§6)


@attrs.frozen(kw_only=True)
class Connected(Event):
    """The greeting; ``identity`` is ``session_id`` or ``investigation_id``."""

    type: ClassVar[str] = "connection"
    durable: ClassVar[bool] = False
    identity: Mapping[str, Any]
    message: str = CONNECTED_MESSAGE
    resumed: bool
    heartbeat_s: float
    idle_timeout_s: float
    max_message_bytes: int

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "connected", **self.identity}
        out.update((k, v) for k, v in super().data().items() if k != "identity")
        return out


@attrs.frozen(kw_only=True)
class Error(Event):
    type: ClassVar[str] = "error"
    durable: ClassVar[bool] = False
    code: str
    message: str
    reply_to: ReplyTo = _optional()
    retry_after: float | None = _optional()


# --- presence (§9): counts, never names; sent by session/presence.py ---------------------


@attrs.frozen(kw_only=True)
class Watching(Event):
    """How many connections follow an investigation, on every node."""

    type: ClassVar[str] = "presence"
    durable: ClassVar[bool] = False
    investigation_id: str
    watching: int

    def coalesce_key(self) -> str | None:
        return f"presence:investigation:{self.investigation_id}"  # a full outbox keeps the latest


@attrs.frozen(kw_only=True)
class SessionConnections(Event):
    """How many connections a chat session has open (tabs, a phone), on every node."""

    type: ClassVar[str] = "presence"
    durable: ClassVar[bool] = False
    session_id: str
    connections: int

    def coalesce_key(self) -> str | None:
        return f"presence:session:{self.session_id}"


DURABLE_KINDS: tuple[type[Event], ...] = (
    UserMessage, ReplyChunk, ChatComplete, Subscribed, Unsubscribed,
    InvestigationProgress, AnomalyDetected, AgentFinding, ReportReady, InvestigationFailed,
)
EPHEMERAL_KINDS: tuple[type[Event], ...] = (
    AgentTyping, UserTyping, Pong, AuthOk, Connected, Error, Watching, SessionConnections,
)
# Envelopes around other messages, built where they are sent (§5).
OTHER_TYPES = frozenset({"batch"})

DURABLE_TYPES = frozenset(kind.type for kind in DURABLE_KINDS)
DROPPABLE_TYPES = frozenset(kind.type for kind in (*DURABLE_KINDS, *EPHEMERAL_KINDS) if kind.droppable)
ALL_TYPES = DURABLE_TYPES | frozenset(kind.type for kind in EPHEMERAL_KINDS) | OTHER_TYPES
