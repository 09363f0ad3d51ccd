"""Run ``cidadao-trio serve`` as a process of its own on 127.0.0.1 for the end-to-end tests
(forked from a preloaded interpreter: tests/forkserver.py)."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from .forkserver import Process, spawn

STARTUP_TIMEOUT = 60.0  # a safety net for a loaded machine (parallel workers), never a measured delay
LISTENING = re.compile(r"cidadao-trio listening on http://127\.0\.0\.1:(?P<port>[0-9]+)/")


@attrs.frozen
class ServerProcess:
    process: Process
    port: int

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def _read_line(process: Process, deadline: float) -> str:
    """The first line the server prints, polling its stdout until ``deadline``."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line on stdout within {STARTUP_TIMEOUT} s: {buffer!r}")
            if selector.select(remaining):
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"server exited ({process.wait()}) before listening")
                buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


@contextmanager
def serve(**settings: Any) -> Iterator[ServerProcess]:
    """Start the server with ``CIDADAO_*`` settings; always kill it on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDADAO_")}
    env["CIDADAO_REPLY_CHUNK_DELAY"] = "0"
    env["CIDADAO_STORE"] = "memory"  # tests that need a data dir pass one
    env.update({"CIDADAO_" + name.upper(): str(value) for name, value in settings.items()})
    command = ["serve", "--host", "127.0.0.1", "--port", "0"]
    with tempfile.TemporaryFile() as stderr:
        process = spawn(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            try:
                line = _read_line(process, time.monotonic() + STARTUP_TIMEOUT)
            except (TimeoutError, RuntimeError) as failed:
                stderr.seek(0)
                raise RuntimeError(f"{failed}\nstderr:\n{stderr.read().decode()}") from None
            match = LISTENING.fullmatch(line)
            assert match is not None, f"unexpected first line: {line!r}"
            yield ServerProcess(process, int(match["port"]))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()
