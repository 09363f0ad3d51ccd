"""Run ``cidadao-trio`` as an operator would, keeping what it printed on stderr.

``tests/process.py`` starts a server for protocol tests; these helpers are for the tests of
what the operator sees: one clear line, an exit code, a server that stops on a signal.
``InProcess`` runs a command that ends by itself through ``cli.main``, for the many checks
of what it prints that need no process of their own.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from . import forkserver
from .forkserver import Process, spawn

SAFETY = 30.0  # seconds; a safety net for a command that hangs, never a measured delay
LISTENING = re.compile(r"cidadao-trio listening on https?://127\.0\.0\.1:(?P<port>[0-9]+)/")


def environment(**settings: Any) -> dict[str, str]:
    """The test's environment without the developer's CIDADAO_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDADAO_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update({"CIDADAO_" + name.upper(): str(value) for name, value in settings.items()})
    return env


def run(*args: str, cwd: Path | None = None, stdin: str = "", **settings: Any) -> subprocess.CompletedProcess[str]:
    """``python -m cidadao_trio ARGS`` to completion (forked: tests/forkserver.py)."""
    return forkserver.run(list(args), input=stdin, timeout=SAFETY, env=environment(**settings), cwd=cwd)


@attrs.frozen
class InProcess:
    """``cidadao-trio ARGS`` as ``cli.main(ARGS)`` in this process, with the environment and
    directory ``run`` would give it: what the command does once Python has started, without
    the second a ``python -m cidadao_trio`` start-up costs. For commands that end by
    themselves (help, usage errors); a ``serve`` that would start a server fails the test."""

    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str, cwd: Path | None = None, **settings: Any) -> subprocess.CompletedProcess[str]:
        from cidadao_trio import cli

        with self.monkeypatch.context() as patch:
            for name in [name for name in os.environ if name.startswith("CIDADAO_")]:
                patch.delenv(name)
            for name, value in settings.items():
                patch.setenv("CIDADAO_" + name.upper(), str(value))
            if cwd is not None:
                patch.chdir(cwd)
            patch.setattr(cli, "serve", _must_not_serve)
            self.capsys.readouterr()  # only what this command prints
            try:
                code = cli.main(list(args))
            except SystemExit as exited:  # argparse: --help, --version, usage errors
                code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
            out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(["cidadao-trio", *args], code, out, err)


async def _must_not_serve(settings: Any) -> None:
    raise AssertionError("the command went on to start a server")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OutputReader:
    """Reads a process's output (stderr, stdout) in a thread, so the pipe never fills and tests can wait for
    a line without sleeping (a condition variable wakes them)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._text = ""
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for raw in iter(self._stream.readline, b""):
            with self._changed:
                self._text += raw.decode("utf-8", "replace")
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return self._text

    def wait_for(self, pattern: str) -> str:
        """Until ``pattern`` appears (or the process closed stderr, or SAFETY passed)."""
        deadline = time.monotonic() + SAFETY
        with self._changed:
            while re.search(pattern, self._text) is None:
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    raise AssertionError(f"{pattern!r} never appeared:\n{self._text}")
                self._changed.wait(remaining)
            return self._text

    def finish(self) -> str:
        self._thread.join(SAFETY)
        return self.text()


@attrs.define
class Running:
    """A ``serve`` process; its stderr is collected as it comes."""

    process: Process
    stderr: OutputReader
    port: int = 0

    def wait_listening(self) -> int:
        """Read stdout until the "listening" line; the port it names."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + SAFETY
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while (match := LISTENING.search(buffer.decode(errors="replace"))) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise AssertionError(f"not listening within {SAFETY} s; stderr:\n{self.stderr.text()}")
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.process.wait()
                    raise AssertionError(f"exited before listening; stderr:\n{self.stderr.finish()}")
                buffer += chunk
        self.port = int(match["port"])
        return self.port

    def stop(self, signum: int) -> int:
        """Send ``signum``; the exit code (the SAFETY timeout fails the test)."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=SAFETY)


@contextmanager
def launched(directory: Path, *args: str, **settings: Any) -> Iterator[Running]:
    """``serve --host 127.0.0.1 --port 0 ARGS`` in ``directory``; always killed on the way out."""
    command = ["serve", "--host", "127.0.0.1", "--port", "0", *args]
    process = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(**settings), cwd=directory)
    reader = OutputReader(process.stderr)
    try:
        yield Running(process, reader)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        reader.finish()  # EOF once the process is gone
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def http_status(port: int, path: str) -> int:
    """The status of ``GET path`` over a raw socket (the server closes after answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=SAFETY) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
    return int(head.split(b" ", 2)[1])
