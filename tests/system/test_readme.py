"""The README says what the code does: its tables are the code's, its examples run.

Blocks preceded by ``<!-- readme-test: runs offline ... -->`` are run as written, with two
substitutions a test must make: the port (``localhost:8000`` becomes the test's free port,
and ``CIDADAO_PORT`` is set, which ``serve``, ``chat`` and ``watch`` read) and the year in
investigation ids (``INV-2026-`` becomes the current year's, as the server numbers them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from benchmarks import readme_figures
from cidadao_trio import config
from cidadao_trio.config import Settings

from ..operator import SAFETY, closed_port, environment
from ..process import serve

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARKER = re.compile(
    r"<!-- readme-test: runs offline(?P<server>, against a server the test starts)? -->\n"
    r"```(?P<lang>\w+)\n(?P<code>.*?)\n```",
    re.S,
)


def shown(value: object) -> str:
    return '""' if value == "" else str(value)


def test_the_configuration_table_is_config_py() -> None:
    """Every setting has one row whose flag, variable, default and meaning are config.py's."""
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(CIDADAO_[A-Z_]+)` \| `([^`]*)` \| (.*) \|$", README, re.M)
    by_flag = {flag: (env, default, meaning) for flag, env, default, meaning in rows}
    assert len(by_flag) == len(rows), "a flag appears twice"
    defaults = Settings()
    expected = {
        "--" + f.name.replace("_", "-"): (config.env_name(f.name), shown(getattr(defaults, f.name)), f.metadata["help"])
        for f in config.fields()
    }
    assert by_flag == expected


def test_the_performance_figures_are_the_benchmark_results() -> None:
    assert readme_figures.table() in README  # python -m benchmarks.readme_figures prints it
    rate = readme_figures.store_rate()
    assert README.count(f"~{rate} durable messages/s") == 2
    assert f"Memory is {readme_figures.memory_against_reference()} the reference" in README


def examples() -> list[tuple[str, str, bool]]:
    found = [(m["lang"], m["code"], bool(m["server"])) for m in MARKER.finditer(README)]
    assert len(found) >= 3, "the README lost its tested examples"
    return found


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory where ``.venv/bin/...`` resolves, as in a checkout after ``make install``."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def _run_block(lang: str, code: str, cwd: Path, port: int) -> subprocess.CompletedProcess[str]:
    code = code.replace("localhost:8000", f"localhost:{port}").replace("INV-2026-", f"INV-{dt.date.today().year}-")
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "sh" else [".venv/bin/python", "-c", code]
    env = environment(port=port, host="127.0.0.1", reply_chunk_delay=0, investigation_step_delay=0)
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=SAFETY * 4)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # a server the block left behind
        process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.parametrize(("lang", "code", "needs_server"), examples(), ids=lambda v: str(v)[:30])
def test_the_example_runs_as_written(workdir: Path, lang: str, code: str, needs_server: bool) -> None:
    if needs_server:
        # A fresh server: an example may name the first investigation (INV-2026-001); no
        # delay between investigation events, so `watch` sees its report at once.
        with serve(investigation_step_delay=0) as server:
            done = _run_block(lang, code, workdir, server.port)
    else:
        done = _run_block(lang, code, workdir, closed_port())  # the block starts its own server
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert "Conectado ao Cidadão.AI" in done.stdout, done.stdout


def test_the_examples_cover_authentication_and_the_terminal() -> None:
    codes = "\n".join(code for _, code, _ in examples())
    for needed in ("--auth required", "cidadao-trio token", "cidadao-trio chat", "cidadao-trio watch", "investigate"):
        assert needed in codes, needed


def test_no_example_relies_on_the_system_python() -> None:
    """System python3 has none of the project's packages: every example uses .venv/bin."""
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert not [b for b in blocks if re.search(r"(^|\s)python3? ", b)], "use .venv/bin/python"




def test_the_contract_is_in_the_repository() -> None:
    """docs/protocol.md carries the contract itself and names no file outside the repository."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    for number in range(1, 12):
        assert re.search(rf"^## {number}\. ", doc, re.M), f"contract §{number} missing"
    assert "PROTOCOL.md" not in doc and "seed/" not in doc
    for pinned in ("max_pending_auth_per_address", "`UNAVAILABLE` (the store cannot accept writes", "session_claimed"):
        assert pinned in doc, pinned
    assert "docs/protocol.md" in README
