"""An investigation of 20 pages of contracts fetched from a fake Portal da Transparência.

The fake (``tests/investigations/fake_portal.py``) is real HTTP on 127.0.0.1 with the API's
JSON shape and paging; the client runs as the server runs it: one process-wide limiter,
two workers, the cache. Four runs, in real time: by day (90 requests a minute), by night
(300), by day again with the responses cached, by day with a 429 (Retry-After 2 s) and
two 5xx on the way, and 100 pages by day, enough to fill the API's minute. For each: the
wall time to the report, requests sent, pages and contracts, the most requests that arrived
within any 60 s (never above the API's limit) and the shortest gap between two arrivals (the
limiter spaces its grants by 60/limit s; arrivals jitter by milliseconds on the way).

Run from the repository root: ``python -m benchmarks.portal [--pages 20]``. Prints a
Markdown table and writes ``benchmarks/results/portal.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import trio

from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.portal_api import DAY_LIMIT, NIGHT_LIMIT, PortalClient, PortalLimiter
from cidadao_trio.investigations.portal_cache import MemoryResponseCache
from cidadao_trio.investigations.portal_source import PortalContractSource
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.records.local import StoreRecords
from tests.investigations.fake_portal import KEY, FakePortal, running_portal

from .report import publish

NOON = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)  # 12:00 in Brasília
NIGHT = dt.datetime(2025, 6, 2, 6, 0, tzinfo=dt.UTC)  # 03:00 in Brasília


def most_in_a_minute(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + 60 - 1e-9) for t in times), default=0)


async def run_one(label: str, pages: int, wall: dt.datetime, cache: MemoryResponseCache,
                  script: dict[tuple[str, int], list[str]]) -> dict[str, Any]:  # fmt: skip
    portal = FakePortal(script={k: list(v) for k, v in script.items()})
    portal.pages("36000", pages)
    broker = LocalBroker()
    limit = DAY_LIMIT if wall == NOON else NIGHT_LIMIT
    async with running_portal(portal), trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        client = PortalClient(portal.url, KEY, limiter=PortalLimiter(wall=lambda: wall), cache=cache, wall=lambda: wall)
        source = PortalContractSource(client, deadline=600, today=lambda: dt.date(2025, 12, 31))
        engine = InvestigationEngine(broker, StoreRecords(broker), tuple, in_thread=False, step_delay=0, source=source)
        await nursery.start(engine.run)
        started = time.perf_counter()
        record = await engine.start(Filters(agency="Ministério da Saúde"), "bench", public=False)
        while not (current := engine.records[record.id]).finished:
            await trio.sleep(0.01)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    times = [s.at for s in portal.seen]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {
        "run": label,
        "status": str(current.status),
        "contracts": current.records_processed,
        "pages": pages,
        "requests": client.requests,
        "cache_hits": client.cache_hits,
        "seconds": round(elapsed, 2),
        "limit_per_min": limit,
        "max_in_60s": most_in_a_minute(times),
        "min_gap_s": round(min(gaps), 3) if gaps else "-",
        "paced_gap_s": round(60 / limit, 3),
        "within_limit": most_in_a_minute(times) <= limit,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--long-pages", type=int, default=100, help="pages of the last run (0 skips it)")
    args = parser.parse_args(argv)
    shared = MemoryResponseCache()
    faults = {("contratos", 3): ["429:2"], ("contratos", 7): ["503", "502"]}
    runs: list[tuple[str, int, dt.datetime, MemoryResponseCache, dict[tuple[str, int], list[str]]]] = [
        ("day (90/min)", args.pages, NOON, shared, {}),
        ("night (300/min)", args.pages, NIGHT, MemoryResponseCache(), {}),
        ("day, cached", args.pages, NOON, shared, {}),
        ("day, 429 + 2×5xx", args.pages, NOON, MemoryResponseCache(), faults),
        ("day, 100 pages (fills the minute)", args.long_pages, NOON, MemoryResponseCache(), {}),
    ]
    rows = []
    for label, pages, wall, cache, script in runs:
        if pages <= 0:
            continue
        rows.append(trio.run(run_one, label, pages, wall, cache, script))
    publish("portal", rows, note=(
        f"One investigation of {args.pages} pages (15 contracts each) from a fake Portal on loopback, "
        "real time, two workers, one limiter. max_in_60s: most requests within any 60 s; "
        "min_gap_s: shortest gap between two requests; within_limit: both under the API's limit."
    ))  # fmt: skip


if __name__ == "__main__":
    main()
