"""Model-voiced chat through a fake OpenAI-compatible provider (issue 15): time to the first
chunk a client sees and turns per second, 100 concurrent sessions, real sockets.

The fake model (tests/agents/fake_openai.py, real HTTP + SSE on loopback) streams 24 deltas,
either at once or one every ``--delta-ms``; what is measured above its own pace is the
server's overhead: routing, Anita's figures, the prompt, the HTTP stream, merging deltas,
the store and the WebSocket fan-out.

    python -m benchmarks.llm [--sessions 100] [--turns 5] [--delta-ms 0,20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from cidadao_trio.config import Settings
from cidadao_trio.server.server import Server
from tests.agents.fake_openai import Script, fake_openai
from tests.contracts import small_dataset

RESULTS = Path(__file__).parent / "results"
DELTAS = [f"palavra{n} " for n in range(24)]
QUESTION = "Quanto o Ministério da Saúde gastou?"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _session(port: int, n: int, turns: int, first: list[float], whole: list[float]) -> None:
    async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/api/v1/ws/chat/bench-{n}") as ws:
        await ws.get_message()  # connection
        for t in range(turns):
            started = time.perf_counter()
            await ws.send_message(json.dumps({"type": "chat", "id": f"{n}-{t}", "data": {"message": QUESTION}}))
            seen_first = False
            while True:
                message = json.loads(await ws.get_message())
                data = message.get("data", {})
                if not seen_first and message["type"] == "chat" and data.get("chunk"):
                    first.append(time.perf_counter() - started)
                    seen_first = True
                if message["type"] == "chat_complete":
                    assert data["status"] == "completed" and data["content"] == "".join(DELTAS), data
                    whole.append(time.perf_counter() - started)
                    break


async def run(sessions: int, turns: int, delta_s: float) -> dict[str, Any]:
    async with fake_openai() as fake:
        fake.default = Script(deltas=DELTAS, delay=delta_s)
        settings = Settings(host="127.0.0.1", port=0, store="memory", reply_chunk_delay=0.0, max_connections=10_000,
                            llm_base_url=fake.base_url, llm_model="fake", llm_max_concurrency=sessions,
                            rate_burst=1000, rate_messages=10_000)  # fmt: skip
        server = Server(settings, dataset=small_dataset())
        first: list[float] = []
        whole: list[float] = []
        async with server.running(), trio.open_nursery() as nursery:
            listeners = await nursery.start(server.serve_tcp)
            port = listeners[0].socket.getsockname()[1]
            started = time.perf_counter()
            async with trio.open_nursery() as clients:
                for n in range(sessions):
                    clients.start_soon(_session, port, n, turns, first, whole)
            elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    model_floor = delta_s  # the fake's own wait before its first delta
    return {
        "sessions": sessions, "turns": sessions * turns, "delta_ms": delta_s * 1000,
        "first_chunk_p50_ms": statistics.median(first) * 1000, "first_chunk_p95_ms": _pct(first, 0.95) * 1000,
        "overhead_p50_ms": (statistics.median(first) - model_floor) * 1000,
        "turn_p50_ms": statistics.median(whole) * 1000, "turns_per_s": sessions * turns / elapsed,
        "model_requests": len(fake.seen),
    }  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| sessions | turns | model delta (ms) | first chunk p50 (ms) | first chunk p95 (ms) | "
            "overhead p50 (ms) | whole turn p50 (ms) | turns/s |")  # fmt: skip
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['sessions']} | {r['turns']} | {r['delta_ms']:.0f} | {r['first_chunk_p50_ms']:.1f} | "
            f"{r['first_chunk_p95_ms']:.1f} | {r['overhead_p50_ms']:.1f} | {r['turn_p50_ms']:.1f} | "
            f"{r['turns_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=5, help="questions each session asks, one after another")
    parser.add_argument("--delta-ms", default="0,20", help="the fake model's pace, comma-separated")
    args = parser.parse_args()
    rows = [trio.run(run, args.sessions, args.turns, float(ms) / 1000) for ms in args.delta_ms.split(",")]
    text = table(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "llm.md").write_text(
        "# Model-voiced chat through a fake OpenAI-compatible provider\n\n"
        f"`python -m benchmarks.llm --sessions {args.sessions} --turns {args.turns} --delta-ms {args.delta_ms}`: "
        "every session asks Anita a question whose figures the model phrases; 24 deltas per reply. "
        "Overhead = time to the first chunk minus the fake model's wait before its first delta.\n\n" + text + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
