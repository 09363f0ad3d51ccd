"""One task pings every WebSocket connection of the server (PROTOCOL.md §5's heartbeat).

A timer per connection costs a task wake-up and a trio deadline per ping: at 10,000
connections with a 5 s interval that is 2,000 wake-ups a second, and it showed in the
connection ramp's profile. Here one task keeps every connection's next ping in a heap
(``interval`` after its previous one was due) and every pong awaited in a queue already
in time order (``timeout`` after its ping), takes whatever is due, pings from its own
task (``WebSocket.ping_nowait``) and checks each pong against the ping it answers, with
no deadline per connection at all. Both hold weak references: a connection that ended is
freed at once, and its entries are dropped when their turn comes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import weakref
from collections import deque
from typing import Protocol

import attrs
import trio

log = logging.getLogger(__name__)

RESOLUTION = 0.25  # seconds (at most a quarter interval): pings due within it go out in one wake-up


class Beating(Protocol):
    """What the heartbeat needs of a connection."""

    @property
    def alive(self) -> bool:
        """False once the connection ended: it leaves the queues."""

    def beat(self) -> trio.Event | None:
        """Ping now if the connection can be pinged: the event its pong sets, or None."""

    def pong_due(self, pong: trio.Event) -> None:
        """That ping's answer is due: close the connection if none came."""


@attrs.define(eq=False)
class Heartbeat:
    interval: float  # seconds from a connection's start, or its last ping, to its next ping (0: none)
    timeout: float  # seconds a pong may take
    _ping_heap: list[tuple[float, int, weakref.ref[Beating]]] = attrs.field(factory=list, init=False)
    _pong_queue: deque[tuple[float, weakref.ref[Beating], trio.Event]] = attrs.field(factory=deque, init=False)
    _order: itertools.count[int] = attrs.field(factory=itertools.count, init=False)  # ties in the heap
    _joined: trio.Event = attrs.field(factory=trio.Event, init=False)

    def join(self, member: Beating) -> None:
        """Ping ``member`` every ``interval`` from now on, for as long as it is alive."""
        if self.interval > 0:
            entry = (trio.current_time() + self.interval, next(self._order), weakref.ref(member))
            heapq.heappush(self._ping_heap, entry)
            self._joined.set()

    def __len__(self) -> int:
        return len(self._ping_heap)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            due = [self._ping_heap[0][0]] if self._ping_heap else []
            if self._pong_queue:
                due.append(self._pong_queue[0][0])
            if not due:
                await self._joined.wait()
                self._joined = trio.Event()
                continue
            await trio.sleep_until(min(due) + min(RESOLUTION, self.interval / 4))
            self.tick(trio.current_time())

    def tick(self, now: float) -> None:
        """Check the pongs due by ``now``, then send the pings due by then. One connection
        failing here is logged and dropped from the heartbeat, never the server's task."""
        pongs = self._pong_queue
        while pongs and pongs[0][0] <= now:
            _, ref, answer = pongs.popleft()
            member = ref()
            if member is not None and member.alive:
                try:
                    member.pong_due(answer)
                except Exception:
                    log.exception("heartbeat: a pong check failed")
        heap = self._ping_heap
        while heap and heap[0][0] <= now:
            due, order, ref = heapq.heappop(heap)
            member = ref()
            if member is None or not member.alive:
                continue
            try:
                pong = member.beat()
            except Exception:
                log.exception("heartbeat: a ping failed; that connection is no longer pinged")
                continue
            if pong is not None:
                pongs.append((now + self.timeout, ref, pong))
            due += self.interval  # from when it was due: no drift; a late tick skips, never doubles
            heapq.heappush(heap, (due if due > now else now + self.interval, order, ref))
