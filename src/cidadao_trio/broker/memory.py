"""In-process broker: durable streams with offsets, bounded history, live fan-out, links.

Everything here runs without awaiting between reading history and registering a sink,
so a subscriber attached from a cursor sees every message exactly once across the
replay/live seam.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ..protocol.envelope import Body, DurableId, body, ephemeral_id
from ..protocol.outbound import DURABLE_TYPES, coalesce_key
from .base import Attachment, Delivery, Sink


@attrs.define(eq=False)
class _Entry:
    delivery: Delivery
    body: Body
    created: float


@attrs.define(eq=False)
class MemoryStream:
    key: str
    epoch: str
    max_messages: int
    max_age: float
    last_offset: int = 0
    history: deque[_Entry] = attrs.field(factory=deque)
    sinks: list[Sink] = attrs.field(factory=list)
    links: set[str] = attrs.field(factory=set)

    def trim(self, now: float) -> None:
        while self.history and (
            len(self.history) > self.max_messages or now - self.history[0].created > self.max_age
        ):
            self.history.popleft()

    def append(self, message: Body, now: float, origin: int | None, key: str | None) -> Delivery:
        self.last_offset += 1
        id = f"{self.epoch}-{self.last_offset}"
        delivery = Delivery(message.type, message.stamp(id), id, True, origin, key)
        self.history.append(_Entry(delivery, message, now))
        self.trim(now)
        return delivery

    def cursor_is_valid(self, cursor: DurableId, now: float) -> bool:
        if cursor.epoch != self.epoch or cursor.offset > self.last_offset:
            return False
        self.trim(now)
        first = self.history[0].delivery if self.history else None
        oldest_kept = int(first.id.rsplit("-", 1)[1]) if first else self.last_offset + 1
        return cursor.offset >= oldest_kept - 1

    def entries_after(self, offset: int) -> list[_Entry]:
        skip = len(self.history) - (self.last_offset - offset)
        return list(self.history)[max(skip, 0) :]


class MemoryBroker:
    """Streams live in this process; history is lost on restart (a fresh epoch says so)."""

    def __init__(
        self,
        *,
        max_messages: int = 1000,
        max_age: float = 24 * 3600.0,
        epoch: str | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.epoch = epoch or os.urandom(4).hex()
        self._max_messages = max_messages
        self._max_age = max_age
        self._clock = clock
        self._streams: dict[str, MemoryStream] = {}

    def stream(self, key: str) -> MemoryStream:
        stream = self._streams.get(key)
        if stream is None:
            stream = MemoryStream(key, self.epoch, self._max_messages, self._max_age)
            self._streams[key] = stream
        return stream

    async def publish(
        self,
        stream: str,
        type: str,
        data: Mapping[str, Any],
        *,
        origin: int | None = None,
    ) -> Delivery:
        """Append a durable message (or relay an ephemeral one) and offer it to live sinks."""
        target = self.stream(stream)
        message = body(type, data)
        key = coalesce_key(type, data)
        if type not in DURABLE_TYPES:
            delivery = Delivery(type, message.stamp(ephemeral_id()), "", False, origin, key)
            self._offer(target, delivery)
            return delivery
        now = self._clock()
        delivery = target.append(message, now, origin, key)
        self._offer(target, delivery)
        for linked in list(target.links):
            follower = self.stream(linked)
            self._offer(follower, follower.append(message, now, origin, key))
        return delivery

    def cursor_is_valid(self, stream: str, cursor: DurableId) -> bool:
        known = self._streams.get(stream)
        return known is not None and known.cursor_is_valid(cursor, self._clock())

    async def attach(self, stream: str, sink: Sink, after: DurableId | None) -> Attachment:
        """Replay what came after the cursor into ``sink``, then keep it attached for live ones."""
        target = self.stream(stream)
        replayed = 0
        gap = after is not None and not target.cursor_is_valid(after, self._clock())
        if after is not None and not gap:
            for entry in target.entries_after(after.offset):
                sink.offer(entry.delivery)
                replayed += 1
        target.sinks.append(sink)
        return Attachment(gap, replayed)

    def detach(self, stream: str, sink: Sink) -> None:
        target = self._streams.get(stream)
        if target is not None and sink in target.sinks:
            target.sinks.remove(sink)

    async def link(self, source: str, target: str) -> int:
        """Copy ``source``'s retained history into ``target``, then follow it live.

        Returns how many messages were copied. Linking twice copies nothing new.
        """
        origin = self.stream(source)
        follower = self.stream(target)
        if target in origin.links:
            return 0
        now = self._clock()
        origin.trim(now)
        copied = 0
        for entry in list(origin.history):
            delivery = follower.append(entry.body, now, None, entry.delivery.coalesce_key)
            self._offer(follower, delivery)
            copied += 1
        origin.links.add(target)
        return copied

    def unlink(self, source: str, target: str) -> None:
        origin = self._streams.get(source)
        if origin is not None:
            origin.links.discard(target)

    @staticmethod
    def _offer(stream: MemoryStream, delivery: Delivery) -> None:
        for sink in list(stream.sinks):
            sink.offer(delivery)
