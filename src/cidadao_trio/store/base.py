"""What a local store keeps across restarts, and the operations that change it.

Streams are the broker's (``broker.local``); the other records (sessions,
investigations, reports, turns, counters) are read and written by the records
repository (``records.local``), whose writes the broker queues with its own. Writes are
plain records (:class:`Append`, :class:`Link`, :class:`SaveInvestigation`, ...) so the
broker's one writer can keep them in order and a store can apply a whole window of them
in one transaction: a record saved before an event is never committed after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from ..auth import ANONYMOUS_OWNER

Payload = str | bytes | memoryview  # an envelope's text, or its UTF-8 bytes (no second copy)


@attrs.frozen
class StoredMessage:
    """One durable message of a stream.

    ``ref`` marks a copy of another stream's message (an investigation event followed by a
    session): it is written with an empty ``text`` and stored once, as the pair (source
    stream, source offset). Read back, a copy's ``text`` is the source's envelope, whose id
    the reader replaces with the copy's own.
    """

    offset: int
    type: str
    text: Payload  # the encoded envelope, id included ("" for a copy when written)
    created: float  # unix seconds
    coalesce_key: str | None = None
    ref: tuple[str, int] | None = None


@attrs.frozen
class StreamHead:
    """What a stream is without its history: history is read by range when needed."""

    epoch: str
    last_offset: int
    links: tuple[str, ...]  # streams that follow this one


@attrs.frozen
class CreateStream:
    stream: str
    epoch: str


@attrs.frozen
class Append:
    stream: str
    message: StoredMessage


@attrs.frozen
class Trim:
    """Forget messages at or below ``max_offset`` and older than ``before`` (unix s)."""

    stream: str
    max_offset: int
    before: float


@attrs.frozen
class Link:
    source: str
    target: str
    active: bool  # False removes it


@attrs.frozen
class SaveSession:
    session_id: str
    owner_key: str


@attrs.frozen
class SaveInvestigation:
    investigation_id: str
    record: str  # JSON of the investigation's status record


@attrs.frozen
class SaveReport:
    investigation_id: str
    json: str
    markdown: str


@attrs.frozen
class SaveTurn:
    """A chat turn being answered (``record`` JSON), or answered (``record`` None): a turn
    still open after a restart was cut by it and is ended as failed."""

    session_id: str
    turn_key: str
    record: str | None


@attrs.frozen
class SaveClaim:
    """A named claim (a client message id accepted, an investigation running): ``value``
    None removes it; one past ``expires_at`` (epoch seconds) reads as absent."""

    name: str
    value: str | None
    expires_at: float | None = None
    prune_before: float | None = None  # also drop every claim that expired before this


Op = CreateStream | Append | Trim | Link | SaveSession | SaveInvestigation | SaveReport | SaveTurn | SaveClaim


class Store(Protocol):
    """Blocking calls; the broker runs them in a worker thread, one at a time."""

    durable: bool

    def load_head(self, stream: str) -> StreamHead | None: ...

    def load_messages(self, stream: str, after: int, upto: int, limit: int) -> list[StoredMessage]:
        """Messages of ``stream`` with ``after < offset <= upto``, oldest first, at most ``limit``."""

    def load_oldest(self, stream: str, min_offset: int, created_since: float) -> int | None:
        """The first offset ``>= min_offset`` created at or after ``created_since``, if any."""

    def load_last_ref(self, stream: str, source: str) -> int:
        """The last offset of ``source`` that ``stream`` holds a copy of (0: none)."""

    def load_session_owner(self, session_id: str) -> str | None: ...

    def links_to(self, target: str) -> list[str]: ...

    def load_investigations(self) -> list[str]:
        """Every investigation record (JSON), oldest first."""

    def load_report(self, investigation_id: str) -> tuple[str, str] | None:
        """(json, markdown) of a finished investigation's report."""

    def load_investigation(self, investigation_id: str) -> str | None: ...

    def next_number(self, counter: str) -> int:
        """Atomically increment and return a named counter (investigation ids per year)."""

    def load_open_turns(self) -> list[tuple[str, str, str]]:
        """(session_id, turn_key, record JSON) of every turn begun and not yet answered."""

    def load_claim(self, name: str, now: float) -> str | None:
        """A claim's value, unless absent or expired at ``now``."""

    def load_claims(self, prefix: str, now: float) -> list[tuple[str, str]]:
        """(name, value) of every live claim whose name starts with ``prefix``."""

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply every op, in order, atomically."""

    def close(self) -> None: ...


class MemoryStore:
    """``--store memory``: records live as long as the process; streams stay in the broker.

    ``durable`` is False: the broker keeps every stream in memory and gives each a fresh
    epoch per start, so a client resuming after a restart is told history was lost. The
    broker's memory is then the only copy of history, so it is bounded by retention
    (``history_messages``, ``history_seconds``) and never by the memory byte budget.
    """

    durable = False

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._links: set[tuple[str, str]] = set()
        self._investigations: dict[str, str] = {}
        self._reports: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, int] = {}
        self._turns: dict[tuple[str, str], str] = {}
        self._claims: dict[str, tuple[str, float | None]] = {}

    def load_head(self, stream: str) -> StreamHead | None:
        return None

    def load_messages(self, stream: str, after: int, upto: int, limit: int) -> list[StoredMessage]:
        return []

    def load_oldest(self, stream: str, min_offset: int, created_since: float) -> int | None:
        return None

    def load_last_ref(self, stream: str, source: str) -> int:
        return 0

    def load_session_owner(self, session_id: str) -> str | None:
        return self._owners.get(session_id)

    def links_to(self, target: str) -> list[str]:
        return sorted(source for source, t in self._links if t == target)

    def load_investigations(self) -> list[str]:
        return list(self._investigations.values())

    def load_report(self, investigation_id: str) -> tuple[str, str] | None:
        return self._reports.get(investigation_id)

    def load_investigation(self, investigation_id: str) -> str | None:
        return self._investigations.get(investigation_id)

    def next_number(self, counter: str) -> int:
        self._counters[counter] = self._counters.get(counter, 0) + 1
        return self._counters[counter]

    def load_open_turns(self) -> list[tuple[str, str, str]]:
        return [(session, key, record) for (session, key), record in self._turns.items()]

    def load_claim(self, name: str, now: float) -> str | None:
        value, expires_at = self._claims.get(name, (None, None))
        return value if expires_at is None or expires_at > now else None

    def load_claims(self, prefix: str, now: float) -> list[tuple[str, str]]:
        return [
            (name, value) for name, (value, expires_at) in self._claims.items()
            if name.startswith(prefix) and (expires_at is None or expires_at > now)
        ]

    def apply(self, ops: Sequence[Op]) -> None:
        for op in ops:
            match op:
                case SaveSession(session_id=session_id, owner_key=owner_key):
                    if self._owners.get(session_id, ANONYMOUS_OWNER) == ANONYMOUS_OWNER:
                        self._owners[session_id] = owner_key  # a user may claim an anonymous one
                case Link(source=source, target=target, active=active):
                    (self._links.add if active else self._links.discard)((source, target))
                case SaveInvestigation(investigation_id=investigation_id, record=record):
                    self._investigations[investigation_id] = record
                case SaveReport(investigation_id=investigation_id, json=json, markdown=markdown):
                    self._reports[investigation_id] = (json, markdown)
                case SaveTurn(session_id=session_id, turn_key=turn_key, record=None):
                    self._turns.pop((session_id, turn_key), None)
                case SaveTurn(session_id=session_id, turn_key=turn_key, record=str(record)):
                    self._turns[(session_id, turn_key)] = record
                case SaveClaim(name=name, value=None):
                    self._claims.pop(name, None)
                case SaveClaim(name=name, value=str(value), expires_at=expires_at, prune_before=prune_before):
                    if prune_before is not None:
                        self._claims = {
                            k: (v, e) for k, (v, e) in self._claims.items() if e is None or e >= prune_before
                        }
                    self._claims[name] = (value, expires_at)

    def close(self) -> None:
        pass
