"""Which agent answers a message: Portuguese intent → agent (see ``intent.parse_intent``),
and what the agents may know of the session (its recent turns, the investigations it
follows), read from the session's own stream so it survives restarts and works on every
node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import orjson

from ..broker.base import Broker, Delivery, session_stream
from ..protocol.envelope import DurableId
from .base import Agent, AgentReply, AgentRequest, Exchange

__all__ = ["HISTORY_ANSWER_CHARS", "HISTORY_TURNS", "AgentRouter", "recent_exchanges"]

HISTORY_TURNS = 6  # exchanges an agent sees
HISTORY_ANSWER_CHARS = 1500  # of each earlier answer
HISTORY_WINDOW = 300  # newest messages of the session stream read for them (investigation events interleave)
ENGLISH_NOTE = "Você escreveu em inglês; eu respondo em português. "


@attrs.frozen
class AgentRouter:
    converse: Agent  # Drummond
    investigate: Agent | None = None  # Zumbi
    analyze: Agent | None = None  # Anita
    report: Agent | None = None  # Tiradentes
    status: Agent | None = None  # Abaporu

    def __attrs_post_init__(self) -> None:
        """Drummond answers "are the data real?" from what the engine loaded."""
        engine = next((getattr(a, "engine", None) for a in self.agents()
                       if getattr(a, "engine", None) is not None), None)  # fmt: skip
        converse: Any = getattr(self.converse, "agent", self.converse)  # a model-voiced Drummond
        if engine is not None and getattr(converse, "data_origin", "") is None:
            converse.data_origin = lambda: str(engine.data_origin)

    def agents(self) -> list[Agent]:
        return [a for a in (self.converse, self.investigate, self.analyze, self.report, self.status) if a]

    def route(self, request: AgentRequest) -> Agent:
        intent = request.intent
        chosen = getattr(self, intent.kind, None)
        agent = chosen if chosen is not None else self.converse
        return _InPortuguese(agent) if intent.english else agent

    async def prepare(self, request: AgentRequest, broker: Broker) -> AgentRequest:
        """The request with the session's recent turns and followed investigations."""
        stream = session_stream(request.session_id)
        followed = tuple(s.partition(":")[2] for s in await broker.followed_by(stream))
        history = await recent_exchanges(broker, stream)
        return attrs.evolve(request, history=history, followed=followed)


class _Collect:
    """A sink keeping only the deliveries a history needs (offer never blocks)."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    def offer(self, delivery: Delivery) -> None:
        if delivery.durable and delivery.type in ("chat", "chat_complete"):
            self.got.append(delivery)


async def recent_exchanges(broker: Broker, stream: str, limit: int = HISTORY_TURNS) -> tuple[Exchange, ...]:
    """The session's last completed question/answer pairs, oldest first.

    Turns are answered in order, so each ``chat_complete`` answers the oldest question not
    yet answered; the question being answered now has none yet and is left out.
    """
    sink = _Collect()
    last = DurableId.parse(await broker.last_id(stream))
    window = DurableId(last.epoch, last.offset - HISTORY_WINDOW) if last and last.offset > HISTORY_WINDOW else None
    attached = await broker.attach(stream, sink, window, from_oldest=window is None)
    broker.detach(stream, sink)
    if attached.gap:  # the window reaches past the retention: what is retained will do
        sink = _Collect()
        await broker.attach(stream, sink, None, from_oldest=True)
        broker.detach(stream, sink)
    questions: list[str] = []
    exchanges: list[Exchange] = []
    for delivery in sink.got:
        data: dict[str, Any] = orjson.loads(delivery.text).get("data", {})
        if delivery.type == "chat":
            if data.get("role") == "user":
                questions.append(str(data.get("content") or data.get("message") or ""))
            continue
        if not questions:
            continue
        question = questions.pop(0)
        if data.get("status") == "completed":
            exchanges.append(Exchange(
                question, str(data.get("content", ""))[:HISTORY_ANSWER_CHARS], str(data.get("agent_id", "")),
                data.get("investigation_id"),
            ))  # fmt: skip
    return tuple(exchanges[-limit:])


@attrs.define
class _InPortuguese:
    """An agent answering an English message: the reply says it answers in Portuguese."""

    agent: Agent
    agent_id: str = attrs.field(init=False)
    agent_name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.agent_id, self.agent_name = self.agent.agent_id, self.agent.agent_name

    def reply(self, request: AgentRequest) -> AgentReply:
        return _NotedReply(self.agent.reply(request))


@attrs.define
class _NotedReply:
    inner: AgentReply
    suggested_actions: list[str] = attrs.field(factory=list)
    investigation_id: str | None = None
    token_stream: bool = False

    def __attrs_post_init__(self) -> None:
        self.token_stream = bool(getattr(self.inner, "token_stream", False))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        yield ENGLISH_NOTE
        async for chunk in self.inner:
            yield chunk
        self.suggested_actions = self.inner.suggested_actions
        self.investigation_id = self.inner.investigation_id
