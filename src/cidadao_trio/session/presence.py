"""Presence (PROTOCOL.md §9): how many connections follow an investigation, how many a
chat session has open. Counts only: nothing here ever holds a name.

Every participant passes through the hub (``Hub.open_stream`` joins the board, and
``Hub.close_stream`` leaves it). A *topic* is a stream name: ``investigation:<id>``
counts the connections on the investigation's stream (WebSocket or SSE) plus the chat
connections whose session follows it; ``session:<id>`` counts the session's connections.
The connections counted in a topic are also its audience.

Which investigations a session follows is learnt from the session stream itself: the
board attaches one sink per session that has connections here and watches its
``subscribed``/``unsubscribed`` messages, so a subscription made on another node counts
too.

One ticker task sends the counts, never more than once per ``interval`` per topic: on
one node a change after a quiet spell goes out at once, later ones at the end of the
interval (trailing edge: the final count always arrives); with a shared tally every
change goes out at the next tick, one per interval. Each connection is sent a count only
when it differs from the last one it was told, and a new connection is taken to know
that it is there itself (a lone tab is not told "1"). A big audience is told less often:
a topic followed by A connections at most once per ``interval * A / AUDIENCE_PER_INTERVAL``
(10,000 watchers: a count every 10 s), so that no topic costs more than about a thousand
messages a second — during a ramp the count moves every second, and telling everyone each
time cost a node more than the connects themselves. Across nodes a :class:`Tally`
(``broker/presence_redis.py``) adds up every node's counts; a node's own counts live in a
:class:`LocalTally`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs
import orjson
import trio

from ..broker.base import Broker, Delivery, fan_out, investigation_stream, session_stream
from ..protocol.envelope import encode, ephemeral_id
from ..protocol.events import Event, SessionConnections, Subscribed, Unsubscribed, Watching
from .outbox import Outbox

log = logging.getLogger(__name__)

INVESTIGATION = investigation_stream("")
SESSION = session_stream("")
FOLLOW_CHANGES = frozenset({Subscribed.type, Unsubscribed.type})
AUDIENCE_PER_INTERVAL = 1000  # connections told per ``interval`` per topic, at most


class Counted(Protocol):
    """What the board needs of a participant: where its counts go."""

    @property
    def outbox(self) -> Outbox: ...


class Tally(Protocol):
    """Where each node's counts are added up."""

    shared: bool  # other nodes add to the totals too: read them at every tick

    async def report(self, changed: Mapping[str, int], everything: Callable[[], Mapping[str, int]]) -> None:
        """Record this node's ``changed`` counts (``everything`` if the tally lost them)."""

    async def totals(self, topics: Sequence[str]) -> dict[str, int]: ...

    async def read(self, topics: Sequence[str], everything: Callable[[], Sequence[str]]) -> dict[str, int]:
        """The totals of ``topics`` and of any other topic that changed elsewhere (a shared
        tally; ``everything`` is every topic this node tells, for a tally that lost track)."""

    async def withdraw(self) -> None:
        """This node stops counting (a shutdown in good order)."""


@attrs.define
class LocalTally:
    """One node's counts are the totals (the memory and SQLite stores)."""

    shared: bool = attrs.field(default=False, init=False)
    counts: dict[str, int] = attrs.field(factory=dict)

    async def report(self, changed: Mapping[str, int], everything: Callable[[], Mapping[str, int]]) -> None:
        for topic, count in changed.items():
            if count:
                self.counts[topic] = count
            else:
                self.counts.pop(topic, None)

    async def totals(self, topics: Sequence[str]) -> dict[str, int]:
        return {topic: self.counts.get(topic, 0) for topic in topics}

    async def read(self, topics: Sequence[str], everything: Callable[[], Sequence[str]]) -> dict[str, int]:
        return await self.totals(topics)  # nothing changes but what this node reports

    async def withdraw(self) -> None:
        self.counts.clear()


def count_event(topic: str, total: int) -> Event:
    if topic.startswith(INVESTIGATION):
        return Watching(investigation_id=topic[len(INVESTIGATION):], watching=total)
    return SessionConnections(session_id=topic[len(SESSION):], connections=total)


@attrs.define(eq=False)
class _FollowWatch:
    """The board's sink on a session stream: it reads only the follow changes."""

    board: PresenceBoard
    stream: str

    def offer(self, delivery: Delivery) -> None:
        if delivery.type in FOLLOW_CHANGES:  # offered in the publisher's task: never raise there
            investigation_id = orjson.loads(delivery.text).get("data", {}).get("investigation_id")
            if isinstance(investigation_id, str):
                following = delivery.type == Subscribed.type
                self.board.followed(self.stream, investigation_stream(investigation_id), following)


@attrs.define(eq=False)
class PresenceBoard:
    broker: Broker
    tally: Tally = attrs.field(factory=LocalTally)
    interval: float = 1.0  # at most one message per topic per interval (§9: one a second)
    audience_per_interval: int = AUDIENCE_PER_INTERVAL  # a bigger audience waits longer
    _members: dict[str, set[Counted]] = attrs.field(factory=dict, init=False)  # stream -> attached
    _follows: dict[str, set[str]] = attrs.field(factory=dict, init=False)  # session -> investigations
    _watches: dict[str, _FollowWatch] = attrs.field(factory=dict, init=False)
    # topic -> its audience, each with the last total it was told
    _audience: dict[str, dict[Counted, int]] = attrs.field(factory=dict, init=False)
    _reported: dict[str, int] = attrs.field(factory=dict, init=False)  # topic -> count the tally has
    _dirty: set[str] = attrs.field(factory=set, init=False)
    _untold: dict[str, int] = attrs.field(factory=dict, init=False)  # topic -> total its audience awaits
    _last_told: dict[str, float] = attrs.field(factory=dict, init=False)  # big audiences: when told last
    _wake: trio.Event = attrs.field(factory=trio.Event, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _failing: str | None = attrs.field(default=None, init=False)  # the last failure logged

    # --- participants come and go ----------------------------------------------------

    async def join(self, client: Counted, stream: str) -> None:
        """Count ``client``, attached to ``stream``, from now on."""
        members = self._members.setdefault(stream, set())
        first = not members
        members.add(client)
        self._enter(stream, client)
        if not stream.startswith(SESSION):
            return
        follows = self._follows.setdefault(stream, set())
        if first:
            watch = self._watches[stream] = _FollowWatch(self, stream)
            await self.broker.attach(stream, watch, None)  # live only: changes from now on
            follows.update(await self.broker.followed_by(stream))  # and what was followed before
        for investigation in self._follows.get(stream, ()):
            for member in self._members.get(stream, ()):
                self._enter(investigation, member)

    def leave(self, client: Counted, stream: str) -> None:
        """Stop counting ``client`` (harmless if it never joined)."""
        members = self._members.get(stream)
        if members is None or client not in members:
            return
        members.discard(client)
        self._exit(stream, client)
        for investigation in self._follows.get(stream, ()):
            self._exit(investigation, client)
        if not members:
            del self._members[stream]
            self._follows.pop(stream, None)
            watch = self._watches.pop(stream, None)
            if watch is not None:
                self.broker.detach(stream, watch)

    def followed(self, session: str, investigation: str, following: bool) -> None:
        """The session ``session`` subscribed to (or left) ``investigation``."""
        follows = self._follows.get(session)
        if follows is None or (investigation in follows) == following:
            return
        members = self._members.get(session, set())
        if following:
            follows.add(investigation)
            for member in members:
                self._enter(investigation, member)
        else:
            follows.discard(investigation)
            for member in members:
                self._exit(investigation, member)

    def _enter(self, topic: str, client: Counted) -> None:
        self._audience.setdefault(topic, {}).setdefault(client, 1)  # it knows it is there
        self._touch(topic)

    def _exit(self, topic: str, client: Counted) -> None:
        audience = self._audience.get(topic)
        if audience is not None and audience.pop(client, None) is not None:
            self._touch(topic)

    def _touch(self, topic: str) -> None:
        self._dirty.add(topic)
        self._wake.set()

    # --- what is counted -------------------------------------------------------------

    def local(self, topic: str) -> int:
        return len(self._audience.get(topic, ()))

    async def watching(self, investigation_id: str) -> int:
        """Connections following the investigation, on every node (``GET`` of §8 shows it)."""
        topic = investigation_stream(investigation_id)
        if not self.tally.shared:
            return self.local(topic)
        return (await self.tally.totals([topic]))[topic]

    # --- the ticker ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send counts as they change; with a shared tally, also renew this node's
        heartbeat and read the other nodes' counts at every interval."""
        task_status.started()
        while not self._closed:
            if not self.tally.shared:
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.tick()
            except Exception as exc:  # a store refusing: the next tick tries again
                failure = f"{type(exc).__name__}: {exc}"
                if failure != self._failing:  # one line per kind of failure, not one a second
                    log.warning("presence: counts not updated (%s); retrying every tick", failure)
                self._failing = failure
            else:
                if self._failing is not None:
                    log.info("presence: counts updated again")
                self._failing = None
            await trio.sleep(self.interval)

    async def tick(self) -> None:
        """Report what changed here, read the totals, tell whoever's count moved."""
        if self._closed:
            return
        dirty, self._dirty = self._dirty, set()
        changed = {t: n for t in dirty if (n := self.local(t)) != self._reported.get(t, 0)}
        try:
            if changed or self.tally.shared:
                await self.tally.report(changed, self._everything)
        except BaseException:
            self._dirty |= dirty  # not recorded: again next time
            self._wake.set()
            raise
        for topic, count in changed.items():
            if count:
                self._reported[topic] = count
            else:
                self._reported.pop(topic, None)
        for topic in dirty:
            if not self._audience.get(topic, True):
                del self._audience[topic]
                self._untold.pop(topic, None)
                self._last_told.pop(topic, None)
        topics = sorted(t for t in dirty if t in self._audience)
        self._untold.update(await self.tally.read(topics, lambda: sorted(self._audience)))
        now = trio.current_time()
        with fan_out():  # each connection told of all its topics in one write
            for topic in [t for t in self._untold if self._turn_came(t, now)]:
                self._tell(topic, self._untold.pop(topic), now)
        if self._untold:
            self._wake.set()  # a big audience's turn comes at a later tick

    def _turn_came(self, topic: str, now: float) -> bool:
        """A big audience waits ``interval`` per ``audience_per_interval`` connections it
        has now (one that shrank is told sooner), a small one only for the tick."""
        last = self._last_told.get(topic)
        if last is None:
            return True
        spacing = self.interval * len(self._audience.get(topic, ())) / self.audience_per_interval
        return now >= last + spacing

    def _everything(self) -> dict[str, int]:
        return {topic: len(audience) for topic, audience in self._audience.items() if audience}

    def _tell(self, topic: str, total: int, now: float) -> None:
        audience = self._audience.get(topic)
        if not audience:
            return
        told = [client for client, known in audience.items() if known != total]
        if not told:
            return
        if len(audience) > self.audience_per_interval:
            self._last_told[topic] = now
        else:
            self._last_told.pop(topic, None)
        event = count_event(topic, total)
        eid = ephemeral_id()
        delivery = Delivery(  # encoded once for the whole audience
            event.type, encode(event.type, event.data(), eid), eid, False, coalesce_key=event.coalesce_key()
        )
        for client in told:
            client.outbox.offer(delivery)
            audience[client] = total

    async def withdraw(self) -> None:
        """Stop counting this node (before a shutdown in good order)."""
        self._closed = True
        self._wake.set()
        await self.tally.withdraw()
