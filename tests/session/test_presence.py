"""Presence (PROTOCOL.md §9): counts of tabs per session and watchers per investigation,
debounced, never naming anyone. In-process servers and virtual time; the board's
debounce on its own with fake participants."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from cidadao_trio.auth import mint_token
from cidadao_trio.broker.base import investigation_stream, session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.events import Subscribed
from cidadao_trio.session.outbox import Outbox
from cidadao_trio.session.presence import LocalTally, PresenceBoard

from ..harness import connect, http_get, receive, register_investigation, running_server, send

INV = "INV-2026-001"
SECRET = "test-secret-with-at-least-32-bytes!!"


async def next_presence(ws: Any) -> dict[str, Any]:
    """The next ``presence`` message (others pass by), within a virtual-time deadline."""
    with trio.fail_after(5):
        while True:
            message = await receive(ws)
            if message["type"] == "presence":
                assert message["id"].startswith("e-")  # ephemeral: never stored, never a cursor
                return message


async def quiet(ws: Any, seconds: float = 3.0) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds`` (virtual): nothing, if the count did not move."""
    got = []
    with trio.move_on_after(seconds):
        while True:
            got.append(await receive(ws))
    return got


async def test_a_sessions_tabs_are_counted_up_and_down(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server() as server:
        async with connect(server, "/api/v1/ws/chat/s1") as one:
            assert (await receive(one))["type"] == "connection"
            assert [m for m in await quiet(one) if m["type"] == "presence"] == []  # alone: nothing to tell
            async with connect(server, "/api/v1/ws/chat/s1") as two:
                assert (await receive(two))["type"] == "connection"
                assert (await next_presence(one))["data"] == {"session_id": "s1", "connections": 2}
                assert (await next_presence(two))["data"] == {"session_id": "s1", "connections": 2}
                async with connect(server, "/api/v1/ws/chat/s1") as three:
                    assert (await next_presence(three))["data"]["connections"] == 3
                    assert (await next_presence(one))["data"]["connections"] == 3
                    assert (await next_presence(two))["data"]["connections"] == 3
                assert (await next_presence(one))["data"] == {"session_id": "s1", "connections": 2}
                assert (await next_presence(two))["data"]["connections"] == 2
                async with connect(server, "/api/v1/ws/chat/other") as elsewhere:  # another session
                    assert (await receive(elsewhere))["type"] == "connection"
                    assert [m for m in await quiet(one) if m["type"] == "presence"] == []
            assert (await next_presence(one))["data"] == {"session_id": "s1", "connections": 1}


async def test_watchers_of_an_investigation_on_both_endpoints_never_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A watcher on the investigation endpoint and a signed-in chat session subscribed to it
    are two watchers; the message and the status route carry counts, not who."""
    async with running_server(jwt_secret=SECRET) as server:
        register_investigation(server, INV)
        token = mint_token(SECRET, "maria.da.silva")
        async with connect(server, f"/api/v1/ws/investigations/{INV}") as watcher:
            assert (await receive(watcher))["type"] == "connection"
            status, body = await http_get(server, f"/api/v1/investigations/{INV}")
            assert status == 200 and json.loads(body)["watching"] == 1
            async with connect(server, f"/api/v1/ws/chat/s1?token={token}") as chat:
                assert (await receive(chat))["type"] == "connection"
                await send(chat, "subscribe", {"investigation_id": INV}, id="sub")
                seen = await next_presence(watcher)
                assert seen["data"] == {"investigation_id": INV, "watching": 2}
                told = await next_presence(chat)  # the subscriber is told too
                assert told["data"] == {"investigation_id": INV, "watching": 2}
                for raw in (json.dumps(seen), json.dumps(told)):
                    assert "maria" not in raw and "user:" not in raw
                status, body = await http_get(server, f"/api/v1/investigations/{INV}")
                assert status == 200 and json.loads(body)["watching"] == 2
                await send(chat, "unsubscribe", {"investigation_id": INV}, id="unsub")
                assert (await next_presence(watcher))["data"] == {"investigation_id": INV, "watching": 1}
                await send(chat, "subscribe", {"investigation_id": INV}, id="again")
                assert (await next_presence(watcher))["data"]["watching"] == 2
            assert (await next_presence(watcher))["data"]["watching"] == 1  # the tab closed
        with trio.fail_after(5):
            while json.loads((await http_get(server, f"/api/v1/investigations/{INV}"))[1])["watching"]:
                await trio.sleep(0.5)


@attrs.define(eq=False)
class Tab:
    """What the board needs of a connection: an id and an outbox."""

    id: int
    outbox: Outbox = attrs.field()

    @outbox.default
    def _outbox(self) -> Outbox:
        return Outbox(self.id, 256, 1 << 20)

    def counts(self) -> list[dict[str, Any]]:
        return [json.loads(d.text)["data"] for d in self.outbox.take(10_000, 1 << 30) if d.type == "presence"]


async def test_ten_joins_within_a_second_are_at_most_two_messages_the_last_one_right(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    broker = LocalBroker()
    await nursery.start(broker.run)
    board = PresenceBoard(broker, interval=1.0)
    await nursery.start(board.run)
    stream = investigation_stream(INV)
    first, second = Tab(1), Tab(2)
    await board.join(first, stream)
    await board.join(second, stream)
    await trio.sleep(1.5)
    assert first.counts() == [{"investigation_id": INV, "watching": 2}]
    assert second.counts() == [{"investigation_id": INV, "watching": 2}]
    tabs = [Tab(10 + n) for n in range(10)]
    for tab in tabs:  # ten tabs within 0.9 s
        await board.join(tab, stream)
        await trio.sleep(0.09)
    await trio.sleep(3)
    got = first.counts()
    assert 1 <= len(got) <= 2 and got[-1] == {"investigation_id": INV, "watching": 12}
    assert tabs[-1].counts()[-1]["watching"] == 12
    for tab in tabs:
        board.leave(tab, stream)
    board.leave(tab, stream)  # twice: harmless
    await trio.sleep(3)
    assert first.counts()[-1] == {"investigation_id": INV, "watching": 2}
    assert await board.watching(INV) == 2


async def test_a_subscription_made_elsewhere_reaches_the_count_through_the_session_stream(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """A session's follows are read from its stream: a ``subscribed`` published by any
    connection (any node) adds the session's tabs here to the investigation's watchers."""
    broker = LocalBroker()
    await nursery.start(broker.run)
    board = PresenceBoard(broker)
    await nursery.start(board.run)
    watcher, tab = Tab(1), Tab(2)
    await board.join(watcher, investigation_stream(INV))
    await board.join(tab, session_stream("s1"))
    await broker.publish(session_stream("s1"), Subscribed(investigation_id=INV, message="m"))
    await broker.flush()
    await trio.sleep(2)
    assert watcher.counts() == [{"investigation_id": INV, "watching": 2}]
    assert tab.counts() == [{"investigation_id": INV, "watching": 2}]
    board.leave(tab, session_stream("s1"))
    await trio.sleep(2)
    assert watcher.counts() == [{"investigation_id": INV, "watching": 1}]


async def test_an_sse_subscriber_is_a_watcher_like_any_other(autojump_clock: trio.testing.MockClock) -> None:
    """An EventSource (§10) goes through the same endpoints: it counts and it is told."""
    async with running_server() as server:
        register_investigation(server, INV)
        async with connect(server, f"/api/v1/ws/investigations/{INV}") as watcher:
            assert (await receive(watcher))["type"] == "connection"
            browser, served = trio.testing.memory_stream_pair()
            server.spawn(served)
            await browser.send_all(f"GET /api/v1/sse/investigations/{INV} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert (await next_presence(watcher))["data"] == {"investigation_id": INV, "watching": 2}
            text = ""
            with trio.fail_after(5):
                while '"watching":2' not in text:
                    text += (await browser.receive_some()).decode()
            assert "event: presence" in text
            await trio.aclose_forcefully(browser)
            assert (await next_presence(watcher))["data"] == {"investigation_id": INV, "watching": 1}


@attrs.define
class RefusingTally(LocalTally):
    """A store that refuses the first ``refusals`` reports."""

    refusals: int = 3

    async def report(self, changed: Any, everything: Any) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("store refused")
        await super().report(changed, everything)


async def test_a_refusing_store_is_one_log_line_and_the_counts_follow_once_it_recovers(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    broker = LocalBroker()
    await nursery.start(broker.run)
    tally = RefusingTally()
    board = PresenceBoard(broker, tally)
    await nursery.start(board.run)
    first, second = Tab(1), Tab(2)
    await board.join(first, investigation_stream(INV))
    await trio.sleep(1.5)
    await board.join(second, investigation_stream(INV))
    await trio.sleep(5)
    assert first.counts() == [{"investigation_id": INV, "watching": 2}]  # nothing lost meanwhile
    warnings = [r for r in caplog.records if r.name == "cidadao_trio.session.presence" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].exc_info is None and "store refused" in warnings[0].getMessage()


async def small_pace_board(nursery: trio.Nursery) -> PresenceBoard:
    """A board on its own broker where 10 connections already make a big audience."""
    broker = LocalBroker()
    await nursery.start(broker.run)
    board = PresenceBoard(broker, interval=1.0, audience_per_interval=10)
    await nursery.start(board.run)
    return board


async def test_a_big_audience_is_told_less_often_and_still_gets_the_final_count(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """30 watchers with 10 told per interval: a count every 3 s at most (not every second
    while newcomers keep arriving), the last one right; a small topic keeps its second."""
    board = await small_pace_board(nursery)
    big, small = investigation_stream(INV), investigation_stream("INV-2026-002")
    watchers = [Tab(n) for n in range(30)]
    for tab in watchers:
        await board.join(tab, big)
    pair = [Tab(100), Tab(101)]
    for tab in pair:
        await board.join(tab, small)
    seen: list[tuple[float, int]] = []
    small_seen: list[tuple[float, int]] = []
    for step in range(200):  # 20 s: a newcomer every half second for the first 10 s
        if step % 5 == 0 and step < 100:
            await board.join(Tab(1000 + step), big)
            if step % 10 == 0:
                await board.join(Tab(2000 + step), small)
        now = trio.current_time()
        seen += [(now, c["watching"]) for c in watchers[0].counts()]
        small_seen += [(now, c["watching"]) for c in pair[0].counts()]
        await trio.sleep(0.1)
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
    assert len(seen) >= 3 and min(gaps) >= 3.0 - 1e-6  # 30 to 50 watchers: at least 3 s apart
    assert seen[-1][1] == 30 + 20  # the final count arrives all the same
    small_gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(small_seen)]
    assert len(small_seen) >= 8 and min(small_gaps) < 1.5  # a small topic is told each second
    assert small_seen[-1][1] == 2 + 10


async def test_a_big_audience_that_shrinks_is_told_at_the_small_pace(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """100 watchers with 10 told per interval wait 10 s between counts; once 98 of them
    leave, the three connections left are told within the second, not at the end of the
    old spacing."""
    board = await small_pace_board(nursery)
    stream = investigation_stream(INV)
    watchers = [Tab(n) for n in range(100)]
    for tab in watchers:
        await board.join(tab, stream)
    await trio.sleep(1.5)
    assert watchers[0].counts() == [{"investigation_id": INV, "watching": 100}]  # the big spacing begins
    await board.join(Tab(1000), stream)
    await trio.sleep(1.5)
    assert watchers[0].counts() == []  # 101: waits for its turn (10 s)
    for tab in watchers[2:]:
        board.leave(tab, stream)
    await trio.sleep(2.5)
    assert watchers[0].counts()[-1]["watching"] == 3  # three left: told at the small pace, by t = 5.5 s
