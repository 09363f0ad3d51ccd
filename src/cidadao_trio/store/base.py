"""What the broker and the hub keep across restarts, and the operations that change it.

Writes are plain records (:class:`Append`, :class:`Link`, ...) so the broker can queue
them in order and a store can apply a whole window of them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from ..auth import ANONYMOUS_OWNER


@attrs.frozen
class StoredMessage:
    offset: int
    type: str
    text: str  # the encoded envelope, id included
    created: float  # unix seconds
    coalesce_key: str | None = None


@attrs.frozen
class StoredStream:
    epoch: str
    last_offset: int
    messages: tuple[StoredMessage, ...]  # retained history, oldest first
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


Op = CreateStream | Append | Trim | Link | SaveSession | SaveInvestigation | SaveReport


class Store(Protocol):
    """Blocking calls; the broker runs them in a worker thread, one at a time."""

    durable: bool

    def load_stream(self, stream: str) -> StoredStream | None: ...

    def load_session_owner(self, session_id: str) -> str | None: ...

    def links_to(self, target: str) -> list[str]: ...

    def load_investigations(self) -> list[str]:
        """Every investigation record (JSON), oldest first."""

    def load_report(self, investigation_id: str) -> tuple[str, str] | None:
        """(json, markdown) of a finished investigation's report."""

    def load_investigation(self, investigation_id: str) -> str | None: ...

    def next_number(self, counter: str) -> int:
        """Atomically increment and return a named counter (investigation ids per year)."""

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply every op, in order, atomically."""

    def close(self) -> None: ...


class MemoryStore:
    """``--store memory``: records live as long as the process; streams stay in the broker.

    ``durable`` is False: the broker keeps every stream in memory and gives each a fresh
    epoch per start, so a client resuming after a restart is told history was lost.
    """

    durable = False

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._links: set[tuple[str, str]] = set()
        self._investigations: dict[str, str] = {}
        self._reports: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, int] = {}

    def load_stream(self, stream: str) -> StoredStream | None:
        return None

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

    def close(self) -> None:
        pass
