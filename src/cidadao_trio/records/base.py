"""The records repository: what the server remembers besides streams, typed and async.

Streams (history, offsets, links, fan-out) belong to the broker; everything else a
restart must not forget is here: investigations and their reports, who owns each chat
session, the chat turns being answered, named counters, and texts kept for a while
(:meth:`Records.cache`). Callers get one
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
from ..investigations.scope import Filters
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


@attrs.frozen
class Run:
    """A running investigation: what a node needs to re-run it if its own node goes away.

    While it runs, its node holds a lease on it (``claim_run``, renewed well within the
    lease's time to live); a node that finds the lease lapsed claims it and adopts the run.
    """

    investigation_id: str
    scope: Filters


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

    async def accept_message(self, session_id: str, message_id: str, ttl: float) -> bool:
        """Keep a client message's ``id`` as accepted by its session for ``ttl`` seconds
        (§2, the idempotency key); False when the session already accepted it. Atomic
        across nodes: of two racing with the same id, one is told True."""

    async def forget_message(self, session_id: str, message_id: str) -> None:
        """Undo :meth:`accept_message` for a message whose effect was not made durable."""

    async def cached(self, key: str) -> str | None:
        """A text kept by :meth:`cache` under ``key``, unless it expired (then None)."""

    async def cache(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (every node sees it, a restart
        keeps it with a durable store): the Portal API's responses, the server API's
        idempotent answers. A later write replaces it; ``ttl <= 0`` keeps nothing."""

    async def begin_run(self, run: Run, node: str, ttl: float) -> None:
        """Keep ``run`` until :meth:`end_run`, its lease held by ``node``."""

    async def runs(self) -> list[Run]:
        """Every investigation begun and not yet ended (finished, failed or cancelled)."""

    async def claim_run(self, investigation_id: str, node: str, ttl: float) -> bool:
        """Take, or renew, the run's lease for ``ttl`` seconds: True unless another node holds it."""

    async def release_run(self, investigation_id: str, node: str) -> None:
        """Let go of the lease (if ``node`` holds it) and keep the run, for another node to adopt."""

    async def end_run(self, investigation_id: str) -> None: ...

    def close(self) -> None:
        """Let go of the store (once the broker has flushed)."""
