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
    return parser


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
