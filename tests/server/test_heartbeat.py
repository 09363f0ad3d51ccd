"""The server's one heartbeat task, and what else an idle connection costs: every connection
pinged each interval, a missing pong drops it, an ended connection is forgotten, no request
head is kept. The queue on its own with fake connections in virtual time; then real
loopback sockets, where pings go out from the heartbeat's task."""

from __future__ import annotations

import gc
import weakref

import attrs
import trio
import trio.testing
import wsproto.events as ev

from cidadao_trio.server.frontdoor import RequestHead
from cidadao_trio.server.heartbeat import Heartbeat

from ..harness import register_investigation, tcp_server
from .test_transport import Peer, count_tasks, tcp_peer


@attrs.define(eq=False)
class Member:
    """A connection as the heartbeat sees it: it records when it was pinged and checked."""

    busy: bool = False  # its socket does not take what we write: no ping
    alive: bool = True
    pings: list[float] = attrs.field(factory=list)
    checks: list[float] = attrs.field(factory=list)

    def beat(self) -> trio.Event | None:
        if self.busy:
            return None
        self.pings.append(trio.current_time())
        return trio.Event()

    def pong_due(self, pong: trio.Event) -> None:
        self.checks.append(trio.current_time())


async def started(nursery: trio.Nursery, interval: float = 30.0, timeout: float = 10.0) -> Heartbeat:
    heartbeat = Heartbeat(interval=interval, timeout=timeout)
    await nursery.start(heartbeat.run)
    return heartbeat


async def test_each_member_is_pinged_every_interval_and_checked_timeout_later(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    heartbeat = await started(nursery)
    first = Member()
    heartbeat.join(first)
    await trio.sleep(7)
    second, busy = Member(), Member(busy=True)
    heartbeat.join(second)
    heartbeat.join(busy)
    await trio.sleep(105)  # t = 112: three pings each, their pongs checked
    for member, joined in ((first, 0.0), (second, 7.0)):
        assert len(member.pings) == 3
        for n, (ping, check) in enumerate(zip(member.pings, member.checks, strict=True)):
            assert joined + 30 * (n + 1) <= ping <= joined + 30 * (n + 1) + 0.5  # on time, within the resolution
            assert 10 <= check - ping <= 10.5
    assert busy.pings == [] and busy.checks == []  # nothing sent: nothing to check, still scheduled
    busy.busy = False
    await trio.sleep(30)
    assert len(busy.pings) == 1


async def test_an_ended_member_is_never_called_again_and_leaves_the_queue(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    heartbeat = await started(nursery, interval=5.0, timeout=2.0)
    members = [Member() for _ in range(100)]
    for member in members:
        heartbeat.join(member)
    await trio.sleep(6)
    assert all(len(m.pings) == 1 for m in members) and len(heartbeat) == 100
    for member in members[:60]:
        member.alive = False
    await trio.sleep(20)
    assert all(len(m.pings) == 1 and len(m.checks) == 0 for m in members[:60])  # its pong was not checked
    assert all(len(m.pings) == 5 for m in members[60:])
    assert len(heartbeat) == 40


async def answer_pings(peer: Peer, answered: list[bytes], count: int) -> None:
    while len(answered) < count:
        event = await peer.next_event()
        assert not isinstance(event, ev.CloseConnection), event
        if isinstance(event, ev.Ping):
            answered.append(bytes(event.payload))
            await peer.send(event.response())


async def test_over_tcp_a_peer_that_answers_stays_and_one_that_does_not_is_dropped_1011() -> None:
    """Real time, bounded by events: 0.2 s pings, 0.3 s to answer."""
    async with tcp_server(heartbeat_interval=0.2, heartbeat_timeout=0.3) as (server, port):
        register_investigation(server, "INV-H")
        idle = count_tasks()
        live, silent = await tcp_peer(port, "INV-H"), await tcp_peer(port, "INV-H")
        assert count_tasks() - idle <= 2 * 2  # no task per connection for its heartbeat
        answered: list[bytes] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_pings, live, answered, 4)  # 0.8 s: past interval + timeout
                close = None
                while close is None:  # the silent peer reads its pings but never answers them
                    event = await silent.next_event()
                    if isinstance(event, ev.CloseConnection):
                        close = event
                assert close.code == 1011 and close.reason == "heartbeat timeout"
                await silent.send(close.response())  # the close handshake ends at once
        assert len(set(answered)) == 4  # a fresh payload each time, and never closed meanwhile
        await live.stream.aclose()
        await silent.stream.aclose()


async def test_a_connection_that_ended_is_not_kept_alive_by_the_queue(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    heartbeat = await started(nursery)
    gone = Member()
    heartbeat.join(gone)
    freed = trio.Event()
    weakref.finalize(gone, freed.set)
    del gone
    gc.collect()
    assert freed.is_set()  # freed long before its next ping (30 s)
    await trio.sleep(31)
    assert len(heartbeat) == 0


async def test_an_open_connection_keeps_no_request_head() -> None:
    """Its head was read to route and authenticate it; nothing holds it afterwards."""
    async with tcp_server() as (server, port):
        register_investigation(server, "INV-H")
        peers = [await tcp_peer(port, "INV-H?batch=1") for _ in range(3)]
        gc.collect()
        assert len(server.connections) == 3
        assert [o for o in gc.get_objects() if isinstance(o, RequestHead)] == []
        for peer in peers:
            await peer.stream.aclose()


async def test_joins_during_a_tick_never_push_earlier_pings_late(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """A connection every 0.1 s for two minutes, 5 s interval: every ping within the
    resolution of its time (the queue stays in time order whatever joins between ticks)."""
    heartbeat = await started(nursery, interval=5.0, timeout=2.0)
    members = []
    for _ in range(1200):
        member = Member()
        heartbeat.join(member)
        members.append((trio.current_time(), member))
        await trio.sleep(0.1)
    for joined, member in members[:600]:
        for k, ping in enumerate(member.pings):
            assert ping - (joined + 5.0 * (k + 1)) <= 0.5


async def late_answers(peer: Peer, delay: float, count: int) -> None:
    """Answer each ping ``delay`` s after it arrived (within the timeout, past the interval)."""
    answered = 0
    while answered < count:
        event = await peer.next_event()
        assert not isinstance(event, ev.CloseConnection), event
        if isinstance(event, ev.Ping):
            await trio.sleep(delay)
            await peer.send(event.response())
            answered += 1


async def test_a_pong_late_but_within_the_timeout_keeps_the_connection_when_timeout_exceeds_interval() -> None:
    """0.2 s pings, 0.6 s to answer, each answered after 0.3 s: the next ping goes out
    before the last one's check, which must judge its own ping, not the newer one."""
    async with tcp_server(heartbeat_interval=0.2, heartbeat_timeout=0.6) as (server, port):
        register_investigation(server, "INV-L")
        peer = await tcp_peer(port, "INV-L")
        with trio.fail_after(10):
            await late_answers(peer, 0.3, 3)
        assert len(server.connections) == 1
        await peer.stream.aclose()
