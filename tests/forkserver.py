"""``python -m cidadao_trio ARGS`` forked from an interpreter that has already imported it.

A fresh interpreter spends ~0.7 s of CPU importing before ``serve`` listens, and the suite
starts some sixty servers and terminal commands: on two cores that was a fifth of its time.
Like multiprocessing's "forkserver", one process per test worker imports cidadao_trio once
and forks a child for each command. The child is a process of its own — its pid, signals,
exit code, stdin/stdout/stderr and directory are its own, its environment is the one the test
gave — and runs the same ``__main__`` a fresh interpreter runs; only Python's start-up and
the imports are skipped (``tests/system/test_readme.py`` still runs the README's commands in
fresh interpreters, so start-up stays tested).

``spawn`` answers a ``ForkedProcess``: the part of ``subprocess.Popen`` the tests use. The
server (``python tests/forkserver.py SOCKET``) gets each request on a Unix socket with the
child's three descriptors attached (SCM_RIGHTS), answers the pid, reaps the child and writes
its exit status (``Popen.returncode``'s convention: minus the signal) on the same connection.
Setting ``CIDADAO_TEST_FRESH_INTERPRETER=1`` makes ``spawn`` run a fresh interpreter instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

STATUS = struct.Struct("!i")
READY = b"ready\n"
# What `serve` and the terminal commands import, some of it lazily: imported here once.
PRELOAD = (
    "cidadao_trio.cli", "cidadao_trio.app", "cidadao_trio.server.server", "cidadao_trio.client",
    "cidadao_trio.terminal", "cidadao_trio.broker.redis", "cidadao_trio.records.redis", "jwt",
    "httpx", "cryptography.hazmat.primitives.asymmetric.ed25519", "sqlite3",
)
Stream = int | IO[Any] | None  # subprocess.PIPE, subprocess.DEVNULL, a file, or None: inherit


# --- the test's side -----------------------------------------------------------------------


class ForkedProcess:
    """A command forked by the fork server: ``Popen``'s pid, pipes, poll, wait and signals."""

    def __init__(self, args: list[str], status: socket.socket, pid: int,
                 pipes: tuple[IO[bytes] | None, IO[bytes] | None, IO[bytes] | None]) -> None:
        self.args = args
        self.pid = pid
        self.stdin, self.stdout, self.stderr = pipes
        self.returncode: int | None = None
        self._status = status
        self._received = b""

    def poll(self) -> int | None:
        if self.returncode is None:
            self._receive(blocking=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None and timeout <= 0 and self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)  # settimeout(0) would not block at all
        if self.returncode is None:
            self._status.settimeout(timeout)
            try:
                self._receive(blocking=True)
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited; its status is on its way
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Write ``input``, read both pipes to their end, wait: ``Popen.communicate``."""
        results: dict[str, bytes] = {}

        def drain(name: str, pipe: IO[bytes] | None) -> None:
            if pipe is not None:
                results[name] = pipe.read()
                pipe.close()

        readers = [threading.Thread(target=drain, args=(name, pipe), daemon=True)
                   for name, pipe in (("out", self.stdout), ("err", self.stderr))]
        for reader in readers:
            reader.start()
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                if input:
                    self.stdin.write(input)
                self.stdin.close()
        try:
            self.wait(timeout)
        finally:
            for reader in readers:
                reader.join(timeout)
        return results.get("out", b""), results.get("err", b"")

    def close(self) -> None:
        self._status.close()

    def _receive(self, *, blocking: bool) -> None:
        if not blocking:
            self._status.setblocking(False)
        try:
            while len(self._received) < STATUS.size:
                chunk = self._status.recv(STATUS.size - len(self._received))
                if not chunk:
                    raise RuntimeError(f"the fork server went away before pid {self.pid} ended")
                self._received += chunk
        except BlockingIOError:
            return
        finally:
            if not blocking:
                self._status.setblocking(True)
        (self.returncode,) = STATUS.unpack(self._received)
        self._status.close()


class ForkServer:
    """One per test worker, started on first use, ended with the worker."""

    _running: ForkServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="cidadao-fork-")
        self.path = str(Path(self._directory.name) / "socket")
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        self._process = subprocess.Popen(
            # -P: not tests/ first on sys.path (tests/operator.py would shadow the stdlib's)
            [sys.executable, "-P", __file__, self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self._process.stdout is not None
        ready = self._process.stdout.readline()
        if ready != READY:
            raise RuntimeError(f"the fork server did not start: {ready!r}")

    @classmethod
    def running(cls) -> ForkServer:
        with cls._lock:
            if cls._running is None or cls._running._process.poll() is not None:  # none yet, or it died
                cls._running = ForkServer()
                atexit.register(cls._running.stop)
            return cls._running

    def stop(self) -> None:
        """Closing its stdin ends it; it kills what it forked that still runs."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait()
        self._directory.cleanup()

    def fork(self, args: list[str], env: dict[str, str], cwd: str, fds: list[int]) -> tuple[socket.socket, int]:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.path)
        request = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
        socket.send_fds(connection, [STATUS.pack(len(request)) + request], fds)
        pid = _receive_exactly(connection, STATUS.size)
        return connection, STATUS.unpack(pid)[0]


Process = ForkedProcess | subprocess.Popen[bytes]


def spawn(args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
          stdin: Stream = None, stdout: Stream = None, stderr: Stream = None) -> Process:
    """``python -m cidadao_trio ARGS``, forked (or fresh, if the environment asks)."""
    environ = dict(os.environ if env is None else env)
    if os.environ.get("CIDADAO_TEST_FRESH_INTERPRETER") == "1":
        return subprocess.Popen([sys.executable, "-m", "cidadao_trio", *args], env=environ, cwd=cwd,
                                stdin=stdin, stdout=stdout, stderr=stderr)
    ours: list[int] = []  # descriptors to close once the fork server has its copies
    theirs: list[int] = []
    pipes: list[IO[bytes] | None] = []
    for number, stream in enumerate((stdin, stdout, stderr)):
        mine, child = _descriptor(number, stream)
        theirs.append(child)
        if mine is not None:
            ours.append(child)
            pipes.append(open(mine, "wb" if number == 0 else "rb"))  # noqa: SIM115 (the caller closes it)
        else:
            pipes.append(None)
            if stream == subprocess.DEVNULL:
                ours.append(child)
    try:
        status, pid = ForkServer.running().fork(list(args), environ, str(cwd or os.getcwd()), theirs)
    finally:
        for fd in ours:
            os.close(fd)
    return ForkedProcess(["cidadao-trio", *args], status, pid, (pipes[0], pipes[1], pipes[2]))


def run(args: list[str], *, input: str = "", env: dict[str, str] | None = None, cwd: str | Path | None = None,
        timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(..., input=, capture_output=True, text=True, encoding="utf-8")``."""
    process = spawn(args, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(input.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(process.args, process.wait(), out.decode(), err.decode())


def _descriptor(number: int, stream: Stream) -> tuple[int | None, int]:
    """(our end of a new pipe or None, the descriptor the child gets as ``number``)."""
    if stream == subprocess.PIPE:
        read, write = os.pipe()
        return (write, read) if number == 0 else (read, write)
    if stream == subprocess.DEVNULL:
        return None, os.open(os.devnull, os.O_RDWR)
    if stream is None:
        return None, number
    if isinstance(stream, int):
        return None, stream
    return None, stream.fileno()


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise RuntimeError("the fork server closed the connection")
        data += chunk
    return data


# --- the fork server's side ----------------------------------------------------------------


def serve_forks(path: str) -> None:
    """Accept requests until stdin ends; report each child's exit status as it is reaped."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    selector.register(0, selectors.EVENT_READ)
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                connection, _ = listener.accept()
                inherited = [listener, selector, wake_read, wake_write, *children.values()]
                try:
                    pid = _fork_child(connection, closing=inherited)
                except Exception as failed:  # a test gone mid-request, fork refused: that request only
                    print(f"fork server: request refused: {failed!r}", file=sys.stderr)
                    connection.close()
                    continue
                if pid is not None:
                    children[pid] = connection
            elif key.fileobj == wake_read:
                os.read(wake_read, 4096)
            elif not os.read(0, 4096):  # the test worker is gone
                for pid in children:
                    _kill_quietly(pid)
                return
        _reap(children)


def _fork_child(connection: socket.socket, closing: list[Any]) -> int | None:
    length_and_request, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    (length,) = STATUS.unpack(length_and_request[: STATUS.size])
    request = length_and_request[STATUS.size :]
    while len(request) < length:
        request += _receive_exactly(connection, length - len(request))
    job = json.loads(request)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            for thing in closing:
                if isinstance(thing, int):
                    os.close(thing)
                else:
                    thing.close()
            connection.close()
            _run_child(job, fds)  # never returns
        finally:
            os._exit(1)  # a child must never go back to the fork server's loop
    for fd in fds:
        os.close(fd)
    connection.sendall(STATUS.pack(pid))
    return pid


def _run_child(job: dict[str, Any], fds: list[int]) -> None:
    import logging
    import runpy
    import traceback

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target)
        for fd in set(fds) - {0, 1, 2}:
            os.close(fd)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        sys.argv = ["cidadao_trio", *job["args"]]
        runpy.run_module("cidadao_trio", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exited:
        if exited.code is None or isinstance(exited.code, int):
            code = exited.code or 0
        else:
            print(exited.code, file=sys.stderr)
    except KeyboardInterrupt:  # as Python does: the traceback, then die of SIGINT
        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        _flush()
        os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):  # the test no longer listens
                connection.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
            connection.close()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    serve_forks(sys.argv[1])
