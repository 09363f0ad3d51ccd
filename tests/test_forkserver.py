"""The fork server the process tests start ``cidadao-trio`` from (tests/forkserver.py): what a
child gets must be what a fresh ``python -m cidadao_trio`` would get, or those tests lie."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from cidadao_trio import __version__

from . import forkserver
from .operator import SAFETY, environment
from .process import LISTENING


def test_a_forked_command_prints_and_exits_as_a_fresh_one() -> None:
    done = forkserver.run(["--version"], env=environment(), timeout=SAFETY)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"cidadao-trio {__version__}\n", "")
    usage = forkserver.run(["no-such-command"], env=environment(), timeout=SAFETY)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr and usage.stdout == ""


def test_the_child_has_the_environment_and_directory_it_was_given(tmp_path: Path) -> None:
    short = forkserver.run(["token", "--sub", "ana"], env=environment(jwt_secret="curto"), timeout=SAFETY)
    assert short.returncode == 2 and "32" in short.stdout + short.stderr  # the secret came from env
    (tmp_path / "aqui.csv").write_text("nada de contratos\n", encoding="utf-8")
    here = forkserver.run(["investigate", "x", "--dataset", "aqui.csv"], env=environment(), cwd=tmp_path,
                          timeout=SAFETY)
    assert here.returncode == 0, here.stdout + here.stderr  # found the file (no contracts in it)
    assert (tmp_path / "relatorio-INV-2026-001.md").is_file()  # and wrote its report there
    assert Path.cwd() != tmp_path  # the test did not move


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)])
def test_a_forked_server_is_a_process_of_its_own(signum: int, code: int) -> None:
    process = forkserver.spawn(["serve", "--host", "127.0.0.1", "--port", "0"], env=environment(store="memory"),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        assert LISTENING.fullmatch(process.stdout.readline().decode().rstrip("\n"))
        assert process.pid != os.getpid() and process.poll() is None
        os.kill(process.pid, 0)  # alive, and ours to signal
        process.send_signal(signum)
        assert process.wait(timeout=SAFETY) == code == process.returncode == process.poll()
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_wait_times_out_like_popen() -> None:
    process = forkserver.spawn(["serve", "--host", "127.0.0.1", "--port", "0"], env=environment(store="memory"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.01)  # a server runs until told: no sleep, a bound on a wait
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0)  # a deadline already passed: as Popen, not an error of ours
    finally:
        process.kill()
        assert process.wait(timeout=SAFETY) == -signal.SIGKILL


def test_a_fresh_interpreter_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIDADAO_TEST_FRESH_INTERPRETER", "1")
    process = forkserver.spawn(["--version"], env=environment(), stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=SAFETY)
    assert isinstance(process, subprocess.Popen) and process.returncode == 0
    assert out.decode().strip() == f"cidadao-trio {__version__}"
