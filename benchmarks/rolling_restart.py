"""The README's several-node deployment through a rolling restart (issue 20): Redis (AOF,
loopback), three nodes and nginx started as the README says (ports and paths moved into a
temporary directory), clients chatting through nginx, then SIGTERM of each node in turn.

    .venv/bin/python -m benchmarks.rolling_restart [--clients 60] [--pause 3]

Each client chats in its own session, one message every ``--interval`` seconds, each with a unique
id; when its connection drops it reconnects through nginx with ``last_id`` and resends,
with the same id, every message it has not seen echoed (PROTOCOL.md §2). Measured, not
asserted: the longest time any client was without a connection, turns that did not end
``completed``, gaps and duplicates among durable ids, DUPLICATE answers, and how long each
node took to drain. Needs redis-server and nginx (apt-get install redis-server nginx-light).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

from .report import publish

ROOT = Path(__file__).parents[1]
NODE_PORTS = ("8001", "8002", "8003")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_ready(url: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while not ready(url):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{url} not ready within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


class Cluster:
    """Redis, three nodes and nginx in ``directory``, each with its PID and log."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.redis_port = free_port()
        self.ports = {name: free_port() for name in NODE_PORTS}
        self.front = free_port()
        self.secret = secrets.token_hex(32)  # one JWT secret for every node
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.others: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self) -> None:
        (self.dir / "redis").mkdir()
        self.others.append(subprocess.Popen([
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--protected-mode", "yes",
            "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir / "redis"),
            "--pidfile", str(self.dir / "redis.pid"), "--logfile", str(self.dir / "redis.log"),
        ]))
        for name in NODE_PORTS:
            self.start_node(name)
        conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
        for name, port in self.ports.items():
            conf = conf.replace(f"127.0.0.1:{name}", f"127.0.0.1:{port}")
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{self.front};")
        conf = conf.replace("/run/cidadao/", f"{self.dir}/").replace("/var/log/cidadao/", f"{self.dir}/")
        (self.dir / "nginx.conf").write_text(conf, encoding="utf-8")
        self.others.append(subprocess.Popen(
            ["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir), "-g", "daemon off;"]
        ))
        for port in self.ports.values():
            wait_ready(f"http://127.0.0.1:{port}/readyz")
        wait_ready(f"http://127.0.0.1:{self.front}/readyz")

    def start_node(self, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIDADAO_")}
        env.update(CIDADAO_STORE="redis", CIDADAO_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
                   CIDADAO_JWT_SECRET=self.secret)
        log = open(self.dir / f"node-{name}.log", "ab")  # noqa: SIM115 - the node writes it; closed in stop()
        self.logs.append(log)
        self.nodes[name] = subprocess.Popen(
            [sys.executable, "-m", "cidadao_trio", "serve", "--host", "127.0.0.1", "--port", str(self.ports[name]),
             "--node-name", f"node-{name}", "--drain-timeout", "20"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        (self.dir / f"node-{name}.pid").write_text(str(self.nodes[name].pid))

    def restart(self, name: str) -> dict[str, Any]:
        """SIGTERM by PID, wait for the exit, start again, wait for /readyz."""
        process = self.nodes[name]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        drained = time.monotonic() - started
        self.start_node(name)
        back = wait_ready(f"http://127.0.0.1:{self.ports[name]}/readyz")
        return {
            "node": f"node-{name}", "exit code": code, "drain s": round(drained, 2), "ready again s": round(back, 2),
        }

    def stop(self) -> None:
        for process in [*self.nodes.values(), *self.others]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.nodes.values(), *self.others]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()


class Client:
    """One session through nginx: chats, reconnects with last_id, resends what it has not seen echoed."""

    def __init__(self, url: str, number: int, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.session = f"rolling-{number}"
        self.last_id: str | None = None
        self.offsets: list[int] = []
        self.sent: dict[str, str] = {}  # id -> text, not yet echoed
        self.echoed: set[str] = set()
        self.outcomes: dict[str, str] = {}  # id -> chat_complete status
        self.duplicates = 0
        self.overloaded = 0  # refused (the session's queue was full): counted, not resent
        self.longest_down = 0.0
        self.reconnects = 0
        self._next = 0
        self.closed = False  # stopped chatting and every turn ended

    async def run(self, stop: asyncio.Event) -> None:
        down_since: float | None = None
        while not self.closed:
            query = f"?last_id={self.last_id}" if self.last_id else ""
            try:
                async with websockets.connect(f"{self.url}/api/v1/ws/chat/{self.session}{query}") as ws:
                    await asyncio.wait_for(ws.recv(), 10)  # the greeting
                    if down_since is not None:
                        self.longest_down = max(self.longest_down, time.monotonic() - down_since)
                        self.reconnects += 1
                        down_since = None
                    for message_id, text in list(self.sent.items()):  # not seen echoed: resend, same id
                        await ws.send(json.dumps({"type": "chat", "data": {"message": text}, "id": message_id}))
                    chatting = asyncio.create_task(self._chat(ws, stop))
                    try:
                        await self._read(ws)  # until the connection ends
                    finally:
                        down_since = time.monotonic()
                        chatting.cancel()
            except (OSError, websockets.ConnectionClosed, TimeoutError, websockets.InvalidStatus):
                if down_since is None:
                    down_since = time.monotonic()
                await asyncio.sleep(0.05)

    async def _chat(self, ws: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._next += 1
            message_id, text = f"{self.session}-{self._next}", "Olá, tudo bem?"
            self.sent[message_id] = text
            await ws.send(json.dumps({"type": "chat", "data": {"message": text}, "id": message_id}))
            await asyncio.sleep(self.interval)
        deadline = time.monotonic() + 60  # the turns still queued are answered (one at a time per session)
        while not self.echoed <= set(self.outcomes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.closed = True
        await ws.close()

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            kind, data = message["type"], message.get("data", {})
            if not message["id"].startswith("e-"):
                self.last_id = message["id"]
                self.offsets.append(int(message["id"].rsplit("-", 1)[1]))
            if kind == "chat" and data.get("role") == "user":
                self.echoed.add(data["reply_to"])
                self.sent.pop(data["reply_to"], None)
            elif kind == "chat_complete":
                self.outcomes[data["reply_to"]] = data["status"]
            elif kind == "error" and data.get("code") == "DUPLICATE":
                self.duplicates += 1
                self.sent.pop(data.get("reply_to"), None)
            elif kind == "error" and data.get("code") == "OVERLOADED":
                self.overloaded += 1
                self.sent.pop(data.get("reply_to"), None)


def _gaps_and_repeats(offsets: list[int]) -> tuple[int, int]:
    gaps = sum(1 for a, b in zip(offsets, offsets[1:], strict=False) if b > a + 1)
    return gaps, len(offsets) - len(set(offsets))


async def _drive(
    cluster: Cluster, clients: int, pause: float, interval: float
) -> tuple[list[Client], list[dict[str, Any]]]:
    stop = asyncio.Event()
    crowd = [Client(f"ws://127.0.0.1:{cluster.front}", n, interval) for n in range(clients)]
    tasks = [asyncio.create_task(c.run(stop)) for c in crowd]
    await asyncio.sleep(5)
    steps = []
    for name in NODE_PORTS:
        steps.append(await asyncio.to_thread(cluster.restart, name))
        await asyncio.sleep(pause)
    await asyncio.sleep(5)
    stop.set()
    await asyncio.wait(tasks, timeout=90)  # each client closes once its turns have ended
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return crowd, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between restarts")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a client's messages")
    args = parser.parse_args(argv)
    for binary in ("redis-server", "nginx"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (apt-get install redis-server nginx-light)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.start()
            crowd, steps = asyncio.run(_drive(cluster, args.clients, args.pause, args.interval))
        finally:
            cluster.stop()
    asked = sum(c._next for c in crowd)
    answered = [s for c in crowd for s in c.outcomes.values()]
    gaps, repeats = map(sum, zip(*(_gaps_and_repeats(c.offsets) for c in crowd), strict=True))
    summary = {
        "clients": len(crowd),
        "messages sent": asked,
        "turns ended": len(answered),
        "turns without an end": sum(len(c.echoed - set(c.outcomes)) for c in crowd),
        "turns not completed": sum(status != "completed" for status in answered),
        "never echoed": sum(len(c.sent) for c in crowd),
        "DUPLICATE answers": sum(c.duplicates for c in crowd),
        "OVERLOADED answers": sum(c.overloaded for c in crowd),
        "durable gaps": gaps,
        "durable repeats": repeats,
        "reconnects": sum(c.reconnects for c in crowd),
        "longest down s": round(max(c.longest_down for c in crowd), 3),
    }
    note = (
        f"README's deployment (Redis AOF, 3 nodes, nginx max_fails=0) through a rolling SIGTERM of every node; "
        f"{args.clients} clients, one message every {args.interval} s each"
    )
    publish("rolling-restart", [summary], note)
    publish("rolling-restart-steps", steps, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
