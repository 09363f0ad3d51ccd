"""Throughput of the server API's publish route (issue 17, PROTOCOL.md §8): events/s
accepted durable.

    python -m benchmarks.publish [--stores sqlite,memory] [--batches 1,100,1000] [--concurrency 1,8]

Our server (``benchmarks.harness_server``, pinned to one core) and, in this process on the
other core, ``concurrency`` backends, each POSTing batches of ``anomaly_detected`` events
to an investigation of its own (one investigation takes one batch at a time) and waiting
for each 202, which the server sends once the events are committed (SQLite: on disk).
Writes ``benchmarks/results/publish.json`` and ``publish.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import httpx
import trio

from .report import publish
from .runner import LOADGEN_CORE, ServerProcess, source_label

KEY = "benchmark-api-key"
SAFETY = 300.0


def _event(i: int) -> dict[str, Any]:
    return {"type": "anomaly_detected", "data": {
        "anomaly_id": f"A{i}", "anomaly_type": "price_deviation", "severity": "high", "confidence": 0.9,
        "description": "Preço 300% acima da mediana de 42 contratos semelhantes",
        "details": {"contract_id": f"CT-{i:05d}", "expected_value": 1000.0, "actual_value": 4000.0},
    }}


async def run_once(port: int, batch: int, concurrency: int, events: int) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    per_worker = max(1, events // (batch * concurrency))
    body = {"events": [_event(i) for i in range(batch)]}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=SAFETY, limits=limits) as client:
        investigations = []
        for _ in range(concurrency):
            created = await client.post("/api/v1/investigations", json={"title": "bench"}, headers=headers)
            investigations.append(created.json()["investigation_id"])

        async def backend(investigation: str) -> None:
            for _ in range(per_worker):
                started = time.perf_counter()
                answer = await client.post(f"/api/v1/investigations/{investigation}/events", json=body,
                                           headers=headers)
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 202, answer.text

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for investigation in investigations:
                nursery.start_soon(backend, investigation)
        elapsed = time.perf_counter() - started
    accepted = per_worker * concurrency * batch
    return {
        "events_per_s": accepted / elapsed, "requests_per_s": per_worker * concurrency / elapsed,
        "p50_ms": statistics.median(latencies) * 1000, "p99_ms": sorted(latencies)[int(len(latencies) * 0.99)] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,memory")
    parser.add_argument("--batches", default="1,100,1000")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--events", type=int, default=20000, help="events per run (batch 1: a tenth)")
    args = parser.parse_args(argv)
    if LOADGEN_CORE is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOADGEN_CORE)})
    rows = []
    for store in args.stores.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                with tempfile.TemporaryDirectory() as data_dir:
                    flags = ["--store", store, "--data-dir", data_dir]
                    with ServerProcess("ours", env={"CIDADAO_API_KEYS": KEY}, flags=flags, label="publish-bench") as s:
                        events = args.events if batch > 1 else args.events // 10
                        result = trio.run(run_once, s.port, batch, concurrency, events)
                rows.append({
                    "store": store, "events per POST": batch, "POSTs in flight": concurrency,
                    "events/s accepted durable": result["events_per_s"], "POSTs/s": result["requests_per_s"],
                    "p50 ms": result["p50_ms"], "p99 ms": result["p99_ms"],
                })
    publish("publish", rows, note=(
        "POST /api/v1/investigations/{id}/events, each answered 202 once its events are committed "
        "(sqlite: on disk, the default store); every POST in flight on an investigation of its own; "
        f"server and client on separate cores. Source: {source_label()}."
    ))


if __name__ == "__main__":
    main()
