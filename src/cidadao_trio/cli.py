"""``cidadao-trio``: the command line. Flags come from :class:`~cidadao_trio.config.Settings`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from . import config
from .config import Settings


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
    _add_settings_flags(serve)
    token = commands.add_parser("token", help="mint an HS256 access token for development")
    token.add_argument("--sub", required=True, help="the user the token names")
    token.add_argument("--role", action="append", default=[], help="a role (repeatable)")
    token.add_argument("--session", default=None, help="bind the token to one session (sid)")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires")
    token.add_argument(
        "--jwt-secret", default=None, metavar="CIDADAO_JWT_SECRET", help="the server's shared secret"
    )
    return parser


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


async def serve(settings: Settings) -> None:
    from .server.server import Server

    log = logging.getLogger("cidadao_trio")
    server = Server(settings)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with server.running():
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(server.serve_tcp)
                for listener in listeners:
                    host, port = listener.socket.getsockname()[:2]
                    shown = f"[{host}]" if ":" in host else host
                    print(f"cidadao-trio listening on http://{shown}:{port}/", flush=True)
                async for signum in signals:
                    log.info("received %s: draining", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return mint(args)
    if args.command == "serve":
        overrides = {f.name: getattr(args, f.name) for f in config.fields()}
        settings = config.from_environ(**overrides)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        trio.run(serve, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
