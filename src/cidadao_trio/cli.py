"""``cidadao-trio``: the command line. Flags come from :class:`~cidadao_trio.config.Settings`.

Besides ``serve`` and ``token``, three citizen-facing commands: ``chat`` (talk to the agents
from a terminal), ``watch`` (follow an investigation live) and ``investigate`` (run one
investigation locally, without a server, and write its report).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from . import config, logs
from .config import Settings
from .terminal import run_client, run_chat, run_investigate, run_watch

DEFAULT_URL = "http://localhost:8000"


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for field in config.fields():
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=field.name,
            type=lambda raw, field=field: config.coerce(field, raw),
            default=None,
            metavar=config.env_name(field.name),
            help=f"{field.metadata['help']} (default: {getattr(defaults, field.name)})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cidadao-trio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the real-time server")
    serve.add_argument("--config", default=None, metavar="CIDADAO_CONFIG", help="a TOML file of settings")
    _add_settings_flags(serve)
    token = commands.add_parser("token", help="mint an HS256 access token for development")
    token.add_argument("--sub", required=True, help="the user the token names")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument("--session", default=None, help="bind the token to one session (sid)")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires")
    token.add_argument(
        "--jwt-secret", default=None, metavar="CIDADAO_JWT_SECRET", help="the server's shared secret"
    )
    _add_client_commands(commands)
    return parser


def _add_client_commands(commands: Any) -> None:
    def connection_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"endereço do servidor (padrão: {DEFAULT_URL})")
        parser.add_argument(
            "--token",
            default=os.environ.get("CIDADAO_TOKEN"),
            metavar="CIDADAO_TOKEN",
            help="token de acesso (JWT), enviado no cabeçalho Authorization",
        )

    chat = commands.add_parser("chat", help="conversar com os agentes pelo terminal")
    chat.add_argument("session", help="identificador da sessão de conversa")
    connection_flags(chat)
    watch = commands.add_parser("watch", help="acompanhar uma investigação ao vivo")
    watch.add_argument("investigation_id", help="por exemplo INV-2026-001")
    connection_flags(watch)
    investigate = commands.add_parser("investigate", help="rodar uma investigação localmente, sem servidor")
    investigate.add_argument("query", help='o que investigar, por exemplo "Ministério da Saúde"')
    investigate.add_argument("--dataset", default="", help="arquivo do Portal da Transparência (padrão: amostra embutida)")
    investigate.add_argument("--output", default=None, help="onde salvar o relatório (padrão: relatorio-<id>.md)")


def mint(args: argparse.Namespace) -> int:
    from .auth import mint_token

    settings = config.from_environ(jwt_secret=args.jwt_secret)
    if not settings.jwt_secret:
        print("cidadao-trio token: set --jwt-secret or CIDADAO_JWT_SECRET", file=sys.stderr)
        return 2
    print(
        mint_token(
            settings.jwt_secret,
            args.sub,
            roles=args.role,
            session_id=args.session,
            ttl=args.ttl,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    )
    return 0


def tune_garbage_collector() -> None:
    """Full collections were the longest pauses under load (benchmarks/README.md): keep
    start-up objects (the dataset, modules) out of them and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


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
    from .server.server import Server

    try:
        with stop.target:
            server = Server(settings)
            async with server.running():
                stop.target = trio.CancelScope()
                with stop.target:
                    async with trio.open_nursery() as nursery:
                        listeners = await nursery.start(server.serve_tcp)
                        tune_garbage_collector()
                        _announce(listeners, "https" if settings.tls_cert else "http")
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
    if args.command == "serve":
        overrides = {f.name: getattr(args, f.name) for f in config.fields()}
        try:
            settings = config.from_environ(config_file=args.config, **overrides)
        except (OSError, ValueError) as bad:
            print(f"cidadao-trio serve: {bad}", file=sys.stderr)
            return 2
        logs.configure(settings.log_level, settings.log_format)
        trio.run(serve, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
