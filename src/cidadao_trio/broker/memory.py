"""The in-process broker: durable streams with offsets, bounded history, live fan-out, links.

Publishing assigns the next offset at once and queues the message on a bounded trio
memory channel. One writer task drains whatever is queued, applies it to the store in a
single transaction, and only then offers each message to the stream's live sinks, in
offset order. So a message is durable before any client sees it, many messages share one
commit, and a store that falls behind slows publishers (backpressure) rather than
growing a queue. Replays read only committed history, and a sink is registered in the
same step, without awaiting: no message is lost or doubled at the replay/live seam.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from ..protocol.envelope import Body, DurableId, body, ephemeral_id
from ..protocol.outbound import DURABLE_TYPES, coalesce_key
from ..store.base import (
    Append,
    CreateStream,
    MemoryStore,
    Link,
    Op,
    SaveSession,
    Store,
    StoredMessage,
    Trim,
)
from .base import Attachment, Delivery, Sink

log = logging.getLogger(__name__)

WRITE_QUEUE_SIZE = 4096  # queued publishes before publishers wait for the store
WRITE_BATCH_MAX = 1024  # ops per transaction
IDLE_STREAMS_CACHED = 1024  # streams without sinks kept in memory (durable stores only)


@attrs.define(eq=False)
class _Entry:
    delivery: Delivery
    body: Body
    created: float


@attrs.define(eq=False)
class _Stream:
    key: str
    epoch: str
    last_offset: int = 0  # assigned
    committed: int = 0  # durable in the store and offered to sinks
    history: deque[_Entry] = attrs.field(factory=deque)
    sinks: list[Sink] = attrs.field(factory=list)
    links: set[str] = attrs.field(factory=set)

    def trim(self, now: float, max_messages: int, max_age: float) -> None:
        while self.history and (
            len(self.history) > max_messages or now - self.history[0].created > max_age
        ):
            self.history.popleft()

    def oldest_offset(self) -> int:
        if not self.history:
            return self.last_offset + 1
        return self.last_offset - len(self.history) + 1

    def committed_after(self, offset: int) -> list[_Entry]:
        start = max(offset + 1, self.oldest_offset())
        first = start - self.oldest_offset()
        count = self.committed - start + 1
        return [self.history[i] for i in range(first, first + max(count, 0))]


@attrs.frozen
class _Publish:
    """One queued write: store ops plus the deliveries to offer once they are committed."""

    ops: tuple[Op, ...]
    offers: tuple[tuple[_Stream, Delivery], ...]
    done: trio.Event | None = None  # set once committed and offered


def _body_of(text: str, id: str) -> Body:
    """Recover the reusable envelope prefix from a stored text (``...,"id":"<id>"}``)."""
    return Body(_type_of(text), text[: len(text) - len(id) - 2])


def _offset(id: str) -> int:
    return int(id.rsplit("-", 1)[1])


def _type_of(text: str) -> str:
    start = text.index('"type":"') + 8
    return text[start : text.index('"', start)]


class MemoryBroker:
    def __init__(
        self,
        *,
        store: Store | None = None,
        max_messages: int = 1000,
        max_age: float = 24 * 3600.0,
        clock: Callable[[], float] = time.time,
        observe_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.store: Store = store or MemoryStore()
        self.epoch = os.urandom(4).hex()  # for streams an ephemeral store cannot remember
        self._max_messages = max_messages
        self._max_age = max_age
        self._clock = clock
        self._observe_write = observe_write
        self._streams: dict[str, _Stream] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._loading: dict[str, trio.Event] = {}
        self._followers_of: dict[str, set[str]] = {}  # target -> sources (reverse links)
        self._pinned: Counter[str] = Counter()  # streams a publisher is loading: not evictable
        self._copied: dict[tuple[str, str], int] = {}  # (source, target) -> last source offset copied
        self._store_lock = trio.CapacityLimiter(1)
        # The channel never blocks; the semaphore bounds it. A publisher waits for a slot
        # *before* taking offsets, so a cancelled publish cannot leave a hole.
        self._send, self._receive = trio.open_memory_channel[_Publish](math.inf)
        self._slots = trio.Semaphore(WRITE_QUEUE_SIZE)
        self.healthy = True

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: commit queued publishes in windows, then fan them out in order."""
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                window = [first]
                ops = len(first.ops)
                while ops < WRITE_BATCH_MAX:
                    try:
                        item = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    window.append(item)
                    ops += len(item.ops)
                await self._commit(window)
                for _ in window:
                    self._slots.release()

    async def _commit(self, window: list[_Publish]) -> None:
        ops = [op for item in window for op in item.ops]
        if ops:
            while True:
                try:
                    started = time.perf_counter()
                    await self._in_store(self.store.apply, ops)
                    self._observe_write(time.perf_counter() - started)
                    self.healthy = True
                    break
                except Exception:
                    self.healthy = False
                    log.exception("store write failed; retrying")
                    await trio.sleep(1.0)
        for item in window:
            for stream, delivery in item.offers:
                if delivery.durable:
                    stream.committed = _offset(delivery.id)
                for sink in list(stream.sinks):
                    sink.offer(delivery)
            if item.done is not None:
                item.done.set()

    async def _hold(self, keys: Iterable[str], follow_links: bool = False) -> None:
        """Load ``keys`` (and their followers), then take a write slot, with no await
        left before the caller assigns offsets: every stream it touches is the one in
        ``self._streams`` (not evicted and reloaded meanwhile) and its links are current.
        """
        while True:
            wanted = self._wanted(keys, follow_links)
            self._pinned.update(wanted)  # loading the last must not evict the first
            try:
                for key in wanted:
                    await self._stream(key)
                await self._slots.acquire()
            finally:
                self._pinned.subtract(wanted)
            if all(k in self._streams for k in self._wanted(keys, follow_links)):
                return
            self._slots.release()

    def _wanted(self, keys: Iterable[str], follow_links: bool) -> list[str]:
        wanted = list(keys)
        if follow_links:
            for key in list(wanted):
                stream = self._streams.get(key)
                wanted.extend(sorted(stream.links) if stream else ())
        return wanted

    async def _in_store(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.store.durable:  # dicts in memory: no thread (and none for virtual clocks)
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._store_lock)

    async def flush(self) -> None:
        """Wait until everything published so far is committed (tests, shutdown)."""
        done = trio.Event()
        await self._hold(())
        self._send.send_nowait(_Publish((), (), done))
        await done.wait()

    # --- streams ---------------------------------------------------------------------

    async def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is not None:
            self._touch(stream)
            return stream
        loading = self._loading.get(key)
        if loading is not None:
            await loading.wait()
            return await self._stream(key)
        self._loading[key] = event = trio.Event()
        try:
            stored = await self._in_store(self.store.load_stream, key)
            if stored is None:
                stream = _Stream(key, self.epoch if not self.store.durable else os.urandom(4).hex())
                await self._slots.acquire()
                self._send.send_nowait(_Publish((CreateStream(key, stream.epoch),), ()))
            else:
                stream = _Stream(key, stored.epoch, stored.last_offset, stored.last_offset)
                for message in stored.messages:
                    id = f"{stored.epoch}-{message.offset}"
                    delivery = Delivery(message.type, message.text, id, True, None, message.coalesce_key)
                    stream.history.append(_Entry(delivery, _body_of(message.text, id), message.created))
                stream.links.update(stored.links)
                for target in stored.links:
                    self._followers_of.setdefault(target, set()).add(key)
            self._streams[key] = stream
            self._touch(stream)
            return stream
        finally:
            del self._loading[key]
            event.set()

    def _touch(self, stream: _Stream) -> None:
        """Keep streams with sinks; forget the least recently used idle ones (durable only)."""
        self._idle.pop(stream.key, None)
        if stream.sinks:
            return
        self._idle[stream.key] = None
        if not self.store.durable:
            return
        while len(self._idle) > IDLE_STREAMS_CACHED:
            key, _ = self._idle.popitem(last=False)
            candidate = self._streams.get(key)
            if (
                candidate is not None
                and not candidate.sinks
                and not self._pinned[key]
                and candidate.committed == candidate.last_offset
            ):
                del self._streams[key]

    def _append(self, stream: _Stream, message: Body, key: str | None, origin: int | None) -> tuple[Delivery, list[Op]]:
        now = self._clock()
        stream.last_offset += 1
        id = f"{stream.epoch}-{stream.last_offset}"
        delivery = Delivery(message.type, message.stamp(id), id, True, origin, key)
        stream.history.append(_Entry(delivery, message, now))
        stream.trim(now, self._max_messages, self._max_age)
        ops: list[Op] = [Append(stream.key, StoredMessage(stream.last_offset, message.type, delivery.text, now, key))]
        if stream.last_offset % 100 == 0:
            ops.append(Trim(stream.key, stream.last_offset - self._max_messages, now - self._max_age))
        return delivery, ops

    # --- the Broker interface ------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        type: str,
        data: Mapping[str, Any],
        *,
        origin: int | None = None,
    ) -> Delivery:
        """Queue a message for ``stream`` (and, if durable, every stream that follows it)."""
        message = body(type, data)
        key = coalesce_key(type, data)
        if type not in DURABLE_TYPES:
            await self._hold((stream,))
            target = self._streams[stream]
            delivery = Delivery(type, message.stamp(ephemeral_id()), "", False, origin, key)
            self._send.send_nowait(_Publish((), ((target, delivery),)))
            return delivery
        await self._hold((stream,), follow_links=True)
        target = self._streams[stream]
        followers = [self._streams[k] for k in sorted(target.links)]
        delivery, ops = self._append(target, message, key, origin)
        offers = [(target, delivery)]
        for follower in followers:
            copy, copy_ops = self._append(follower, message, key, origin)
            offers.append((follower, copy))
            ops.extend(copy_ops)
            self._copied[(stream, follower.key)] = target.last_offset
        self._send.send_nowait(_Publish(tuple(ops), tuple(offers)))
        return delivery

    async def cursor_is_valid(self, stream: str, cursor: DurableId) -> bool:
        target = await self._stream(stream)
        if cursor.epoch != target.epoch or cursor.offset > target.last_offset:
            return False
        target.trim(self._clock(), self._max_messages, self._max_age)
        return cursor.offset >= target.oldest_offset() - 1

    async def attach(
        self, stream: str, sink: Sink, after: DurableId | None, *, from_oldest: bool = False
    ) -> Attachment:
        """Replay committed messages after the cursor (or, ``from_oldest``, everything
        retained) into ``sink``, then deliver live ones."""
        target = await self._stream(stream)
        gap = after is not None and not await self.cursor_is_valid(stream, after)
        replayed = 0
        if from_oldest and after is None:
            after = DurableId(target.epoch, 0)
        if after is not None and not gap:
            for entry in target.committed_after(after.offset):
                sink.offer(entry.delivery)
                replayed += 1
        target.sinks.append(sink)
        self._idle.pop(stream, None)
        return Attachment(gap, replayed)

    def detach(self, stream: str, sink: Sink) -> None:
        target = self._streams.get(stream)
        if target is not None and sink in target.sinks:
            target.sinks.remove(sink)
            self._touch(target)

    async def link(self, source: str, target: str) -> int:
        """Copy ``source``'s retained history into ``target``, then follow it live.

        Returns how many messages were copied. Linking twice copies nothing, and linking
        again after an unlink copies only what the target has not had yet.
        """
        await self._hold((source, target))
        origin, follower = self._streams[source], self._streams[target]
        if target in origin.links:
            self._slots.release()
            return 0
        origin.trim(self._clock(), self._max_messages, self._max_age)
        ops: list[Op] = [Link(source, target, True)]
        offers = []
        already = self._copied.get((source, target), 0)
        for entry in list(origin.history):
            if _offset(entry.delivery.id) <= already:
                continue
            delivery, copy_ops = self._append(follower, entry.body, entry.delivery.coalesce_key, None)
            offers.append((follower, delivery))
            ops.extend(copy_ops)
        origin.links.add(target)
        self._copied[(source, target)] = origin.last_offset
        self._followers_of.setdefault(target, set()).add(source)
        self._send.send_nowait(_Publish(tuple(ops), tuple(offers)))
        return len(offers)

    async def unlink(self, source: str, target: str) -> None:
        await self._hold((source,))
        self._streams[source].links.discard(target)
        self._followers_of.get(target, set()).discard(source)
        self._send.send_nowait(_Publish((Link(source, target, False),), ()))

    async def followed_by(self, target: str) -> list[str]:
        """The streams ``target`` follows (a session's investigations), across restarts."""
        stored = await self._in_store(self.store.links_to, target)
        sources = set(stored) | self._followers_of.get(target, set())
        return sorted([s for s in sources if target in (await self._stream(s)).links])

    async def digest(self, sources: Iterable[str]) -> list[Delivery]:
        """What a client that lost history needs (PROTOCOL.md §4), as ephemeral messages."""
        digest = []
        for source in sources:
            stream = await self._stream(source)
            entries = stream.committed_after(0)
            progress = [e for e in entries if e.delivery.type == "investigation_progress"]
            keep = progress[-1:] + [
                e for e in entries if e.delivery.type in ("anomaly_detected", "report_ready")
            ]
            keep.sort(key=lambda e: _offset(e.delivery.id))
            for entry in keep:
                eid = ephemeral_id()
                digest.append(Delivery(entry.delivery.type, entry.body.stamp(eid), eid, False))
        return digest

    async def last_id(self, stream: str) -> str:
        """The id of the last committed message (offset 0 for an empty stream)."""
        target = await self._stream(stream)
        return f"{target.epoch}-{target.committed}"

    # --- other records (one writer orders every change to the store) --------------------

    async def record(self, *ops: Op) -> None:
        """Queue store writes behind everything published so far."""
        await self._hold(())
        self._send.send_nowait(_Publish(ops, ()))

    async def query(self, read: Callable[..., Any], *args: Any) -> Any:
        """Run a store read (``store.load_...``) in the store's worker thread."""
        return await self._in_store(read, *args)

    async def session_owner(self, session_id: str) -> str | None:
        return await self.query(self.store.load_session_owner, session_id)

    async def save_session_owner(self, session_id: str, owner_key: str) -> None:
        await self.record(SaveSession(session_id, owner_key))

