"""Our server, unchanged, plus a benchmark-only control port (nothing here is in ``src/``).

    python -m benchmarks.harness_server --port 8765 --control-port 8766 --store memory [serve flags]

Builds :class:`cidadao_trio.server.server.Server` exactly as ``cidadao-trio serve`` does
(every ``serve`` flag and ``CIDADAO_*`` variable works), registers the public
investigation ``INV-BENCH`` and answers, on ``127.0.0.1:<control-port>``:

- ``POST /bench/investigation?investigation=ID``: register another public, finished
  investigation (the investigation endpoint replays a stream's history on connect, so
  each measurement uses a fresh one).
- ``POST /bench/publish?count=K&rate=R&start=S&pad=B&investigation=ID``: publish K
  ``anomaly_detected`` events to ``investigation:ID`` (default INV-BENCH) through the
  broker (commit, then fan-out), at R events/s (0: as fast as the broker accepts them);
  answers when the last one is queued.
- ``GET /bench/stats``: live connections, and a few samples of the server's own
  Prometheus registry (disconnects by close code, slow consumers, frames and messages out).
- ``POST /bench/profile?seconds=S&top=N``: cProfile the whole process for S seconds and
  return the top N functions by own time.
- ``POST /bench/memory?action=start`` then ``?action=snapshot&top=N``: tracemalloc growth
  between the two, by line and by file (what each idle connection is made of).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import os
import pstats
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

import cidadao_trio
from cidadao_trio import config
from cidadao_trio.server.collector import QuietCollector, tune_garbage_collector
from cidadao_trio.server.server import Server

from . import control
from .events import INVESTIGATION_ID, pace_deadline, timed_anomaly, valid_investigation
from .limits import raise_nofile


def register_investigation(server: Server, investigation_id: str) -> None:
    """Make a public, finished investigation known, as ``tests/harness.py`` does."""
    hub = server.hub
    legacy = getattr(hub, "investigations", None)
    if isinstance(legacy, dict):  # older Hub: a plain mapping of visibilities
        from cidadao_trio.session.hub import InvestigationAccess  # type: ignore[attr-defined]

        legacy[investigation_id] = InvestigationAccess("anon", True)
        return
    from cidadao_trio.investigations.engine import Investigation

    assert server.engine is not None
    server.engine.records[investigation_id] = Investigation(
        investigation_id, "benchmark", "todos os contratos", "anon", True, status="completed"
    )


WANTED_METRICS = ("cidadao_disconnects_total", "cidadao_slow_consumer_disconnects_total",
                  "cidadao_frames_out_total", "cidadao_messages_out_total", "cidadao_connections_open")


def metric_samples(server: Server) -> dict[str, float]:
    """A few samples of the server's own Prometheus registry (closes by code, frames)."""
    metrics = getattr(server, "metrics", None)
    if metrics is None:
        return {}
    from prometheus_client import generate_latest

    samples: dict[str, float] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(WANTED_METRICS):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags, built from ``Settings`` the way ``cli.py`` builds them."""
    defaults = config.Settings()
    for field in config.fields():
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=lambda raw, field=field: config.coerce(field, raw),
            default=None,
            metavar=config.env_name(field.name),
            help=f"{field.metadata['help']} (default: {getattr(defaults, field.name)})",
        )


class GcPauses:
    """Times every garbage collection (``gc.callbacks``); keeps the long ones."""

    LONG = 0.010  # seconds

    def __init__(self) -> None:
        self.collector: QuietCollector | None = None  # its thaws are reported apart (quiet moments)
        self.started = 0.0
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.long: list[tuple[float, int, float]] = []  # (wall time, generation, seconds)
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self.started
        if self.collector is not None and self.collector.thawing:
            return  # the collector's own full collection: see report()["thaws"]
        generation = info.get("generation", 0)
        self.count[generation] += 1
        self.total[generation] += elapsed
        self.longest[generation] = max(self.longest[generation], elapsed)
        if elapsed >= self.LONG and len(self.long) < 1000:
            self.long.append((time.time(), generation, elapsed))

    def report(self) -> dict[str, Any]:
        return {"count": self.count, "total_s": [round(t, 4) for t in self.total],
                "longest_s": [round(t, 4) for t in self.longest],
                "long": [(round(w, 3), g, round(e, 4)) for w, g, e in self.long[-50:]],
                "sweeps": self.collector.sweeps if self.collector else 0,
                "thaws": self.collector.thaws if self.collector else 0,
                "longest_thaw_s": round(self.collector.longest_thaw, 4) if self.collector else 0.0}


GC_PAUSES = GcPauses()


def count_tasks() -> int:
    """Every live trio task of this run (walks the task tree from the root)."""
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def routes(server: Server) -> dict[tuple[str, str], control.Route]:
    async def investigation(query: dict[str, str]) -> dict[str, Any]:
        investigation_id = valid_investigation(query)
        register_investigation(server, investigation_id)
        return {"registered": investigation_id}

    async def publish(query: dict[str, str]) -> dict[str, Any]:
        investigation_id = valid_investigation(query)
        stream = f"investigation:{investigation_id}"
        count = min(int(query.get("count", "100")), 1_000_000)
        rate = float(query.get("rate", "0"))
        start_seq = int(query.get("start", "0"))
        pad = min(int(query.get("pad", "0")), 1 << 20)
        publishers = max(1, min(int(query.get("publishers", "1")), 64))
        began = trio.current_time()
        wall = time.time()
        late = 0.0

        async def publisher(first: int) -> None:  # events first, first + publishers, ...
            nonlocal late
            for i in range(first, count, publishers):
                due = pace_deadline(began, i, rate)
                if due is not None:
                    now = trio.current_time()
                    if due > now:
                        await trio.sleep_until(due)
                    else:
                        late = max(late, now - due)
                await server.broker.publish(stream, timed_anomaly(start_seq + i, pad, investigation_id))

        if publishers == 1:
            await publisher(0)
        else:  # several investigations' engines at once: what a pipelining broker batches
            async with trio.open_nursery() as nursery:
                for first in range(publishers):
                    nursery.start_soon(publisher, first)
        return {
            "published": count,
            "seconds": trio.current_time() - began,
            "started_at": wall,
            "max_late_s": late,
        }

    async def stats(query: dict[str, str]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "source": str(Path(cidadao_trio.__file__).parent),
            "connections": len(server.connections),
            "tasks": count_tasks(),
            "gc": GC_PAUSES.report(),
            "metrics": metric_samples(server),
        }

    async def profile(query: dict[str, str]) -> dict[str, Any]:
        seconds = min(float(query.get("seconds", "5")), 120.0)
        top = min(int(query.get("top", "30")), 200)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await trio.sleep(seconds)
        finally:
            profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        return {"seconds": seconds, "text": out.getvalue()}

    traced: dict[str, Any] = {}

    async def memory(query: dict[str, str]) -> dict[str, Any]:
        """``action=start``: tracemalloc on, baseline taken; ``action=snapshot``: top growth."""
        if query.get("action") == "start":
            tracemalloc.start(int(query.get("frames", "1")))
            traced["baseline"] = tracemalloc.take_snapshot()
            return {"tracing": True}
        baseline = traced.get("baseline")
        if baseline is None:
            raise RuntimeError("call action=start first")
        top = min(int(query.get("top", "25")), 200)
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        result: dict[str, Any] = {"connections": len(server.connections)}
        for key in ("lineno", "filename"):
            stats = snapshot.compare_to(baseline, key)
            result[key] = [{"where": str(stat.traceback), "kib": round(stat.size_diff / 1024, 1),
                            "count": stat.count_diff} for stat in stats[:top]]
            result[f"total_kib_{key}"] = round(sum(stat.size_diff for stat in stats) / 1024, 1)
        return result

    return {
        ("POST", "/bench/memory"): memory,
        ("POST", "/bench/investigation"): investigation,
        ("POST", "/bench/publish"): publish,
        ("GET", "/bench/stats"): stats,
        ("POST", "/bench/profile"): profile,
    }


async def run(
    settings: config.Settings, control_port: int, freeze: bool = False, thresholds: tuple[int, ...] | None = None
) -> None:
    server = Server(settings, dataset=())
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with server.running():
            register_investigation(server, INVESTIGATION_ID)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve_tcp)
                await nursery.start(control.serve, control_port, routes(server))
                if thresholds is None:
                    GC_PAUSES.collector = tune_garbage_collector(nursery, server.activity)  # as `serve` does
                else:  # experiment: CPython's own policy with these thresholds, no QuietCollector
                    gc.collect()
                    gc.freeze()
                    gc.set_threshold(*thresholds)
                if freeze:
                    gc.collect()
                    gc.freeze()
                print(
                    f"harness listening on {settings.host}:{settings.port} control {control_port}",
                    flush=True,
                )
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-port", type=int, required=True, help="loopback port of the control API")
    parser.add_argument("--gc-thresholds", default="", metavar="G0,G1,G2",
                        help="experiment: CPython's collector, gc.set_threshold(...), not serve's QuietCollector")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="experiment: gc.freeze() once the server is up (start-up objects leave the GC's scans)")
    add_settings_flags(parser)
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in config.fields()}
    overrides["host"] = "127.0.0.1"  # benchmarks talk to loopback only
    settings = config.from_environ(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_nofile()
    thresholds = tuple(int(v) for v in args.gc_thresholds.split(",")) if args.gc_thresholds else None
    trio.run(run, settings, args.control_port, args.gc_freeze, thresholds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
