"""Issue 11 items 15 and 16: an operator's mistake is one clear line and an exit code.

Usage errors (settings that cannot work) exit 2 before anything starts; runtime errors (a
port in use, a damaged database) exit 1. Never a traceback, never "listening" first.

Runtime errors and one usage error run ``python -m cidadao_trio`` as an operator would; the
other usage errors run the same ``cli.main`` in process (``in_process``), since they end
before the command starts anything.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..operator import InProcess, run

SECRET = "a-shared-secret-that-has-32-bytes-or-more"


LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) ")


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single line the command printed on stderr besides ordinary start-up log records
    (and no "listening" on stdout)."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "listening" not in done.stdout, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_in_use(tmp_path: Path, busy_port: int) -> None:
    line = one_line(run("serve", "--host", "127.0.0.1", "--port", str(busy_port), cwd=tmp_path, store="memory"), 1)
    assert line == (
        f"cidadao-trio serve: cannot listen on 127.0.0.1:{busy_port}: address already in use "
        "(another server is running there? choose another --port)"
    )


def test_a_missing_dataset_fails_before_listening(tmp_path: Path, in_process: InProcess) -> None:
    done = in_process.run("serve", "--port", "0", "--dataset", "/nonexistent.csv", cwd=tmp_path, store="memory")
    line = one_line(done, 2)
    assert line == "cidadao-trio serve: --dataset /nonexistent.csv: no such file"


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("token", "--sub", "alice")])
def test_a_short_jwt_secret(tmp_path: Path, in_process: InProcess, command: tuple[str, ...]) -> None:
    line = one_line(in_process.run(*command, "--jwt-secret", "short", cwd=tmp_path, store="memory"), 2)
    assert line == f"cidadao-trio {command[0]}: JWT secret must have at least 32 bytes"


def test_a_short_jwt_secret_from_the_environment(tmp_path: Path) -> None:
    """The one usage error run as a real process: exit 2, one line, through ``__main__``."""
    line = one_line(run("serve", "--port", "0", cwd=tmp_path, store="memory", jwt_secret="short"), 2)
    assert line.endswith("JWT secret must have at least 32 bytes")


def test_an_unknown_auth_mode(tmp_path: Path, in_process: InProcess) -> None:
    line = one_line(in_process.run("serve", "--auth", "maybe", cwd=tmp_path), 2)
    assert line.startswith("cidadao-trio serve: error: argument --auth: invalid choice: 'maybe'")


def test_an_unknown_auth_mode_from_the_environment(tmp_path: Path, in_process: InProcess) -> None:
    line = one_line(in_process.run("serve", cwd=tmp_path, auth="maybe"), 2)
    assert line == "cidadao-trio serve: --auth must be optional or required, not 'maybe'"


@pytest.mark.parametrize(("flag", "value"), [("--port", "abc"), ("--idle-timeout", "soon")])
def test_a_malformed_number(tmp_path: Path, in_process: InProcess, flag: str, value: str) -> None:
    line = one_line(in_process.run("serve", flag, value, cwd=tmp_path), 2)
    assert "<lambda>" not in line
    assert line.startswith(f"cidadao-trio serve: error: argument {flag}: expected ")
    assert f"got {value!r}" in line


def test_a_malformed_number_from_the_environment(tmp_path: Path, in_process: InProcess) -> None:
    line = one_line(in_process.run("serve", cwd=tmp_path, port="abc"), 2)
    assert line == "cidadao-trio serve: CIDADAO_PORT='abc': expected an integer"


def test_a_corrupted_sqlite_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cidadao.sqlite3").write_bytes(b"this is no database, just forty-odd bytes of text" * 4)
    line = one_line(run("serve", "--port", "0", cwd=tmp_path, store="sqlite"), 1)
    assert line.startswith(
        "cidadao-trio serve: data/cidadao.sqlite3 is not a usable SQLite database (file is not a database)"
    )
    assert "move it aside" in line and "backup" in line


def test_an_unreadable_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "data" / "cidadao.sqlite3").mkdir(parents=True)  # unreadable as a file, even for root
    line = one_line(run("serve", "--port", "0", cwd=tmp_path, store="sqlite"), 1)
    assert line.startswith("cidadao-trio serve: data/cidadao.sqlite3 is not a usable SQLite database (unable to open")


# --- item 16 -----------------------------------------------------------------------------


def test_required_auth_without_any_key_refuses_to_start(tmp_path: Path, in_process: InProcess) -> None:
    line = one_line(in_process.run("serve", "--port", "0", "--auth", "required", cwd=tmp_path, store="memory"), 2)
    assert line == (
        "cidadao-trio serve: --auth required needs a key to check tokens: set CIDADAO_JWT_SECRET "
        "(or --jwt-secret), --jwt-public-key or --jwt-jwks"
    )


def test_required_auth_with_a_secret_passes_the_checks() -> None:
    from cidadao_trio import preflight
    from cidadao_trio.config import Settings

    assert preflight.usage_problem(Settings(auth="required", jwt_secret=SECRET)) is None
    assert preflight.usage_problem(Settings(auth="required")) is not None
