"""Memory per retained message in the broker's history (issue 21), measured with tracemalloc.

    python -m benchmarks.history_memory [--messages 400] [--sessions 90] [--name history-memory]

Two shapes of history, both on the SQLite store and both fully retained in memory (the byte
budget is set high so nothing is evicted): chat messages in their own streams, and the
events of one investigation followed by many sessions (each session keeps its copies).
The figure is the traced Python memory that publishing added, per retained message, minus
the UTF-8 bytes of the message's envelope ("beyond the text"); a session's copy of an event
has no text of its own, so all of its memory is overhead. Writes
``benchmarks/results/<name>.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.protocol.events import AnomalyDetected, ReplyChunk
from cidadao_trio.store.sqlite import SqliteStore

from .report import publish

CONTENT = (
    "Olá! Encontrei três contratos da Secretaria de Saúde com preços 40 % acima da mediana "
    "do órgão; a análise considera o período de janeiro a março e os fornecedores citados. "
)


def _broker(store: SqliteStore) -> LocalBroker:
    kwargs: dict[str, Any] = {"store": store, "max_messages": 100_000}
    if "memory_bytes" in inspect.signature(LocalBroker).parameters:
        kwargs["memory_bytes"] = 1 << 34  # nothing evicted: measure what is held
    return LocalBroker(**kwargs)


async def _measure(path: Path, streams: int, per_stream: int, sessions: int, events: int) -> list[dict[str, Any]]:
    broker = _broker(SqliteStore(path))
    rows = []
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        keys = [f"session:chat{s}" for s in range(streams)]
        followers = [f"session:follower{s}" for s in range(sessions)]
        for key in keys + followers + ["investigation:INV-2026-001"]:
            await broker.last_id(key)  # create every stream before measuring
        await broker.flush()

        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        text_bytes = 0
        for n in range(per_stream):
            for key in keys:
                delivery = await broker.publish(key, ReplyChunk(
                    content=f"{CONTENT}{n}", agent_id="drummond", agent_name="Carlos Drummond de Andrade",
                    chunk_index=n,
                ))
                text_bytes += len(delivery.text.encode())
            del delivery
        await broker.flush()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        count = streams * per_stream
        rows.append({
            "history": "chat (own text)", "retained": count,
            "text_bytes_avg": round(text_bytes / count), "traced_bytes_avg": round(used / count),
            "beyond_text": round((used - text_bytes) / count),
        })

        for key in followers:
            await broker.link("investigation:INV-2026-001", key)
        await broker.flush()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        text_bytes = 0
        for n in range(events):
            delivery = await broker.publish("investigation:INV-2026-001", AnomalyDetected(
                investigation_id="INV-2026-001", anomaly_id=f"a{n}", anomaly_type="price_outlier", severity="high",
                confidence=0.9, description=CONTENT, details={}, agent_id="zumbi",
            ))
            text_bytes += len(delivery.text.encode())
            del delivery
        await broker.flush()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        copies = events * sessions
        rows.append({
            "history": f"investigation event + {sessions} session copies", "retained": events + copies,
            "text_bytes_avg": round(text_bytes / events), "traced_bytes_avg": round(used / (events + copies)),
            "beyond_text": round((used - text_bytes) / (events + copies)),
        })
        overhead = round((used - text_bytes - events * rows[0]["beyond_text"]) / copies)
        rows.append({
            "history": "one session copy (all overhead)", "retained": copies,
            "text_bytes_avg": 0, "traced_bytes_avg": overhead, "beyond_text": overhead,
        })
        nursery.cancel_scope.cancel()
    broker.store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200, help="chat messages per stream")
    parser.add_argument("--sessions", type=int, default=90, help="sessions following the investigation")
    parser.add_argument("--events", type=int, default=100, help="investigation events")
    parser.add_argument("--name", default="history-memory")
    parser.add_argument("--label", default="", help="what code was measured (e.g. before/after)")
    args = parser.parse_args()
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        rows = trio.run(_measure, Path(tmp) / "bench.sqlite3", args.streams, args.messages, args.sessions, args.events)
    note = (
        f"{args.label} tracemalloc, SQLite store, everything retained in memory; {args.streams} chat streams × "
        f"{args.messages} messages, then {args.events} investigation events followed by {args.sessions} sessions. "
        "beyond_text = traced bytes per retained message minus its envelope's UTF-8 bytes."
    ).strip()
    publish(args.name, rows, note)


if __name__ == "__main__":
    main()
