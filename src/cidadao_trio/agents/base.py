"""The agent interface: what the chat session needs from whoever answers a message.

An agent turns one ``AgentRequest`` into an ``AgentReply``: an async iterator of text
chunks (each becomes a streamed ``chat`` message) plus what ``chat_complete`` needs once
the stream ends. Agents do no I/O towards the client, so they are tested without sockets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from ..auth import Principal
from .intent import Intent, parse_intent

__all__ = [
    "Agent",
    "AgentReply",
    "AgentRequest",
    "Exchange",
    "Grounded",
    "GroundedReply",
    "Grounding",
    "StreamedReply",
    "grounded_reply",
    "split_chunks",
]


@attrs.frozen
class Exchange:
    """One earlier turn of the session: what was asked and what was answered."""

    question: str
    answer: str
    agent_id: str = ""
    investigation_id: str | None = None


@attrs.frozen
class AgentRequest:
    session_id: str
    message: str  # the user's text (already validated, 1-8000 chars)
    context: Mapping[str, Any]  # optional client context, may be empty
    principal: Principal = attrs.field(factory=Principal.anonymous)  # who asked
    shared_session: bool = True  # an anonymous session: anyone holding its id reads it
    history: tuple[Exchange, ...] = ()  # the session's recent turns, oldest first (bounded)
    followed: tuple[str, ...] = ()  # ids of the investigations this session follows

    @property
    def intent(self) -> Intent:
        """The routing decision, reading a follow-up ("e em 2024?") against the last turn."""
        previous = self.history[-1].question if self.history else None
        return parse_intent(self.message, previous)

    @property
    def public(self) -> bool:
        """What this request starts is public when anyone could read the session anyway
        (PROTOCOL.md §6: investigations started from an anonymous session are public)."""
        return self.principal.is_anonymous or self.shared_session


class Agent(Protocol):
    agent_id: str  # e.g. "drummond"
    agent_name: str  # e.g. "Carlos Drummond de Andrade"

    def reply(self, request: AgentRequest) -> AgentReply: ...


class AgentReply(Protocol):
    """An async iterator of text chunks (str) plus what is known once it ends."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    suggested_actions: list[str]  # valid after iteration finished
    investigation_id: str | None  # None for Drummond


@attrs.define
class StreamedReply:
    """A ready-made AgentReply, so an agent is just an async generator plus two fields."""

    chunks: AsyncIterator[str]
    suggested_actions: list[str] = attrs.field(factory=list)
    investigation_id: str | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self.chunks


@attrs.frozen
class Grounding:
    """What code computed for one question: the rule-based answer (also the fallback when
    a language model fails) and the figures a model may phrase (``facts``; None when there
    is nothing for a model to add, e.g. a refusal)."""

    answer: str
    facts: str | None = None
    suggested_actions: tuple[str, ...] = ()
    investigation_id: str | None = None


class Grounded(Protocol):
    """An agent whose answer is computed by code first (so a model can only phrase it)."""

    agent_id: str
    agent_name: str

    async def ground(self, request: AgentRequest) -> Grounding: ...


@attrs.define
class GroundedReply:
    """A rule-based reply: the grounding's answer, streamed in word groups."""

    ground: Callable[[], Awaitable[Grounding]]
    delay: float
    suggested_actions: list[str] = attrs.field(factory=list)
    investigation_id: str | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self.chunks

    @property
    def chunks(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        grounding = await self.ground()  # composed as the reply starts, so cancel stops it too
        self.suggested_actions = list(grounding.suggested_actions)
        self.investigation_id = grounding.investigation_id
        for n, chunk in enumerate(split_chunks(grounding.answer)):
            if n and self.delay > 0:
                await trio.sleep(self.delay)
            yield chunk


def grounded_reply(agent: Grounded, request: AgentRequest, delay: float = 0.0) -> GroundedReply:
    """The rule-based reply of a grounded agent."""
    return GroundedReply(lambda: agent.ground(request), delay)


_WORD = re.compile(r"\s*\S+\s*")
_CLAUSE_END = (".", ",", ";", ":", "!", "?")


def split_chunks(text: str, min_words: int = 3, max_words: int = 8) -> list[str]:
    """Cut text into word groups for streaming, so a reply arrives as readable pieces.

    Whitespace is kept, hence ``"".join(split_chunks(t)) == t``. A group ends after
    ``max_words`` words, or earlier at a punctuation mark once it has ``min_words``; a
    short tail is merged into the previous group, or else takes words from it.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    words = _WORD.findall(text)
    if not words:
        return [text] if text else []
    groups: list[list[str]] = [[]]
    for word in words:
        group = groups[-1]
        group.append(word)
        if len(group) >= max_words or (
            len(group) >= min_words and word.rstrip().endswith(_CLAUSE_END)
        ):
            groups.append([])
    if not groups[-1]:
        groups.pop()
    if len(groups) > 1 and len(groups[-1]) < min_words:
        previous, tail = groups[-2], groups[-1]
        if len(previous) + len(tail) <= max_words:
            previous.extend(groups.pop())
        elif len(previous) + len(tail) >= 2 * min_words:
            moved = min_words - len(tail)
            tail[:0] = previous[-moved:]
            del previous[-moved:]
    return ["".join(group) for group in groups]
