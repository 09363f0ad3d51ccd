"""One task pings every WebSocket connection of the server (PROTOCOL.md §5's heartbeat).

A timer per connection costs a task wake-up and a trio deadline per ping: at 10,000
connections with a 5 s interval that is 2,000 wake-ups a second, and it showed in the
connection ramp's profile. Here the connections wait in two queues already in time order
(every connection's next ping is ``interval`` after its last one, every pong is due
``timeout`` after its ping), so one task takes whatever is due from their heads, pings
from its own task (``WebSocket.ping_nowait``) and checks the pongs, with no deadline per
connection at all. The queues hold weak references: a connection that ended is freed at
once, and its entries are dropped when their turn comes.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Protocol

import attrs
import trio

RESOLUTION = 0.25  # seconds (at most a quarter interval): pings due within it go out in one wake-up


class Beating(Protocol):
    """What the heartbeat needs of a connection."""

    @property
    def alive(self) -> bool:
        """False once the connection ended: it leaves the queues."""

    def beat(self) -> bool:
        """Ping now if the connection can be pinged; True if a ping went out."""

    def pong_due(self) -> None:
        """Its ping's answer is due: close the connection if none came."""


@attrs.define(eq=False)
class Heartbeat:
    interval: float  # seconds from a connection's start, or its last ping, to its next ping
    timeout: float  # seconds a pong may take
    _ping_queue: deque[tuple[float, weakref.ref[Beating]]] = attrs.field(factory=deque, init=False)  # (due, member)
    _pong_queue: deque[tuple[float, weakref.ref[Beating]]] = attrs.field(factory=deque, init=False)
    _joined: trio.Event = attrs.field(factory=trio.Event, init=False)

    def join(self, member: Beating) -> None:
        """Ping ``member`` every ``interval`` from now on, for as long as it is alive."""
        self._ping_queue.append((trio.current_time() + self.interval, weakref.ref(member)))
        self._joined.set()

    def __len__(self) -> int:
        return len(self._ping_queue)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            due = [queue[0][0] for queue in (self._ping_queue, self._pong_queue) if queue]
            if not due:
                await self._joined.wait()
                self._joined = trio.Event()
                continue
            await trio.sleep_until(min(due) + min(RESOLUTION, self.interval / 4))
            self.tick(trio.current_time())

    def tick(self, now: float) -> None:
        """Check the pongs due by ``now``, then send the pings due by then."""
        pongs = self._pong_queue
        while pongs and pongs[0][0] <= now:
            member = pongs.popleft()[1]()
            if member is not None and member.alive:
                member.pong_due()
        pings = self._ping_queue
        while pings and pings[0][0] <= now:
            due, ref = pings.popleft()
            member = ref()
            if member is None or not member.alive:
                continue
            if member.beat():
                pongs.append((now + self.timeout, ref))
            due += self.interval  # from when it was due: no drift; a late tick skips, never doubles
            pings.append((due if due > now else now + self.interval, ref))
