"""A participant: one open connection as the session layer sees it.

Chat sessions and investigation streams need only this of a connection (who it is, its
outbox, how to answer it or end it); the server layer's ``Connection`` provides it. Not to
be confused with ``cidadao_trio.client``, the program that connects to the server.
"""

from __future__ import annotations

from typing import Protocol

from ..auth import Principal
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.events import Event
from ..protocol.inbound import ReplyTo
from .outbox import Outbox


class Participant(Protocol):
    id: int
    outbox: Outbox
    principal: Principal

    def send(self, event: Event) -> None:
        """Queue an ephemeral message for this connection only."""

    def error(
        self,
        code: ErrorCode,
        message: str | None = None,
        reply_to: ReplyTo = None,
        retry_after: float | None = None,
    ) -> None:
        """Queue an ``error`` envelope; the connection stays open."""

    def close(
        self,
        code: CloseCode,
        reason: str,
        error: ErrorCode | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Send an optional final ``error``, then the close frame, and end the connection."""
