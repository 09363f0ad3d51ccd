"""The records repository: what the server remembers besides streams, typed and async.

Streams (history, offsets, links, fan-out) belong to the broker; everything else a
restart must not forget is here: investigations and their reports, who owns each chat
session, the chat turns being answered, and named counters. Callers get one
:class:`Records` explicitly; each kind of store has its implementation
(``local.StoreRecords`` over the SQLite or memory store, ``redis.RedisRecords``).

Writes may raise :class:`~cidadao_trio.broker.base.StoreUnavailable` (nothing was
accepted): callers answer ``UNAVAILABLE`` as they do for a refused publish (§7).

A new kind of record (an idempotency key, a cache) is: its attrs class here (the
converter in ``convert`` stores it as JSON), its methods on :class:`Records`, a table and
an op in the local stores (``store.base``: the op, a read on ``Store``, ``MemoryStore``;
``store.sqlite``), one method each in ``local`` and ``redis``, and the contract test in
``tests/records``.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..investigations.model import Investigation
from ..protocol.inbound import ReplyTo


@attrs.frozen
class StoredReport:
    """A finished investigation's report, in the two forms it is served in."""

    json: str  # the report as JSON text (``format=json``; html is rendered from it)
    markdown: str


@attrs.frozen
class TurnRecord:
    """What is needed to end a chat turn a restart cut (§7): who answered what."""

    agent_id: str
    agent_name: str
    reply_to: ReplyTo = None
    node: str = ""  # the server answering it (several share a Redis store)


@attrs.frozen
class OpenTurn:
    """A chat turn begun and not yet answered."""

    session_id: str
    turn_key: str
    record: TurnRecord


class Records(Protocol):
    """Every record the server keeps outside streams.

    Reads return what is committed. A write returns once it is accepted in order: behind
    every message this node published before it (the local stores queue it in the same
    write window as those messages), so a client that sees an event never sees an older
    record, and a restart never finds an event without the record it followed. A read
    sees this process's write once committed (``Broker.flush`` waits for that): callers
    keep what they are changing in memory meanwhile, as the engine does.
    """

    async def investigation(self, investigation_id: str) -> Investigation | None: ...

    async def investigations(self) -> list[Investigation]:
        """Every investigation, oldest first (an update keeps its place)."""

    async def save_investigation(self, investigation: Investigation) -> None: ...

    async def report(self, investigation_id: str) -> StoredReport | None: ...

    async def save_report(self, investigation_id: str, report: StoredReport) -> None: ...

    async def session_owner(self, session_id: str) -> str | None: ...

    async def save_session_owner(self, session_id: str, owner_key: str) -> None:
        """The first owner wins; a user may claim a session owned by ``anon`` (§6)."""

    async def open_turns(self) -> list[OpenTurn]:
        """Every chat turn begun and not yet ended."""

    async def begin_turn(self, turn: OpenTurn) -> None: ...

    async def end_turn(self, session_id: str, turn_key: str) -> None: ...

    async def next_number(self, counter: str) -> int:
        """Increment and return a named counter, atomically across nodes (1 first)."""

    def close(self) -> None:
        """Let go of the store (once the broker has flushed)."""
