"""A server started before its Redis: it listens at once, and is ready once Redis is up."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import websockets

from ..operator import http_status, launched
from .redis_process import RedisProcess


def test_ready_once_redis_comes_up_and_a_chat_works(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)  # its port is chosen, the server is not started yet
    try:
        with launched(tmp_path, store="redis", redis_url=redis.url, drain_timeout=2) as server:
            port = server.wait_listening()
            server.stderr.wait_for("redis unreachable")
            assert http_status(port, "/readyz") == 503
            redis.start()
            server.stderr.wait_for("redis reachable again after")
            assert http_status(port, "/readyz") == 200

            async def chat() -> str:
                async with websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws/chat/tarde") as ws:
                    assert json.loads(await ws.recv())["type"] == "connection"
                    await ws.send(json.dumps({"type": "chat", "data": {"message": "Olá"}, "id": "c1"}))
                    while True:
                        message = json.loads(await asyncio.wait_for(ws.recv(), 15))
                        if message["type"] == "chat_complete":
                            return str(message["data"]["status"])

            assert asyncio.run(chat()) == "completed"
            assert server.stop(signal.SIGTERM) == 0
            assert "Traceback" not in server.stderr.finish()
    finally:
        redis.kill()
