"""Investigations survive their node (issue 20): a node that dies leaves its running
investigations' leases to lapse, and another node adopts them; a node that drains hands
them over at once. The adopter walks again and publishes only what the stream lacks, so
the stream is contiguous and holds each event once. Real Redis, real time, bounded waits."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import websockets

from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.redis import RedisRecords

from ..contracts import HEALTH, small_dataset
from ..process import serve
from .helpers import LIMIT, ListSink
from .redis_process import RedisProcess

LEASE = 0.5  # seconds: short, so that a dead node's runs lapse quickly here


@asynccontextmanager
async def engine_node(
    url: str, name: str, step_delay: float
) -> AsyncIterator[tuple[InvestigationEngine, trio.CancelScope]]:
    """One node's engine over the shared Redis; cancelling the scope is the node dying
    (no drain, no hand-over: its leases are left to lapse)."""
    with trio.CancelScope() as life:
        async with trio.open_nursery() as nursery:
            broker = RedisBroker(url)
            await nursery.start(broker.run)
            engine = InvestigationEngine(
                broker, RedisRecords(broker), small_dataset, in_thread=False, node=name, shared_store=True,
                step_delay=step_delay,
            )
            engine.lease_ttl = LEASE
            await nursery.start(engine.run)
            yield engine, life
            nursery.cancel_scope.cancel()


def events(sink: ListSink) -> list[dict[str, Any]]:
    return sink.payloads()


def shape(sink: ListSink, investigation_id: str) -> list[Any]:
    """The events' types and data, without the id (report_ready's proof differs per report)."""
    kept = [(e["type"], e["data"]) for e in events(sink) if e["type"] != "report_ready"]
    return list(json.loads(json.dumps(kept).replace(investigation_id, "INV")))


def offsets(sink: ListSink) -> list[int]:
    return [int(e["id"].rsplit("-", 1)[1]) for e in events(sink)]


async def _adopted(redis: RedisProcess, *, drain: bool) -> None:
    with trio.fail_after(LIMIT):
        async with engine_node(redis.url, "b", 0.0) as (b, _):
            async with engine_node(redis.url, "a", 0.05) as (a, a_life):
                record = await a.start(Filters(agency=HEALTH), "anon", public=True)
                stream = f"investigation:{record.id}"
                seen = ListSink()
                await b.broker.attach(stream, seen, None, from_oldest=True)
                await seen.wait_until(lambda s: any(e["type"] == "anomaly_detected" for e in events(s)))
                if drain:
                    assert await a.hand_over(trio.current_time() + 5) == 1
                a_life.cancel()  # a is gone
            await seen.wait_until(lambda s: any(e["type"] == "report_ready" for e in events(s)))
            whole = await b.start(Filters(agency=HEALTH), "anon", public=True)
            fresh = ListSink()
            await b.broker.attach(f"investigation:{whole.id}", fresh, None, from_oldest=True)
            await fresh.wait_until(lambda s: any(e["type"] == "report_ready" for e in events(s)))
            stored = await b.repository.investigation(record.id)
            runs = await b.repository.runs()
    assert offsets(seen) == list(range(1, len(offsets(seen)) + 1))  # no gap, no duplicate
    assert shape(seen, record.id) == shape(fresh, whole.id)  # each event once, as if never cut
    assert [e["type"] for e in events(seen)].count("report_ready") == 1
    assert stored is not None and stored.status == "completed" and stored.node == "b"
    assert record.id not in [r.investigation_id for r in runs]


async def test_a_dead_nodes_investigation_is_adopted_and_completes_once(redis: RedisProcess) -> None:
    await _adopted(redis, drain=False)


async def test_a_draining_node_hands_its_investigation_over(redis: RedisProcess) -> None:
    await _adopted(redis, drain=True)


def test_a_sigkilled_process_investigation_is_finished_by_the_other_once(redis: RedisProcess) -> None:
    """Two real processes: A runs an investigation and is SIGKILLed mid-way; B adopts it
    once A's lease lapses, and a watcher on B sees one contiguous stream, each event once,
    ending in B's report_ready."""
    settings = {"store": "redis", "redis_url": redis.url, "investigation_lease": 1, "investigation_step_delay": 0.1}
    with serve(node_name="a", **settings) as a, serve(node_name="b", **settings) as b:

        async def kill_a_mid_investigation() -> list[dict[str, Any]]:
            async with websockets.connect(f"ws://127.0.0.1:{a.port}/api/v1/ws/chat/cidada") as ws:
                await ws.recv()
                ask = {"type": "chat", "data": {"message": "Investigar contratos do Ministério da Saúde"}, "id": "q1"}
                await ws.send(json.dumps(ask))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if message["type"] == "chat_complete":
                        investigation_id = message["data"]["investigation_id"]
                        break
            seen: list[dict[str, Any]] = []
            url = f"ws://127.0.0.1:{b.port}/api/v1/ws/investigations/{investigation_id}"
            async with websockets.connect(url) as watch:
                await watch.recv()
                while not seen or seen[-1]["type"] != "report_ready":
                    seen.append(json.loads(await asyncio.wait_for(watch.recv(), 60)))
                    if seen[-1]["type"] == "anomaly_detected" and a.process.poll() is None:
                        a.process.send_signal(signal.SIGKILL)  # mid-detection: A is gone
                        a.process.wait(timeout=10)
            return seen

        seen = asyncio.run(kill_a_mid_investigation())
        investigation_id = seen[0]["data"]["investigation_id"]
        status_url = f"http://127.0.0.1:{b.port}/api/v1/investigations/{investigation_id}"
        with urllib.request.urlopen(status_url, timeout=10) as answer:
            record = json.loads(answer.read())
    assert a.process.returncode == -signal.SIGKILL
    assert record["status"] == "completed" and record["node"] == "b"  # finished by B
    durable = [m for m in seen if not m["id"].startswith("e-")]
    numbers = [int(m["id"].rsplit("-", 1)[1]) for m in durable]
    assert numbers == list(range(1, len(numbers) + 1))  # from the first event, no gap, no repeat
    anomalies = [m["data"]["anomaly_id"] for m in durable if m["type"] == "anomaly_detected"]
    assert anomalies and len(anomalies) == len(set(anomalies))
    phases = [m["data"]["status"] for m in durable if m["type"] == "investigation_progress"]
    assert phases[-1] == "completed" and phases.count("completed") == 1 and "failed" not in phases
    assert [m["type"] for m in durable].count("report_ready") == 1
