"""The agent interface: what the chat session needs from whoever answers a message.

An agent turns one ``AgentRequest`` into an ``AgentReply``: an async iterator of text
chunks (each becomes a streamed ``chat`` message) plus what ``chat_complete`` needs once
the stream ends. Agents do no I/O towards the client, so they are tested without sockets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import attrs

from ..auth import Principal

__all__ = ["Agent", "AgentReply", "AgentRequest", "StreamedReply", "split_chunks"]


@attrs.frozen
class AgentRequest:
    session_id: str
    message: str  # the user's text (already validated, 1-8000 chars)
    context: Mapping[str, Any]  # optional client context, may be empty
    principal: Principal = attrs.field(factory=Principal.anonymous)  # who asked
    shared_session: bool = True  # an anonymous session: anyone holding its id reads it

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
