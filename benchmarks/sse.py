"""SSE fan-out beside WebSocket fan-out (issue 17, PROTOCOL.md §10).

    python -m benchmarks.sse [--subscribers 1000] [--events 200] [--repeats 3]

Our server (``benchmarks.harness_server``, in-memory store, pinned to one core) and, in
this process pinned to the other core, N raw SSE readers and N raw WebSocket readers on
one investigation. A backend publishes a burst of ``anomaly_detected`` events (never
coalesced or dropped) through the server API (§8, one POST of the whole batch); the
time is from the POST until every subscriber has every event. Three runs: WebSocket
only, SSE only, both at once. The readers only count (``bytes.count`` on what arrives),
so the load generator costs little next to the server. Writes
``benchmarks/results/sse.json`` and ``sse.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from typing import Any

import httpx
import trio

from .report import publish
from .runner import LOADGEN_CORE, ServerProcess, source_label

KEY = "benchmark-api-key"
SSE_MARK = b"event: anomaly_detected"  # once per event (its envelope names the type again)
WS_MARK = b'"type":"anomaly_detected"'
SAFETY = 300.0  # seconds a run may take before it is reported as failed (a loaded machine)


def _pin_self() -> None:
    if LOADGEN_CORE is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOADGEN_CORE)})


class Reader:
    """One subscriber: counts the event's marker in what arrives (it may straddle reads)."""

    def __init__(self, mark: bytes) -> None:
        self.mark = mark
        self.count = 0
        self.done = trio.Event()
        self.target = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        chunk = self._tail + data
        self.count += chunk.count(self.mark) - self._tail.count(self.mark)
        self._tail = chunk[-(len(self.mark) - 1):]
        if self.target and self.count >= self.target:
            self.done.set()


async def _sse(port: int, path: str, reader: Reader, opened: trio.Event, ready: list[int], n: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await _read(stream, reader, b"event: connection", opened, ready, n)


async def _ws(port: int, path: str, reader: Reader, opened: trio.Event, ready: list[int], n: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all((
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    await _read(stream, reader, b'"type":"connection"', opened, ready, n)


async def _read(
    stream: trio.SocketStream, reader: Reader, greeting: bytes, opened: trio.Event, ready: list[int], n: int
) -> None:
    seen = b""
    while greeting not in seen:  # the greeting: the subscriber is attached
        seen += await stream.receive_some(65536)
    ready[0] += 1
    if ready[0] == n:
        opened.set()
    async with stream:
        while data := await stream.receive_some(262144):
            reader.feed(data)


async def run_once(port: int, ws: int, sse: int, events: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=SAFETY) as client:
        created = await client.post("/api/v1/investigations", json={"title": "bench"},
                                    headers={"authorization": f"Bearer {KEY}"})
        investigation = created.json()["investigation_id"]
        readers = [Reader(WS_MARK if i < ws else SSE_MARK) for i in range(ws + sse)]
        opened, ready = trio.Event(), [0]
        batch = {"events": [{"type": "anomaly_detected", "data": {
            "anomaly_id": f"A{i}", "anomaly_type": "price_deviation", "severity": "high", "confidence": 0.9,
            "description": "Preço 300% acima da mediana de 42 contratos semelhantes",
            "details": {"contract_id": f"CT-{i:05d}", "expected_value": 1000.0, "actual_value": 4000.0},
        }} for i in range(events)]}
        async with trio.open_nursery() as nursery:
            for i, reader in enumerate(readers):
                if i < ws:
                    nursery.start_soon(_ws, port, f"/api/v1/ws/investigations/{investigation}", reader, opened, ready,
                                       len(readers))
                else:
                    nursery.start_soon(_sse, port, f"/api/v1/sse/investigations/{investigation}", reader, opened,
                                       ready, len(readers))
            with trio.fail_after(SAFETY):
                await opened.wait()
                for reader in readers:
                    reader.target = events
                started = time.perf_counter()
                answer = await client.post(f"/api/v1/investigations/{investigation}/events", json=batch,
                                           headers={"authorization": f"Bearer {KEY}"})
                accepted = time.perf_counter() - started
                assert answer.status_code == 202, answer.text
                for reader in readers:
                    await reader.done.wait()
                elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    delivered = events * len(readers)
    return {"accepted_s": accepted, "elapsed_s": elapsed, "delivered": delivered, "msg_per_s": delivered / elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000, help="subscribers of each kind")
    parser.add_argument("--events", type=int, default=200, help="events in the burst (<= 256: the outbox)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _pin_self()
    n = args.subscribers
    rows = []
    for label, ws, sse in (("WebSocket", n, 0), ("SSE", 0, n), ("WebSocket + SSE", n, n)):
        runs = []
        for _ in range(args.repeats):
            with ServerProcess("ours", env={"CIDADAO_API_KEYS": KEY}, label="sse-bench") as server:
                runs.append(trio.run(run_once, server.port, ws, sse, args.events))
        rates = [r["msg_per_s"] for r in runs]
        rows.append({
            "subscribers": label if ws and sse else f"{label} ({ws or sse})",
            "connections": ws + sse,
            "events": args.events,
            "delivered msg/s (median)": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "all delivered, s (median)": statistics.median(r["elapsed_s"] for r in runs),
            "POST accepted durable, s": statistics.median(r["accepted_s"] for r in runs),
        })
    publish("sse", rows, note=(
        f"One burst of {args.events} anomaly_detected events published through POST /api/v1/investigations/"
        f"{{id}}/events to {n} subscribers of each kind on one investigation; median of {args.repeats} runs, "
        f"a fresh server each; in-memory store; server and readers on separate cores. Source: {source_label()}."
    ))


if __name__ == "__main__":
    main()
