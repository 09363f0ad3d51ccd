"""Issue 11 item 14: ``serve --store redis`` with Redis down listens anyway, says so once,
answers /healthz 200 and /readyz 503, and stops on SIGTERM or SIGINT in every state."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ..operator import closed_port, http_status, launched

UNREACHABLE = r"WARNING cidadao_trio\.broker\.redis: redis unreachable \([^)]*127\.0\.0\.1:\d+[^)]*\): retrying"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_listens_without_redis_then_stops_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with launched(tmp_path, store="redis", redis_url=url, drain_timeout=2) as server:
        port = server.wait_listening()
        assert http_status(port, "/healthz") == 200
        assert http_status(port, "/readyz") == 503
        server.stderr.wait_for(UNREACHABLE)
        assert server.stop(signum) == 0
        log = server.stderr.finish()
    assert "Traceback" not in log
    # One line for the outage, however many tasks retried meanwhile (no flood).
    assert len([line for line in log.splitlines() if "redis" in line]) == 1, log
    assert "stopped" in log.splitlines()[-1]


def test_a_signal_during_start_up_stops_it(tmp_path: Path) -> None:
    """SIGTERM as soon as the process reports the outage, before it has said "listening"."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with launched(tmp_path, store="redis", redis_url=url, drain_timeout=2) as server:
        server.stderr.wait_for(UNREACHABLE)
        assert server.stop(signal.SIGTERM) == 0
        assert "Traceback" not in server.stderr.finish()
