"""The issue-6 scenarios: connections, fan-out, chat, mixed, and a profile of the fan-out.

Each scenario starts its server(s) and one Node load generator, drives them, and returns
``(summary_rows, raw_rows, note)``; ``__main__`` publishes them to ``results/``. The
connections and fan-out scenarios run ours, the reference (FastAPI + uvicorn) and the
floor (bare trio-websocket) in the same run, alternating the order each repeat, and
summarise each figure as the median over repeats, with ours as a ratio of the others.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .events import INVESTIGATION_ID
from .runner import BENCH, KINDS, CpuMeter, LoadGen, ServerProcess, wait_machine_quiet, wait_quiet
from .soak import soak

INVESTIGATION_PATH = f"/api/v1/ws/investigations/{INVESTIGATION_ID}"
#: Subscribers use the load generator's raw-socket client: `ws` costs enough per message to cap
#: what the load generator can absorb below the reference's fan-out rate.
FANOUT_CLIENT = "raw"
CODE_1013 = 'cidadao_disconnects_total{code="1013"}'
RESULTS = BENCH / "results"
Rows = list[dict[str, Any]]


def _rotate(items: Sequence[str], by: int) -> list[str]:
    by %= max(len(items), 1)
    return list(items[by:]) + list(items[:by])


def _median(values: Iterable[Any]) -> Any:
    present = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(present) if present else None


def _ratio(a: Any, b: Any) -> Any:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return round(a / b, 2)
    return "–"


def _r(value: Any, digits: int = 1) -> Any:
    return round(value, digits) if isinstance(value, float) else ("–" if value is None else value)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- connections -------------------------------------------------------------------------


def connections(
    servers: Sequence[str] = KINDS,
    steps: Sequence[int] = (1000, 5000, 10000),
    repeats: int = 3,
    heartbeat: float = 5.0,
    hold: float = 12.0,
    hold_repeats: int = 1,
    concurrency: int = 200,
    endpoint: str = "investigation",
    ours_flags: Sequence[str] = (),
) -> tuple[Rows, Rows, str]:
    """Idle connections: RSS per connection, connect rate, heartbeats while idle."""
    steps = sorted(steps)
    raw: Rows = []
    for repeat in range(repeats):
        for kind in _rotate(servers, repeat):
            label = f"connections-{kind}-{repeat}"
            _log(f"connections: {kind} repeat {repeat + 1}/{repeats}")
            flags = ours_flags if kind == "ours" else ()
            with ServerProcess(kind, heartbeat=heartbeat, flags=flags, label=label) as server, \
                    LoadGen(label + "-loadgen") as lg:
                time.sleep(0.5)
                wait_quiet(server.pid)
                base = server.rss_kb()
                base_tasks = server.stats().get("tasks")
                path = INVESTIGATION_PATH if endpoint == "investigation" else "/api/v1/ws/chat/idle-{i}"
                opened = 0
                for n in steps:
                    wait_machine_quiet(server.pid, lg.pid)
                    meter = CpuMeter(server=server.pid, loadgen=lg.pid)
                    result = lg.cmd("open", group="idle", url=server.ws_url(path), count=n - opened,
                                    concurrency=concurrency, timeout=180)
                    cpu = meter.read()
                    opened = n
                    _wait_connections(server, n - result["failed"])
                    rss = server.rss_kb()
                    stats = server.stats()
                    row = {
                        "server": kind, "repeat": repeat, "connections": n,
                        "failed": result["failed"], "open_client_side": result["open_now"],
                        "open_server_side": stats.get("connections"),
                        "connect_per_s": result["per_s"], "rss_base_mb": base / 1024,
                        "rss_mb": rss / 1024, "rss_per_conn_kb": (rss - base) / n, **cpu,
                    }
                    gc_stats = stats.get("gc")
                    if gc_stats:  # ours: the longest collection since start-up (gc.callbacks)
                        row["gc_longest_ms"] = 1000.0 * max(gc_stats["longest_s"])
                    if base_tasks is not None and stats.get("tasks") is not None:
                        row["trio_tasks_per_conn"] = (stats["tasks"] - base_tasks) / n
                    raw.append(row)
                    _log(f"  {n} open: {row['rss_per_conn_kb']:.1f} KB/conn, {result['per_s']:.0f} conn/s, "
                         f"failed {result['failed']}")
                if hold > 0 and repeat < hold_repeats and kind != "floor":
                    held = lg.cmd("hold", seconds=hold)["groups"]["idle"]
                    raw[-1].update({
                        "hold_s": hold, "heartbeat_s": heartbeat, "held_open": held["open"],
                        "with_pings": held["with_pings"], "pings_median": held["pings_median"],
                        "pings_min": held["pings_min"],
                    })
                    _log(f"  heartbeat: {held['with_pings']}/{held['open']} connections pinged, "
                         f"median {held['pings_median']} pings in {hold}s")
                    collector = server.stats().get("gc") or {}
                    if collector.get("thaws"):  # ours: the full collection it ran once the ramp was over
                        raw[-1]["quiet_thaw_ms"] = 1000.0 * collector["longest_thaw_s"]
                lg.cmd("close", group=None, timeout=120)
    return _summarise_connections(raw, servers, steps), raw, (
        f"Idle connections to `{endpoint}` endpoint, opened {concurrency} at a time, {repeats} repeat(s), "
        f"median shown. RSS/conn = (VmRSS after − VmRSS before) / N. Heartbeat: pings received per "
        f"connection in {hold:g} s with a {heartbeat:g} s interval (ours: --heartbeat-interval, "
        "reference: uvicorn --ws-ping-interval, floor: none). Target: ours ≤ 25 KB per idle connection. "
        f"Our extra flags: {' '.join(ours_flags) or 'none'} (a public investigation greets an anonymous "
        "client at once). `lg_cpu`: the load generator's CPU while opening (% of its core); above "
        f"{LOADGEN_LIMIT:g} % the connect rate is the load generator's, marked ≥ (a lower bound). "
        "`gc_max_ms`: our longest garbage collection since start-up (gc.callbacks), its own full "
        "collections when quiet apart: `quiet_thaw_ms`, the longest of those during the hold that "
        "follows the last step (server/collector.py: they wait for 5 s without an accept or a hundred frames sent)."
    )


def _wait_connections(server: ServerProcess, expected: int, timeout: float = 10.0) -> None:
    """Until the server counts ``expected`` live connections (bounded), then one more second.

    (Waiting for an idle CPU does not work here: heartbeats keep 10,000 connections busy.)
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if server.stats().get("connections", 0) >= expected:
                break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(1.0)


def _summarise_connections(raw: Rows, servers: Sequence[str], steps: Sequence[int]) -> Rows:
    cells: dict[tuple[str, int], Rows] = defaultdict(list)
    for row in raw:
        cells[row["server"], row["connections"]].append(row)
    rows: Rows = []
    for n in steps:
        med = {k: {f: _median(r.get(f) for r in cells[k, n])
                   for f in ("rss_per_conn_kb", "connect_per_s", "rss_mb", "loadgen_cpu_pct", "gc_longest_ms")}
               for k in servers if cells[k, n]}
        for kind in servers:
            if kind not in med:
                continue
            held = [r for r in cells[kind, n] if "with_pings" in r]
            thaws = [r["quiet_thaw_ms"] for r in cells[kind, n] if "quiet_thaw_ms" in r]
            pings = "–"
            if held:
                h = held[0]
                pings = f"{h['with_pings']}/{h['held_open']} (median {h['pings_median']})"
            row = {
                "server": kind, "connections": n,
                "failed": max(r["failed"] for r in cells[kind, n]),
                "rss_mb": _r(med[kind]["rss_mb"]),
                "rss_per_conn_kb": _r(med[kind]["rss_per_conn_kb"]),
                "connect_per_s": lower_bound(_r(med[kind]["connect_per_s"], 0), med[kind]["loadgen_cpu_pct"]),
                "lg_cpu": _r(med[kind]["loadgen_cpu_pct"], 0),
                "gc_max_ms": _r(med[kind]["gc_longest_ms"], 1) if med[kind]["gc_longest_ms"] is not None else "–",
                "pinged_in_hold": pings,
                "quiet_thaw_ms": _r(max(thaws), 0) if thaws else "–",
                "tasks_per_conn": _r(_median(r.get("trio_tasks_per_conn") for r in cells[kind, n])),
            }
            if kind == "ours":
                for other in ("reference", "floor"):
                    if other in med:
                        row[f"kb_vs_{other}"] = _ratio(med["ours"]["rss_per_conn_kb"], med[other]["rss_per_conn_kb"])
                        row[f"rate_vs_{other}"] = _ratio(med["ours"]["connect_per_s"], med[other]["connect_per_s"])
            rows.append(row)
    columns = ["server", "connections", "failed", "rss_mb", "rss_per_conn_kb", "connect_per_s", "lg_cpu",
               "gc_max_ms", "quiet_thaw_ms", "pinged_in_hold", "tasks_per_conn",
               "kb_vs_reference", "rate_vs_reference", "kb_vs_floor", "rate_vs_floor"]
    return [{c: row.get(c, "") for c in columns} for row in rows]


# --- fan-out -----------------------------------------------------------------------------


class _Seq:
    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> tuple[int, int]:
        start = self.next
        self.next += count
        return start, self.next


def _investigation_path(investigation: str, batch: int) -> str:
    return f"/api/v1/ws/investigations/{investigation}?batch={batch}"


def _phase(
    server: ServerProcess, lg: LoadGen, seq: _Seq, name: str, group: str, subscribers: int,
    count: int, rate: float, pad: int = 0, timeout: float = 60.0, timeline: bool = False,
    investigation: str = INVESTIGATION_ID, quiet: bool = True,
) -> dict[str, Any]:
    start, end = seq.take(count)
    lg.cmd("phase", name=name, **{"from": start, "to": end})
    if quiet:
        wait_machine_quiet(server.pid, lg.pid)
    meter = CpuMeter(server=server.pid, loadgen=lg.pid)
    published = server.publish(count, rate, start, pad, timeout=timeout + count / max(rate, 1),
                               investigation=investigation)
    result = lg.cmd("wait", phase=name, group=group, expected=count * subscribers, timeout=timeout, quiet=5,
                    timeline=timeline)
    return {**result, **meter.read(), "publish_s": published["seconds"]}


def _warmup(server: ServerProcess, lg: LoadGen, seq: _Seq, subscribers: int = 100, events: int = 40,
            pad: int = 0) -> None:
    """Exercise the fan-out path once (imports, allocator, buffers) before measuring it."""
    server.register("INV-WARMUP")
    lg.cmd("open", client=FANOUT_CLIENT, group="warmup", url=server.ws_url(_investigation_path("INV-WARMUP", 0)),
           count=subscribers, concurrency=100, timeout=60)
    _phase(server, lg, seq, "warmup", "warmup", subscribers, events, 40.0, pad, timeout=30,
           investigation="INV-WARMUP")
    lg.cmd("close", group="warmup", timeout=30)
    wait_quiet(server.pid)


def fanout(
    servers: Sequence[str] = KINDS,
    subscribers: Sequence[int] = (100, 500, 1000),
    modes: Sequence[int] = (0, 1),
    repeats: int = 3,
    sweep_repeats: int = 1,
    rate: float = 10.0,
    duration: float = 5.0,
    burst: int = 100,
    pad: int = 0,
    ours_flags: Sequence[str] = (),
) -> tuple[Rows, Rows, str]:
    """One investigation, N subscribers: a paced phase (latency) then a burst (throughput)."""
    subscribers = sorted(subscribers)
    paced_count = max(1, int(rate * duration))
    raw: Rows = []
    for repeat in range(repeats):
        counts = subscribers if repeat < sweep_repeats else subscribers[-1:]
        for kind in _rotate(servers, repeat):
            label = f"fanout-{kind}-{repeat}"
            flags = ours_flags if kind == "ours" else ()
            with ServerProcess(kind, flags=flags, label=label) as server, LoadGen(label + "-loadgen") as lg:
                seq = _Seq()
                _warmup(server, lg, seq, pad=pad)
                for n in counts:
                    for batch in (modes if kind != "reference" else (0,)):
                        group = f"n{n}-b{batch}"
                        # A fresh investigation per cell: the endpoint replays a stream's history.
                        investigation = f"INV-F{n}-B{batch}"
                        server.register(investigation)
                        _log(f"fan-out: {kind} repeat {repeat + 1}/{repeats}, {n} subscribers, batch={batch}")
                        url = server.ws_url(_investigation_path(investigation, batch))
                        opened = lg.cmd("open", client=FANOUT_CLIENT, group=group, url=url,
                                        count=n, concurrency=200, timeout=120)
                        wait_quiet(server.pid)
                        paced = _phase(server, lg, seq, f"{group}-paced", group, n, paced_count, rate,
                                       pad, timeout=duration + 30, investigation=investigation)
                        burst_result = _phase(server, lg, seq, f"{group}-burst", group, n, burst, 0.0, pad,
                                              timeout=90, investigation=investigation)
                        lg.cmd("close", group=group, timeout=60)
                        wait_quiet(server.pid)
                        row = {
                            "server": kind, "repeat": repeat, "subscribers": n, "batch": batch,
                            "failed_connects": opened["failed"],
                            "paced_rate": rate, "paced_events": paced_count,
                            "paced_delivered_pct": 100.0 * paced["delivered"] / max(paced["expected"], 1),
                            "paced_p50_ms": paced["p50_ms"], "paced_p95_ms": paced["p95_ms"],
                            "paced_p99_ms": paced["p99_ms"], "paced_max_ms": paced["max_ms"],
                            "paced_msgs_per_frame": paced["msgs_per_frame"],
                            "paced_server_cpu_pct": paced["server_cpu_pct"],
                            "burst_events": burst,
                            "burst_publish_s": burst_result["publish_s"],
                            "burst_span_s": burst_result["span_s"],
                            "burst_delivered_pct": 100.0 * burst_result["delivered"] / max(burst_result["expected"], 1),
                            "burst_msgs_per_s": burst_result["msgs_per_s"],
                            "burst_p50_ms": burst_result["p50_ms"], "burst_p99_ms": burst_result["p99_ms"],
                            "burst_msgs_per_frame": burst_result["msgs_per_frame"],
                            "burst_server_cpu_pct": burst_result["server_cpu_pct"],
                            "burst_loadgen_cpu_pct": burst_result["loadgen_cpu_pct"],
                            "burst_other_cpu_pct": burst_result["other_cpu_pct"],
                            "paced_loadgen_cpu_pct": paced["loadgen_cpu_pct"],
                            "paced_other_cpu_pct": paced["other_cpu_pct"],
                        }
                        raw.append(row)
                        _log(f"  paced p50/p99 {row['paced_p50_ms']:.1f}/{row['paced_p99_ms']:.1f} ms, "
                             f"burst {row['burst_msgs_per_s']:.0f} msg/s (p99 {row['burst_p99_ms']:.0f} ms, "
                             f"{row['burst_msgs_per_frame']:.1f} msg/frame, "
                             f"loadgen {row['burst_loadgen_cpu_pct']}% CPU)")
    rows = _summarise_fanout(raw, servers, modes)
    note = (
        "One public investigation (a fresh one per measurement: the endpoint replays history), N "
        f"subscribers on `/api/v1/ws/investigations/{{id}}?batch=B`. Paced: {paced_count} "
        f"`anomaly_detected` events at {rate:g}/s; latency = client receive time − `sent_at` (stamped by "
        f"the server just before it publishes). Burst: {burst} events as fast as the server takes them; "
        "msg/s = deliveries / (last receive − first `sent_at`). Median of the repeats "
        f"({repeats} at N={subscribers[-1]}, {sweep_repeats} at smaller N). The reference ignores "
        "batch=1 (FastAPI's broadcast loop sends one frame per message), so ours-with-batching is "
        "compared with its only figures; the floor batches like ours when asked (no linger). "
        "`vs_ref`/`vs_floor`: ours ÷ theirs (throughput: higher is better; p99: lower is better). "
        f"`lg_cpu` above {LOADGEN_LIMIT:g} %: the load generator was the ceiling, the figure is marked ≥ "
        "(a lower bound; a ratio against it is then an upper bound). "
        f"Our extra flags: {' '.join(ours_flags) or 'none'}."
    )
    return rows, raw, note


LOADGEN_LIMIT = 90.0  # % of its core: above it, what the load generator measured is its own ceiling


def lower_bound(value: Any, loadgen_cpu: float | None) -> Any:
    """``value``, marked ≥ when the load generator was saturated while measuring it."""
    if loadgen_cpu is None or loadgen_cpu <= LOADGEN_LIMIT or not isinstance(value, int | float):
        return value
    return f"≥ {value:,.0f}"


FANOUT_FIELDS = ("paced_p50_ms", "paced_p95_ms", "paced_p99_ms", "paced_delivered_pct", "burst_msgs_per_s",
                 "burst_p99_ms", "burst_msgs_per_frame", "burst_server_cpu_pct", "burst_loadgen_cpu_pct",
                 "burst_other_cpu_pct", "burst_delivered_pct")


def fanout_medians(raw: Rows) -> dict[tuple[str, int, int], dict[str, Any]]:
    cells: dict[tuple[str, int, int], Rows] = defaultdict(list)
    for row in raw:
        cells[row["server"], row["subscribers"], row["batch"]].append(row)
    return {key: {"runs": len(rows), **{f: _median(r[f] for r in rows) for f in FANOUT_FIELDS}}
            for key, rows in cells.items()}


def _summarise_fanout(raw: Rows, servers: Sequence[str], modes: Sequence[int]) -> Rows:
    med = fanout_medians(raw)
    rows: Rows = []
    for n in sorted({row["subscribers"] for row in raw}):
        for kind in servers:
            for batch in (modes if kind != "reference" else (0,)):
                m = med.get((kind, n, batch))
                if m is None:
                    continue
                row: dict[str, Any] = {
                    "server": kind, "subs": n, "batch": batch if kind != "reference" else "–", "runs": m["runs"],
                    "p50_ms": _r(m["paced_p50_ms"]), "p95_ms": _r(m["paced_p95_ms"]),
                    "p99_ms": _r(m["paced_p99_ms"]),
                    "burst_msg_s": lower_bound(_r(m["burst_msgs_per_s"], 0), m["burst_loadgen_cpu_pct"]),
                    "burst_p99_ms": _r(m["burst_p99_ms"], 0),
                    "msg_per_frame": _r(m["burst_msgs_per_frame"], 2),
                    "srv_cpu": _r(m["burst_server_cpu_pct"], 0), "lg_cpu": _r(m["burst_loadgen_cpu_pct"], 0),
                    "other_cpu": _r(m["burst_other_cpu_pct"], 0),
                }
                if kind == "ours":
                    ref = med.get(("reference", n, 0))
                    flo = med.get(("floor", n, batch))
                    if ref:
                        row["tput_vs_ref"] = _ratio(m["burst_msgs_per_s"], ref["burst_msgs_per_s"])
                        row["p99_vs_ref"] = _ratio(m["paced_p99_ms"], ref["paced_p99_ms"])
                    if flo:
                        row["tput_vs_floor"] = _ratio(m["burst_msgs_per_s"], flo["burst_msgs_per_s"])
                        row["p99_vs_floor"] = _ratio(m["paced_p99_ms"], flo["paced_p99_ms"])
                rows.append(row)
    columns = ["server", "subs", "batch", "runs", "p50_ms", "p95_ms", "p99_ms", "burst_msg_s", "burst_p99_ms",
               "msg_per_frame", "srv_cpu", "lg_cpu", "other_cpu", "tput_vs_ref", "p99_vs_ref", "tput_vs_floor",
               "p99_vs_floor"]
    return [{c: row.get(c, "") for c in columns} for row in rows]


# --- chat --------------------------------------------------------------------------------


def chat(sessions: int = 100, seconds: float = 10.0, repeats: int = 1, message: str = "Olá") -> tuple[Rows, Rows, str]:
    """Concurrent chat sessions doing turns back to back (reply chunk delay 0)."""
    raw: Rows = []
    for repeat in range(repeats):
        label = f"chat-ours-{repeat}"
        _log(f"chat: {sessions} sessions for {seconds:g}s, repeat {repeat + 1}/{repeats}")
        flags = ["--rate-messages", "1000000", "--rate-burst", "100000", "--max-pending-turns", "64"]
        with ServerProcess("ours", flags=flags, env={"CIDADAO_REPLY_CHUNK_DELAY": "0"}, label=label) as server, \
                LoadGen(label + "-loadgen") as lg:
            meter = CpuMeter(server=server.pid, loadgen=lg.pid)
            result = lg.cmd("chat", url=server.ws_url(f"/api/v1/ws/chat/bench-{repeat}-{{i}}"), sessions=sessions,
                            seconds=seconds, message=message, timeout=60)
            row = {"repeat": repeat, **{k: v for k, v in result.items() if k != "ok"}, **meter.read()}
            raw.append(row)
            _log(f"  {row['turns_per_s']:.0f} turns/s, first chunk p50/p99 "
                 f"{row['first_chunk_p50_ms']:.1f}/{row['first_chunk_p99_ms']:.1f} ms, errors {row['errors']}")
    rows = [{
        "sessions": sessions, "seconds": _r(_median(r["seconds"] for r in raw)),
        "turns": _median(r["turns"] for r in raw), "turns_per_s": _r(_median(r["turns_per_s"] for r in raw)),
        "chunks_per_turn": _r(_median(r["chunks_per_turn"] for r in raw)),
        "first_chunk_p50_ms": _r(_median(r["first_chunk_p50_ms"] for r in raw)),
        "first_chunk_p99_ms": _r(_median(r["first_chunk_p99_ms"] for r in raw)),
        "complete_p50_ms": _r(_median(r["complete_p50_ms"] for r in raw)),
        "complete_p99_ms": _r(_median(r["complete_p99_ms"] for r in raw)),
        "server_cpu_pct": _r(_median(r["server_cpu_pct"] for r in raw), 0),
        "loadgen_cpu_pct": _r(_median(r["loadgen_cpu_pct"] for r in raw), 0),
        "errors": json.dumps(dict(sum((Counter(r["errors"]) for r in raw), Counter()))) or "{}",
    }]
    note = (f"Ours only (the reference has no agents). {sessions} sessions on `/api/v1/ws/chat/{{id}}`, each "
            f"sending `chat` \"{message}\" as soon as the previous reply's `chat_complete` arrived, for "
            f"{seconds:g} s; CIDADAO_REPLY_CHUNK_DELAY=0 and the rate limit raised. First chunk = first "
            "assistant `chat` chunk after the turn was sent.")
    return rows, raw, note


# --- mixed -------------------------------------------------------------------------------


def mixed(
    subscribers: int = 200,
    idle: int = 1000,
    slow: int = 5,
    rate: float = 25.0,
    duration: float = 20.0,
    pad: int = 16000,
    slow_timeout: float = 5.0,
    batch: int = 0,
) -> tuple[Rows, Rows, str]:
    """Fan-out with and without 1,000 idle connections and a few consumers that stop reading."""
    count = max(1, int(rate * duration))
    flags = ["--slow-consumer-timeout", str(slow_timeout)]
    raw: Rows = []
    with ServerProcess("ours", flags=flags, label="mixed-ours") as server, LoadGen("mixed-loadgen") as lg:
        seq = _Seq()
        _warmup(server, lg, seq, pad=pad)
        # Two fresh investigations: a late subscriber would otherwise get the first phase replayed.
        for investigation in ("INV-ALONE", "INV-MIXED"):
            server.register(investigation)
        url = server.ws_url(_investigation_path("INV-ALONE", batch))
        _log(f"mixed: baseline, {subscribers} subscribers alone, {count} events of ~{pad // 1000} KB at {rate:g}/s")
        lg.cmd("open", client=FANOUT_CLIENT, group="alone", url=url, count=subscribers, concurrency=200, timeout=60)
        wait_quiet(server.pid)
        base = _phase(server, lg, seq, "baseline", "alone", subscribers, count, rate, pad, timeout=duration + 30,
                      investigation="INV-ALONE")
        lg.cmd("close", group="alone", timeout=60)
        wait_quiet(server.pid)
        before = server.stats().get("metrics", {})
        _log(f"mixed: {subscribers} subscribers again, with {idle} idle chat connections and {slow} subscribers "
             "that stop reading")
        url = server.ws_url(_investigation_path("INV-MIXED", batch))
        lg.cmd("open", client=FANOUT_CLIENT, group="idle", url=server.ws_url("/api/v1/ws/chat/idle-{i}"), count=idle,
               concurrency=200, timeout=120)
        lg.cmd("open", client=FANOUT_CLIENT, group="sub", url=url, count=subscribers, concurrency=200, timeout=60)
        lg.cmd("open", client=FANOUT_CLIENT, group="slow", url=url, count=slow, concurrency=slow, timeout=60)
        lg.cmd("pause", group="slow")
        wait_quiet(server.pid)
        closes: list[tuple[float, float]] = []  # (wall time, server-side 1013 count)
        stop = threading.Event()

        def watch_closes() -> None:
            while not stop.wait(0.25):
                with contextlib.suppress(OSError, KeyError, ValueError):
                    closes.append((time.time(), server.stats()["metrics"].get(CODE_1013, 0.0)))

        watcher = threading.Thread(target=watch_closes, daemon=True)
        watcher.start()
        try:
            loaded = _phase(server, lg, seq, "mixed", "sub", subscribers, count, rate, pad,
                            timeout=duration + 30, timeline=True, investigation="INV-MIXED")
        finally:
            stop.set()
            watcher.join()
        after = server.stats()
        lg.cmd("resume", group="slow")
        time.sleep(3)
        status = lg.cmd("status")["groups"]
        lg.cmd("close", group=None, timeout=60)

    def delta(name: str) -> float:
        return after.get("metrics", {}).get(name, 0.0) - before.get(name, 0.0)

    slow_closed_1013 = delta(CODE_1013)
    start = loaded.get("first_sent_at", 0.0)
    previous = before.get(CODE_1013, 0.0)
    close_times = []
    for wall, count_1013 in closes:
        if count_1013 > previous:
            close_times.append({"t": round(wall - start, 2), "closed_1013": count_1013 - previous})
            previous = count_1013
    worst = sorted(loaded.get("timeline", []), key=lambda b: -b["max_ms"])[:3]
    phase_end = start + loaded.get("span_s", 0.0)
    gc_pauses = [{"t": round(wall - start, 2), "generation": gen, "ms": round(1000 * secs, 1)}
                 for wall, gen, secs in after.get("gc", {}).get("long", []) if start <= wall <= phase_end]
    loaded.pop("timeline", None)
    for name, result in (("alone", base), ("with idle + slow", loaded)):
        raw.append({"phase": name, **{k: v for k, v in result.items() if k != "ok"}})
    rows = [
        {
            "phase": name, "subscribers": subscribers,
            "delivered_pct": _r(100.0 * r["delivered"] / max(r["expected"], 1)),
            "p50_ms": _r(r["p50_ms"]), "p95_ms": _r(r["p95_ms"]), "p99_ms": _r(r["p99_ms"]),
            "max_ms": _r(r["max_ms"]), "server_cpu_pct": _r(r["server_cpu_pct"], 0),
            "loadgen_cpu_pct": _r(r["loadgen_cpu_pct"], 0),
        }
        for name, r in (("alone", base), ("with idle + slow", loaded))
    ]
    rows[1]["p99_vs_alone"] = _ratio(loaded["p99_ms"], base["p99_ms"])
    rows[0]["p99_vs_alone"] = 1.0
    summary = {
        "slow_consumers": slow,
        "server_closed_1013": slow_closed_1013,
        "server_slow_consumer_metric": delta("cidadao_slow_consumer_disconnects_total"),
        "slow_client_close_codes": status.get("slow", {}).get("closes", {}),
        "idle_open_after": status.get("idle", {}).get("open"),
        "subscribers_open_after": status.get("sub", {}).get("open"),
        "slow_closed_at_s": close_times,
        "worst_seconds": worst,
        "gc_pauses_over_10ms": gc_pauses,
    }
    raw.append({"phase": "summary", **summary})
    for row in rows:
        row["slow_closed_1013"] = f"{int(slow_closed_1013)}/{slow}" if row["phase"] != "alone" else "–"
        row["idle_still_open"] = f"{summary['idle_open_after']}/{idle}" if row["phase"] != "alone" else "–"
    note = (
        f"Ours, {subscribers} subscribers (batch={batch}) receive {count} events of ~{pad // 1000 + 0.5:.0f} KB at "
        f"{rate:g}/s, first alone, then with {idle} idle chat connections and {slow} subscribers that "
        f"stop reading their sockets (--slow-consumer-timeout {slow_timeout:g}). Events are large so the "
        "slow sockets' kernel buffers (~4 MB on loopback) fill within the phase. `slow_closed_1013`: "
        "server-side 1013 closes (Prometheus `cidadao_disconnects_total{code=\"1013\"}`); the slow "
        f"clients themselves saw close codes {summary['slow_client_close_codes']} after resuming "
        "(1006 when the close frame could not get through their full socket). Server-side 1013 closes "
        f"happened at t={[c['t'] for c in close_times]} s into the loaded phase; its worst seconds "
        f"(t, max ms) were {[(b['t'], round(b['max_ms'])) for b in worst]}; garbage collections ≥ 10 ms "
        f"in the phase (t, generation, ms): {[(g['t'], g['generation'], g['ms']) for g in gc_pauses]}."
    )
    return rows, raw, note


# --- profile -----------------------------------------------------------------------------


def _py_spy() -> str | None:
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def _aggregate_collapsed(path: Path, top: int) -> tuple[Rows, Rows, int]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def table(counter: Counter[str]) -> Rows:
        return [{"function": f, "samples": c, "pct": round(100.0 * c / max(total, 1), 1)}
                for f, c in counter.most_common(top)]

    return table(own), table(inclusive), total


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:123)`` → ``func (pkg/mod.py)`` (lines merged)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/benchmarks/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def profile(subscribers: int = 1000, burst: int = 150, modes: Sequence[int] = (0, 1), seconds: float = 5.0,
            top: int = 25, connections_traced: int = 2000, cprofile: bool = True) -> tuple[Rows, Rows, str]:
    """Our server during a fan-out burst: py-spy samples, then cProfile, per batch mode."""
    raw: Rows = []
    rows: Rows = []
    spy = _py_spy()
    texts: list[str] = []
    for batch in modes:
        label = f"profile-ours-b{batch}"
        with ServerProcess("ours", label=label) as server, LoadGen(label + "-loadgen") as lg:
            lg.cmd("open", client=FANOUT_CLIENT, group="sub", count=subscribers, concurrency=200, timeout=60,
                   url=server.ws_url(_investigation_path(INVESTIGATION_ID, batch)))
            seq = _Seq()
            _warmup(server, lg, seq)
            # 1. py-spy: sampling, the server runs at full speed.
            out = RESULTS / f"profile-batch{batch}.collapsed.txt"
            if spy is not None:
                _log(f"profile: batch={batch}, {subscribers} subscribers, {burst}-event burst under py-spy")
                wait_machine_quiet(server.pid, lg.pid)
                sampler = subprocess.Popen(
                    [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "250",
                     "--format", "raw", "--nonblocking", "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)  # let py-spy attach before the burst starts
                result = _phase(server, lg, seq, "spy", "sub", subscribers, burst, 0.0, timeout=90, quiet=False)
                try:
                    sampler.wait(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    sampler.kill()
                if out.exists() and out.stat().st_size:
                    own, incl, total = _aggregate_collapsed(out, top)
                    raw.append({"batch": batch, "tool": "py-spy", "samples": total, "self": own, "inclusive": incl})
                    rows.extend({"batch": batch, "tool": "py-spy self", **item} for item in own[:10])
                    texts.append(_profile_markdown(batch, own, incl, total, result))
            # 2. cProfile (deterministic, slows the server) over a second burst: calls and own time.
            if not cprofile:
                lg.cmd("close", group=None, timeout=60)
                continue
            _log(f"profile: batch={batch}, second burst under cProfile")
            holder: dict[str, Any] = {}
            wait_machine_quiet(server.pid, lg.pid)
            thread = threading.Thread(target=lambda: holder.update(server.profile(seconds, top)))  # noqa: B023 (joined below)
            thread.start()
            time.sleep(0.2)
            result = _phase(server, lg, seq, "cprofile", "sub", subscribers, burst, 0.0, timeout=90, quiet=False)
            thread.join()
            text = holder.get("text", "")
            (RESULTS / f"profile-batch{batch}.cprofile.txt").write_text(text)
            texts.append(f"### batch={batch}: cProfile over a second burst ({result['msgs_per_s']:.0f} msg/s "
                         f"under the profiler)\n\n```\n{_trim_pstats(text)}\n```\n")
            lg.cmd("close", group=None, timeout=60)
    texts.append(_memory_profile(connections_traced, top))
    (RESULTS / "profile-detail.md").write_text("# Where our server spends a fan-out burst\n\n" + "\n".join(texts))
    note = (f"py-spy samples (250 Hz, {seconds:g} s, --nonblocking) of our server while a {burst}-event burst "
            f"fans out to {subscribers} subscribers; `pct` = share of samples whose innermost Python frame is "
            "that function (time in C, e.g. a send() syscall, lands on its Python caller). Self/inclusive "
            "tables and cProfile output: `profile-detail.md`; collapsed stacks: `profile-batch*.collapsed.txt` "
            "(speedscope, flamegraph.pl).")
    return rows or [{"batch": "–", "tool": "–", "function": "py-spy unavailable", "samples": 0, "pct": 0}], raw, note


def _memory_profile(count: int, top: int) -> str:
    """tracemalloc growth of our server while ``count`` idle investigation connections open."""
    from .report import markdown_table

    if count <= 0:
        return ""
    _log(f"profile: tracemalloc while {count} idle connections open")
    with ServerProcess("ours", label="profile-memory") as server, LoadGen("profile-memory-loadgen") as lg:
        time.sleep(0.5)
        rss_before = server.rss_kb()
        server.memory("start")
        lg.cmd("open", group="idle", url=server.ws_url(INVESTIGATION_PATH), count=count, concurrency=200, timeout=120)
        wait_quiet(server.pid)
        result = server.memory("snapshot", top)
        rss_after = server.rss_kb()
        lg.cmd("close", group=None, timeout=60)
    (RESULTS / "profile-memory.json").write_text(json.dumps(result, indent=2))
    per_conn = [{"where": _short_path(item["where"]), "bytes_per_conn": round(item["kib"] * 1024 / count),
                 "objects_per_conn": round(item["count"] / count, 2)} for item in result["lineno"][:top]]
    by_file = [{"file": _short_path(item["where"]), "bytes_per_conn": round(item["kib"] * 1024 / count)}
               for item in result["filename"][:12]]
    traced_per_conn = result["total_kib_lineno"] * 1024 / count
    return (
        f"## Memory: {count} idle connections under tracemalloc\n\n"
        f"RSS grew {(rss_after - rss_before) / count:.1f} KB per connection (tracemalloc itself adds some); "
        f"Python objects traced: {traced_per_conn / 1024:.1f} KB per connection. The rest is the allocator "
        "and kernel-side socket memory counted in RSS.\n\n"
        f"### by line\n\n{markdown_table(per_conn)}\n\n### by file\n\n{markdown_table(by_file)}\n"
    )


def _short_path(where: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in where:
            return where.split(marker, 1)[1]
    if "/cidadao-bench-src-" in where:  # the run's snapshot of src/
        return "cidadao_trio/" + where.split("/cidadao_trio/", 1)[-1]
    for marker in ():
        if marker in where:
            return where.split(marker, 1)[1]
    return where


def _trim_pstats(text: str) -> str:
    """Drop pstats' preamble; keep the table, with paths shortened."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.replace(str(Path.home()), "~") for line in lines[start:] if line.strip())


def _profile_markdown(batch: int, own: Rows, incl: Rows, total: int, result: dict[str, Any]) -> str:
    from .report import markdown_table

    return (
        f"## batch={batch}: {result['msgs_per_s']:.0f} msg/s, {result['msgs_per_frame']:.2f} msg/frame, "
        f"{total} py-spy samples\n\n### self time\n\n{markdown_table(own)}\n\n### inclusive time\n\n"
        f"{markdown_table(incl)}\n"
    )


SCENARIOS: dict[str, Callable[..., tuple[Rows, Rows, str]]] = {
    "connections": connections,
    "fanout": fanout,
    "chat": chat,
    "mixed": mixed,
    "profile": profile,
    "soak": soak,
}
