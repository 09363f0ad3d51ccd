"""The citizen-facing commands: ``investigate`` (no server), ``watch`` and ``chat`` (a real one).

Each command that talks to a server or investigates runs as ``python -m cidadao_trio`` in a
subprocess, as a person would run it; help texts and usage errors, which end before the
command does anything, run the same ``cli.main`` in process (``in_process``).
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cidadao_trio import cli, terminal
from cidadao_trio.client import RealtimeClient

from .forkserver import Process, spawn
from .operator import InProcess, OutputReader, closed_port, environment, run
from .process import ServerProcess, serve

SAFETY = 30.0  # seconds; a safety net for a command that hangs, never a measured delay


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # Slow enough that a watcher usually joins mid-way, fast enough for a quick test. An
    # anonymous watcher of an investigation it may not see waits auth_timeout for an auth
    # message before NOT_FOUND (§6): half a second, not the default ten.
    with serve(investigation_step_delay=0.05, auth_timeout=0.5) as running:
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


def test_investigate_refuses_a_missing_dataset(tmp_path: Path, in_process: InProcess) -> None:
    done = in_process.run("investigate", "Ministério da Saúde", "--dataset", "nada.csv", cwd=tmp_path)
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


def test_a_second_chat_in_the_same_session_is_answered(
    server: ServerProcess, in_process: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Message ids are the session's idempotency keys (§2): each run of the CLI must use new
    ones, or the server takes its first message for a resend of the last run's."""
    for _ in range(2):
        monkeypatch.setattr(sys, "stdin", io.StringIO("Olá\n/sair\n"))
        done = in_process.run("chat", "cli-chat-again", "--url", base_url(server))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Carlos Drummond de Andrade: Olá! Eu sou o Drummond" in done.stdout
        assert "Erro" not in done.stdout


def test_chat_shows_an_investigation_it_starts(server: ServerProcess) -> None:
    done = run("chat", "cli-chat-2", "--url", base_url(server), stdin="Investigar contratos do MEC\n")
    assert done.returncode == 0, done.stdout + done.stderr  # EOF ends the chat
    assert "Zumbi dos Palmares: Abri a investigação INV-" in done.stdout
    assert "iniciada; o progresso aparece aqui." in done.stdout


# --- issue 11 item 17: the first minute of a citizen at the terminal ------------------------


def _citizen(*args: str, **settings: str) -> tuple[Process, OutputReader]:
    """A suite started in the background (``make test &``) runs with SIGINT ignored; the fork
    server gives each child Ctrl-C as a terminal does."""
    process = spawn(list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=environment(**settings))
    return process, OutputReader(process.stdout)


@pytest.mark.parametrize("command", [("chat", "cli-down"), ("watch", "INV-2026-001")])
def test_a_server_that_is_down_is_named_at_once_and_retried(command: tuple[str, ...]) -> None:
    port = closed_port()
    process, stdout = _citizen(*command, url=f"http://127.0.0.1:{port}")
    try:
        kind = "chat/cli-down" if command[0] == "chat" else "investigations/INV-2026-001"
        out = stdout.wait_for("tentando de novo")
        first, second = out.splitlines()[:2]
        assert first == f"Conectando a ws://127.0.0.1:{port}/api/v1/ws/{kind}…"
        assert second.startswith(f"O servidor em http://127.0.0.1:{port} não respondeu; tentando de novo")
        process.send_signal(signal.SIGINT)  # Ctrl-C while it retries
        assert process.wait(timeout=SAFETY) == 130
        assert process.stderr is not None and b"Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


def test_ctrl_c_in_a_connected_chat_ends_it_quietly(server: ServerProcess) -> None:
    process, stdout = _citizen("chat", "cli-ctrl-c", url=base_url(server))
    try:
        stdout.wait_for("Conectado ao Cidadão.AI")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=SAFETY) == 130
        assert stdout.finish().rstrip().endswith("Até mais!")
        assert process.stderr is not None and process.stderr.read() == b""
    finally:
        process.kill()
        process.wait()


def test_the_url_defaults_from_cidadao_url(server: ServerProcess) -> None:
    done = run("watch", "INV-1999-999", url=base_url(server))
    assert done.returncode == 1 and "Investigação não encontrada" in done.stdout
    assert done.stdout.startswith(f"Conectando a ws://127.0.0.1:{server.port}/api/v1/ws/investigations/INV-1999-999")


def test_the_url_defaults_to_localhost_on_cidadao_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIDADAO_URL", raising=False)
    monkeypatch.setenv("CIDADAO_PORT", "9123")
    assert cli.build_parser().parse_args(["chat", "s"]).url == "http://localhost:9123"
    monkeypatch.setenv("CIDADAO_URL", "https://cidadao.example")
    assert cli.build_parser().parse_args(["watch", "INV-2026-001"]).url == "https://cidadao.example"


def test_version(in_process: InProcess) -> None:
    from cidadao_trio import __version__

    done = in_process.run("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"cidadao-trio {__version__}")


ENGLISH = ("usage:", "options:", "show this help")
PORTUGUESE = ("uso:", "opções:", "mostra esta ajuda")


@pytest.mark.parametrize(
    ("command", "language"),
    [((), ENGLISH), (("serve",), ENGLISH), (("token",), ENGLISH), (("chat",), PORTUGUESE),
     (("watch",), PORTUGUESE), (("investigate",), PORTUGUESE)],
)
def test_help_is_plain_text_in_one_language_with_values_as_metavars(
    in_process: InProcess, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...], language: tuple[str, ...]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # wrapped as in a subprocess with no terminal
    done = in_process.run(*command, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    for word in language:
        assert word in text, (word, text)
    other = PORTUGUESE if language is ENGLISH else ENGLISH
    if command:  # the top level lists both audiences' commands, each in its own language
        assert not any(word in text for word in other), text
    # A metavar names a value (PORT, URL, FILE), never the variable that also sets it.
    assert not re.search(r"--[a-z-]+ CIDADAO_", text), text
    if command == ("serve",):
        assert "--port PORT" in text and "--redis-url URL" in text and "--dataset FILE" in text
