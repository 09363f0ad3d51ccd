"""The citizen-facing commands: ``investigate`` (no server), ``watch`` and ``chat`` (a real one).

Each command runs as ``python -m cidadao_trio`` in a subprocess, as a person would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cidadao_trio import cli, terminal
from cidadao_trio.client import RealtimeClient

from .process import ServerProcess, serve

SAFETY = 30.0  # seconds; a safety net for a command that hangs, never a measured delay


def run(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDADAO_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "cidadao_trio", *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=SAFETY,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # Slow enough that a watcher usually joins mid-way, fast enough for a quick test.
    with serve(investigation_step_delay=0.05) as running:
        yield running


def base_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


def start_investigation(server: ServerProcess, session: str, *, wait: bool = False) -> str:
    """Ask for an investigation through a chat; optionally wait for its report."""

    async def scenario() -> str:
        async with RealtimeClient(server.ws_url(f"/api/v1/ws/chat/{session}")) as client:
            turn = [m async for m in client.chat("Investigar contratos do Ministério da Saúde")]
            investigation_id = str(turn[-2]["data"]["investigation_id"])
            if wait:
                with trio.fail_after(SAFETY):
                    async for message in client.messages():
                        if message["type"] == "report_ready":
                            break
            return investigation_id

    return trio.run(scenario)


def test_progress_bar() -> None:
    assert terminal.progress_bar(45, "anomaly_detection") == "[#########-----------] 45% anomaly_detection"
    assert terminal.progress_bar(100, "completed") == "[####################] 100% completed"
    assert terminal.progress_bar(0, "initializing", width=4) == "[----] 0% initializing"


def test_parser_keeps_serve_and_token_and_adds_client_commands() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["serve", "--port", "9001"]).port == 9001
    assert parser.parse_args(["token", "--sub", "alice"]).sub == "alice"
    chat = parser.parse_args(["chat", "s1", "--url", "http://h:1", "--token", "T"])
    assert (chat.session, chat.url, chat.token) == ("s1", "http://h:1", "T")
    watch = parser.parse_args(["watch", "INV-2026-001"])
    assert (watch.investigation_id, watch.url) == ("INV-2026-001", "http://localhost:8000")
    investigate = parser.parse_args(["investigate", "Ministério da Saúde", "--output", "r.md"])
    assert (investigate.query, investigate.dataset, investigate.output) == ("Ministério da Saúde", "", "r.md")


def test_investigate_writes_the_report_without_a_server(tmp_path: Path) -> None:
    done = run("investigate", "Ministério da Saúde", "--output", "tmp/x.md", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "tmp" / "x.md").read_text(encoding="utf-8")
    assert "## Resumo Executivo" in report and "Ministério da Saúde" in report
    assert "[####################] 100% completed" in done.stdout
    assert "Anomalia" in done.stdout
    assert "Relatório salvo em tmp/x.md" in done.stdout


def test_investigate_refuses_a_missing_dataset(tmp_path: Path) -> None:
    done = run("investigate", "Ministério da Saúde", "--dataset", "nada.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert "nada.csv" in done.stdout and not list(tmp_path.iterdir())


def test_watch_follows_an_investigation_to_its_report(server: ServerProcess) -> None:
    investigation_id = start_investigation(server, "cli-watch-1")
    done = run("watch", investigation_id, "--url", base_url(server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[####################] 100% completed" in done.stdout
    url = f"{base_url(server)}/api/v1/investigations/{investigation_id}/report?format=markdown"
    assert url in done.stdout


def test_watch_a_finished_investigation_shows_its_final_state(server: ServerProcess) -> None:
    investigation_id = start_investigation(server, "cli-watch-2", wait=True)
    done = run("watch", investigation_id, "--url", base_url(server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% completed" in done.stdout and "anomalias detectadas" in done.stdout
    assert f"/api/v1/investigations/{investigation_id}/report" in done.stdout


def test_watch_an_unknown_investigation_fails(server: ServerProcess) -> None:
    done = run("watch", "INV-1999-999", "--url", base_url(server))
    assert done.returncode == 1
    assert "Investigação não encontrada" in done.stdout


def test_chat_prints_drummonds_reply_and_exits_on_sair(server: ServerProcess) -> None:
    done = run("chat", "cli-chat-1", "--url", base_url(server), stdin="Olá\n/sair\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Carlos Drummond de Andrade: Olá! Eu sou o Drummond" in done.stdout
    assert "digitando…" in done.stdout
    assert done.stdout.rstrip().endswith("Até mais!")


def test_chat_shows_an_investigation_it_starts(server: ServerProcess) -> None:
    done = run("chat", "cli-chat-2", "--url", base_url(server), stdin="Investigar contratos do MEC\n")
    assert done.returncode == 0, done.stdout + done.stderr  # EOF ends the chat
    assert "Zumbi dos Palmares: Abri a investigação INV-" in done.stdout
    assert "iniciada; o progresso aparece aqui." in done.stdout
