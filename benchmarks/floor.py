"""The floor: a bare trio-websocket broadcast server with no application logic.

    python -m benchmarks.floor --port 8765 --control-port 8766

What any trio + trio-websocket server pays at minimum: accept (``serve_websocket``), one
greeting, and per connection a bounded memory channel drained by a writer task calling
``send_message``; a reader drains incoming frames so close/ping handling keeps working.
No auth, no ids, no history, no limits, no heartbeat. Every connection subscribes to the
topic named by the last segment of its path (the investigation id). With ``?batch=1`` the
writer joins whatever is already queued (up to 64 messages / 64 KiB, no lingering) into one
``batch`` envelope, to show what batching alone is worth on this stack. Each event is encoded
once (orjson) for all connections.

Control API on ``127.0.0.1:<control-port>``: ``POST /bench/publish?count=&rate=&start=&pad=&investigation=``,
``POST /bench/investigation`` and ``GET /bench/stats`` (same contract as ``harness_server``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import time
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from . import control
from .events import EVENT_TYPE, anomaly_event, pace_deadline, valid_investigation
from .limits import raise_nofile

QUEUE = 256  # per-connection bound, like our server's outbox; overflow is dropped and counted
BATCH_MESSAGES = 64
BATCH_BYTES = 64 * 1024


def _timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class Floor:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[trio.MemorySendChannel[str]]] = {}
        self.dropped = 0
        self.accepted = 0

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        self.accepted += 1
        path, _, query = request.path.partition("?")
        batch = "batch=1" in query
        topic = path.rstrip("/").rsplit("/", 1)[-1]
        send, receive = trio.open_memory_channel[str](QUEUE)
        greeting = {"type": "connection", "data": {"status": "connected"}, "timestamp": _timestamp(), "id": "e-0"}
        subscribers = self.subscribers.setdefault(topic, set())
        subscribers.add(send)
        try:
            await ws.send_message(orjson.dumps(greeting).decode())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain_reads, ws, nursery.cancel_scope)
                await self._write(ws, receive, batch)
                nursery.cancel_scope.cancel()
        except* ConnectionClosed:
            pass
        finally:
            subscribers.discard(send)

    @staticmethod
    async def _drain_reads(ws: Any, scope: trio.CancelScope) -> None:
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            scope.cancel()

    @staticmethod
    async def _write(ws: Any, receive: trio.MemoryReceiveChannel[str], batch: bool) -> None:
        async for text in receive:
            if batch:
                texts = [text]
                size = len(text)
                while len(texts) < BATCH_MESSAGES and size < BATCH_BYTES:
                    try:
                        more = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    texts.append(more)
                    size += len(more)
                if len(texts) > 1:
                    text = (
                        '{"type":"batch","data":{"messages":[' + ",".join(texts)
                        + f'],"count":{len(texts)}}},"timestamp":"{_timestamp()}","id":"e-b"}}'
                    )
            try:
                await ws.send_message(text)
            except ConnectionClosed:
                return

    def broadcast(self, topic: str, text: str) -> None:
        subscribers = self.subscribers.get(topic, set())
        for channel in list(subscribers):
            try:
                channel.send_nowait(text)
            except trio.WouldBlock:
                self.dropped += 1
            except trio.BrokenResourceError:
                subscribers.discard(channel)

    def routes(self) -> dict[tuple[str, str], control.Route]:
        async def investigation(query: dict[str, str]) -> dict[str, Any]:
            return {"registered": valid_investigation(query)}

        async def publish(query: dict[str, str]) -> dict[str, Any]:
            topic = valid_investigation(query)
            count = min(int(query.get("count", "100")), 1_000_000)
            rate = float(query.get("rate", "0"))
            start_seq = int(query.get("start", "0"))
            pad = min(int(query.get("pad", "0")), 1 << 20)
            began = trio.current_time()
            wall = time.time()
            for i in range(count):
                due = pace_deadline(began, i, rate)
                if due is not None and due > trio.current_time():
                    await trio.sleep_until(due)
                envelope = {"type": EVENT_TYPE, "data": anomaly_event(start_seq + i, pad, topic),
                            "timestamp": _timestamp(), "id": f"0-{start_seq + i}"}
                self.broadcast(topic, orjson.dumps(envelope).decode())
                await trio.lowlevel.checkpoint()
            return {"published": count, "seconds": trio.current_time() - began, "started_at": wall}

        async def stats(query: dict[str, str]) -> dict[str, Any]:
            return {"pid": os.getpid(), "connections": sum(len(s) for s in self.subscribers.values()),
                    "accepted": self.accepted, "dropped": self.dropped}

        return {("POST", "/bench/investigation"): investigation, ("POST", "/bench/publish"): publish,
                ("GET", "/bench/stats"): stats}


async def run(port: int, control_port: int) -> None:
    floor = Floor()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(control.serve, control_port, floor.routes())
            await nursery.start(
                lambda task_status: serve_websocket(
                    floor.handle, "127.0.0.1", port, ssl_context=None, task_status=task_status
                )
            )
            print(f"floor listening on 127.0.0.1:{port} control {control_port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args(argv)
    raise_nofile()
    trio.run(run, args.port, args.control_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
