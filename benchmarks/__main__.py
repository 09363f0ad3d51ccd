"""``python -m benchmarks SCENARIO [options]``: the real-time benchmark suite (issue 6).

Scenarios: connections, fanout, chat, mixed, profile, soak (issue 21; not part of ``all``), sse and
publish (issue 17: ``benchmarks/sse.py``, ``benchmarks/publish.py``; not part of ``all``), and
``all`` (every one of them with modest defaults, < 10 minutes on 2 cores). Each writes
``benchmarks/results/<name>.json`` (summary), ``<name>-raw.json`` (every run) and ``<name>.md``,
and prints the table.
Run with the bench venv (``make bench`` creates it): ``benchmarks/.venv-bench/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import scenarios
from .limits import raise_nofile
from .report import publish
from .runner import KINDS, LOADGEN_CORE, SERVER_CORE, source_label

README = scenarios.BENCH / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("connections", "fanout", "fanout-paced100", "chat", "mixed", "profile")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _kinds(text: str) -> list[str]:
    kinds = [v.strip() for v in text.split(",") if v.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown server(s) {sorted(unknown)}; choose from {KINDS}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)

    p = sub.add_parser("connections", help="idle connections: RSS per connection, connect rate, heartbeats")
    p.add_argument("--servers", type=_kinds, default=list(KINDS), help="comma list of ours,reference,floor")
    p.add_argument("--steps", type=_ints, default=[1000, 5000, 10000], help="connection counts (ramped)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--heartbeat", type=float, default=5.0, help="ping interval, s (ours and reference)")
    p.add_argument("--hold", type=float, default=12.0, help="seconds to count pings at the last step (0: skip)")
    p.add_argument("--hold-repeats", type=int, default=1, help="repeats that also measure heartbeats")
    p.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    p.add_argument("--endpoint", choices=("investigation", "chat"), default="investigation")
    p.add_argument("--ours-flags", type=shlex.split, default=[],
                   help='extra `serve` flags for our server, e.g. "--auth-grace 0"')

    p = sub.add_parser("fanout", help="N subscribers on one investigation: latency (paced) and throughput (burst)")
    p.add_argument("--servers", type=_kinds, default=list(KINDS))
    p.add_argument("--subscribers", type=_ints, default=[100, 500, 1000])
    p.add_argument("--modes", type=_ints, default=[0, 1], help="batch=0 and/or batch=1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweep-repeats", type=int, default=1, help="repeats that run every N (others: largest N)")
    p.add_argument("--rate", type=float, default=10.0, help="paced events per second")
    p.add_argument("--duration", type=float, default=10.0, help="paced phase, seconds")
    p.add_argument(
        "--burst", type=int, default=100, help="events in the as-fast-as-possible burst (<= 256: the outbox)"
    )
    p.add_argument("--pad", type=int, default=0, help="extra bytes per event")
    p.add_argument("--ours-flags", type=shlex.split, default=[],
                   help='extra `serve` flags for our server, e.g. "--batch-linger 0.001"')

    p = sub.add_parser("chat", help="concurrent chat sessions: turns/s, first-chunk latency (ours)")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--message", default="Olá")

    p = sub.add_parser("mixed", help="fan-out with 1,000 idle connections and slow consumers attached (ours)")
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--slow", type=int, default=5)
    p.add_argument("--rate", type=float, default=25.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--pad", type=int, default=16000, help="bytes added to each event (fills slow sockets sooner)")
    p.add_argument("--slow-timeout", type=float, default=5.0, help="server --slow-consumer-timeout")
    p.add_argument("--batch", type=int, default=0)

    p = sub.add_parser("profile", help="py-spy profile of our server during a fan-out burst")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--burst", type=int, default=150)
    p.add_argument("--modes", type=_ints, default=[0, 1])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-cprofile", dest="cprofile", action="store_false", help="py-spy only")
    p.add_argument("--connections-traced", type=int, default=2000,
                   help="idle connections opened under tracemalloc (0: skip the memory profile)")

    p = sub.add_parser(
        "soak", help="minutes of mixed load on one SQLite server: RSS, fds, CPU, store, latency, every id"
    )
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--idle", type=int, default=200, help="idle chat sessions")
    p.add_argument("--chatters", type=int, default=10, help="sessions sending a chat turn every --chat-every s")
    p.add_argument("--chat-every", type=float, default=3.0)
    p.add_argument("--reconnectors", type=int, default=40, help="sessions that drop and resume with last_id")
    p.add_argument("--reconnects-per-s", type=float, default=5.0)
    p.add_argument("--followers", type=int, default=40, help="idle sessions subscribing to every investigation")
    p.add_argument("--watchers", type=int, default=20, help="investigation connections per investigation")
    p.add_argument("--investigation-every", type=float, default=30.0)
    p.add_argument("--slow", type=int, default=3, help="connections that never read")
    p.add_argument("--settle", type=float, default=60.0, help="seconds of RSS samples after every client left")
    p.add_argument(
        "--flags", type=shlex.split, default=[], help='extra `serve` flags, e.g. "--history-memory-bytes 8000000"'
    )
    p.add_argument("--rev", default="HEAD", help="the commit whose src/ the server runs (git archive)")

    p = sub.add_parser("all", help="every scenario with modest defaults (< 10 min on 2 cores)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", type=lambda t: [v for v in t.split(",") if v], default=[],
                   help=f"comma list of scenarios to skip ({','.join(ORDER)},twonode)")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the table in benchmarks/README.md")
    return parser


def run(name: str, publish_as: str | None = None, **kwargs: Any) -> str:
    rows, raw, note = scenarios.SCENARIOS[name](**kwargs)
    if name == "soak" and kwargs.get("rev", "HEAD") != "HEAD":
        name = f"soak-{kwargs['rev'][:12]}"  # a run of other code does not replace the soak's results
    name = publish_as or name
    note += f" Server on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}." if SERVER_CORE else ""
    note += f" Our server's code: {source_label()}."
    print(f"\n## {name}\n")
    table = publish(name, rows, note)
    meta = {"python": platform.python_version(), "args": kwargs, "source": source_label(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (scenarios.RESULTS / f"{name}-raw.json").write_text(json.dumps({"meta": meta, "rows": raw}, indent=2, default=str))
    if name == "fanout":
        from .plot import plot_fanout

        plot_fanout()
    return table


def run_all(repeats: int, skip: Sequence[str], readme: bool) -> None:
    plan: dict[str, dict[str, Any]] = {
        "connections": dict(repeats=repeats, hold=10.0, hold_repeats=1, concurrency=500),
        "fanout": dict(repeats=repeats, sweep_repeats=1, duration=4.0, burst=100),
        # issue 14's second latency target: 100 events/s to 1,000 batch=1 subscribers (ours only)
        "fanout-paced100": dict(scenario="fanout", servers=["ours"], subscribers=[1000], modes=[1],
                                repeats=repeats, rate=100.0, duration=4.0, burst=100),
        "chat": dict(sessions=100, seconds=5.0),
        "mixed": dict(duration=12.0),
        "profile": dict(seconds=4.0, burst=150, connections_traced=1000, cprofile=False),
    }
    started = time.monotonic()
    for name in ORDER:
        if name in skip:
            continue
        kwargs = dict(plan[name])
        scenario = kwargs.pop("scenario", name)
        run(scenario, publish_as=name if scenario != name else None, **kwargs)
    if "twonode" not in skip:  # two nodes over Redis against one (needs redis-server)
        from . import twonode

        twonode.main([])
    print(f"\nall scenarios done in {(time.monotonic() - started) / 60:.1f} min")
    if readme:
        update_readme()


def update_readme() -> None:
    """Replace the results section of benchmarks/README.md with the latest tables."""
    if not README.exists():
        return
    parts = [f"_Last run: {time.strftime('%Y-%m-%d %H:%M')}, Python {platform.python_version()}, "
             f"{platform.machine()}, our server at {source_label()}._\n"]
    for name in (*ORDER, "twonode"):
        md = scenarios.RESULTS / f"{name}.md"
        if md.exists():
            body = md.read_text().split("\n", 1)[1].strip()
            parts.append(f"### {name}\n\n{body}\n")
            if name == "fanout" and (scenarios.RESULTS / "fanout.png").exists():
                parts.append("![p99 latency and throughput against subscribers](results/fanout.png)\n")
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n\n" + "\n".join(parts) + f"\n{END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in ("sse", "publish"):  # issue 17's, with options of their own
        raise_nofile()
        import importlib

        importlib.import_module(f"benchmarks.{given[0]}").main(given[1:])
        return 0
    args = vars(build_parser().parse_args(argv))
    raise_nofile()
    name = args.pop("scenario")
    if name == "all":
        run_all(args["repeats"], args["skip"], not args["no_readme"])
    else:
        run(name, **args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
