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


# The slowest modules (seconds of wall time each, `make test`, December 2026), run first: with
# `--dist loadfile --no-loadscope-reorder` workers draw modules in collection order, so a slow
# one drawn last no longer runs alone at the end while the others idle. Others keep their
# order; a module missing from this list only loses its place.
SLOWEST_FIRST = (
    "system/test_console.py",  # 12.6
    "test_cli_client.py",  # 7.4
    "system/test_readme.py",  # 6.7
    "multinode/test_adoption.py",  # 6.4
    "investigations/test_data.py",  # 5.5
    "system/test_sse_browser.py",  # 3.7
    "multinode/test_rolling_restart.py",  # 3.3
    "broker/test_local_broker.py",  # 2.7
    "multinode/test_seam.py",  # 2.6
    "test_client.py",  # 2.6
    "system/test_redis_unreachable.py",  # 2.6
    "protocol/test_envelope.py",  # 2.4
    "protocol/test_inbound.py",  # 2.3
    "investigations/test_portal_source.py",  # 2.2
    "server/test_drain.py",  # 2.2
    "server/test_sse.py",  # 2.2
    "agents/test_llm.py",  # 2.1
    "security/test_access.py",  # 1.9
    "multinode/test_adoption_turns.py",  # 1.9
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {(ROOT / "tests" / name).resolve(): n for n, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.resolve(), len(rank)))  # stable: a module stays whole


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
