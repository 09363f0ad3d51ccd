"""The investigation engine under virtual time, and the flow from a chat to a report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import trio.testing

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.store.sqlite import SqliteStore

from ..contracts import EDUCATION, HEALTH, small_dataset
from ..harness import connect, http_get, receive, receive_until, running_server, send

PHASES = [
    "initializing", "data_retrieval", "anomaly_detection", "forensic_enrichment", "summary_generation", "completed",
]


class EventSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changed = trio.Event()

    def offer(self, delivery: Any) -> None:
        self.events.append(json.loads(delivery.text))
        self.changed.set()

    async def wait_for(self, kind: str) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event["type"] == kind:
                    return event
            self.changed = trio.Event()
            await self.changed.wait()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == kind]


@asynccontextmanager
async def engine_running(broker: LocalBroker | None = None, **kwargs: Any) -> AsyncIterator[InvestigationEngine]:
    broker = broker or LocalBroker()
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        engine = InvestigationEngine(broker, StoreRecords(broker), small_dataset, in_thread=False, **kwargs)
        await nursery.start(engine.run)
        yield engine
        nursery.cancel_scope.cancel()


async def watch(engine: InvestigationEngine, investigation_id: str) -> EventSink:
    sink = EventSink()
    await engine.broker.attach(f"investigation:{investigation_id}", sink, None)
    return sink


async def test_investigation_walks_the_phases(autojump_clock: trio.testing.MockClock) -> None:
    async with engine_running() as engine:
        record = await engine.start(Filters(agency=HEALTH), "user:alice", public=False)
        assert record.id.startswith("INV-") and record.id.endswith("-001")
        sink = await watch(engine, record.id)
        ready = await sink.wait_for("report_ready")
        progress = sink.of("investigation_progress")
        assert progress[0]["progress"] in (0, 10)  # attached just after the start
        assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
        assert progress[-1] == {
            **progress[-1], "status": "completed", "progress": 100, "records_processed": 40, "anomalies_detected": 2,
        }
        seen = [s for s in PHASES if any(p["status"] == s for p in progress)]
        assert seen == PHASES[PHASES.index(progress[0]["status"]):]
        anomalies = sink.of("anomaly_detected")
        # August's one overpriced pregão is a price signal, not a spending spike.
        assert sorted(a["anomaly_type"] for a in anomalies) == ["price_deviation", "value_divergence"]
        assert all(a["agent_id"] == "zumbi" and a["description"] for a in anomalies)
        assert len({a["anomaly_id"] for a in anomalies}) == 2
        agents = {f["agent_id"] for f in sink.of("agent_finding")}
        assert agents == {"zumbi", "anita"}
        assert ready["data"]["summary"]["anomalies_found"] == 2
        assert ready["data"]["url"] == f"/api/v1/investigations/{record.id}/report?format=markdown"
        assert engine.records[record.id].status == "completed"
        stored = await engine.report(record.id)
        assert stored is not None and "## Resumo Executivo" in stored.markdown


async def test_scope_limits_the_contracts(autojump_clock: trio.testing.MockClock) -> None:
    async with engine_running() as engine:
        record = await engine.start(Filters(agency=EDUCATION), "anon", public=True)
        sink = await watch(engine, record.id)
        await sink.wait_for("report_ready")
        assert engine.records[record.id].records_processed == 40
        assert sink.of("anomaly_detected") == []
        second = await engine.start(Filters(), "anon", public=True)
        assert second.id.endswith("-002")


async def test_cancel_marks_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    async with engine_running(step_delay=1.0) as engine:
        record = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        sink = await watch(engine, record.id)
        await trio.sleep(2.5)
        assert engine.cancel(record.id)
        await trio.sleep(1)
        assert engine.records[record.id].status == "cancelled"
        assert sink.of("investigation_progress")[-1]["status"] == "cancelled"
        assert not sink.of("report_ready")


async def test_failure_publishes_investigation_failed(autojump_clock: trio.testing.MockClock) -> None:
    class BrokenScope:
        def matches(self, contract: Any) -> bool:
            raise ValueError("dados corrompidos")

        def describe(self) -> str:
            return "tudo"

    async with engine_running() as engine:
        record = await engine.start(BrokenScope(), "anon", public=True)
        sink = await watch(engine, record.id)
        failed = await sink.wait_for("investigation_failed")
        assert failed["data"] == {"investigation_id": record.id, "reason": "dados corrompidos"}
        assert engine.records[record.id].status == "failed"


async def test_at_most_max_running_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """Judged on the order of the two streams' events: one runs to its report before the
    other moves. Which one goes first is trio's scheduling, not the order they were started."""
    async with engine_running(max_running=1, step_delay=1.0) as engine:
        first = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        second = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        order: list[tuple[str, dict[str, Any]]] = []

        class Ordered(EventSink):
            def __init__(self, investigation_id: str) -> None:
                super().__init__()
                self.investigation_id = investigation_id

            def offer(self, delivery: Any) -> None:
                super().offer(delivery)
                order.append((self.investigation_id, self.events[-1]))

        sinks = [Ordered(first.id), Ordered(second.id)]
        for sink in sinks:
            await engine.broker.attach(f"investigation:{sink.investigation_id}", sink, None)
        for sink in sinks:
            await sink.wait_for("report_ready")

    def moves(event: dict[str, Any]) -> bool:
        return event["type"] == "investigation_progress" and event["data"]["progress"] > 0

    leader = next(owner for owner, event in order if moves(event))
    follower = second.id if leader == first.id else first.id
    leader_done = next(n for n, (owner, e) in enumerate(order) if owner == leader and e["type"] == "report_ready")
    follower_moves = next(n for n, (owner, e) in enumerate(order) if owner == follower and moves(e))
    assert leader_done < follower_moves  # the follower waited for the leader's slot


async def test_restart_keeps_records_and_resumes_interrupted(tmp_path: Path) -> None:
    """One node (issue 20): a restart walks again what it cut, instead of failing it."""
    path = tmp_path / "store.sqlite3"
    async with engine_running(LocalBroker(store=SqliteStore(path)), step_delay=0.0) as engine:
        done = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        sink = await watch(engine, done.id)
        await sink.wait_for("report_ready")
        engine.step_delay = 60.0
        interrupted = await engine.start(Filters(agency=EDUCATION), "anon", public=True)
        unkept = await engine.start(_Everything(), "anon", public=True)  # a scope the records cannot keep
        await engine.broker.flush()
    async with engine_running(LocalBroker(store=SqliteStore(path)), step_delay=0.0) as engine:
        assert engine.records[done.id].status == "completed"
        sink = await watch(engine, interrupted.id)
        await sink.wait_for("report_ready")
        assert engine.records[interrupted.id].status == "completed"
        assert engine.records[unkept.id].status == "failed"
        assert "reinício" in (engine.records[unkept.id].reason or "")
        stored = await engine.report(done.id)
        assert stored is not None and orjson.loads(stored.json)["summary"]["anomalies_found"] == 2
        engine.step_delay = 60.0
        running = await engine.start(Filters(), "anon", public=True)  # stays running
        assert running.id.endswith("-004")
        await engine.broker.flush()
        runs = await engine.repository.runs()
        assert [r.investigation_id for r in runs] == [running.id]  # the others' ended with them


class _Everything:
    def matches(self, contract: Any) -> bool:
        return True

    def describe(self) -> str:
        return "todos os contratos"


async def test_chat_starts_investigation_and_report_is_served(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(dataset=small_dataset()) as server, connect(server, "/api/v1/ws/chat/cidada") as ws:
        await receive(ws)
        await send(ws, "chat", {"message": "Investigar contratos do Ministério da Saúde"}, id="inv")
        seen = await receive_until(ws, lambda m: m["type"] == "report_ready")
        complete = next(m for m in seen if m["type"] == "chat_complete")
        assert complete["data"]["agent_id"] == "zumbi"
        investigation_id = complete["data"]["investigation_id"]
        assert investigation_id in complete["data"]["content"]
        kinds = [m["type"] for m in seen]
        assert "subscribed" in kinds and "anomaly_detected" in kinds and "agent_finding" in kinds
        progress = [m["data"]["progress"] for m in seen if m["type"] == "investigation_progress"]
        assert progress[0] == 0 and progress[-1] == 100
        url = seen[-1]["data"]["url"]
        status, body = await http_get(server, url)
        assert status == 200 and "## Anomalias" in body.decode()
        status, body = await http_get(server, f"/api/v1/investigations/{investigation_id}")
        assert status == 200 and json.loads(body)["status"] == "completed"
        status, body = await http_get(server, url.replace("markdown", "json"))
        assert status == 200 and json.loads(body)["summary"]["anomalies_found"] == 2
        status, page = await http_get(server, url.replace("markdown", "html"))
        assert status == 200 and page.startswith(b"<!doctype html>")
        assert b"<h2>Anomalias</h2>" in page and investigation_id.encode() in page
        await send(ws, "chat", {"message": f"Qual o status da investigação {investigation_id}?"})
        turn = await receive_until(ws, lambda m: m["type"] == "chat_complete")
        assert turn[-1]["data"]["agent_id"] == "abaporu" and "100%" in turn[-1]["data"]["content"]
        await send(ws, "chat", {"message": "Quais os maiores fornecedores do Ministério da Educação?"})
        turn = await receive_until(ws, lambda m: m["type"] == "chat_complete")
        assert turn[-1]["data"]["agent_id"] == "anita" and "Fornecedor" in turn[-1]["data"]["content"]


async def test_private_investigation_reports_are_hidden(autojump_clock: trio.testing.MockClock) -> None:
    from cidadao_trio.auth import mint_token

    secret = "engine-test-secret-with-32-bytes-min"
    alice, bob = mint_token(secret, "alice"), mint_token(secret, "bob")
    async with running_server(dataset=small_dataset(), jwt_secret=secret) as server:
        assert server.engine is not None
        record = await server.engine.start(Filters(agency=HEALTH), "user:alice", public=False)
        path = f"/api/v1/investigations/{record.id}"
        assert (await http_get(server, path))[0] == 404
        assert (await http_get(server, f"{path}?token={bob}"))[0] == 404
        assert (await http_get(server, "/api/v1/investigations/INV-1999-999"))[0] == 404
        assert (await http_get(server, f"{path}?token={alice}"))[0] == 200
        assert (await http_get(server, f"{path}?token=garbage"))[0] == 401
        assert (await http_get(server, f"{path}/report?format=pdf&token={alice}"))[0] == 400


async def test_open_investigations_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    from cidadao_trio.investigations.engine import EngineBusy

    async with engine_running(max_running=1, max_open=2, step_delay=1.0) as engine:
        await engine.start(Filters(), "anon", public=True)
        await engine.start(Filters(), "anon", public=True)
        try:
            await engine.start(Filters(), "anon", public=True)
        except EngineBusy:
            pass
        else:
            raise AssertionError("a third open investigation was accepted")


async def test_a_resumed_investigation_streams_each_event_once(tmp_path: Path) -> None:
    """Cut mid-walk, resumed after the restart: its stream is contiguous and holds the
    same events, once each, as an investigation of the same scope that was never cut."""
    path = tmp_path / "store.sqlite3"
    async with engine_running(LocalBroker(store=SqliteStore(path)), step_delay=0.01) as engine:
        cut = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        sink = await watch(engine, cut.id)
        await sink.wait_for("anomaly_detected")
        await engine.broker.flush()
    async with engine_running(LocalBroker(store=SqliteStore(path)), step_delay=0.0) as engine:
        resumed = EventSink()
        await engine.broker.attach(f"investigation:{cut.id}", resumed, None, from_oldest=True)
        await resumed.wait_for("report_ready")
        whole = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        fresh = EventSink()
        await engine.broker.attach(f"investigation:{whole.id}", fresh, None, from_oldest=True)
        await fresh.wait_for("report_ready")

    def shape(sink: EventSink, investigation_id: str) -> list[Any]:
        text = json.dumps([(e["type"], e["data"]) for e in sink.events if e["type"] != "report_ready"])
        return json.loads(text.replace(investigation_id, "INV"))

    offsets = [int(e["id"].rsplit("-", 1)[1]) for e in resumed.events]
    assert offsets == list(range(1, len(offsets) + 1))
    assert shape(resumed, cut.id)[-len(shape(fresh, whole.id)):] == shape(fresh, whole.id)
    assert len(shape(resumed, cut.id)) == len(shape(fresh, whole.id))
    assert [e["type"] for e in resumed.events].count("report_ready") == 1


async def test_cancelling_zumbis_reply_cancels_the_investigation(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(
        dataset=small_dataset(), reply_chunk_delay=1.0, investigation_step_delay=5.0
    ) as server, connect(server, "/api/v1/ws/chat/s") as ws:
        await receive(ws)
        await send(ws, "chat", {"message": "Investigar contratos do Ministério da Saúde"}, id="z")
        await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk"))
        await send(ws, "cancel", {"reply_to": "z"})
        done = await receive_until(ws, lambda m: m["type"] == "chat_complete")
        assert done[-1]["data"]["status"] == "cancelled"
        await trio.sleep(10)
        assert server.engine is not None
        (record,) = await server.engine.listing()
        assert record.status == "cancelled"
