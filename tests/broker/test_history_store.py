"""Issue 21: history in memory is a bounded cache of the SQLite store (PROTOCOL.md §4 unchanged).

With a tiny ``memory_bytes`` almost nothing stays in memory, so every replay, cursor check,
digest and link below reads the store by offset range; a client must see exactly what it
would have seen with everything in memory. Copies of investigation events are stored once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.envelope import DurableId
from cidadao_trio.session.digest import read_digest
from cidadao_trio.store.sqlite import SqliteStore

from ..harness import ListSink
from ..messages import message

S = "session:s1"
INV = "investigation:INV-2026-001"
CONTENT = "Olá, ação e coração: três contratos acima da mediana do órgão. "


@asynccontextmanager
async def running(path: Path, **kwargs: Any) -> AsyncIterator[LocalBroker]:
    broker = LocalBroker(store=SqliteStore(path), **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        yield broker
        await broker.flush()
        nursery.cancel_scope.cancel()
    broker.store.close()


def cursor(text: str) -> DurableId:
    parsed = DurableId.parse(text)
    assert parsed is not None
    return parsed


async def test_history_beyond_the_budget_is_replayed_from_the_store(tmp_path: Path) -> None:
    async with running(tmp_path / "s.sqlite3", memory_bytes=2000) as broker:
        published = [await broker.publish(S, message("chat", {"content": f"{CONTENT}{n}"})) for n in range(120)]
        for n in range(30):
            await broker.publish(f"session:other{n % 3}", message("chat", {"content": f"{CONTENT}{n}"}))
        await broker.flush()
        assert broker.held_bytes <= 2000 + 1000  # the budget, give or take the newest entries
        epoch = cursor(published[0].id).epoch
        for after in (0, 1, 57, 119, 120):
            sink = ListSink()
            attachment = await broker.attach(S, sink, cursor(f"{epoch}-{after}"))
            assert not attachment.gap and attachment.replayed == 120 - after
            assert sink.ids == [d.id for d in published[after:]]
            assert [d.text for d in sink.got] == [d.text for d in published[after:]]
            assert [d.frame for d in sink.got] == [d.frame for d in published[after:]]
            broker.detach(S, sink)
        live = ListSink()
        await broker.attach(S, live, cursor(f"{epoch}-118"))
        nxt = await broker.publish(S, message("chat", {"content": "depois"}))
        await broker.flush()
        assert live.ids == [published[118].id, published[119].id, nxt.id]  # the seam: once each


async def test_memory_keeps_each_streams_newest_messages_and_the_store_the_rest(tmp_path: Path) -> None:
    async with running(tmp_path / "s.sqlite3", memory_messages=8) as broker:
        published = [await broker.publish(S, message("chat", {"content": f"{CONTENT}{n}"})) for n in range(40)]
        await broker.flush()
        one = len(published[-1].frame) + 200
        assert broker.held_bytes <= 9 * one  # the tail (and the newest, not yet committed)
        epoch = cursor(published[0].id).epoch
        for after in (0, 20, 31, 32, 39):
            sink = ListSink()
            attachment = await broker.attach(S, sink, cursor(f"{epoch}-{after}"))
            assert not attachment.gap and attachment.replayed == 40 - after
            assert [d.text for d in sink.got] == [d.text for d in published[after:]]
            broker.detach(S, sink)
        assert await broker.cursor_is_valid(S, cursor(f"{epoch}-1"))  # retention is the store's


async def test_retention_holds_when_memory_does_not(tmp_path: Path) -> None:
    async with running(tmp_path / "s.sqlite3", memory_bytes=500, max_messages=50) as broker:
        published = [await broker.publish(S, message("chat", {"content": f"m{n}"})) for n in range(130)]
        await broker.flush()
        epoch = cursor(published[0].id).epoch
        assert await broker.cursor_is_valid(S, cursor(f"{epoch}-80"))  # 81..130 retained
        assert not await broker.cursor_is_valid(S, cursor(f"{epoch}-79"))
        sink = ListSink()
        assert (await broker.attach(S, sink, cursor(f"{epoch}-10"))).gap
        oldest = ListSink()
        await broker.attach(S, oldest, None, from_oldest=True)
        assert oldest.ids == [d.id for d in published[80:]]


async def test_copies_are_references_stored_once_and_replay_with_their_own_ids(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    sessions = [f"session:f{n}" for n in range(3)]
    async with running(path, memory_bytes=1000) as broker:
        before = [await broker.publish(INV, message("anomaly_detected", {"n": n, "text": CONTENT})) for n in range(5)]
        await broker.flush()
        for key in sessions:
            assert await broker.link(INV, key) == 5
        after = [await broker.publish(INV, message("anomaly_detected", {"n": n, "text": CONTENT})) for n in range(5, 9)]
    source = [json.loads(d.text) for d in before + after]

    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT stream, text, ref_stream, ref_offset FROM messages WHERE stream LIKE 'session:%'"
    ).fetchall()
    assert len(rows) == 27 and all(text == "" and ref == INV for _, text, ref, _ in rows)
    assert db.execute("SELECT COUNT(*) FROM messages WHERE stream = ?", (INV,)).fetchone() == (9,)
    db.close()

    async with running(path, memory_bytes=1000) as reborn:  # nothing in memory after a restart
        for key in sessions:
            sink = ListSink()
            epoch = (await reborn.last_id(key)).split("-")[0]
            assert (await reborn.attach(key, sink, cursor(f"{epoch}-0"))).replayed == 9
            assert sink.ids == [f"{epoch}-{n}" for n in range(1, 10)]
            envelopes = [json.loads(d.text) for d in sink.got]
            assert [e["id"] for e in envelopes] == sink.ids  # the session's own id, spliced in
            assert [(e["type"], e["data"], e["timestamp"]) for e in envelopes] == [
                (e["type"], e["data"], e["timestamp"]) for e in source
            ]
        assert await reborn.link(INV, sessions[0]) == 0  # already following
        await reborn.unlink(INV, sessions[0])
        await reborn.publish(INV, message("anomaly_detected", {"n": 9}))
        await reborn.flush()
        assert await reborn.link(INV, sessions[0]) == 1  # only what it has not had, across a restart


async def test_a_copy_outlives_its_trimmed_source(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    now = [0.0]
    async with running(path, memory_bytes=1000, max_age=100.0, clock=lambda: now[0]) as broker:
        for n in range(100):
            await broker.publish(INV, message("chat", {"content": f"c{n}"}))  # created at 0
        await broker.flush()
        now[0] = 50.0
        assert await broker.link(INV, S) == 100  # the copies are created at 50
        await broker.flush()
        now[0] = 120.0  # the investigation's first 100 expire; the session's copies do not
        for n in range(100, 200):
            await broker.publish(INV, message("chat", {"content": f"c{n}"}))
        await broker.flush()
        db = sqlite3.connect(path)
        assert db.execute("SELECT MIN(offset) FROM messages WHERE stream = ?", (INV,)).fetchone() == (101,)
        db.close()
        sink = ListSink()
        epoch = (await broker.last_id(S)).split("-")[0]
        await broker.attach(S, sink, cursor(f"{epoch}-0"))
        assert [d["content"] for d in sink.data()] == [f"c{n}" for n in range(200)]
        assert sink.ids == [f"{epoch}-{n}" for n in range(1, 201)]


async def test_digest_reads_the_store(tmp_path: Path) -> None:
    async with running(tmp_path / "s.sqlite3", memory_bytes=100) as broker:
        inv = {"investigation_id": "INV-2026-001"}
        await broker.publish(INV, message("investigation_progress", {**inv, "progress": 10}))
        await broker.publish(INV, message("anomaly_detected", {**inv, "anomaly_id": "a1"}))
        for n in range(40):
            await broker.publish(INV, message("agent_finding", {**inv, "n": n}))
        await broker.publish(INV, message("investigation_progress", {**inv, "progress": 70}))
        await broker.publish(INV, message("report_ready", {**inv, "url": "/r"}))
        await broker.flush()
        digest = await read_digest(broker, [INV])
        assert [(d.type, json.loads(d.text)["data"]) for d in digest] == [
            ("anomaly_detected", {**inv, "anomaly_id": "a1"}),
            ("investigation_progress", {**inv, "progress": 70}),
            ("report_ready", {**inv, "url": "/r"}),
        ]
        assert all(json.loads(d.text)["id"] == d.id and d.id.startswith("e-") for d in digest)


def test_a_store_from_before_references_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE messages (stream TEXT NOT NULL, offset INTEGER NOT NULL, type TEXT NOT NULL,"
        " text TEXT NOT NULL, created REAL NOT NULL, coalesce_key TEXT, PRIMARY KEY (stream, offset)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO messages VALUES ('session:s1', 1, 'chat', '{\"id\":\"ab-1\"}', 1.0, NULL)")
    db.commit()
    db.close()
    store = SqliteStore(path)
    [message] = store.load_messages("session:s1", 0, 10, 10)
    assert (message.offset, message.text, message.ref) == (1, '{"id":"ab-1"}', None)
    store.close()


async def test_streams_nobody_attaches_to_leave_memory(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    now = [1000.0]  # the broker's clock moves only when the test says (not with the store's thread)
    async with running(tmp_path / "s.sqlite3", clock=lambda: now[0]) as broker:
        watched = ListSink()
        await broker.attach("session:watched", watched, None)
        published = {}
        for key in ("session:watched", "session:a", "session:b"):
            published[key] = [
                await broker.publish(key, message("chat", {"content": f"{CONTENT}{n}"})) for n in range(20)
            ]
        await broker.flush()
        held = broker.held_bytes
        now[0] += 200  # a, b idle for longer than IDLE_STREAM_SECONDS
        await trio.sleep(100)  # the sweep runs every IDLE_STREAM_SECONDS / 2
        assert 0 < broker.held_bytes <= held / 3 + 1  # only the watched stream's history is left
        sink = ListSink()
        epoch = published["session:a"][0].id.split("-")[0]
        await broker.attach("session:a", sink, cursor(f"{epoch}-0"))  # reloaded from the store
        assert sink.ids == [d.id for d in published["session:a"]]
        assert [d.text for d in sink.got] == [d.text for d in published["session:a"]]
