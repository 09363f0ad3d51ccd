"""The citizen-facing terminal commands: ``chat``, ``watch`` and ``investigate``.

Kept apart from ``cli.py`` (argument parsing and dispatch) because this is where the
terminal rendering lives: progress bars, streamed replies, the typing line.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import orjson
import trio

from .preflight import interrupted
from .protocol.events import (
    AgentFinding,
    AgentTyping,
    AnomalyDetected,
    ChatComplete,
    Connected,
    Error,
    InvestigationFailed,
    InvestigationProgress,
    ReplyChunk,
    ReportReady,
    Subscribed,
    Unsubscribed,
)

if TYPE_CHECKING:
    from .client import RealtimeClient

CONNECT_TIMEOUT = 15.0  # seconds to reach the server before giving up
TURN_TIMEOUT = 120.0  # seconds an agent may take to answer one chat message
INVESTIGATION_TIMEOUT = 600.0  # seconds a local investigation may take
EXIT_WORDS = frozenset({"/sair", "/exit", "/quit"})
TYPING = "digitando…"


# --- terminal output ---------------------------------------------------------------------


def progress_bar(progress: int, status: str, width: int = 20) -> str:
    """``[#########-----------] 45% anomaly_detection``."""
    progress = max(0, min(100, int(progress)))
    filled = progress * width // 100
    return f"[{'#' * filled}{'-' * (width - filled)}] {progress}% {status}"


@attrs.define
class Screen:
    """Lines, streamed text and one transient status line (a progress bar, "digitando…").

    On a terminal the status line is redrawn in place; into a pipe or file every distinct
    status is printed once, on its own line, so transcripts stay readable.
    """

    out: TextIO
    tty: bool
    _status: str = ""
    _streaming: bool = False

    @classmethod
    def for_stdout(cls) -> Screen:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal still gets text
        return cls(sys.stdout, sys.stdout.isatty())

    def _erase(self) -> None:
        if self.tty and self._status and not self._streaming:
            self.out.write("\r\x1b[K")

    def _redraw(self) -> None:
        if self.tty and self._status and not self._streaming:
            self.out.write(self._status)

    def status(self, text: str) -> None:
        if text == self._status:
            return
        if not self._streaming:
            self._erase()
            self.out.write(text if self.tty else text + "\n")
            self.out.flush()
        self._status = text

    @property
    def current_status(self) -> str:
        return self._status

    def clear_status(self) -> None:
        self._erase()
        self._status = ""
        self.out.flush()

    def keep_status(self) -> None:
        """Leave the current status on screen as a normal line (a final 100% bar)."""
        if self.tty and self._status and not self._streaming:
            self.out.write("\n")
        self._status = ""

    def line(self, text: str) -> None:
        self.end_stream()
        self._erase()
        self.out.write(text + "\n")
        self._redraw()
        self.out.flush()

    def stream(self, text: str, prefix: str) -> None:
        """Append to the streamed reply, opening it with ``prefix`` (the agent's name)."""
        if not self._streaming:
            self._erase()
            self.out.write(prefix)
            self._streaming = True
        self.out.write(text)
        self.out.flush()

    def end_stream(self) -> None:
        if self._streaming:
            self._streaming = False
            self.out.write("\n")
            self._redraw()
            self.out.flush()


def _money(value: Any) -> str:
    from .investigations.money import format_brl

    return format_brl(float(value)) if isinstance(value, int | float) else "?"


@attrs.define
class InvestigationView:
    """Renders investigation events; :meth:`show` says when the investigation ended."""

    screen: Screen
    base_url: str | None  # http://host:port for report links; None when run locally
    label: bool = False  # prefix bars with the investigation id (a chat may follow several)
    progress_text: str = ""

    def show(self, message: dict[str, Any]) -> bool:
        kind, data = message.get("type"), message.get("data") or {}
        if kind == InvestigationProgress.type:
            return self._progress(data)
        if kind == AnomalyDetected.type:
            confidence = data.get("confidence")
            sure = f", confiança {confidence:.0%}" if isinstance(confidence, int | float) else ""
            self.screen.line(f"⚠ Anomalia ({data.get('severity', '?')}{sure}): {data.get('description', '')}")
        elif kind == AgentFinding.type:
            self.screen.line(f"• {data.get('agent_name') or data.get('agent_id')}: {data.get('summary', '')}")
        elif kind == ReportReady.type:
            self._report(data.get("investigation_id"), data.get("summary") or {}, data.get("url"))
            return True
        elif kind == InvestigationFailed.type:
            self.screen.keep_status()
            self.screen.line(f"✖ A investigação {data.get('investigation_id', '')} falhou: {data.get('reason', '')}")
            return True
        return False

    def _progress(self, data: dict[str, Any]) -> bool:
        bar = progress_bar(data.get("progress", 0), str(data.get("status", "")))
        self.progress_text = f"{data.get('investigation_id')} {bar}" if self.label else bar
        self.screen.status(self.progress_text)
        if data.get("status") == "cancelled":
            self.screen.keep_status()
            self.progress_text = ""
            self.screen.line(f"A investigação {data.get('investigation_id', '')} foi cancelada.")
            return True
        return False

    def _report(self, investigation_id: Any, summary: dict[str, Any], url: Any) -> None:
        self.screen.keep_status()
        self.progress_text = ""
        where = f": {self.base_url}{url}" if self.base_url and url else ""
        self.screen.line(f"✔ Relatório da investigação {investigation_id} pronto{where}")
        if summary:
            risk = summary.get("risk_score")
            self.screen.line(
                f"  {summary.get('total_records', '?')} contratos, {summary.get('anomalies_found', '?')} anomalias, "
                f"valor suspeito {_money(summary.get('suspicious_value'))} de {_money(summary.get('total_value'))}"
                + (f", pontuação de risco {risk:.1f}".replace(".", ",") if isinstance(risk, int | float) else "")
            )

    def show_snapshot(self, record: dict[str, Any]) -> bool:
        """The HTTP status of an investigation, for a watcher that arrives late."""
        status = str(record.get("status", ""))
        self._progress({"progress": record.get("progress", 0), "status": status, "investigation_id": record.get("id")})
        if record.get("anomalies_detected"):
            self.screen.line(f"{record['anomalies_detected']} anomalias detectadas até agora.")
        if status == "completed":
            url = f"/api/v1/investigations/{record.get('id')}/report?format=markdown"
            self._report(record.get("id"), record.get("summary") or {}, url)
            return True
        if status == "failed":
            self.screen.keep_status()
            self.screen.line(f"✖ A investigação {record.get('id')} falhou: {record.get('reason') or ''}")
            return True
        return status == "cancelled"


@attrs.define
class ChatView:
    """Renders a chat session: streamed replies, typing, investigations it follows."""

    screen: Screen
    investigations: InvestigationView
    own: set[str] = attrs.field(factory=set)  # ids of the messages this terminal sent
    turns: dict[str, trio.Event] = attrs.field(factory=dict)
    greeted: bool = False
    refused: Exception | None = None
    notice: ConnectionNotice | None = None

    def expect(self, id: str) -> None:
        self.own.add(id)
        self.turns[id] = trio.Event()

    async def wait_turn(self, id: str) -> None:
        await self.turns[id].wait()

    def _end_turn(self, id: Any) -> None:
        event = self.turns.pop(id, None) if isinstance(id, str) else None
        if event is not None:
            event.set()

    async def consume(self, client: RealtimeClient, done: trio.CancelScope) -> None:
        from .client import ClientRefused

        try:
            async for message in client.messages():
                self.show(message)
        except ClientRefused as refused:
            self.refused = refused
        done.cancel()

    def show(self, message: dict[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        screen = self.screen
        if kind == Connected.type:
            self._greet(data)
        elif kind == ReplyChunk.type:
            self._chat(data)
        elif kind == ChatComplete.type:
            self._complete(data)
        elif kind == AgentTyping.type and "agent" in data:
            if data.get("isTyping"):
                screen.status(TYPING)
            else:
                self._restore_status()
        elif kind == Error.type:
            self._error(data)
        elif kind in (Subscribed.type, Unsubscribed.type) and data.get("message"):
            screen.line(str(data["message"]))
        else:
            self.investigations.show(message)

    def _restore_status(self) -> None:
        """Back to the progress bar (on a terminal) once the agent stopped typing."""
        progress = self.investigations.progress_text
        if self.screen.tty and progress:
            self.screen.status(progress)
        else:
            self.screen.clear_status()

    def _greet(self, data: dict[str, Any]) -> None:
        if self.notice is not None:
            self.notice.connected()
        if not self.greeted:
            self.greeted = True
            self.screen.line(f"Conectado ao Cidadão.AI (sessão {data.get('session_id')}). Digite /sair para sair.")
        elif data.get("resumed"):
            self.screen.line("Reconectado; as mensagens perdidas foram recuperadas.")
        else:
            self.screen.line("Reconectado.")

    def _chat(self, data: dict[str, Any]) -> None:
        content = str(data.get("content", ""))
        if data.get("role") == "user":
            if data.get("reply_to") not in self.own:
                self.screen.line(f"você (outra conexão): {content}")
            elif not self.screen.tty:
                self.screen.line(f"você: {content}")  # a transcript shows what was asked
            return
        name = data.get("agent_name") or data.get("agent_id") or "Cidadão.AI"
        if data.get("chunk"):
            if self.screen.current_status == TYPING:
                self._restore_status()  # the reply itself shows the agent is at work
            self.screen.stream(content, f"{name}: ")
        else:
            self.screen.line(f"{name}: {content}")

    def _complete(self, data: dict[str, Any]) -> None:
        screen = self.screen
        screen.end_stream()
        status = data.get("status")
        if status == "cancelled":
            screen.line("(resposta cancelada)")
        elif status == "failed":
            screen.line("(a resposta falhou; tente novamente)")
        actions = data.get("suggested_actions") or []
        if actions:
            screen.line("Sugestões: " + " · ".join(str(a) for a in actions))
        if data.get("investigation_id"):
            screen.line(f"Investigação {data['investigation_id']} iniciada; o progresso aparece aqui.")
        self._end_turn(data.get("reply_to"))

    def _error(self, data: dict[str, Any]) -> None:
        code = data.get("code")
        if code == "HISTORY_GAP":
            self.screen.line("Parte do histórico não pôde ser recuperada; segue um resumo das investigações.")
            return
        if code == "DUPLICATE":
            return  # the server already has this message: its answer follows on the stream (§7)
        self.screen.line(f"Erro ({code}): {data.get('message', '')}")
        if code != "RATE_LIMIT":  # the client resends rate-limited messages by itself
            self._end_turn(data.get("reply_to"))


@attrs.define
class ConnectionNotice:
    """Tells the citizen at once where the terminal connects and, when the server does not
    answer, that it keeps trying (once per outage, not once per attempt)."""

    screen: Screen
    base: str
    connected_once: bool = False
    told: bool = False

    def connecting(self, url: str) -> None:
        self.screen.line(f"Conectando a {url}…")

    def retrying(self, delay: float, reason: str) -> None:
        if self.told:
            return
        self.told = True
        if self.connected_once:
            self.screen.line("Conexão perdida; reconectando…")
        else:
            self.screen.line(
                f"O servidor em {self.base} não respondeu; tentando de novo por até {CONNECT_TIMEOUT:.0f} s "
                "(Ctrl-C para sair)."
            )

    def connected(self) -> None:
        self.connected_once, self.told = True, False


def _describe_refusal(refused: Exception) -> str:
    """Why the server said no, in words that tell the citizen what to do next."""
    code = getattr(refused, "error_code", None)
    if code in ("UNAUTHORIZED", "TOKEN_EXPIRED"):
        return "Acesso negado: informe um token válido com --token (ou CIDADAO_TOKEN)."
    if code == "FORBIDDEN":
        return "Esta sessão pertence a outra pessoa; escolha outro identificador de sessão."
    if code == "NOT_FOUND":
        return "Investigação não encontrada (ou você não tem permissão para vê-la)."
    return f"O servidor recusou a conexão: {refused}"


# --- chat ------------------------------------------------------------------------------


async def run_chat(args: argparse.Namespace) -> int:
    from .client import ClientError, RealtimeClient, endpoint_url, http_base

    screen = Screen.for_stdout()
    view = ChatView(screen, InvestigationView(screen, http_base(args.url), label=True))
    url = endpoint_url(args.url, "chat", args.session)
    notice = ConnectionNotice(screen, http_base(args.url))
    view.notice = notice
    notice.connecting(url)
    try:
        client = RealtimeClient(
            url, token=args.token, batch=True, wait_connected=CONNECT_TIMEOUT, on_retry=notice.retrying
        )
        async with client, trio.open_nursery() as nursery:
            nursery.start_soon(view.consume, client, nursery.cancel_scope)
            try:
                await _converse(client, view, screen)
            except ClientError as failed:
                view.refused = view.refused or failed
            nursery.cancel_scope.cancel()
    except ClientError as refused:
        view.refused = refused
    except trio.TooSlowError:
        screen.line(f"Não foi possível conectar a {args.url}; o servidor está no ar? (veja --url ou CIDADAO_URL)")
        return 1
    screen.clear_status()
    if view.refused is not None:
        screen.line(_describe_refusal(view.refused))
        return 1
    screen.line("Até mais!")
    return 0


async def _converse(client: RealtimeClient, view: ChatView, screen: Screen) -> None:
    """Read stdin line by line; each message waits for its answer before the next prompt."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return  # EOF
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_WORDS:
            return
        id = client.new_id()  # unique in the session across runs of this CLI (§2: its idempotency key)
        view.expect(id)
        await client.send("chat", {"message": text}, id=id)
        with trio.move_on_after(TURN_TIMEOUT) as waited:
            await view.wait_turn(id)
        if waited.cancelled_caught:
            screen.line("Sem resposta do servidor; tente novamente.")


# --- watch -----------------------------------------------------------------------------


async def run_watch(args: argparse.Namespace) -> int:
    from .client import ClientError, ClientRefused, RealtimeClient, endpoint_url, fetch_json, http_base

    screen = Screen.for_stdout()
    base = http_base(args.url)
    view = InvestigationView(screen, base)
    investigation_id = args.investigation_id
    url = endpoint_url(args.url, "investigations", investigation_id)
    notice = ConnectionNotice(screen, base)
    notice.connecting(url)
    try:
        async with RealtimeClient(
            url, token=args.token, batch=True, wait_connected=CONNECT_TIMEOUT, on_retry=notice.retrying
        ) as client:
            notice.connected()
            screen.line(f"Acompanhando a investigação {investigation_id}…")
            # The stream sends only what happens from now on: the HTTP status covers the past.
            try:
                status, record = await fetch_json(f"{base}/api/v1/investigations/{investigation_id}", token=args.token)
            except (OSError, ClientError, trio.TooSlowError):
                status, record = 0, None
            if status == 200 and isinstance(record, dict) and view.show_snapshot(record):
                return 0
            async for message in client.messages():
                if view.show(message):
                    return 0
    except ClientRefused as refused:
        screen.clear_status()
        screen.line(_describe_refusal(refused))
        return 1
    except trio.TooSlowError:
        screen.line(f"Não foi possível conectar a {args.url}; o servidor está no ar? (veja --url ou CIDADAO_URL)")
        return 1
    screen.clear_status()
    screen.line("A conexão foi encerrada antes do fim da investigação.")
    return 1


# --- investigate -----------------------------------------------------------------------


@attrs.define
class _ChannelSink:
    """A broker sink feeding a channel; ``offer`` must never block."""

    channel: trio.MemorySendChannel[Any]

    def offer(self, delivery: Any) -> None:
        self.channel.send_nowait(delivery)


def _scope_of(query: str) -> Any:
    from .agents.intent import find_agency, parse_intent
    from .investigations.scope import Filters

    filters = parse_intent(query).filters
    if filters == Filters():
        filters = Filters(agency=find_agency(query))
    return filters


async def run_investigate(args: argparse.Namespace) -> int:
    screen = Screen.for_stdout()
    if args.dataset and not Path(args.dataset).is_file():
        screen.line(f"Arquivo de dados não encontrado: {args.dataset}")
        return 2
    scope = _scope_of(args.query)
    if scope.unknown is not None and scope.agency is None:  # never widen a typo to everything
        from .investigations.bodies import BODIES, closest_names

        names = closest_names(scope.unknown, [b.name for b in BODIES])
        hint = f" Você quis dizer {' ou '.join(names)}?" if names else ""
        screen.line(f"Órgão não reconhecido: {scope.unknown!r}; nada foi investigado.{hint}")
        return 2
    if scope.agency is None and scope.year is None and scope.min_value is None:
        screen.line(f"Nenhum órgão reconhecido em {args.query!r}; investigando todos os contratos.")
    try:
        investigation_id, report = await _investigate_locally(scope, args.dataset, screen)
    except Exception as failed:  # noqa: BLE001 - a bad dataset surfaces from the engine's nursery
        screen.line(f"Erro ao investigar: {_first_leaf(failed)}")
        return 1
    if report is None:
        return 1
    output = Path(args.output or f"relatorio-{investigation_id}.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    screen.line(f"Relatório salvo em {output}")
    return 0


async def _investigate_locally(scope: Any, dataset: str, screen: Screen) -> tuple[str, str | None]:
    """Run the application on an in-memory store; returns the id and the Markdown report."""
    from .app import open_app
    from .broker.base import investigation_stream
    from .config import Settings
    from .protocol.envelope import DurableId

    view = InvestigationView(screen, None)
    settings = Settings(store="memory", dataset=dataset, investigation_step_delay=0.0)
    async with open_app(settings) as app:
        broker, engine = app.broker, app.engine
        record = await engine.start(scope, owner_key="cli", public=True)
        screen.line(f"Investigação {record.id}: {scope.describe()}")
        stream = investigation_stream(record.id)
        send, receive = trio.open_memory_channel[Any](math.inf)
        first = DurableId.parse(await broker.last_id(stream))
        assert first is not None
        await broker.attach(stream, _ChannelSink(send), DurableId(first.epoch, 0))  # from the start
        succeeded = False
        with trio.fail_after(INVESTIGATION_TIMEOUT):
            async for delivery in receive:
                message = orjson.loads(delivery.text)
                if view.show(message):
                    succeeded = message["type"] == ReportReady.type
                    break
        stored = await engine.report(record.id) if succeeded else None
    return record.id, stored.markdown if stored else None


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def run_client(command: Any, args: argparse.Namespace) -> int:
    """Ctrl-C ends a citizen command quietly (exit 130), wherever trio delivered it."""
    try:
        return int(trio.run(command, args))
    except BaseException as failure:
        if not interrupted(failure):
            raise
        sys.stdout.write("\nAté mais!\n")
        sys.stdout.flush()
        return 130
