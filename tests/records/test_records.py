"""The records repository's contract, the same for every store: memory, SQLite, Redis.

Each test runs against the three implementations; what only a durable store promises
(records outlive the process, or are shared by another node) runs against SQLite and
Redis. Redis tests start their own redis-server on a free loopback port.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
import trio.testing

from cidadao_trio.broker.base import StoreUnavailable, session_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.investigations.model import (
    Investigation,
    InvestigationStatus,
    public_view,
)
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.base import OpenTurn, Records, Run, StoredReport, TurnRecord
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.records.redis import RedisRecords
from cidadao_trio.records.response_cache import RecordsResponseCache
from cidadao_trio.store.base import MemoryStore, SaveInvestigation, SaveTurn
from cidadao_trio.store.sqlite import SqliteStore

from ..harness import until_committed
from ..messages import message
from ..multinode.redis_process import redis_process


@attrs.define
class Backend:
    """One store under test: its records, how to wait for its writes to be committed
    (reads see them then), another view of the same data (a restarted process, or
    another node; None when nothing outlives the process), and a way to write a stored
    text as an earlier version of the server wrote it."""

    kind: str
    records: Records
    flush: Callable[[], Awaitable[None]]
    again: Callable[[], Awaitable[Records]] | None
    write_raw: Callable[[str, str, str], Awaitable[None]]  # (kind, key, text)


async def _local(nursery: trio.Nursery, store_of: Callable[[], MemoryStore | SqliteStore], kind: str) -> Backend:
    broker = LocalBroker(store=store_of())
    await nursery.start(broker.run)
    records = StoreRecords(broker)

    async def again() -> Records:
        await broker.flush()
        records.close()
        reborn = LocalBroker(store=store_of())
        await nursery.start(reborn.run)
        return StoreRecords(reborn)

    async def write_raw(what: str, key: str, text: str) -> None:
        if what == "investigation":
            await broker.record(SaveInvestigation(key, text))
        else:
            session_id, turn_key = key.split("/")
            await broker.record(SaveTurn(session_id, turn_key, text))

    return Backend(kind, records, broker.flush, again if kind == "sqlite" else None, write_raw)


async def _redis(nursery: trio.Nursery, url: str) -> Backend:
    broker = RedisBroker(url)
    await nursery.start(broker.run)

    async def again() -> Records:  # another node on the same Redis
        other = RedisBroker(url)
        await nursery.start(other.run)
        return RedisRecords(other)

    async def write_raw(what: str, key: str, text: str) -> None:
        if what == "investigation":
            await broker.call(lambda c, _: c.hset(broker.key("investigations"), {key: text}))
            await broker.call(lambda c, _: c.rpush(broker.key("investigations:order"), [key]))
        else:
            field = key.replace("/", "\x1f")
            await broker.call(lambda c, _: c.hset(broker.key("turns"), {field: text}))

    return Backend("redis", RedisRecords(broker), broker.flush, again, write_raw)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield await _local(nursery, MemoryStore, "memory")
    elif request.param == "sqlite":
        yield await _local(nursery, lambda: SqliteStore(tmp_path / "records.sqlite3"), "sqlite")
    else:
        with redis_process(tmp_path) as server:
            yield await _redis(nursery, server.url)


def _investigation(number: int, **changes: Any) -> Investigation:
    record = Investigation(f"INV-2026-{number:03d}", f"Contratos {number}", "todos os contratos", "user:ana", False)
    return attrs.evolve(record, **changes)


async def test_investigations_are_kept_in_the_order_they_were_opened(backend: Backend) -> None:
    records = backend.records
    assert await records.investigations() == []
    first, second = _investigation(1), _investigation(2)
    await records.save_investigation(first)
    await records.save_investigation(second)
    await backend.flush()
    assert await records.investigations() == [first, second]
    done = attrs.evolve(first, status="completed", progress=100, summary={"risk_score": 7.5, "by_type": {"a": 1}})
    await records.save_investigation(done)  # an update keeps its place
    await backend.flush()
    assert await records.investigations() == [done, second]
    assert await records.investigation(first.id) == done
    assert await records.investigation("INV-2026-404") is None
    loaded = await records.investigation(first.id)
    assert loaded is not None and loaded.status is InvestigationStatus.COMPLETED and loaded.finished


async def test_a_report_is_kept_in_both_forms(backend: Backend) -> None:
    records = backend.records
    assert await records.report("INV-2026-001") is None
    report = StoredReport('{"summary": {"anomalies_found": 2}}', "# Relatório\n\nçã")
    await records.save_report("INV-2026-001", report)
    await backend.flush()
    assert await records.report("INV-2026-001") == report
    assert await records.report("INV-2026-002") is None


async def test_a_session_keeps_its_first_owner_unless_it_was_anonymous(backend: Backend) -> None:
    records = backend.records
    assert await records.session_owner("s1") is None
    await records.save_session_owner("s1", "user:ana")
    await records.save_session_owner("s1", "user:bob")
    await backend.flush()
    assert await records.session_owner("s1") == "user:ana"
    await records.save_session_owner("s2", "anon")
    await backend.flush()
    assert await records.session_owner("s2") == "anon"
    await records.save_session_owner("s2", "user:bob")  # a user claims an anonymous session
    await records.save_session_owner("s2", "user:ana")
    await backend.flush()
    assert await records.session_owner("s2") == "user:bob"


async def test_open_turns_are_those_begun_and_not_ended(backend: Backend) -> None:
    records = backend.records
    assert await records.open_turns() == []
    turns = [
        OpenTurn("s1", "k1", TurnRecord("drummond", "Carlos Drummond de Andrade", "q1", "node-a:8000")),
        OpenTurn("s1", "k2", TurnRecord("zumbi", "Zumbi dos Palmares", 7, "node-a:8000")),
        OpenTurn("s2", "k3", TurnRecord("anita", "Anita Garibaldi")),
    ]
    for turn in turns:
        await records.begin_turn(turn)
    await backend.flush()
    assert sorted(await records.open_turns(), key=lambda t: t.turn_key) == turns
    await records.end_turn("s1", "k1")
    await records.end_turn("s1", "unknown")  # ending what is not open changes nothing
    await backend.flush()
    assert sorted(await records.open_turns(), key=lambda t: t.turn_key) == turns[1:]


async def test_counters_count_from_one_each_on_its_own(backend: Backend) -> None:
    records = backend.records
    assert [await records.next_number("investigation:2026") for _ in range(3)] == [1, 2, 3]
    assert await records.next_number("investigation:2027") == 1
    assert await records.next_number("investigation:2026") == 4


async def test_texts_stored_by_earlier_versions_read_back(backend: Backend) -> None:
    """Investigations were ``orjson.dumps(attrs.asdict(record))``, turns ``json.dumps``
    of a dict: the converter reads both, and writes investigations the same way."""
    record = _investigation(5, status="anomaly_detection", progress=42, node="node-a:8000")
    old_text = orjson.dumps(attrs.asdict(record)).decode()
    await backend.write_raw("investigation", record.id, old_text)
    turn = {"node": "node-a:8000", "reply_to": "q9", "agent_id": "drummond", "agent_name": "D"}
    await backend.write_raw("turn", "s9/k9", json.dumps(turn))
    await backend.flush()
    assert await backend.records.investigation(record.id) == record
    turns = [OpenTurn("s9", "k9", TurnRecord("drummond", "D", "q9", "node-a:8000"))]
    assert await backend.records.open_turns() == turns
    assert record.to_json() == orjson.loads(old_text)


@pytest.fixture(params=["sqlite", "redis"])
async def durable(request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield await _local(nursery, lambda: SqliteStore(tmp_path / "records.sqlite3"), "sqlite")
    else:
        with redis_process(tmp_path) as server:
            yield await _redis(nursery, server.url)


async def test_durable_records_outlive_the_process_or_are_shared(durable: Backend) -> None:
    records = durable.records
    investigation = _investigation(1, summary={"total_value": 1.5})
    await records.save_investigation(investigation)
    await records.save_report(investigation.id, StoredReport("{}", "# R"))
    await records.save_session_owner("s1", "user:ana")
    turn = OpenTurn("s1", "k1", TurnRecord("drummond", "D", None, "node-a:8000"))
    await records.begin_turn(turn)
    assert await records.next_number("c") == 1
    await durable.flush()
    assert durable.again is not None
    other = await durable.again()
    assert await other.investigations() == [investigation]
    assert await other.report(investigation.id) == StoredReport("{}", "# R")
    assert await other.session_owner("s1") == "user:ana"
    assert await other.open_turns() == [turn]
    assert await other.next_number("c") == 2


def test_the_public_view_is_the_record_without_its_owner() -> None:
    record = _investigation(1, status="completed", summary={"risk_score": 3})
    shown = public_view(record)
    assert "owner_key" not in shown
    assert shown == {k: v for k, v in orjson.loads(orjson.dumps(record.to_json())).items() if k != "owner_key"}
    assert orjson.loads(orjson.dumps(shown))["status"] == "completed"  # the wire value




async def test_a_store_that_cannot_write_refuses_records_unavailable(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Record writes share the broker's writer: a full disk refuses them as it refuses a
    publish (nothing accepted), and what was accepted before is committed once it recovers."""
    caplog.set_level(logging.INFO, logger="cidadao_trio")
    store = SqliteStore(tmp_path / "full.sqlite3")
    broker = LocalBroker(store=store)
    records = StoreRecords(broker)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        await records.save_session_owner("before", "user:ana")
        await broker.flush()
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        await broker.publish(session_stream("s1"), message("chat", {"content": "x" * 20_000}))
        await records.save_investigation(_investigation(1))  # accepted: queued behind the publish
        await until_committed(broker, lambda: not broker.healthy)
        with pytest.raises(StoreUnavailable):
            await records.save_session_owner("during", "user:ana")
        with pytest.raises(StoreUnavailable):
            await records.begin_turn(OpenTurn("s1", "k1", TurnRecord("drummond", "D")))
        store._db.execute("PRAGMA max_page_count = 1073741823")
        await until_committed(broker, lambda: broker.healthy)
        await broker.flush()
        assert [i.id for i in await records.investigations()] == ["INV-2026-001"]
        assert await records.session_owner("during") is None
        assert await records.open_turns() == []
        nursery.cancel_scope.cancel()
    store.close()


async def test_a_message_id_is_accepted_once_per_session(backend: Backend) -> None:
    """§2: a client message id is the session's idempotency key (issue 20)."""
    records = backend.records
    assert await records.accept_message("s1", '"q1"', 3600) is True
    assert await records.accept_message("s1", '"q1"', 3600) is False  # at once: not yet committed
    await backend.flush()
    assert await records.accept_message("s1", '"q1"', 3600) is False
    assert await records.accept_message("s2", '"q1"', 3600) is True  # another session's
    await records.forget_message("s1", '"q1"')
    await backend.flush()
    assert await records.accept_message("s1", '"q1"', 3600) is True


async def test_accepted_message_ids_outlive_the_process_or_are_shared(durable: Backend) -> None:
    await durable.records.accept_message("s1", '"q1"', 3600)
    await durable.flush()
    assert durable.again is not None
    other = await durable.again()
    assert await other.accept_message("s1", '"q1"', 3600) is False
    assert await other.accept_message("s1", '"q2"', 3600) is True


async def test_runs_are_kept_until_ended(backend: Backend) -> None:
    records = backend.records
    run = Run("INV-2026-001", Filters(agency="Ministério da Saúde", year=2025))
    await records.begin_run(run, "node-a", 30)
    await records.begin_run(Run("INV-2026-002", Filters()), "node-a", 30)
    await backend.flush()
    assert await records.runs() == [run, Run("INV-2026-002", Filters())]
    assert await records.claim_run(run.investigation_id, "node-a", 30) is True  # renewed
    await records.end_run("INV-2026-002")
    await backend.flush()
    assert await records.runs() == [run]


async def test_a_run_lease_is_held_by_one_node_until_released_or_lapsed(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Several nodes: only the lease's holder renews it; once released or lapsed another takes it."""
    with redis_process(tmp_path) as redis:
        await _leases(nursery, redis.url)


async def _leases(nursery: trio.Nursery, url: str) -> None:
    a, b = (await _redis(nursery, url)).records, (await _redis(nursery, url)).records
    await a.begin_run(Run("INV-2026-001", Filters()), "node-a", 30)
    assert await b.claim_run("INV-2026-001", "node-b", 30) is False
    await b.release_run("INV-2026-001", "node-b")  # not b's: nothing changes
    assert await b.claim_run("INV-2026-001", "node-b", 30) is False
    await a.release_run("INV-2026-001", "node-a")
    assert await b.claim_run("INV-2026-001", "node-b", 30) is True
    assert await a.claim_run("INV-2026-001", "node-a", 30) is False
    assert await b.claim_run("INV-2026-001", "node-b", 0.001) is True  # renewed, to lapse in 1 ms
    with trio.fail_after(10):
        while not await a.claim_run("INV-2026-001", "node-a", 30):  # Redis's clock lapses it
            await trio.sleep(0)
    assert [r.investigation_id for r in await b.runs()] == ["INV-2026-001"]  # the run stays


async def test_expired_message_ids_are_pruned(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stores drop expired ids now and then (Redis expires its own keys)."""
    if backend.kind == "redis":
        assert await backend.records.accept_message("s1", '"old"', 0.001) is True
        return
    monkeypatch.setattr("cidadao_trio.records.local.PRUNE_EVERY", 1)
    monkeypatch.setattr("cidadao_trio.records.local.RECENT_SECONDS", 0.0)
    records = backend.records
    assert await records.accept_message("s1", '"old"', -1) is True  # already expired
    await backend.flush()
    assert await records.accept_message("s1", '"old"', 3600) is True  # expired: accepted again
    assert await records.accept_message("s1", '"new"', 3600) is True
    await backend.flush()
    assert await records.accept_message("s1", '"new"', 3600) is False


async def test_a_cached_text_reads_back_until_it_expires(backend: Backend) -> None:
    records = backend.records
    assert await records.cached("portal:a") is None
    await records.cache("portal:a", "página 1", 3600)
    await records.cache("portal:b", "já expirado", 0.001)
    await records.cache("portal:c", "nunca guardado", 0)
    await backend.flush()
    await trio.sleep(0.01)  # the store's own clock (wall time, or Redis's): a real 10 ms
    assert await records.cached("portal:a") == "página 1"
    assert await records.cached("portal:b") is None
    assert await records.cached("portal:c") is None
    await records.cache("portal:a", "página 1, de novo", 3600)  # a later write replaces it
    await backend.flush()
    assert await records.cached("portal:a") == "página 1, de novo"


async def test_cached_texts_outlive_the_process_or_are_shared(durable: Backend) -> None:
    """So a second investigation of the same body and period, after a restart or on
    another node, does not spend the Portal's quota again (issue 16)."""
    cache = RecordsResponseCache(durable.records)
    await cache.put("contratos?codigoOrgao=36000&pagina=1", '[{"id": 1}]', 3600)
    await durable.flush()
    assert durable.again is not None
    other = RecordsResponseCache(await durable.again())
    assert await other.get("contratos?codigoOrgao=36000&pagina=1") == '[{"id": 1}]'
    assert await other.get("contratos?codigoOrgao=36000&pagina=2") is None


async def test_expired_cached_texts_are_pruned(
    monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery, tmp_path: Path
) -> None:
    monkeypatch.setattr("cidadao_trio.records.local.PRUNE_EVERY", 2)
    path = tmp_path / "records.sqlite3"
    backend = await _local(nursery, lambda: SqliteStore(path), "sqlite")
    await backend.records.cache("old", "x" * 1000, 0.001)
    await trio.sleep(0.01)
    await backend.records.cache("new", "y", 3600)  # the second write prunes
    await backend.flush()
    with sqlite3.connect(path) as db:
        names = [name for (name,) in db.execute("SELECT name FROM claims")]
    assert names == ["cache:new"]
