"""Two nodes behind one Redis against one node: fan-out throughput and p99 latency.

    benchmarks/.venv-bench/bin/python -m benchmarks.twonode [--subscribers 1000] [--burst 100] [--bursts 5]

Single node: `--store memory`, N subscribers, events published on it. Two nodes:
`--store redis` on a redis-server this script starts on a free loopback port, N/2
subscribers on each node, events published on node A (so half the deliveries cross
Redis pub/sub). Same load generator, same paced phase (latency) and bursts (throughput)
as the fan-out scenario. On these 2-core machines both servers share core 0 with Redis
(pinned there too, so Redis's CPU is charged to the servers' core, not to the load
generator's): the two-node figure measures the Redis path's cost, not a scale-out.

Each setup gets ``--bursts`` bursts, one after another on the same subscribers, and
the table gives the median burst (throughput, p50/p99): one burst of a few hundred ms
swings by +-30% from run to run on these machines (the one-node side as much as the
two-node one), too much for a ratio between the two. Both setups are measured the same
way, so neither change favours the two nodes (the pinning costs them: Redis used to run
on whichever core was free, the load generator's included); msgs_per_frame and span_s
say how each burst was delivered.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from .report import publish
from .runner import SERVER_CORE, LoadGen, ServerProcess, free_port, wait_quiet
from .scenarios import FANOUT_CLIENT


def _redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    pinned = ["taskset", "-c", SERVER_CORE] if SERVER_CORE is not None else []
    process = subprocess.Popen(
        [*pinned, binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # a benchmark script, not a test: a short wait for redis to listen is fine
    return process


def _measure(
    nodes: Sequence[ServerProcess], lg: LoadGen, subscribers: int, rate: float, paced: int, burst: int,
    publishers: int, bursts: int,
) -> dict[str, Any]:
    investigation = f"INV-TWO-{len(nodes)}"
    for node in nodes:
        node.register(investigation)  # each node's own record of a public investigation
    per_node = subscribers // len(nodes)
    groups = []
    for index, node in enumerate(nodes):
        group = f"g{len(nodes)}-{index}"
        lg.cmd("open", client=FANOUT_CLIENT, group=group, count=per_node, concurrency=200, timeout=120,
               url=node.ws_url(f"/api/v1/ws/investigations/{investigation}?batch=1"))
        groups.append(group)
    for node in nodes:
        wait_quiet(node.pid)
    results: dict[str, Any] = {}
    start = 0
    measured: list[dict[str, Any]] = []
    phases = [("paced", paced, rate)] + [(f"burst{b}", burst, 0.0) for b in range(bursts)]
    for phase, count, pace in phases:
        name = f"{investigation}-{phase}"
        lg.cmd("phase", name=name, **{"from": start, "to": start + count})
        nodes[0].publish(count, pace, start, investigation=investigation, timeout=120,
                         publishers=1 if phase == "paced" else publishers)
        waited = [lg.cmd("wait", phase=name, group=g, expected=count * per_node, timeout=60, quiet=5) for g in groups]
        start += count
        expected = max(sum(w["expected"] for w in waited), 1)
        delivered = sum(w["delivered"] for w in waited)
        frames = sum(w["frames"] for w in waited)
        row = {
            "p99_ms": max(w["p99_ms"] for w in waited),
            "p50_ms": max(w["p50_ms"] for w in waited),
            "delivered_pct": 100.0 * delivered / expected,
            "msgs_per_s": sum(w["msgs_per_s"] for w in waited),
            "msgs_per_frame": delivered / frames if frames else 0.0,
            "span_s": max(w["span_s"] for w in waited),
        }
        if phase == "paced":
            results.update({f"paced_{k}": row[k] for k in ("p99_ms", "p50_ms", "delivered_pct")})
        else:
            measured.append(row)
            for node in nodes:
                wait_quiet(node.pid)  # each burst starts from a quiet server, as the first did
    for key in ("p99_ms", "p50_ms", "msgs_per_s", "msgs_per_frame", "span_s"):
        results[f"burst_{key}"] = statistics.median(row[key] for row in measured)
    results["burst_delivered_pct"] = min(row["delivered_pct"] for row in measured)
    results["burst_msgs_per_s_each"] = " ".join(f"{row['msgs_per_s']:.0f}" for row in measured)
    for group in groups:
        lg.cmd("close", group=group, timeout=60)
    return results


def run(subscribers: int, rate: float, seconds: float, burst: int, publishers: int = 8,
        bursts: int = 5) -> list[dict[str, Any]]:
    paced = max(1, int(rate * seconds))
    rows = []
    with ServerProcess("ours", label="twonode-single") as single, LoadGen("twonode-single-loadgen") as lg:
        measured = _measure([single], lg, subscribers, rate, paced, burst, publishers, bursts)
        rows.append({"setup": "one node (memory)", "subscribers": subscribers, **measured})
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        redis = _redis(port, directory)
        try:
            flags = ["--store", "redis", "--redis-url", f"redis://127.0.0.1:{port}/0"]
            with ServerProcess("ours", flags=[*flags, "--node-name", "a"], label="twonode-a") as a, ServerProcess(
                "ours", flags=[*flags, "--node-name", "b"], label="twonode-b"
            ) as b, LoadGen("twonode-loadgen") as lg:
                measured = _measure([a, b], lg, subscribers, rate, paced, burst, publishers, bursts)
                rows.append({"setup": "two nodes (redis)", "subscribers": subscribers, **measured})
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=8,
                        help="tasks publishing the burst at once (several investigations; Redis pipelines them)")
    parser.add_argument("--bursts", type=int, default=5, help="bursts per setup; the table gives the median")
    args = parser.parse_args(argv)
    rows = run(args.subscribers, args.rate, args.seconds, args.burst, args.publishers, args.bursts)
    publish(
        "twonode",
        rows,
        f"{args.subscribers} subscribers (batch=1) on one investigation; paced {args.rate:g}/s for "
        f"{args.seconds:g} s (p50/p99 = worst node), then {args.bursts} bursts of {args.burst} events "
        f"(the median burst; msgs_per_s_each: every burst) from {args.publishers} concurrent publishers "
        "(as several investigations publish; one node and two alike); events published on the first node. "
        "Two nodes share core 0 with Redis (pinned there) on these 2-core machines, so this measures the "
        "cost of the Redis path, not a scale-out.",
    )


if __name__ == "__main__":
    main()
