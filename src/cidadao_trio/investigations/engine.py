"""The investigation engine: runs investigations as tasks and streams their events.

Each investigation is a task in the engine's nursery, at most ``max_running`` at once;
it walks the phases of PROTOCOL.md §3.2 and publishes ``investigation_progress``,
``anomaly_detected``, ``agent_finding`` and ``report_ready`` (or ``investigation_failed``)
on its own stream. Records and reports go to the records repository, each saved before
the event that announces it, so they are listed and served after a restart.

An investigation survives its node (issue 20): while it runs, its run (id and scope) is
kept in the records with a lease its node renews. A restart of the node resumes the runs
it had; with several nodes, one that finds a lease lapsed (its node died, or drained and
let go) claims it and adopts the run. Either way the investigation is walked again from
the start, and the events its stream already holds are not published again: the stream's
offsets are the truth (§4), and the walk over the same contracts yields the same events
in the same order. One with no run (its scope cannot be kept) is marked failed, as before.

Detection over the whole dataset runs once, in a worker thread, when the engine starts:
peers for price comparisons come from every agency, and an investigation keeps the
anomalies that touch its own contracts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import orjson
import trio

from ..broker.base import Broker, StoreUnavailable, investigation_stream
from ..protocol.envelope import DurableId, utc_timestamp
from ..protocol.events import (
    AgentFinding,
    AnomalyDetected,
    Event,
    InvestigationFailed,
    InvestigationProgress,
    ReportReady,
)
from ..protocol.published import to_event
from ..records.base import Records, Run, StoredReport
from .analysis import Finding, pattern_findings
from .dataset import data_origin
from .detectors import ALL_DETECTORS
from .model import (
    PHASES,
    Anomaly,
    Contract,
    Investigation,
    InvestigationStatus,
    phase_progress,
)
from .proving import Prover
from .report import ReportInput, build_report
from .scope import Filters
from .source import ContractSource, Retrieval, RetrievalFailed

log = logging.getLogger(__name__)
T = TypeVar("T")
LEASE_TTL = 15.0  # seconds; renewed every third of it
RECORD_PATIENCE = 5.0  # seconds a run's last record write may take on the way out (§7's 5 s)

__all__ = ["EngineBusy", "Investigation", "InvestigationEngine", "InvestigationStatus", "PublishRefused", "Scope"]
EXTERNAL_SCOPE = "investigação externa"

Status = InvestigationStatus
ZUMBI = ("zumbi", "Zumbi dos Palmares")
# Progress moves through this range as detectors finish.
DETECTION_SPAN = (phase_progress(Status.ANOMALY_DETECTION), phase_progress(Status.FORENSIC_ENRICHMENT))


class EngineBusy(Exception):
    """Too many investigations are open; the caller asks the citizen to come back later."""


class PublishRefused(Exception):
    """Events for an investigation that takes none (§8's 409): it ended, or this server runs it."""


class Scope(Protocol):
    """Which contracts an investigation looks at (``scope.Filters``)."""

    def matches(self, contract: Contract) -> bool: ...

    def describe(self) -> str: ...


class InvestigationEngine:
    def __init__(
        self,
        broker: Broker,
        repository: Records,
        load_dataset: Callable[[], Sequence[Contract]],
        *,
        max_running: int = 4,
        max_open: int = 32,
        step_delay: float = 0.25,
        in_thread: bool = True,
        node: str = "",
        shared_store: bool = False,
        today: Callable[[], dt.date] = dt.date.today,
        source: ContractSource | None = None,
        prover: Prover | None = None,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self.broker = broker  # the investigations' streams
        self.prover = prover or Prover(broker)  # chains their events and seals reports (§11)
        self.repository = repository  # their records and reports
        self.dataset: Sequence[Contract] = ()
        self.data_origin = "memory"  # "sample" while the bundled synthetic sample is loaded
        self.ready = trio.Event()  # the dataset is loaded
        self._load_dataset = load_dataset
        self.source = source  # None: investigate the loaded dataset; else fetch each scope's contracts
        self._in_thread = in_thread
        self._node = node
        self._shared_store = shared_store
        self._cpu = trio.CapacityLimiter(1)  # one core for analysis, one for the event loop
        self.step_delay = step_delay
        self.records: dict[str, Investigation] = {}
        self._today = today
        self._slots = trio.CapacityLimiter(max_running)
        self._max_open = max_open  # running plus waiting for a slot
        self._cancels: dict[str, trio.CancelScope] = {}  # running or waiting, by investigation id
        self.lease_ttl = lease_ttl  # seconds a node may stay silent before its runs are adopted
        self._replays: dict[str, int] = {}  # adopted: how many of its events the stream already holds
        self._letting_go: set[str] = set()  # stopped to be resumed elsewhere (drain, a lease lost)
        self._handing_over = False
        self._all_let_go = trio.Event()
        self._detected: dict[str, list[Anomaly]] | None = None  # the dataset's, once scanned
        self._scanning = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._external_locks: dict[str, trio.Lock] = {}  # one batch at a time per investigation

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.broker.healthy:
                await self._end_interrupted()
            else:  # an unreachable store must not keep the server from listening (/readyz: 503)
                nursery.start_soon(self._end_interrupted)
            if self._shared_store:
                nursery.start_soon(self._keep_leases)
            task_status.started()  # serve at once; investigations wait for the data
            if self._in_thread:
                # Abandoned on cancel: a signal during start-up must not wait for a big file.
                self.dataset = await trio.to_thread.run_sync(self._load, abandon_on_cancel=True)
            else:  # a dataset given in memory; also keeps virtual clocks free of threads
                self.dataset = self._load()
            self.ready.set()
            await trio.sleep_forever()

    async def _end_interrupted(self) -> None:
        """Resume what a restart of this node cut (not what this process runs now); mark
        failed what cannot be resumed (no run kept)."""
        runs = {run.investigation_id: run for run in await self.repository.runs()}
        for record in await self.repository.investigations():
            if record.id in self._cancels:
                continue  # started by this process while the store was unreachable
            self.records[record.id] = record
            ours = not self._shared_store or record.node == self._node  # not another node's
            if record.finished or not ours or record.external:  # a backend's runs on, wherever it is
                continue
            run = runs.get(record.id)
            if run is None:
                await self._fail(record, "Investigação interrompida pelo reinício do servidor.")
            elif await self.repository.claim_run(record.id, self._node, self.lease_ttl):
                await self._adopt(run, record)

    async def hand_over(self, deadline: float) -> int:
        """The drain: stop every investigation running here without ending it, and let go
        of its lease, for another node to adopt at once (one node: the next start resumes
        it). Returns how many were handed over."""
        self._handing_over = True
        running = list(self._cancels)
        self._letting_go.update(running)
        for scope in self._cancels.values():
            scope.cancel()
        if self._cancels:
            with trio.move_on_at(deadline):
                await self._all_let_go.wait()
        if running:
            log.info("drain: %d running investigations handed over", len(running))
        return len(running)

    async def _keep_leases(self) -> None:
        """Several nodes: renew the leases of what runs here; adopt runs whose lease lapsed."""
        while True:
            await trio.sleep(self.lease_ttl / 3)
            try:
                for investigation_id in list(self._cancels):
                    if investigation_id in self._letting_go:
                        continue
                    if not await self.repository.claim_run(investigation_id, self._node, self.lease_ttl):
                        log.warning("investigation %s: another node took its lease; stopping here", investigation_id)
                        self._letting_go.add(investigation_id)
                        self._cancels[investigation_id].cancel()
                if not self._handing_over:
                    await self._adopt_lapsed()
            except StoreUnavailable as unavailable:  # the broker logs the store's state once
                log.info("leases not renewed this time: %s", unavailable)

    async def _adopt_lapsed(self) -> None:
        for run in await self.repository.runs():
            if run.investigation_id in self._cancels or len(self._cancels) >= self._max_open:
                continue
            if await self.repository.claim_run(run.investigation_id, self._node, self.lease_ttl):
                record = await self.repository.investigation(run.investigation_id)
                if record is None:  # a run without its record (never saved): nothing to walk
                    await self.repository.end_run(run.investigation_id)
                else:
                    await self._adopt(run, record)

    async def _adopt(self, run: Run, record: Investigation) -> None:
        """Walk ``record`` again here, skipping what its stream already holds."""
        assert self._nursery is not None
        if record.finished:  # it ended before its run was: nothing to do but forget the run
            await self.repository.end_run(run.investigation_id)
            return
        last = DurableId.parse(await self.broker.last_id(investigation_stream(record.id)))
        self._replays[record.id] = last.offset if last is not None else 0
        log.info(
            "investigation %s adopted from %s at %s (%d%%; %d events already streamed)",
            record.id, record.node or "this node", record.status, record.progress, self._replays[record.id],
        )
        record = attrs.evolve(record, node=self._node)
        self.records[record.id] = record
        self._cancels[record.id] = trio.CancelScope()
        self._nursery.start_soon(self._investigate, record, run.scope)

    def _load(self) -> Sequence[Contract]:
        dataset = self._load_dataset()
        self.data_origin = data_origin(dataset)
        return dataset

    async def _scanned(self) -> dict[str, list[Anomaly]]:
        """Every detector over the whole dataset (its peers), run by the first investigation
        that needs it: a server never asked does not pay for it (~0.4 s of CPU on the sample)."""
        async with self._scanning:
            if self._detected is None:
                self._detected = await self.compute(_detect, self.dataset)
            return self._detected

    async def start(self, scope: Scope, owner_key: str, public: bool, title: str | None = None) -> Investigation:
        """Open a new investigation and start it; returns at once with its record."""
        assert self._nursery is not None, "run() the engine first"
        if len(self._cancels) >= self._max_open:
            raise EngineBusy(len(self._cancels))
        record = Investigation(
            await self._next_id(),
            title or f"Contratos: {scope.describe()}",
            scope.describe(),
            owner_key,
            public,
            node=self._node,
        )
        self.records[record.id] = record
        await self._save(record)
        self._cancels[record.id] = trio.CancelScope()
        self._nursery.start_soon(self._investigate, record, scope)
        if isinstance(scope, Filters):  # a scope the records can keep: resumable
            await self.repository.begin_run(Run(record.id, scope), self._node, self.lease_ttl)
        return record

    # --- investigations run by a backend (§8) -----------------------------------------

    async def open_external(self, title: str, owner_key: str, public: bool) -> Investigation:
        """An investigation a backend runs and publishes the events of: an id from the same
        per-year counter, status ``running``, no run to resume (it is not walked here)."""
        record = Investigation(
            await self._next_id(), title, EXTERNAL_SCOPE, owner_key, public,
            status=Status.RUNNING, node=self._node, external=True,
        )
        self.records[record.id] = record
        await self._save(record)
        return record

    async def publish_external(self, investigation_id: str, events: Sequence[Mapping[str, Any]]) -> list[str] | None:
        """Publish a backend's checked events (``protocol.published``) on the investigation's
        stream, chained like the engine's own (§11, ``dataset_sha256`` null), the record
        following them; ``report_ready`` seals and keeps the report and ends it. Returns the
        durable ids (not yet flushed), or None for an unknown investigation."""
        lock = self._external_locks.setdefault(investigation_id, trio.Lock())
        async with lock:
            try:
                return await self._publish_external(investigation_id, events)
            finally:
                if not lock.statistics().tasks_waiting:
                    self._external_locks.pop(investigation_id, None)

    async def _publish_external(self, investigation_id: str, events: Sequence[Mapping[str, Any]]) -> list[str] | None:
        record = await self.repository.investigation(investigation_id)  # another node may have published
        if record is None:
            return None
        if not record.external:
            raise PublishRefused("Esta investigação é conduzida por este servidor; não aceita eventos externos.")
        if record.finished:
            raise PublishRefused("A investigação já terminou; não aceita mais eventos.")
        if self.prover.mark(record) != record.chain:  # another node published since: continue from
            self.prover.forget(investigation_id)  # the stored mark and the stream, not from ours
        stream = investigation_stream(investigation_id)
        url = f"/api/v1/investigations/{investigation_id}/report?format=markdown"
        ids: list[str] = []
        for checked in events:
            published = to_event(
                checked, records=record.records_processed, anomalies=record.anomalies_detected, url=url
            )
            event = published.event
            record = _followed(record, event)
            if isinstance(event, ReportReady):
                sealed = await self.prover.seal_published(
                    record, _external_report(record), published.report or _external_markdown(record)
                )
                await self.repository.save_report(record.id, StoredReport(sealed.json, sealed.markdown))
                self.records[record.id] = record
                await self._save(record)  # finished before report_ready is seen
                delivery = await self.broker.publish(stream, attrs.evolve(event, proof=sealed.proof))
            else:
                if isinstance(event, InvestigationFailed):
                    self.records[record.id] = record
                    await self._save(record)
                delivery = await self.prover.publish(record, event)
                record = attrs.evolve(record, chain=self.prover.mark(record))
            ids.append(delivery.id)
        self.records[record.id] = record
        await self._save(record)
        return ids

    def cancel(self, investigation_id: str) -> bool:
        scope = self._cancels.get(investigation_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def report(self, investigation_id: str) -> StoredReport | None:
        return await self.repository.report(investigation_id)

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU-bound work over the dataset, off the event loop (heartbeats keep beating)."""
        if not self._in_thread:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._cpu)

    async def lookup(self, investigation_id: str) -> Investigation | None:
        """The freshest record: ours while we run it, else the store's (another node's).

        The store is asked every time, even for a record we hold: a private investigation
        must not answer measurably faster than a missing one (no leak of existence, §6).
        """
        local = self.records.get(investigation_id)
        stored = await self.repository.investigation(investigation_id)
        if local is not None and (local.finished or investigation_id in self._cancels):
            return local
        return stored or local

    async def listing(self) -> list[Investigation]:
        """Every investigation, oldest first, as fresh as :meth:`lookup`."""
        merged = {r.id: r for r in await self.repository.investigations()}
        for investigation_id in self._cancels:
            merged[investigation_id] = self.records[investigation_id]
        return list(merged.values())

    async def _next_id(self) -> str:
        year = self._today().year
        number = await self.repository.next_number(f"investigation:{year}")
        return f"INV-{year}-{number:03d}"

    # --- one investigation -----------------------------------------------------------

    async def _investigate(self, record: Investigation, scope: Scope) -> None:
        stream = investigation_stream(record.id)
        try:
            with self._cancels[record.id]:
                async with self._slots:
                    record = await self._walk(record, scope, stream)
        except RetrievalFailed as failed:  # expected (a refused key, an unknown body): one line
            log.warning("investigation %s: no data: %s", record.id, failed.reason)
            await self._fail_quietly(self.records[record.id], failed.reason)
        except StoreUnavailable as unavailable:  # the broker logs the store's state once
            log.warning("investigation %s stopped: %s", record.id, unavailable)
            await self._fail_quietly(self.records[record.id], "armazenamento indisponível")
        except Exception as exc:
            log.exception("investigation %s failed", record.id)
            await self._fail_quietly(self.records[record.id], str(exc) or type(exc).__name__)
        finally:
            self._cancels.pop(record.id, None)
        with trio.CancelScope(shield=True):
            try:
                if record.id in self._letting_go and not self.records[record.id].finished:
                    await self._let_go(record.id)
                    return
                if not self.records[record.id].finished:  # cancelled
                    self._replays.pop(record.id, None)
                    await self._advance(
                        self.records[record.id], Status.CANCELLED, "Investigação cancelada.", progress=record.progress
                    )
                with trio.move_on_after(RECORD_PATIENCE), contextlib.suppress(StoreUnavailable):
                    await self.repository.end_run(record.id)
            finally:
                if self._handing_over and not self._cancels:
                    self._all_let_go.set()  # the drain waits for the last one to stop

    async def _let_go(self, investigation_id: str) -> None:
        """Stopped unfinished, to be resumed elsewhere: release the lease, keep the run."""
        self._replays.pop(investigation_id, None)
        with trio.move_on_after(RECORD_PATIENCE), contextlib.suppress(StoreUnavailable):
            await self.repository.release_run(investigation_id, self._node)
        self._letting_go.discard(investigation_id)

    async def _walk(self, record: Investigation, scope: Scope, stream: str) -> Investigation:
        record = await self._advance(record, Status.INITIALIZING, "Preparando a investigação.")
        await self.ready.wait()
        if self.source is None:
            contracts = [c for c in self.dataset if scope.matches(c)]
            detected, origin, coverage = await self._scanned(), self.data_origin, list[Finding]()
            record = await self._advance(
                record, Status.DATA_RETRIEVAL,
                f"{len(contracts)} contratos encontrados para {record.scope}." + _origin_note(self.data_origin),
                records_processed=len(contracts),
            )
        else:
            record, retrieval = await self._retrieve(self.source, record, scope)
            contracts, origin, coverage = list(retrieval.contracts), retrieval.origin, list(retrieval.findings)
            detected = await self.compute(_detect, contracts)
        ids = {c.id for c in contracts}
        record = await self._advance(record, Status.ANOMALY_DETECTION, "Zumbi dos Palmares está procurando anomalias.")
        anomalies: list[Anomaly] = []
        low, high = DETECTION_SPAN
        for n, detector in enumerate(ALL_DETECTORS, start=1):
            for anomaly in detected.get(detector.__name__, []):
                if ids.intersection(anomaly.contract_ids):
                    anomalies.append(anomaly)
                    await self._publish(record, _anomaly_event(record.id, len(anomalies), anomaly))
            record = await self._advance(
                record, Status.ANOMALY_DETECTION, f"{len(anomalies)} anomalias encontradas até agora.",
                progress=low + (high - low) * n // len(ALL_DETECTORS), anomalies_detected=len(anomalies),
            )
        record = await self._advance(record, Status.FORENSIC_ENRICHMENT, "Anita Garibaldi está analisando padrões.")
        patterns = await self.compute(pattern_findings, contracts, record.scope)
        findings = [*coverage, _zumbi_summary(anomalies, record.scope), *patterns]
        for finding in findings:
            await self._publish(record, _finding_event(record.id, finding))
            if not self._replaying(record.id):
                await trio.sleep(self.step_delay)
        record = await self._advance(record, Status.SUMMARY_GENERATION, "Tiradentes está escrevendo o relatório.")
        report = await self.compute(
            build_report,
            ReportInput(record.id, record.title, record.scope, utc_timestamp(), contracts, anomalies, findings, origin),
        )
        await self.repository.save_report(
            record.id, StoredReport(orjson.dumps(report.as_json()).decode(), report.as_markdown())
        )
        summary = dict(report.summary)
        dataset_sha256 = await self.compute(self.prover.dataset_sha256, contracts if self.source else self.dataset)
        record = await self._advance(record, Status.COMPLETED, "Investigação concluída.", summary=summary)
        sealed = await self.prover.seal(record, report, dataset_sha256)  # over every event up to this one
        await self.repository.save_report(record.id, StoredReport(sealed.json, sealed.markdown))
        await self.broker.publish(stream, ReportReady(
            investigation_id=record.id, summary=summary, formats=("markdown", "json"),
            url=f"/api/v1/investigations/{record.id}/report?format=markdown", proof=sealed.proof,
        ))
        return record

    async def _retrieve(
        self, source: ContractSource, record: Investigation, scope: Scope
    ) -> tuple[Investigation, Retrieval]:
        """The scope's contracts from ``source``, followers told as they arrive (10 → 30)."""
        if not isinstance(scope, Filters):
            raise RetrievalFailed("Este pedido não diz de qual órgão são os contratos.")
        low, high = phase_progress(Status.DATA_RETRIEVAL), phase_progress(Status.ANOMALY_DETECTION)
        record = await self._advance(record, Status.DATA_RETRIEVAL, f"Buscando os contratos de {record.scope}.")
        told = trio.Lock()  # pages arrive on several tasks: events go out one at a time, in order

        async def progress(message: str, fraction: float, received: int) -> None:
            nonlocal record
            async with told:
                at = max(record.progress, min(high - 1, low + int((high - low) * fraction)))
                record = await self._advance(
                    record, Status.DATA_RETRIEVAL, message, progress=at, records_processed=received
                )

        retrieval = await source.retrieve(scope, progress)
        async with told:
            record = await self._advance(
                record, Status.DATA_RETRIEVAL, retrieval.message,
                progress=record.progress, records_processed=len(retrieval.contracts),
            )
        return record, retrieval

    async def _fail_quietly(self, record: Investigation, reason: str) -> None:
        """:meth:`_fail`, unless the store cannot take it: then a restart marks it failed."""
        try:
            await self._fail(record, reason)
        except StoreUnavailable as unavailable:
            log.warning("investigation %s: its failure could not be stored (%s)", record.id, unavailable)

    async def _fail(self, record: Investigation, reason: str) -> None:
        """Record the failure and tell every follower, so no one waits for a 100 that won't come."""
        self._replays.pop(record.id, None)  # an adopted walk that fails says so, whatever it replayed
        record = await self._advance(record, Status.FAILED, "A investigação falhou.", reason=reason)
        await self.prover.publish(record, InvestigationFailed(investigation_id=record.id, reason=reason))

    async def _advance(
        self, record: Investigation, status: InvestigationStatus, message: str, *, progress: int | None = None,
        **changes: Any,
    ) -> Investigation:
        """Enter (or move within) a phase: save the record, then announce it.

        ``progress`` defaults to where the phase starts; an ending without a progress of
        its own (failed, cancelled) keeps the one it was reached at.
        """
        start = PHASES[status].progress
        if progress is None:
            progress = record.progress if start is None else start
        record = attrs.evolve(
            record, status=status, progress=progress, updated_at=utc_timestamp(),
            chain=self.prover.mark(record), **changes,
        )
        self.records[record.id] = record
        replaying = self._replaying(record.id)
        if not replaying:  # a replay does not take the stored record back in time
            await self._save(record)
        await self._publish(record, InvestigationProgress(
            investigation_id=record.id, progress=progress, status=status, message=message,
            records_processed=record.records_processed, anomalies_detected=record.anomalies_detected,
        ))
        if not status.finished and not replaying:
            await trio.sleep(self.step_delay)
        return record

    def _replaying(self, investigation_id: str) -> bool:
        return self._replays.get(investigation_id, 0) > 0

    async def _publish(self, record: Investigation, event: Event) -> None:
        """Publish on the investigation's stream, unless an adopted walk is replaying what
        the stream already holds (its next event is that many further on)."""
        if self._replaying(record.id):
            self._replays[record.id] -= 1
            return
        self._replays.pop(record.id, None)
        await self.prover.publish(record, event)

    async def _save(self, record: Investigation) -> None:
        await self.repository.save_investigation(record)


def _followed(record: Investigation, event: Event) -> Investigation:
    """An external investigation's record after one of its events."""
    now = utc_timestamp()
    match event:
        case InvestigationProgress():
            status = record.status if event.status == Status.COMPLETED else Status(event.status)
            return attrs.evolve(
                record, status=status, progress=event.progress, records_processed=event.records_processed,
                anomalies_detected=event.anomalies_detected, updated_at=now,
            )
        case AnomalyDetected():
            return attrs.evolve(record, anomalies_detected=record.anomalies_detected + 1, updated_at=now)
        case ReportReady():
            summary = dict(event.summary)
            return attrs.evolve(record, status=Status.COMPLETED, progress=100, summary=summary, updated_at=now)
        case InvestigationFailed():
            return attrs.evolve(record, status=Status.FAILED, reason=event.reason, updated_at=now)
    return attrs.evolve(record, updated_at=now)


def _external_report(record: Investigation) -> dict[str, Any]:
    """The JSON report of an investigation run elsewhere: what this server knows of it."""
    return {
        "investigation_id": record.id, "title": record.title, "origin": "external",
        "generated_at": record.updated_at, "summary": dict(record.summary or {}),
    }


def _external_markdown(record: Investigation) -> str:
    """The Markdown served when the backend published none."""
    rows = "".join(f"| {name} | {value} |\n" for name, value in (record.summary or {}).items())
    intro = f"Investigação {record.id}, conduzida por um sistema externo."
    return f"# {record.title}\n\n{intro}\n\n| | |\n|---|---|\n{rows}"


def _detect(contracts: Sequence[Contract]) -> dict[str, list[Anomaly]]:
    """Every detector over ``contracts``, each other's peers (the dataset, or one fetch)."""
    return {detector.__name__: detector(contracts) for detector in ALL_DETECTORS}


def _origin_note(origin: str) -> str:
    return " Atenção: amostra sintética de demonstração, não dados reais." if origin == "sample" else ""


def _anomaly_event(investigation_id: str, number: int, anomaly: Anomaly) -> AnomalyDetected:
    return AnomalyDetected(
        investigation_id=investigation_id, anomaly_id=f"{investigation_id}-A{number:03d}",
        anomaly_type=anomaly.anomaly_type, severity=anomaly.severity, confidence=anomaly.confidence,
        description=anomaly.description, details=dict(anomaly.details), agent_id=ZUMBI[0],
    )


def _finding_event(investigation_id: str, finding: Finding) -> AgentFinding:
    return AgentFinding(
        investigation_id=investigation_id, agent_id=finding.agent_id, agent_name=finding.agent_name,
        finding_type=finding.finding_type, summary=finding.summary, details=dict(finding.details),
    )


def _zumbi_summary(anomalies: Sequence[Anomaly], scope: str) -> Finding:
    by_type: dict[str, int] = {}
    for anomaly in anomalies:
        by_type[anomaly.anomaly_type] = by_type.get(anomaly.anomaly_type, 0) + 1
    severe = sum(a.severity in ("high", "critical") for a in anomalies)
    if anomalies:
        summary = f"Encontrei {len(anomalies)} anomalias em {scope}, {severe} de gravidade alta ou crítica."
    else:
        summary = f"Não encontrei anomalias em {scope} com os critérios atuais."
    return Finding(ZUMBI[0], ZUMBI[1], "anomaly_overview", summary, {"by_type": by_type, "high_or_critical": severe})
