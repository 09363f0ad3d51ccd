"""Durable messages per second through the broker into the embedded SQLite store.

    python -m benchmarks.store [--messages 20000] [--streams 100]

Each publish is committed before it is offered to a sink; the writer groups whatever is
queued into one transaction. The figure is messages committed and delivered per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.events import ReplyChunk
from cidadao_trio.store.base import MemoryStore, Store
from cidadao_trio.store.sqlite import SqliteStore

from .report import publish


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def offer(self, delivery: object) -> None:
        self.count += 1


async def measure(store: Store, messages: int, streams: int, publishers: int) -> dict[str, float]:
    broker = LocalBroker(store=store)
    sink = CountingSink()
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        for s in range(streams):
            await broker.attach(f"session:s{s}", sink, None)
        start = time.perf_counter()

        async def publisher(worker: int) -> None:
            for n in range(worker, messages, publishers):
                await broker.publish(f"session:s{n % streams}", ReplyChunk(
                    content=f"mensagem {n}", agent_id="drummond", agent_name="Drummond", chunk_index=n,
                ))

        async with trio.open_nursery() as producers:
            for worker in range(publishers):
                producers.start_soon(publisher, worker)
        await broker.flush()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    assert sink.count == messages
    return {"messages": messages, "seconds": elapsed, "messages_per_s": messages / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, store in (
            ("sqlite (WAL, synchronous=NORMAL)", SqliteStore(Path(tmp) / "bench.sqlite3")),
            ("memory (nothing kept)", MemoryStore()),
        ):
            result = trio.run(measure, store, args.messages, args.streams, args.publishers)
            rows.append({"store": name, **result})
            store.close()
    publish("store", rows, (
        f"{args.messages} durable messages over {args.streams} streams, {args.publishers} concurrent publishers"
    ))


if __name__ == "__main__":
    main()
