"""What the broker promises its callers, whatever backs it (this process's store or Redis).

A broker keeps streams only; the other records (investigations, session owners, ...)
are the records repository's (``records.base.Records``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol

import attrs

from ..protocol.envelope import DurableId
from ..protocol.events import Event
from ..protocol.frames import payload_size, text_frame

log = logging.getLogger(__name__)


def session_stream(session_id: str) -> str:
    return f"session:{session_id}"


def investigation_stream(investigation_id: str) -> str:
    return f"investigation:{investigation_id}"


class StoreUnavailable(Exception):
    """The store cannot accept writes now: nothing was accepted (PROTOCOL.md §7 ``UNAVAILABLE``)."""

    def __init__(self, reason: str, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@attrs.frozen
class Delivery:
    """One encoded message on its way to connections; the text is shared, never re-encoded."""

    type: str
    text: str
    id: str
    durable: bool
    origin: int | None = None  # connection that caused it; relays skip their origin
    coalesce_key: str | None = None
    # Shared by every connection; given when the frame already exists (a replay from memory).
    frame: bytes = attrs.field(kw_only=True, repr=False, eq=False)
    size: int = attrs.field(init=False)  # payload bytes, for outbox bounds

    @frame.default
    def _frame(self) -> bytes:
        return text_frame(self.text.encode())

    @size.default
    def _size(self) -> int:
        return payload_size(self.frame)


class Sink(Protocol):
    """Where live deliveries go; ``offer`` never blocks (a slow sink cannot stall a producer)."""

    def offer(self, delivery: Delivery) -> None: ...


class Flushable(Protocol):
    def flush(self) -> None: ...


class FanOut:
    """The sinks offered to in the open :func:`fan_out` block, to flush at its end
    (process-wide: the block never awaits, so it holds the offers of one synchronous step)."""

    depth: ClassVar[int] = 0
    offered: ClassVar[list[Flushable]] = []


# Offers (deliveries times sinks) in one fan-out window before the broker lets the loop run:
# ~16 messages to 1,000 connections (full enough batches), tens of ms, not a whole burst.
FAN_OUT_STEP = 16_384


@contextmanager
def fan_out() -> Iterator[None]:
    """Offers made in this block reach their consumers at its end, one flush per sink.

    A broker offers each committed window inside it, so a connection gets every message
    of the window in one write (and full ``batch`` frames) and no task is woken per
    delivery (``session.outbox.Outbox`` lists itself here). The block must not await.
    """
    FanOut.depth += 1
    try:
        yield
    finally:
        FanOut.depth -= 1
        if FanOut.depth == 0:
            offered, FanOut.offered = FanOut.offered, []
            for sink in offered:  # every one, whatever another does: one bad sink strands none
                try:
                    sink.flush()
                except Exception:
                    log.exception("a sink failed to flush; the others were flushed")


@attrs.frozen
class Attachment:
    """Result of attaching to a stream from a cursor."""

    gap: bool  # the cursor could not be honoured (unknown, expired or other epoch)
    replayed: int  # durable messages pushed to the sink before live ones


class Broker(Protocol):
    """Durable streams with offsets, live sinks and links (see ``memory.LocalBroker``)."""

    healthy: bool

    async def run(self, *, task_status: Any = ...) -> None: ...

    async def flush(self) -> None: ...

    async def publish(
        self,
        stream: str,
        event: Event,
        *,
        origin: int | None = None,
    ) -> Delivery: ...

    async def cursor_is_valid(self, stream: str, cursor: DurableId) -> bool: ...

    async def attach(
        self, stream: str, sink: Sink, after: DurableId | None, *, from_oldest: bool = False
    ) -> Attachment: ...

    def detach(self, stream: str, sink: Sink) -> None: ...

    async def link(self, source: str, target: str) -> int: ...

    async def unlink(self, source: str, target: str) -> None: ...

    async def followed_by(self, target: str) -> list[str]: ...

    async def retained(self, stream: str) -> list[Delivery]:
        """Every committed message the stream retains, oldest first (a digest reads it)."""
        ...

    async def last_id(self, stream: str) -> str: ...
