"""Investigations survive their node (issue 20): a node that dies leaves its running
investigations' leases to lapse, and another node adopts them; a node that drains hands
them over at once. The adopter walks again and publishes only what the stream lacks, so
the stream is contiguous and holds each event once. Real Redis, real time, bounded waits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from cidadao_trio.broker.redis import RedisBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.redis import RedisRecords

from ..contracts import HEALTH, small_dataset
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
