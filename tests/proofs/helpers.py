"""An investigation run to its sealed report under virtual time, and its events."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import trio

from cidadao_trio.broker.base import investigation_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.proving import Prover
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.local import StoreRecords

from ..contracts import HEALTH, small_dataset


async def retained_events(broker: Any, investigation_id: str) -> list[dict[str, Any]]:
    return [json.loads(d.text) for d in await broker.retained(investigation_stream(investigation_id))]


async def sealed_investigation(
    load: Callable[[], Sequence[Contract]] = small_dataset, prover: Callable[[LocalBroker], Prover] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The JSON report (``format=json``) and the stream's events of one finished investigation."""
    broker = LocalBroker()
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        engine = InvestigationEngine(
            broker, StoreRecords(broker), load, in_thread=False, step_delay=0.0,
            prover=prover(broker) if prover else None,
        )
        await nursery.start(engine.run)
        record = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        while (stored := await engine.report(record.id)) is None or "proof" not in json.loads(stored.json):
            await trio.sleep(0.1)
        await broker.flush()
        events = await retained_events(broker, record.id)
        nursery.cancel_scope.cancel()
    return json.loads(stored.json), events
