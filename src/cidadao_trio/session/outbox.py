"""A connection's bounded outbox (PROTOCOL.md §5).

Producers call :meth:`Outbox.offer`, which never blocks: a slow client must not stall an
investigation or an agent. When the outbox is over its bound, typing indicators are
dropped and pending progress messages of one investigation are coalesced; messages that
must never be dropped are still queued, the outbox records since when it has been full,
and the connection closes it 1013 if it stays full for ``slow_consumer_timeout`` (or
at once past the hard ceiling, ``hard_messages``/``hard_bytes``, so memory stays bounded).

Replayed history (a resume, events copied on subscribe, a digest) is offered inside
:meth:`Outbox.replaying`: those deliveries are never coalesced or dropped, so a replay
stays contiguous; the hard ceiling includes the stream retention, so a whole replay fits.

Fan-out without a task wake-up per delivery: a broker offers a committed window inside
``broker.base.fan_out``; each outbox offered to there is flushed once at the end, through its
``deliver`` hook (a connection writes everything pending in one non-blocking send from
the publishing task), so nothing is woken per message. Offers outside a window, and
outboxes without a hook, wake the consumer's task through :meth:`Outbox.wait_ready`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import trio

from ..broker.base import Delivery, FanOut
from ..protocol.events import DROPPABLE_TYPES

HARD_LIMIT_FACTOR = 2


@attrs.define(eq=False)
class Outbox:
    owner: int  # connection id; relayed messages from this connection are skipped
    max_messages: int = 256
    max_bytes: int = 1024 * 1024
    # The hard ceiling, by default HARD_LIMIT_FACTOR times the bound; a connection sets its
    # own (server/connection.py) with room for the stream retention, so a replay of
    # retained history (or an investigation copied in on subscribe) fits and drains.
    hard_messages: int = attrs.field()
    hard_bytes: int = attrs.field()
    _queue: deque[Delivery] = attrs.field(factory=deque, init=False)
    _bytes: int = attrs.field(default=0, init=False)
    _ready: trio.Event = attrs.field(factory=trio.Event, init=False)
    _full_since: float | None = attrs.field(default=None, init=False)
    _replaying: int = attrs.field(default=0, init=False)  # depth of replaying() blocks
    _protected: set[int] = attrs.field(factory=set, init=False)  # id() of queued replayed deliveries
    # Told when fullness changes (full, drained, overflowed, a replay moved): lets a
    # connection watch several timers in one task.
    on_full_changed: Callable[[], None] = attrs.field(default=lambda: None, kw_only=True)
    # Writes what is pending now, from the caller's task (a connection whose socket is
    # free); None: wake whoever waits in wait_ready instead.
    deliver: Callable[[], None] | None = attrs.field(default=None, kw_only=True)
    _in_window: bool = attrs.field(default=False, init=False)  # already listed in the open fan_out
    _soft_messages: int = attrs.field(default=0, init=False)  # the first bound an append can cross
    _soft_bytes: int = attrs.field(default=0, init=False)
    overflowed: bool = attrs.field(default=False, init=False)  # past the hard ceiling
    dropped: int = attrs.field(default=0, init=False)
    coalesced: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._soft_messages = min(self.max_messages, self.hard_messages)
        self._soft_bytes = min(self.max_bytes, self.hard_bytes)

    @hard_messages.default
    def _hard_messages(self) -> int:
        return HARD_LIMIT_FACTOR * self.max_messages

    @hard_bytes.default
    def _hard_bytes(self) -> int:
        return HARD_LIMIT_FACTOR * self.max_bytes

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def full_since(self) -> float | None:
        return self._full_since

    def _over(self, extra_count: int = 0, extra_bytes: int = 0) -> bool:
        return (
            len(self._queue) + extra_count > self.max_messages
            or self._bytes + extra_bytes > self.max_bytes
        )

    @contextmanager
    def replaying(self) -> Iterator[None]:
        """Deliveries offered inside this block are protected: never coalesced or dropped.

        A protected delivery is queued as a copy without a coalesce key (the shared frame
        is kept, not re-encoded), so no later ``_make_room`` can merge it away. Backpressure
        pauses a replay rather than ending it: while the client keeps taking replayed
        messages, the slow-consumer timer starts again (the hard ceiling still bounds memory).
        """
        self._replaying += 1
        try:
            yield
        finally:
            self._replaying -= 1

    def offer(self, delivery: Delivery) -> None:
        if delivery.origin == self.owner and delivery.type in DROPPABLE_TYPES:
            return  # a connection's own typing is not echoed back to it
        if self._replaying and delivery.type not in DROPPABLE_TYPES:  # live typing stays droppable
            if delivery.coalesce_key is not None:
                delivery = attrs.evolve(delivery, coalesce_key=None, frame=delivery.frame)
            self._protected.add(id(delivery))
            self._append(delivery)
            return
        size = delivery.size
        if len(self._queue) >= self.max_messages or self._bytes + size > self.max_bytes:  # _over(1, size)
            self._make_room(delivery)
            if self._over(1, size) and delivery.type in DROPPABLE_TYPES:
                self.dropped += 1
                return
        self._append(delivery)

    def _append(self, delivery: Delivery) -> None:
        """Queue it; the fan-out hot path (every delivery to every connection) stays short."""
        queue = self._queue
        queue.append(delivery)
        self._bytes += delivery.size
        if FanOut.depth:
            if not self._in_window:
                self._in_window = True
                FanOut.offered.append(self)
        else:
            self._ready.set()
        if self._full_since is not None or len(queue) > self._soft_messages or self._bytes > self._soft_bytes:
            self._update_fullness()  # below both bounds (and the ceilings above them) nothing changes

    def flush(self) -> None:
        """Hand what is pending to the consumer now: its ``deliver`` hook, else a wake-up."""
        self._in_window = False
        if not self._queue:
            return
        if self.deliver is not None:
            self.deliver()
        else:
            self._ready.set()

    def wake(self) -> None:
        """Wake the consumer's task (in :meth:`wait_ready`) even with nothing queued."""
        self._ready.set()

    def _make_room(self, incoming: Delivery) -> None:
        """Drop typing, and keep only the latest pending message of each coalesce key."""
        seen = {incoming.coalesce_key} if incoming.coalesce_key is not None else set()
        kept: deque[Delivery] = deque()
        for pending in reversed(self._queue):
            if pending.type in DROPPABLE_TYPES:
                self.dropped += 1
            elif pending.coalesce_key is not None and pending.coalesce_key in seen:
                self.coalesced += 1
            else:
                if pending.coalesce_key is not None:
                    seen.add(pending.coalesce_key)
                kept.appendleft(pending)
                continue
            self._bytes -= pending.size
        self._queue = kept

    def _update_fullness(self) -> None:
        full = self._over()
        if full and self._full_since is None:
            self._full_since = trio.current_time()
            self.on_full_changed()
        elif not full and self._full_since is not None:
            self._full_since = None
            self.on_full_changed()
        if len(self._queue) > self.hard_messages or self._bytes > self.hard_bytes:
            self.overflowed = True
            self.on_full_changed()

    def take(self, max_messages: int = 1, max_bytes: int = 64 * 1024) -> list[Delivery]:
        """Pop up to ``max_messages`` pending deliveries (at least one if any is pending)."""
        taken: list[Delivery] = []
        size = 0
        while self._queue and len(taken) < max_messages:
            head = self._queue[0]
            if taken and size + head.size > max_bytes:
                break
            taken.append(self._queue.popleft())
            size += head.size
        self._bytes -= size
        replay_progressed = False
        if self._protected:
            for delivery in taken:
                if id(delivery) in self._protected:
                    self._protected.discard(id(delivery))
                    replay_progressed = True
        return self._taken(taken, replay_progressed)

    def take_all(self) -> list[Delivery]:
        """Pop every pending delivery (a connection writes them in one send)."""
        taken = list(self._queue)
        self._queue.clear()
        self._bytes = 0
        replay_progressed = bool(self._protected)
        self._protected.clear()
        return self._taken(taken, replay_progressed)

    def _taken(self, taken: list[Delivery], replay_progressed: bool) -> list[Delivery]:
        if not self._queue and self._ready.is_set():  # never strand a waiter on an old event
            self._ready = trio.Event()
        self._update_fullness()
        if replay_progressed and self._full_since is not None:
            self._full_since = trio.current_time()  # a replay that moves is paused, not stuck
            self.on_full_changed()
        return taken

    async def wait_ready(self) -> None:
        await self._ready.wait()

