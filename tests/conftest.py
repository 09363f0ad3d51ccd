"""Before any test runs: the system programs the suite drives are there, and ``src`` is compiled."""

from __future__ import annotations

import compileall
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .operator import InProcess
from .process import ServerProcess, serve
from .tools import advice, missing

ROOT = Path(__file__).resolve().parent.parent
# The demo sample is cached under XDG_CACHE_HOME (a second of CPU for every server a test
# starts otherwise); the tests keep theirs out of the user's home, shared by every worker.
os.environ["XDG_CACHE_HOME"] = str(Path(tempfile.gettempdir()) / "cidadao-trio-tests-cache")


def _targets(config: pytest.Config) -> list[Path]:
    given = [arg.split("::", 1)[0] for arg in config.args] or list(config.getini("testpaths"))
    return [(Path(config.invocation_params.dir) / arg).resolve() for arg in given]


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller has checked
        return
    absent = missing(_targets(session.config))
    if absent:  # stop before the first test, also with CI=true: a missing program is no skip
        pytest.exit(advice(absent), returncode=4)
    # This environment sets PYTHONDONTWRITEBYTECODE: without compiled files every
    # `cidadao-trio` subprocess a test starts would compile the whole package again.
    compileall.compile_dir(ROOT / "src", quiet=1)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[ServerProcess]:
    """One ``cidadao-trio serve`` with the test defaults, started on first use (once per
    xdist worker), for tests that only talk to it, each on session ids of its own: a
    start-up costs about a second of CPU, a dozen of them a tenth of the suite."""
    with serve() as running:
        yield running


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """Run a ``cidadao-trio`` command that ends by itself inside the test's process."""
    return InProcess(monkeypatch, capsys)
