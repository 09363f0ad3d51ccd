"""The README's performance table, computed from ``benchmarks/results/*.json``.

Figures are never typed by hand (one was once copied from another row):
``python -m benchmarks.readme_figures`` prints the table to paste, and
``tests/test_readme.py`` fails when the README's table differs from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
HEADER = "| what (1,000 subscribers unless said) | ours | reference | floor |\n|---|---|---|---|"


def rows(name: str) -> list[dict[str, Any]]:
    return list(json.loads((RESULTS / f"{name}.json").read_text())["rows"])


def pick(table: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    found = [row for row in table if all(row.get(k) == v for k, v in where.items())]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows match {where}")
    return found[0]


def thousands(value: float | str, step: int = 100) -> str:
    if isinstance(value, str):  # "≥ 12,345": a lower bound (the load generator was saturated)
        return "≥ " + thousands(float(value.lstrip("≥ ").replace(",", "")), step)
    return f"{round(value / step) * step:,}"


def table() -> str:
    connections, fanout = rows("connections"), rows("fanout")
    chat, mixed, twonode = rows("chat")[0], rows("mixed"), rows("twonode")

    def kb(server: str) -> str:
        return f"{round(pick(connections, server=server, connections=10000)['rss_per_conn_kb'])} KB"

    def rates(server: str) -> str:
        return " / ".join(thousands(pick(connections, server=server, connections=n)["connect_per_s"], 10)
                          for n in (1000, 5000, 10000))

    def fan(server: str, batch: Any, field: str, show: Callable[[float], str]) -> str:
        return show(pick(fanout, server=server, subs=1000, batch=batch)[field])

    def ms(value: float | str) -> str:
        return value if isinstance(value, str) else f"{round(value)} ms"  # "–": not measured

    slow = pick(mixed, phase="with idle + slow")
    ramp = pick(connections, server="ours", connections=10000)
    paced100 = pick(rows("fanout-paced100"), server="ours", subs=1000, batch=1)
    one, two = pick(twonode, setup="one node (memory)"), pick(twonode, setup="two nodes (redis)")
    lines = [
        ("RSS per idle connection (10,000 held, heartbeats flowing)", kb("ours"), kb("reference"), kb("floor")),
        ("connects/s while opening 1,000 / 5,000 / 10,000", rates("ours"), rates("reference"), rates("floor")),
        (
            "longest GC pause in that ramp (and in the full collection once quiet)",
            f"{ms(ramp['gc_max_ms'])} ({ms(ramp['quiet_thaw_ms'])})", "–", "–",
        ),
        (
            "fan-out burst, msg/s, `batch=1`",
            fan("ours", 1, "burst_msg_s", thousands),
            fan("reference", "–", "burst_msg_s", thousands),
            fan("floor", 1, "burst_msg_s", thousands),
        ),
        (
            "fan-out burst, msg/s, no batching",
            fan("ours", 0, "burst_msg_s", thousands),
            fan("reference", "–", "burst_msg_s", thousands),
            fan("floor", 0, "burst_msg_s", thousands),
        ),
        (
            "paced 10 events/s, p99 latency, no batching",
            fan("ours", 0, "p99_ms", ms),
            fan("reference", "–", "p99_ms", ms),
            fan("floor", 0, "p99_ms", ms),
        ),
        (
            "paced 10 events/s, p99 latency, `batch=1`",
            fan("ours", 1, "p99_ms", ms),
            fan("reference", "–", "p99_ms", ms),
            fan("floor", 1, "p99_ms", ms),
        ),
        ("paced 100 events/s, p99 latency, `batch=1`", ms(paced100["p99_ms"]), "–", "–"),
        (
            f"chat: {chat['sessions']} sessions, turns/s (first chunk p50 / p99)",
            f"{chat['turns_per_s']:,.0f} ({round(chat['first_chunk_p50_ms'])} / {ms(chat['first_chunk_p99_ms'])})",
            "–",
            "–",
        ),
        (
            "slow consumers cut off (1013) during fan-out, others' p99",
            f"{slow['slow_closed_1013']}, {ms(slow['p99_ms'])}",
            "–",
            "–",
        ),
        (
            "two nodes over Redis vs one node, burst msg/s, `batch=1`",
            f"{thousands(two['burst_msgs_per_s'])} vs {thousands(one['burst_msgs_per_s'])}",
            "–",
            "–",
        ),
    ]
    return HEADER + "\n" + "\n".join(f"| {' | '.join(cells)} |" for cells in lines)


def store_rate() -> str:
    """Durable messages per second of the embedded store (the README quotes it twice)."""
    return thousands(pick(rows("store"), store="sqlite (WAL, synchronous=NORMAL)")["messages_per_s"])


def memory_against_reference() -> str:
    """How an idle connection's memory compares with the reference's, at 10,000 held."""
    ratio = pick(rows("connections"), server="ours", connections=10000)["kb_vs_reference"]
    percent = round((ratio - 1) * 100)
    return f"{abs(percent)} % {'above' if percent > 0 else 'below'}"


if __name__ == "__main__":
    print(table())
    print(f"store: ~{store_rate()} durable messages/s; memory {memory_against_reference()} the reference")
