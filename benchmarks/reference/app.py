"""The reference: the same subset, written the idiomatic FastAPI + uvicorn way.

    python -m benchmarks.reference.app --port 8765 [--ws-ping-interval 20]

This is the stack the original Cidadão.AI backend used (FastAPI on uvicorn[standard]:
uvloop, httptools, the ``websockets`` protocol). It implements only what the benchmarks
drive, in the shape of FastAPI's documented ``ConnectionManager``:

- ``/api/v1/ws/chat/{session_id}``: accept, ``connection`` greeting, ``ping`` → ``pong``
  (anything else gets an ``UNSUPPORTED`` error: there are no agents here);
- ``/api/v1/ws/investigations/{investigation_id}``: accept, greeting, join the
  investigation's subscriber set, answer ``ping``; ``batch=1`` is accepted and ignored;
- ``POST /api/v1/investigations/{investigation_id}/events`` (JSON body = event ``data``,
  ``?type=``): encode the envelope once and ``await ws.send_text`` it to each subscriber
  in turn — FastAPI's broadcast loop;
- ``POST /bench/publish?count=&rate=&start=&pad=&investigation=``, ``POST /bench/investigation``
  and ``GET /bench/stats``: the same benchmark control contract as ``harness_server`` and
  ``floor``, publishing in-process through the same broadcast function.

Heartbeats are uvicorn's (``--ws-ping-interval``), as a default deployment would have.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

from ..events import EVENT_TYPE, INVESTIGATION_ID, anomaly_event, pace_deadline


def _timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def envelope(type: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": type, "data": data, "timestamp": _timestamp(), "id": str(uuid.uuid4())})


class ConnectionManager:
    def __init__(self) -> None:
        self.investigations: dict[str, set[WebSocket]] = {}
        self.connections = 0

    def join(self, investigation_id: str, ws: WebSocket) -> None:
        self.investigations.setdefault(investigation_id, set()).add(ws)

    def leave(self, investigation_id: str, ws: WebSocket) -> None:
        self.investigations.get(investigation_id, set()).discard(ws)

    async def broadcast(self, investigation_id: str, type: str, data: dict[str, Any]) -> int:
        text = envelope(type, data)
        delivered = 0
        for ws in list(self.investigations.get(investigation_id, ())):
            try:
                await ws.send_text(text)
                delivered += 1
            except Exception:
                self.leave(investigation_id, ws)
        return delivered


app = FastAPI(title="Cidadão.AI reference (benchmark)")
manager = ConnectionManager()


async def _serve(ws: WebSocket, identity: dict[str, Any], receive_only: bool) -> None:
    await ws.send_text(envelope("connection", {"status": "connected", **identity,
                                               "message": "Conectado ao Cidadão.AI em tempo real"}))
    while True:
        raw = await ws.receive_text()
        try:
            message = json.loads(raw)
            kind = message.get("type")
        except (ValueError, AttributeError):
            await ws.send_text(envelope("error", {"code": "INVALID_JSON", "message": "JSON inválido."}))
            continue
        if kind == "ping":
            data = {"reply_to": message["id"]} if "id" in message else {}
            await ws.send_text(envelope("pong", data))
        else:
            await ws.send_text(envelope("error", {"code": "UNSUPPORTED", "message": "Não suportado."}))


@app.websocket("/api/v1/ws/chat/{session_id}")
async def chat(ws: WebSocket, session_id: str) -> None:
    await ws.accept()
    manager.connections += 1
    try:
        await _serve(ws, {"session_id": session_id}, receive_only=False)
    except WebSocketDisconnect:
        pass
    finally:
        manager.connections -= 1


@app.websocket("/api/v1/ws/investigations/{investigation_id}")
async def investigation(ws: WebSocket, investigation_id: str) -> None:
    await ws.accept()
    manager.connections += 1
    manager.join(investigation_id, ws)
    try:
        await _serve(ws, {"investigation_id": investigation_id}, receive_only=True)
    except WebSocketDisconnect:
        pass
    finally:
        manager.leave(investigation_id, ws)
        manager.connections -= 1


@app.post("/api/v1/investigations/{investigation_id}/events")
async def publish_event(investigation_id: str, request: Request, type: str = EVENT_TYPE) -> dict[str, int]:
    data = await request.json()
    return {"delivered": await manager.broadcast(investigation_id, type, data)}


@app.post("/bench/investigation")
async def bench_investigation(investigation: str = INVESTIGATION_ID) -> dict[str, str]:
    return {"registered": investigation}  # any id is open here


@app.post("/bench/publish")
async def bench_publish(count: int = 100, rate: float = 0.0, start: int = 0, pad: int = 0,
                        investigation: str = INVESTIGATION_ID) -> dict[str, Any]:
    count = min(count, 1_000_000)
    loop = asyncio.get_running_loop()
    began = loop.time()
    wall = time.time()
    for i in range(count):
        due = pace_deadline(began, i, rate)
        if due is not None and due > loop.time():
            await asyncio.sleep(due - loop.time())
        await manager.broadcast(investigation, EVENT_TYPE, anomaly_event(start + i, min(pad, 1 << 20), investigation))
    return {"published": count, "seconds": loop.time() - began, "started_at": wall}


@app.get("/bench/stats")
async def bench_stats() -> dict[str, Any]:
    return {"pid": os.getpid(), "connections": manager.connections}


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from ..limits import raise_nofile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference.app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws-ping-interval", type=float, default=20.0, help="uvicorn's default: 20")
    args = parser.parse_args(argv)
    raise_nofile()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                ws_ping_interval=args.ws_ping_interval, ws_ping_timeout=20.0, backlog=4096)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
