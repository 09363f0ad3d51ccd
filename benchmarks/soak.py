"""``python -m benchmarks soak --minutes N``: one server under a steady mixed load (issue 21).

The server (``cidadao-trio serve``, SQLite store, code of ``HEAD`` taken with ``git archive``
so the run does not depend on the working tree) and a trio load generator in this process,
on 127.0.0.1 only, each pinned to its own core when there are two:

- ``idle`` chat sessions that connect and stay;
- ``chatters`` sessions that send a chat turn every few seconds (first-reply latency);
- ``reconnectors`` sessions that send a turn, drop, and come back with ``last_id`` (resume;
  half of ``followers`` of them also subscribe to each investigation);
- an investigation every ``investigation_every`` s, started from a chat, followed by
  ``followers`` sessions (``subscribe``) and ``watchers`` investigation connections;
- ``slow`` connections that never read.

Every 15 s the server's RSS, open fds, CPU, store size and the latency of the last window
are sampled. Every durable id each session receives is checked: offsets grow by exactly
one per session across all its connections (a duplicate or a skip is counted), a resume
continues where it left off. At the end every client leaves, and RSS is sampled for a
minute more (memory returned). Writes ``results/soak.md`` (+ ``soak.json``, ``soak-raw.json``)
and ``results/soak.png`` when matplotlib is installed.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from .runner import BENCH, LOADGEN_CORE, SERVER_CORE, cpu_seconds, rss_kb

ROOT = BENCH.parent
RESULTS = BENCH / "results"
SAMPLE_EVERY = 15.0
INVESTIGATION_ID = re.compile(r"INV-\d{4}-\d{3,}")
Rows = list[dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snapshot(rev: str) -> tuple[Path, str]:
    """``src/`` as committed at ``rev``, in a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="cidadao-soak-src-"))
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True).stdout
    return target / "src", commit.strip()


class Ledger:
    """Every durable id a session has seen, across its connections."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[str, int]] = {}  # session -> (epoch, offset)
        self.received = 0
        self.duplicated = 0
        self.lost = 0
        self.resumes = 0
        self.resumes_contiguous = 0
        self.resumes_checked = 0  # resumes that received a durable message before closing
        self.gaps = 0

    def see(self, session: str, id: str) -> None:
        epoch, offset = id.rsplit("-", 1)[0], int(id.rsplit("-", 1)[1])
        self.received += 1
        previous = self.last.get(session)
        if previous is not None and previous[0] == epoch:
            if offset <= previous[1]:
                self.duplicated += 1
                return
            self.lost += offset - previous[1] - 1
        self.last[session] = (epoch, offset)

    def cursor(self, session: str) -> str | None:
        last = self.last.get(session)
        return None if last is None else f"{last[0]}-{last[1]}"


def _why(error: BaseException) -> str:
    """A close the server chose (idle timeout, slow consumer) is counted by its reason."""
    if isinstance(error, ConnectionClosed) and error.reason is not None:
        return f"closed {error.reason.code} {error.reason.reason or ''}".strip()
    return type(error).__name__


class Load:
    def __init__(self, port: int, args: dict[str, Any]) -> None:
        self.base = f"ws://127.0.0.1:{port}"
        self.args = args
        self.ledger = Ledger()
        self.latencies: list[float] = []
        self.turns = 0
        self.errors: Counter[str] = Counter()
        self.open = 0
        self.investigations: list[str] = []
        self.stop = trio.Event()

    async def _session(self, session: str, *, linger: float | None = None, chat_every: float | None = None,
                       follow: bool = False) -> None:
        """One session: connect (resuming from the ledger), read, optionally chat; repeat."""
        rng = random.Random(session)
        while not self.stop.is_set():
            cursor = self.ledger.cursor(session)
            url = f"{self.base}/api/v1/ws/chat/{session}" + (f"?last_id={cursor}" if cursor else "")
            closed = False
            try:
                async with open_websocket_url(url, message_queue_size=0) as ws:
                    self.open += 1
                    try:
                        await self._connected(ws, session, cursor, rng, linger, chat_every, follow)
                    finally:
                        self.open -= 1
            except* (ConnectionClosed, HandshakeError, OSError, trio.BrokenResourceError) as group:
                # the server's idle timeout closes quiet sessions too: a client resumes, like a browser
                closed = True
                for error in group.exceptions:
                    self.errors[_why(error)] += 1
            if closed:
                await trio.sleep(1.0)

    async def _connected(self, ws: WebSocketConnection, session: str, cursor: str | None, rng: random.Random,
                         linger: float | None, chat_every: float | None, follow: bool) -> None:
        hello = json.loads(await ws.get_message())
        if cursor is not None:
            self.ledger.resumes += 1
        first_after_resume = cursor is not None and hello["data"].get("resumed")
        sent_at: dict[str, float] = {}
        known = len(self.investigations)

        async def reader() -> None:
            nonlocal first_after_resume
            while True:
                message = json.loads(await ws.get_message())
                kind, data, id = message["type"], message["data"], message["id"]
                if not id.startswith("e-"):
                    if first_after_resume:
                        self.ledger.resumes_checked += 1
                        last = self.ledger.last.get(session)
                        if last and id == f"{last[0]}-{last[1] + 1}":
                            self.ledger.resumes_contiguous += 1
                        first_after_resume = False
                    self.ledger.see(session, id)
                if kind == "error":
                    self.errors[data.get("code", "?")] += 1
                    if data.get("code") == "HISTORY_GAP":
                        self.ledger.gaps += 1
                        self.ledger.last.pop(session, None)
                if kind == "chat" and data.get("role") == "assistant" and data.get("reply_to") in sent_at:
                    self.latencies.append(time.monotonic() - sent_at.pop(data["reply_to"]))
                    self.turns += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            deadline = trio.current_time() + (linger if linger is not None else 1e9)
            n = 0
            while trio.current_time() < deadline and not self.stop.is_set():
                if chat_every is not None:
                    n += 1
                    turn = f"{session}-{n}-{rng.random():.6f}"
                    sent_at[turn] = time.monotonic()
                    chat = {"type": "chat", "data": {"message": "Olá, tudo bem?"}, "id": turn}
                    await ws.send_message(json.dumps(chat))
                if follow:
                    while known < len(self.investigations):
                        await ws.send_message(json.dumps(
                            {"type": "subscribe", "data": {"investigation_id": self.investigations[known]}}))
                        known += 1
                with trio.move_on_after(chat_every or 1.0):
                    await self.stop.wait()
            nursery.cancel_scope.cancel()

    async def _investigations(self) -> None:
        """Start one every ``investigation_every`` s from a chat (reading everything the
        starter's session receives, so it is never a slow consumer), then watch it."""
        n = 0
        while not self.stop.is_set():
            try:
                async with open_websocket_url(f"{self.base}/api/v1/ws/chat/soak-starter") as ws:
                    await ws.get_message()
                    started = trio.Event()

                    async def reader() -> None:
                        while True:
                            message = json.loads(await ws.get_message())
                            found = INVESTIGATION_ID.search(json.dumps(message.get("data", {}), ensure_ascii=False))
                            if message["type"] == "chat" and found and found.group(0) not in self.investigations:
                                self.investigations.append(found.group(0))
                                started.set()  # noqa: B023 (the reader lives within this iteration)

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(reader)
                        while not self.stop.is_set():
                            n += 1
                            started = trio.Event()
                            await ws.send_message(json.dumps({"type": "chat", "data": {
                                "message": "Investigar contratos do Ministério da Saúde"}, "id": f"inv{n}"}))
                            with trio.move_on_after(20):
                                await started.wait()
                            async with trio.open_nursery() as watchers:
                                if started.is_set():
                                    for _ in range(self.args["watchers"]):
                                        watchers.start_soon(self._watch, self.investigations[-1])
                                with trio.move_on_after(self.args["investigation_every"]):
                                    await self.stop.wait()
                                watchers.cancel_scope.cancel()
                        nursery.cancel_scope.cancel()
            except* (ConnectionClosed, HandshakeError, OSError) as group:
                for error in group.exceptions:
                    self.errors[f"starter {_why(error)}"] += 1
            await trio.sleep(1.0)

    async def _watch(self, investigation: str) -> None:
        try:
            async with open_websocket_url(f"{self.base}/api/v1/ws/investigations/{investigation}") as ws:
                self.open += 1
                try:
                    while True:
                        await ws.get_message()
                finally:
                    self.open -= 1
        except (ConnectionClosed, HandshakeError, OSError) as error:
            self.errors[type(error).__name__] += 1

    async def _slow(self) -> None:
        """Raw sockets that upgrade, send one chat, and never read: the server must drop
        them (1013), not grow. (A WebSocket library would keep reading underneath.)"""
        port = int(self.base.rsplit(":", 1)[1])
        while not self.stop.is_set():
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                key = base64.b64encode(os.urandom(16))
                await stream.send_all(
                    b"GET /api/v1/ws/chat/soak-slow-%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    % (random.randrange(10**9), key))
                payload = json.dumps({"type": "chat", "data": {"message": "Olá"}, "id": "x"}).encode()
                mask = os.urandom(4)
                await stream.send_all(bytes((0x81, 0x80 | len(payload))) + mask
                                      + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                with trio.move_on_after(30):
                    await self.stop.wait()
                await stream.aclose()
            except OSError as error:
                self.errors[f"slow {type(error).__name__}"] += 1
                await trio.sleep(1.0)

    async def run(self, seconds: float) -> None:
        a = self.args
        async with trio.open_nursery() as nursery:
            for i in range(a["idle"]):
                nursery.start_soon(lambda i=i: self._session(f"soak-idle-{i}", follow=i < a["followers"]))
                await trio.sleep(0.005)
            for i in range(a["chatters"]):
                nursery.start_soon(lambda i=i: self._session(f"soak-chat-{i}", chat_every=a["chat_every"]))
            for i in range(a["reconnectors"]):
                linger = a["reconnectors"] / a["reconnects_per_s"]
                stay = linger * random.uniform(0.5, 1.5)  # one turn per connection, then resume with last_id
                nursery.start_soon(lambda i=i, stay=stay: self._session(
                    f"soak-re-{i}", linger=stay, chat_every=stay, follow=i < a["followers"] // 2))
            for _ in range(a["slow"]):
                nursery.start_soon(self._slow)
            nursery.start_soon(self._investigations)
            await trio.sleep(seconds)
            print(f"load ran {seconds:.0f} s; clients leaving", flush=True)
            self.stop.set()
            with trio.move_on_after(15):
                while self.open:
                    await trio.sleep(0.2)
            nursery.cancel_scope.cancel()

    def window(self) -> dict[str, Any]:
        latencies, self.latencies = sorted(self.latencies), []
        def p(q: float) -> float | None:
            return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

        return {"p50_ms": p(0.5), "p99_ms": p(0.99), "turns": len(latencies)}


def _sample(pid: int, data_dir: Path, started: float, load: Load | None, cpu_before: list[float]) -> dict[str, Any]:
    cpu = cpu_seconds(pid)
    now = time.monotonic()
    row = {
        "t_s": round(now - started), "rss_mb": round(rss_kb(pid) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_pct": round(100 * (cpu - cpu_before[0]) / max(now - cpu_before[1], 1e-6), 1),
        "store_mb": round(sum(f.stat().st_size for f in data_dir.glob("*")) / 2**20, 1),
        "connections": load.open if load else 0,
        "durable_seen": load.ledger.received if load else None,
        **(load.window() if load else {"p50_ms": None, "p99_ms": None, "turns": 0}),
    }
    cpu_before[:] = [cpu, now]
    return row


def _slope(rows: Rows, after_s: float) -> float | None:
    points = [(r["t_s"] / 60, r["rss_mb"]) for r in rows if r["t_s"] >= after_s]
    if len(points) < 2:
        return None
    xs, ys = zip(*points, strict=True)
    return round(statistics.linear_regression(xs, ys).slope, 2)


def soak(minutes: float = 5.0, idle: int = 200, chatters: int = 10, chat_every: float = 3.0,
         reconnectors: int = 40, reconnects_per_s: float = 5.0, followers: int = 40, watchers: int = 20,
         investigation_every: float = 30.0, slow: int = 3, settle: float = 60.0,
         flags: list[str] | None = None, rev: str = "HEAD") -> tuple[Rows, Rows, str]:
    name = "soak" if rev == "HEAD" else f"soak-{rev[:12]}"  # other code's run keeps its own files
    src, commit = _snapshot(rev)
    data_dir = Path(tempfile.mkdtemp(prefix="cidadao-soak-data-"))
    port = _free_port()
    cmd = [sys.executable, "-m", "cidadao_trio", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--store", "sqlite", "--data-dir", str(data_dir), "--max-connections-per-principal", "5000",
           "--max-pending-auth-per-address", "5000", "--reply-chunk-delay", "0.01", "--log-level", "warning",
           "--slow-consumer-timeout", "5", *(flags or [])]
    if SERVER_CORE is not None:
        cmd = ["taskset", "-c", SERVER_CORE, *cmd]
        os.sched_setaffinity(0, {int(LOADGEN_CORE)})  # type: ignore[arg-type]
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / "logs" / f"{name}-server.log", "w")  # noqa: SIM115 (the server's, for its life; ignored by git)
    server = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(src)}, stdout=subprocess.PIPE, stderr=log)
    assert server.stdout is not None
    server.stdout.readline()  # "cidadao-trio listening on ..."
    args = dict(idle=idle, chatters=chatters, chat_every=chat_every, reconnectors=reconnectors,
                reconnects_per_s=reconnects_per_s, followers=followers, watchers=watchers,
                investigation_every=investigation_every, slow=slow)
    load = Load(port, args)
    samples: Rows = []
    started = time.monotonic()
    cpu_before = [cpu_seconds(server.pid), started]
    samples.append({**_sample(server.pid, data_dir, started, None, cpu_before), "phase": "start"})
    print(samples[-1], flush=True)

    async def main() -> None:
        async def sampler() -> None:
            while True:
                await trio.sleep(SAMPLE_EVERY)
                samples.append({**_sample(server.pid, data_dir, started, load, cpu_before), "phase": "load"})
                print(samples[-1], flush=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            await load.run(minutes * 60)
            nursery.cancel_scope.cancel()
        end = trio.current_time() + settle
        while trio.current_time() < end:
            await trio.sleep(SAMPLE_EVERY)
            samples.append({**_sample(server.pid, data_dir, started, None, cpu_before), "phase": "after"})
            print(samples[-1], flush=True)

    try:
        trio.run(main)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(src.parent, ignore_errors=True)
    ledger = load.ledger
    loaded = [s for s in samples if s["phase"] == "load"]
    summary = [{
        "minutes": minutes, "durable_received": ledger.received, "lost": ledger.lost,
        "duplicated": ledger.duplicated, "resumes": ledger.resumes,
        "resumes_checked": ledger.resumes_checked, "resumes_contiguous": ledger.resumes_contiguous,
        "history_gaps": ledger.gaps,
        "investigations": len(load.investigations), "turns": load.turns,
        "rss_start_mb": samples[0]["rss_mb"], "rss_peak_mb": max(s["rss_mb"] for s in samples),
        "rss_end_of_load_mb": loaded[-1]["rss_mb"] if loaded else None,
        "rss_after_leave_mb": samples[-1]["rss_mb"],
        "rss_slope_mb_per_min_after_2min": _slope(loaded, 120),
        "fds_start": samples[0]["fds"], "fds_max": max(s["fds"] for s in samples), "fds_after": samples[-1]["fds"],
        "errors": dict(load.errors),
    }]
    note = (f"Server at {commit} ({rev}), SQLite store, 127.0.0.1; load: {idle} idle sessions ({followers} of them "
            f"subscribe to every investigation), {chatters} chatters (a turn every {chat_every} s), {reconnectors} "
            f"sessions reconnecting with last_id (~{reconnects_per_s}/s), an investigation every "
            f"{investigation_every} s watched by {watchers}, {slow} slow consumers; "
            f"sampled every {SAMPLE_EVERY:.0f} s; "
            f"clients leave after {minutes} min and RSS is sampled {settle:.0f} s more.")
    _write(samples, summary, note, name)
    return summary, samples, note


def _write(samples: Rows, summary: Rows, note: str, name: str) -> None:
    from .report import markdown_table

    RESULTS.mkdir(parents=True, exist_ok=True)
    shown = {k: v for k, v in summary[0].items() if k != "errors"}
    text = f"# soak\n\n{note}\n\n## summary\n\n{markdown_table([shown])}\n\n"
    text += f"errors seen by clients: {summary[0]['errors']}\n\n## samples\n\n{markdown_table(samples)}\n"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        text += "\n(no plot: matplotlib is not installed in this environment; `make bench` installs it)\n"
    else:
        figure, axis = plt.subplots(figsize=(8, 4))
        axis.plot([s["t_s"] / 60 for s in samples], [s["rss_mb"] for s in samples], marker="o")
        axis.set_xlabel("minutes")
        axis.set_ylabel("RSS (MB)")
        axis.set_title("soak: server RSS")
        figure.tight_layout()
        figure.savefig(RESULTS / f"{name}.png")
        text += f"\n![RSS over time]({name}.png)\n"
    (RESULTS / f"{name}-samples.md").write_text(text)
