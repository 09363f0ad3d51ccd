"""Processes of a benchmark run: the server under test, the Node load generator, CPU meters.

The server is pinned to one core and the load generator to the other with ``taskset``
when the machine has two or more cores, so neither steals the other's CPU. Every child
gets RLIMIT_NOFILE raised to its hard limit before it starts. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .events import INVESTIGATION_ID
from .limits import raise_nofile

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOGS = BENCH / "results" / "logs"
LOADGEN = BENCH / "loadgen" / "loadgen.mjs"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KINDS = ("ours", "reference", "floor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cores() -> tuple[str | None, str | None]:
    """(server core, load generator core) for taskset, or (None, None)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return str(cpus[0]), str(cpus[1])


SERVER_CORE, LOADGEN_CORE = _cores()


def _pinned(core: str | None, cmd: Sequence[str]) -> list[str]:
    return (["taskset", "-c", core] if core is not None else []) + list(cmd)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (children not included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class CpuMeter:
    """CPU use of some processes over an interval, in % of one core.

    ``other_cpu_pct`` is everything else the machine ran meanwhile (other sessions' work on
    a shared machine shows up there): a large value means the figures are noisy.
    """

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.start = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.busy = busy_seconds()

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        result = {f"{name}_cpu_pct": round(100.0 * u / elapsed, 1) for name, u in used.items()}
        other = busy_seconds() - self.busy - sum(used.values())
        result["other_cpu_pct"] = round(max(0.0, 100.0 * other / elapsed), 1)
        return result


def wait_quiet(pid: int, *, threshold_pct: float = 5.0, window: float = 0.5, timeout: float = 10.0) -> None:
    """Wait until a process uses less than ``threshold_pct`` of a core over ``window`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        if 100.0 * (cpu_seconds(pid) - before) / window < threshold_pct:
            return


def wait_machine_quiet(*pids: int, max_other_pct: float = 25.0, window: float = 0.5, timeout: float = 2.5) -> float:
    """Wait (bounded) until the rest of the machine uses < ``max_other_pct`` of a core.

    The machine may be shared with other work; starting a measurement in a quiet moment
    makes runs comparable. Returns the last "other" CPU % seen (reported, never hidden).
    """
    deadline = time.monotonic() + timeout
    other = 0.0
    while True:
        meter = CpuMeter(**{str(pid): pid for pid in pids})
        time.sleep(window)
        other = meter.read()["other_cpu_pct"]
        if other < max_other_pct or time.monotonic() >= deadline:
            return other


_SNAPSHOT: dict[str, Any] | None = None


def source_snapshot() -> dict[str, Any]:
    """A private copy of ``src/cidadao_trio``, taken once per benchmark run.

    Our server processes import the package from it (``PYTHONPATH``), so every server of
    one run runs the same code even if the working tree changes meanwhile; the commit
    and whether ``src/`` had uncommitted changes are recorded with the results.
    """
    global _SNAPSHOT
    if _SNAPSHOT is None:
        target = Path(tempfile.mkdtemp(prefix="cidadao-bench-src-"))
        shutil.copytree(ROOT / "src" / "cidadao_trio", target / "cidadao_trio",
                        ignore=shutil.ignore_patterns("__pycache__"))
        atexit.register(shutil.rmtree, target, True)

        def git(*args: str) -> str:
            try:
                return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                      timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                return ""

        _SNAPSHOT = {"path": str(target), "commit": git("rev-parse", "--short", "HEAD") or "unknown",
                     "src_dirty": bool(git("status", "--porcelain", "--", "src"))}
    return _SNAPSHOT


def source_label() -> str:
    snap = source_snapshot()
    return snap["commit"] + ("+uncommitted src changes" if snap["src_dirty"] else "")


class ServerProcess:
    """One server under test: ``ours`` (harness_server), ``reference`` or ``floor``."""

    def __init__(
        self,
        kind: str,
        *,
        heartbeat: float | None = None,
        flags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        label: str = "",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown server {kind!r}")
        self.kind = kind
        self.port = free_port()
        self.control_port = self.port if kind == "reference" else free_port()
        python = sys.executable
        if kind == "ours":
            cmd = [python, "-m", "benchmarks.harness_server", "--port", str(self.port),
                   "--control-port", str(self.control_port), "--store", "memory",
                   "--max-connections", "20000", "--max-connections-per-principal", "20000",
                   "--idle-timeout", "3600", "--log-level", "warning"]
            if heartbeat is not None:
                cmd += ["--heartbeat-interval", str(heartbeat)]
        elif kind == "reference":
            cmd = [python, "-m", "benchmarks.reference.app", "--port", str(self.port)]
            if heartbeat is not None:
                cmd += ["--ws-ping-interval", str(heartbeat)]
        else:
            cmd = [python, "-m", "benchmarks.floor", "--port", str(self.port),
                   "--control-port", str(self.control_port)]
        self.cmd = _pinned(SERVER_CORE, [*cmd, *flags])
        self.env = {**os.environ, **(env or {})}
        if kind == "ours":  # the run's snapshot of src/, not whatever the tree holds right now
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (source_snapshot()["path"], str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.label = label or kind
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{self.label}.log", "ab")  # noqa: SIM115 (closed once the child holds it)
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=raise_nofile)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {LOGS}/{self.label}.log")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start within {timeout}s")

    def _call(self, method: str, path: str, timeout: float) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}", method=method,
                                         data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/bench/stats", 5.0)

    def register(self, investigation: str) -> dict[str, Any]:
        return self._call("POST", f"/bench/investigation?investigation={investigation}", 10.0)

    def publish(self, count: int, rate: float, start: int, pad: int = 0, timeout: float = 300.0,
                investigation: str = INVESTIGATION_ID, publishers: int = 1) -> dict[str, Any]:
        query = (f"count={count}&rate={rate}&start={start}&pad={pad}&investigation={investigation}"
                 f"&publishers={publishers}")
        return self._call("POST", f"/bench/publish?{query}", timeout)

    def profile(self, seconds: float, top: int = 40) -> dict[str, Any]:
        return self._call("POST", f"/bench/profile?seconds={seconds}&top={top}", seconds + 60)

    def memory(self, action: str, top: int = 25) -> dict[str, Any]:
        return self._call("POST", f"/bench/memory?action={action}&top={top}", 120.0)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoadGen:
    """The Node.js load generator, one JSON command and one JSON answer per line."""

    def __init__(self, label: str = "loadgen") -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed")
        if not (BENCH / "loadgen" / "node_modules" / "ws").is_dir():
            raise RuntimeError("run `npm install --prefix benchmarks/loadgen` (or `make bench`) first")
        LOGS.mkdir(parents=True, exist_ok=True)
        err = open(LOGS / f"{label}.log", "ab")  # noqa: SIM115 (the load generator's stderr, for its life)
        self.proc = subprocess.Popen(
            _pinned(LOADGEN_CORE, [node, "--max-old-space-size=4096", str(LOADGEN)]),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, preexec_fn=raise_nofile,
        )
        err.close()
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        hello = self._next(30.0)
        if not hello.get("ready"):
            raise RuntimeError(f"load generator did not start: {hello}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"load generator silent for {timeout}s") from None
        if not line:
            raise RuntimeError("load generator exited")
        return json.loads(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cmd(self, command: str, **args: Any) -> dict[str, Any]:
        """Send one command; its own ``timeout``/``seconds`` bound how long the answer may take."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": command, **args}) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._next(60.0 + float(args.get("timeout", 60)) + float(args.get("seconds", 0)))
        if not answer.get("ok"):
            raise RuntimeError(f"load generator: {answer.get('error')}")
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                self.cmd("exit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> LoadGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
