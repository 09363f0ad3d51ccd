"""The command line: argument parsing and dispatch; every ``serve`` flag comes from Settings.

Operator commands (serve, token) speak English; the citizen commands (chat, watch,
investigate) speak Portuguese.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import attrs
import trio

from . import __version__, config, logs, preflight
from .config import Settings
from .terminal import run_chat, run_client, run_investigate, run_watch

DESCRIPTION = """\
cidadao-trio: the real-time server of Cidadão.AI, and terminal clients for it.

operator commands: serve (run the server), token (mint a development token).
comandos para cidadãos: chat (conversar com os agentes), watch (acompanhar uma
investigação ao vivo), investigate (investigar localmente, sem servidor), verify
(conferir a assinatura de um relatório, sem servidor).
"""

# What a flag's value looks like in --help (a value, never the variable's name).
METAVARS = {
    "host": "ADDRESS",
    "port": "PORT",
    "redis_url": "URL",
    "node_name": "NAME",
    "data_dir": "DIR",
    "tls_cert": "FILE",
    "tls_key": "FILE",
    "dataset": "FILE",
    "jwt_public_key": "FILE",
    "jwt_jwks": "FILE",
    "jwt_secret": "SECRET",
    "jwt_audience": "AUDIENCE",
    "jwt_issuer": "ISSUER",
    "allowed_origins": "ORIGINS",
    "signing_key": "FILE",
}
KIND_METAVARS = {"int": "N", "float": "SECONDS", "bool": "on|off", "str": "TEXT", "str | None": "TEXT"}
BYTES_SETTINGS = {"max_message_bytes", "outbox_bytes", "deflate_min_size"}


class CommandLine(argparse.ArgumentParser):
    """A usage error is one line (not the whole usage of ``serve``'s fifty flags), exit 2."""

    def __init__(self, *args: Any, language: str = "en", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.language = language

    def error(self, message: str) -> NoReturn:
        if self.language == "pt":
            message = message.replace("the following arguments are required", "faltam os argumentos")
            self.exit(2, f"{self.prog}: erro: {message} (veja {self.prog} --help)\n")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class PortugueseHelp(argparse.HelpFormatter):
    """Help of the citizen commands: Portuguese headings (arguments are grouped by hand)."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "uso: ")

    def start_section(self, heading: str | None) -> None:
        super().start_section({"positional arguments": "argumentos", "options": "opções"}.get(heading or "", heading))


def default_url() -> str:
    """``CIDADAO_URL``, else localhost on ``CIDADAO_PORT`` (the port ``serve`` reads too)."""
    return os.environ.get("CIDADAO_URL") or f"http://localhost:{os.environ.get('CIDADAO_PORT') or '8000'}"


def _metavar(field: Any) -> str | None:
    if field.metadata.get("choices"):
        return None  # argparse shows {a,b}
    if field.name in METAVARS:
        return METAVARS[field.name]
    if field.name in BYTES_SETTINGS:
        return "BYTES"
    return KIND_METAVARS.get(field.type if isinstance(field.type, str) else field.type.__name__, "VALUE")


def _value_parser(field: Any) -> Callable[[str], Any]:
    """``config.coerce`` with an error argparse prints as one line (``--port abc``)."""

    def parse(raw: str) -> Any:
        try:
            return config.coerce(field, raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {config.describe_type(field)}, got {raw!r}") from None

    return parse


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for field in config.fields():
        parser.add_argument(
            preflight.flag(field.name),
            dest=field.name,
            type=_value_parser(field),
            choices=field.metadata.get("choices"),
            default=None,
            metavar=_metavar(field),
            help=(
                f"{field.metadata['help']} (default: {getattr(defaults, field.name)}; "
                f"env {config.env_name(field.name)})"
            ),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLine(
        prog="cidadao-trio", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cidadao-trio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the real-time server", description="Run the real-time server until SIGTERM or SIGINT."
    )
    serve.add_argument("--config", default=None, metavar="FILE", help="a TOML file of settings (env CIDADAO_CONFIG)")
    _add_settings_flags(serve)
    token = commands.add_parser(
        "token", help="mint an HS256 access token for development", description="Print an HS256 access token."
    )
    token.add_argument("--sub", required=True, metavar="USER", help="the user the token names")
    token.add_argument("--role", action="append", default=[], metavar="ROLE", help="a role (repeatable)")
    token.add_argument("--session", default=None, metavar="SESSION_ID", help="bind the token to one session")
    token.add_argument("--ttl", type=_seconds, default=3600.0, metavar="SECONDS", help="seconds until it expires")
    token.add_argument(
        "--jwt-secret", default=None, metavar="SECRET", help="the server's shared secret (env CIDADAO_JWT_SECRET)"
    )
    _add_client_commands(commands)
    return parser


def _seconds(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None


def _add_client_commands(commands: Any) -> None:
    def connection_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            default=default_url(),
            metavar="URL",
            help="endereço do servidor (padrão: CIDADAO_URL, ou http://localhost:CIDADAO_PORT, ou http://localhost:8000)",
        )
        parser.add_argument(
            "--token",
            default=os.environ.get("CIDADAO_TOKEN"),
            metavar="TOKEN",
            help="token de acesso (JWT), enviado no cabeçalho Authorization (padrão: CIDADAO_TOKEN)",
        )

    def portuguese(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=summary,
            description=description,
            add_help=False,
            formatter_class=PortugueseHelp,
            language="pt",
        )
        parser.add_argument("-h", "--help", action="help", help="mostra esta ajuda e sai")
        return parser

    chat = portuguese("chat", "conversar com os agentes pelo terminal", "Conversar com os agentes pelo terminal.")
    chat.add_argument("session", metavar="SESSAO", help="identificador da sessão de conversa")
    connection_flags(chat)
    watch = portuguese("watch", "acompanhar uma investigação ao vivo", "Acompanhar uma investigação ao vivo.")
    watch.add_argument("investigation_id", metavar="INVESTIGACAO", help="por exemplo INV-2026-001")
    connection_flags(watch)
    investigate = portuguese(
        "investigate",
        "rodar uma investigação localmente, sem servidor",
        "Rodar uma investigação localmente, sem servidor, e salvar o relatório.",
    )
    investigate.add_argument("query", metavar="CONSULTA", help='o que investigar, por exemplo "Ministério da Saúde"')
    investigate.add_argument(
        "--dataset", default="", metavar="ARQUIVO", help="arquivo do Portal da Transparência (padrão: amostra embutida)"
    )
    investigate.add_argument(
        "--output", default=None, metavar="ARQUIVO", help="onde salvar o relatório (padrão: relatorio-<id>.md)"
    )
    verify = portuguese(
        "verify",
        "conferir que um relatório saiu do servidor sem alteração, sem servidor",
        "Conferir a prova de um relatório (JSON, format=json): a assinatura do servidor, o relatório, "
        "e, se dados, os eventos da investigação e o conjunto de dados.",
    )
    verify.add_argument("report", metavar="RELATORIO.json", help="o relatório em JSON (…/report?format=json)")
    verify.add_argument(
        "--events", default=None, metavar="EVENTOS.json",
        help="os eventos da investigação (…/events), conferidos um a um",
    )
    verify.add_argument(
        "--key", default=None, metavar="CHAVE", help="a chave pública do servidor (JWK/JWKS de /api/v1/keys, ou PEM)"
    )
    verify.add_argument("--dataset", default=None, metavar="ARQUIVO", help="o arquivo de dados investigado")


def mint(args: argparse.Namespace) -> int:
    from .auth import mint_token

    settings = config.from_environ(jwt_secret=args.jwt_secret)
    if not settings.jwt_secret:
        tell("cidadao-trio token: set --jwt-secret or CIDADAO_JWT_SECRET")
        return 2
    try:
        token = mint_token(
            settings.jwt_secret,
            args.sub,
            roles=args.role,
            session_id=args.session,
            ttl=args.ttl,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ValueError as bad:  # a secret under 32 bytes
        tell(f"cidadao-trio token: {bad}")
        return 2
    print(token)
    return 0


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, watched from the first instant: a start-up still
    waiting for its store stops at once; a listening server stops accepting and drains."""
    log = logging.getLogger("cidadao_trio")
    stop = _Stop(trio.CancelScope())
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_until_stopped, settings, stop, nursery.cancel_scope)
            async for signum in signals:
                log.info("received %s: draining", signal.Signals(signum).name)
                break
            stop.target.cancel()
    log.info("stopped")


@attrs.define
class _Stop:
    """What a signal cancels: the whole start-up, then (once listening) the accept loop only,
    so that leaving ``server.running()`` drains the connections with 1001."""

    target: trio.CancelScope


async def _serve_until_stopped(settings: Settings, stop: _Stop, done: trio.CancelScope) -> None:
    from .server.collector import tune_garbage_collector
    from .server.server import Server

    try:
        with stop.target:
            server = Server(settings)
            async with server.running():
                stop.target = trio.CancelScope()
                with stop.target:
                    async with trio.open_nursery() as collecting:
                        async with trio.open_nursery() as nursery:
                            listeners = await nursery.start(server.serve_tcp)
                            tune_garbage_collector(collecting, server.activity)  # full ones when quiet
                            _announce(listeners, "https" if settings.tls_cert else "http")
                        collecting.cancel_scope.cancel()
    finally:
        done.cancel()  # stopped, or failed by itself: stop watching signals


def _announce(listeners: Sequence[Any], scheme: str) -> None:
    for listener in listeners:
        sock = getattr(listener, "transport_listener", listener).socket
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"cidadao-trio listening on {scheme}://{shown}:{port}/", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return mint(args)
    if args.command == "chat":
        return run_client(run_chat, args)
    if args.command == "watch":
        return run_client(run_watch, args)
    if args.command == "investigate":
        return run_client(run_investigate, args)
    if args.command == "verify":
        return run_verify(args)
    return run_serve(args)


def tell(line: str) -> None:
    """One line on stderr in one write: a worker thread still logging cannot split it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_verify(args: argparse.Namespace) -> int:
    """Offline: 0 when everything given matches, 1 when something does not, 2 for a file
    that cannot be read."""
    import json

    from .proofs.keyfile import KeyFileError, load_public
    from .proofs.verify import parse_events, verify

    def read(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError as bad:
            raise _Unreadable(f"não consegui ler {what} {path}: {bad.strerror or bad}") from None

    try:
        try:
            report = json.loads(read(args.report, "o relatório"))
        except ValueError:
            raise _Unreadable(f"{args.report} não é JSON: baixe o relatório com format=json") from None
        events = None
        if args.events:
            try:
                events = parse_events(read(args.events, "os eventos").decode())
            except ValueError as bad:
                raise _Unreadable(f"{args.events}: {bad}") from None
        trusted = None
        if args.key:
            try:
                trusted = load_public(read(args.key, "a chave"))
            except (ValueError, KeyFileError) as bad:
                raise _Unreadable(f"{args.key} não é uma chave Ed25519 (JWK, JWKS ou PEM): {bad}") from None
        dataset = (args.dataset, read(args.dataset, "o conjunto de dados")) if args.dataset else None
    except _Unreadable as bad:
        tell(f"cidadao-trio verify: {bad}")
        return 2
    verdict = verify(report, events=events, trusted=trusted, dataset=dataset)
    print("\n".join(verdict.lines), flush=True)
    return 0 if verdict.ok else 1


class _Unreadable(Exception):
    """A file ``verify`` was given cannot be read as what it should be."""


def run_serve(args: argparse.Namespace) -> int:
    """Exit 2 for settings that cannot work, 1 for a start-up that failed, 0 after a signal."""
    overrides = {f.name: getattr(args, f.name) for f in config.fields()}
    try:
        settings = config.from_environ(config_file=args.config, **overrides)
    except (OSError, ValueError, TypeError) as bad:
        tell(f"cidadao-trio serve: {bad}")
        return 2
    problem = preflight.usage_problem(settings)
    if problem is not None:
        tell(f"cidadao-trio serve: {problem}")
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        trio.run(serve, settings)
    except BaseException as failure:
        if preflight.interrupted(failure):
            return 130
        line = preflight.runtime_problem(failure, settings)
        if line is None:
            raise  # a bug: its traceback is what a report needs
        tell(f"cidadao-trio serve: {line}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
