"""The application's services, opened in one place: for ``serve``, ``investigate``, the
tests and the benchmark harness.

``open_app`` builds and runs, in order, the broker (streams), the records beside it, the
investigation engine, the agents, the turn runner and the hub, and closes them in the
reverse order: the broker is flushed (under a deadline) before it stops, and the records
are closed last. The server (``server/server.py``) adds only what is about sockets:
accepting, admission, connections and the drain.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from .agents.team import build_team
from .broker.base import Broker
from .broker.local import LocalBroker
from .config import Settings
from .investigations.dataset import load_contracts
from .investigations.engine import InvestigationEngine
from .investigations.model import Contract
from .investigations.portal_source import portal_source
from .investigations.proving import Prover
from .metrics import Metrics
from .records.base import Records
from .records.local import StoreRecords
from .records.response_cache import RecordsResponseCache
from .records.signing_key import ServerKey
from .session.hub import Hub
from .session.presence import LocalTally, PresenceBoard, Tally
from .session.turns import TurnRunner
from .store.base import MemoryStore, Store
from .store.sqlite import SqliteStore

if TYPE_CHECKING:  # coredis (0.7 s of every start) is imported only for --store redis
    from .broker.redis import RedisBroker

SQLITE_FILE = "cidadao.sqlite3"  # under --data-dir


@attrs.frozen
class App:
    settings: Settings
    metrics: Metrics
    broker: Broker
    records: Records
    engine: InvestigationEngine
    turns: TurnRunner
    hub: Hub


def open_broker(settings: Settings, metrics: Metrics) -> Broker:
    """``--store``: memory or sqlite for one node; redis for several behind a balancer."""
    if settings.store == "redis":
        from .broker.redis import RedisBroker

        return RedisBroker(
            settings.redis_url, max_messages=settings.history_messages, max_age=settings.history_seconds,
            observe_write=metrics.store_writes.observe,
        )
    store: Store
    if settings.store == "memory":
        store = MemoryStore()
    elif settings.store == "sqlite":
        store = SqliteStore(Path(settings.data_dir) / SQLITE_FILE)
    else:
        raise ValueError(f"unknown store {settings.store!r} (expected sqlite, memory or redis)")
    return LocalBroker(
        store=store, max_messages=settings.history_messages, max_age=settings.history_seconds,
        memory_bytes=settings.history_memory_bytes, memory_messages=settings.history_memory_messages,
        observe_write=metrics.store_writes.observe,
    )


def open_records(broker: Broker) -> Records:
    """The records kept beside ``broker``'s streams, in the same store."""
    if isinstance(broker, LocalBroker):
        return StoreRecords(broker)
    from .records.redis import RedisRecords

    return RedisRecords(_redis(broker))


def open_server_key(settings: Settings, broker: Broker) -> ServerKey:
    """``--signing-key``, else the cluster's in Redis, else one in the data directory (§11)."""
    if settings.signing_key:
        return ServerKey(key_file=Path(settings.signing_key))
    if not isinstance(broker, LocalBroker):
        return ServerKey(redis=_redis(broker))
    if settings.store == "sqlite":
        return ServerKey(data_dir=Path(settings.data_dir))
    return ServerKey()  # the memory store: this process's key


def _redis(broker: Broker) -> RedisBroker:
    from .broker.redis import RedisBroker

    if not isinstance(broker, RedisBroker):
        raise TypeError(f"a store that is neither local nor Redis: {type(broker).__name__}")
    return broker


def open_presence(settings: Settings, broker: Broker, node: str) -> PresenceBoard:
    """Counts of this node alone, or, in Redis, of every node whose heartbeat is recent (§9)."""
    tally: Tally = LocalTally()
    if not isinstance(broker, LocalBroker):
        from .broker.presence_redis import RedisTally

        timeout = settings.heartbeat_interval + settings.heartbeat_timeout  # a dead node's clients, too
        tally = RedisTally(_redis(broker), timeout, node=node)
    return PresenceBoard(broker, tally, settings.presence_interval)


def node_name(settings: Settings) -> str:
    return settings.node_name or f"{socket.gethostname()}:{settings.port}"


@asynccontextmanager
async def open_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    broker: Broker | None = None,
    records: Records | None = None,
    dataset: Sequence[Contract] | None = None,
) -> AsyncIterator[App]:
    """Run every service until the block exits.

    ``dataset``: contracts given in memory (tests, benchmarks); otherwise ``--dataset`` or
    the bundled sample is loaded in a thread, and with ``CIDADAO_PORTAL_API_KEY`` each
    investigation fetches its body's contracts from the Portal da Transparência.
    """
    metrics = metrics or Metrics()
    broker = broker or open_broker(settings, metrics)
    records = records or open_records(broker)
    node = node_name(settings)
    shared = settings.store == "redis"
    try:
        async with trio.open_nursery() as services:
            await services.start(broker.run)
            engine = InvestigationEngine(
                broker,
                records,
                (lambda: dataset) if dataset is not None else partial(load_contracts, settings.dataset),
                max_running=settings.max_investigations,
                step_delay=settings.investigation_step_delay,
                lease_ttl=settings.investigation_lease,
                in_thread=dataset is None,
                node=node,
                shared_store=shared,
                source=portal_source(settings, RecordsResponseCache(records)) if dataset is None else None,
                prover=Prover(broker, open_server_key(settings, broker), dataset_file=settings.dataset),
            )
            await services.start(engine.run)
            agents = build_team(engine, settings, metrics)  # rule-based, or voiced by --llm-base-url
            turns = TurnRunner(broker, records, agents, services, node, shared)
            if broker.healthy:
                await turns.end_interrupted()
            else:  # Redis unreachable at start: run anyway (/readyz: 503), end them once it is back
                services.start_soon(turns.end_interrupted)
            if shared:  # a dead node's open turns are settled by the others
                services.start_soon(turns.watch)
            presence = open_presence(settings, broker, node)
            await services.start(presence.run)
            hub = Hub(settings, broker, turns, metrics, records, lookup=engine.lookup, presence=presence)
            yield App(settings, metrics, broker, records, engine, turns, hub)
            with trio.CancelScope(shield=True), trio.move_on_after(settings.drain_timeout):
                with trio.move_on_after(1.0), suppress(Exception):  # else other nodes wait for the timeout
                    await presence.withdraw()
                await broker.flush()
            services.cancel_scope.cancel()
    finally:
        records.close()
