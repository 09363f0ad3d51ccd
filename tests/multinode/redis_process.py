"""A private redis-server on a free loopback port, started and always killed by the tests."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REDIS_SERVER = "/usr/bin/redis-server"
STARTUP_TIMEOUT = 30.0  # a safety net for a loaded machine, never a measured delay
READY = b"Ready to accept connections"


def redis_server_binary() -> str:
    found = REDIS_SERVER if os.access(REDIS_SERVER, os.X_OK) else shutil.which("redis-server")
    if found is None:
        pytest.fail(
            f"redis-server not found at {REDIS_SERVER} or on PATH: the multi-node tests need it "
            "(CI installs it: apt-get install redis-server)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """One redis-server; ``restart`` keeps the port (and, if persistent, the data)."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait for "Ready to accept connections" (no sleeping, a deadline)."""
        assert self.process is None
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            *persistence, "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "notice",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        output = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while READY not in output:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.kill()
                    raise TimeoutError(f"redis-server not ready within {STARTUP_TIMEOUT} s: {output[-2000:]!r}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.kill()
                    raise RuntimeError(f"redis-server exited: {output[-2000:]!r}")
                output += chunk
        # Nobody reads its log from here on: send it to /dev/null so a full pipe never blocks it.
        self.process.stdout.close()

    def kill(self) -> None:
        """SIGKILL, like a crash: with appendfsync always, acknowledged writes survive."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


@contextmanager
def redis_process(directory: Path, *, persistent: bool = False) -> Iterator[RedisProcess]:
    server = RedisProcess(directory, persistent=persistent)
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except RuntimeError as failed:
                # The free port was taken between probing and binding (another xdist worker):
                # probe another. A restart keeps its port; only the first start moves.
                if "Address already in use" not in str(failed) or attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        server.kill()
