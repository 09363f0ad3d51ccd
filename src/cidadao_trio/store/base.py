"""What the broker and the hub keep across restarts, and the operations that change it.

Writes are plain records (:class:`Append`, :class:`Link`, ...) so the broker can queue
them in order and a store can apply a whole window of them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs


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


Op = CreateStream | Append | Trim | Link | SaveSession


class Store(Protocol):
    """Blocking calls; the broker runs them in a worker thread, one at a time."""

    durable: bool

    def load_stream(self, stream: str) -> StoredStream | None: ...

    def load_session_owner(self, session_id: str) -> str | None: ...

    def links_to(self, target: str) -> list[str]: ...

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply every op, in order, atomically."""

    def close(self) -> None: ...


class EphemeralStore:
    """``--store memory``: nothing survives the process; a fresh epoch says so to clients."""

    durable = False

    def load_stream(self, stream: str) -> StoredStream | None:
        return None

    def load_session_owner(self, session_id: str) -> str | None:
        return None

    def links_to(self, target: str) -> list[str]:
        return []

    def apply(self, ops: Sequence[Op]) -> None:
        pass

    def close(self) -> None:
        pass
