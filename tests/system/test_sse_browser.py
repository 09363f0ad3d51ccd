"""A browser's own ``EventSource`` follows an investigation published through the server API
(§8) to ``report_ready`` across a restart of the server (§10): it reconnects by itself with
``Last-Event-ID`` and loses nothing, repeats nothing. Real Chromium (headless, over CDP, the
console tests' driver), a real ``cidadao-trio serve`` on the SQLite store, stopped with
SIGTERM and started again on the same port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ..forkserver import Process, spawn
from ..process import LISTENING, STARTUP_TIMEOUT, _read_line
from ..server.streams import API_KEY, api
from .test_console import chromium

SAFETY = 20.0  # seconds; a safety net for every wait, never a measured delay
LISTEN = """(() => {
  window.got = [];
  const source = new EventSource(%s);
  for (const type of ['connection', 'investigation_progress', 'anomaly_detected', 'report_ready']) {
    source.addEventListener(type, e => window.got.push({type, id: e.lastEventId, data: JSON.parse(e.data)}));
  }
  window.source = source;
  return true;
})()"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_on(port: int, data_dir: Path, **settings: str) -> Iterator[Process]:
    """``cidadao-trio serve`` on a given port (an EventSource reconnects to the same URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDADAO_")}
    env.update(CIDADAO_STORE="sqlite", CIDADAO_DATA_DIR=str(data_dir), CIDADAO_API_KEYS=API_KEY,
               CIDADAO_DRAIN_TIMEOUT="2")
    env.update({"CIDADAO_" + name.upper(): value for name, value in settings.items()})
    command = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as stderr:
        process = spawn(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            line = _read_line(process, time.monotonic() + STARTUP_TIMEOUT)
            match = LISTENING.fullmatch(line)
            assert match is not None and int(match["port"]) == port, line
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()


def publish(port: int, investigation: str, *events: dict[str, Any]) -> list[str]:
    answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/investigations/{investigation}/events",
                        json={"events": list(events)}, headers=api(), timeout=SAFETY)
    assert answer.status_code == 202, answer.text
    return list(answer.json()["ids"])


def progress(n: int) -> dict[str, Any]:
    data = {"progress": n, "status": "anomaly_detection", "message": f"{n}%"}
    return {"type": "investigation_progress", "data": data}


def test_an_event_source_follows_an_investigation_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    summary = {
        "total_records": 4, "anomalies_found": 1, "total_value": 10.0, "suspicious_value": 5.0, "risk_score": 0.5,
    }
    anomaly = {"type": "anomaly_detected", "data": {
        "anomaly_id": "A1", "anomaly_type": "price_deviation", "severity": "high", "confidence": 0.8,
        "description": "Preço acima da mediana",
    }}
    with chromium() as page:
        with serve_on(port, tmp_path) as first:
            created = httpx.post(f"http://127.0.0.1:{port}/api/v1/investigations", json={"title": "Navegador"},
                                 headers=api(), timeout=SAFETY)
            investigation = created.json()["investigation_id"]
            before = publish(port, investigation, progress(10), anomaly)
            page.call("Page.navigate", url=f"http://127.0.0.1:{port}/healthz")  # same origin, no script of its own
            page.wait_for(f"document.readyState === 'complete' && location.port === '{port}'", "the page")
            page.js(LISTEN % repr(f"/api/v1/sse/investigations/{investigation}"))
            page.wait_for("window.got.length === 3", "the greeting and the first two events")
            first.send_signal(signal.SIGTERM)  # the drain ends the stream; the browser retries
            assert first.wait(SAFETY) == 0
        with serve_on(port, tmp_path):
            after = publish(port, investigation, progress(60), {"type": "report_ready", "data": {"summary": summary}})
            page.wait_for("window.got.some(e => e.type === 'report_ready')", "report_ready after the restart")
            got = page.js("window.got")
            page.js("window.source.close()")
    durable = [e for e in got if not e["data"]["id"].startswith("e-")]
    assert [e["data"]["id"] for e in durable] == [e["id"] for e in durable]  # SSE id: = the envelope's
    assert [e["id"] for e in durable] == before + after  # each once, in order: nothing lost or repeated
    greetings = [e["data"]["data"] for e in got if e["type"] == "connection"]
    assert len(greetings) == 2 and greetings[1]["resumed"] is True  # the browser sent Last-Event-ID
    assert got[-1]["data"]["data"]["proof"]["dataset_sha256"] is None
