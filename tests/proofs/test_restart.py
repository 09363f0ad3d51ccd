"""The key and the chain survive a restart: one key per data directory (or the one given),
and an investigation's chain continued, not restarted, by the process that publishes next."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from cidadao_trio.broker.base import investigation_stream
from cidadao_trio.broker.local import LocalBroker
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.model import Investigation
from cidadao_trio.investigations.proving import Prover
from cidadao_trio.investigations.report import ReportInput, build_report
from cidadao_trio.investigations.scope import Filters
from cidadao_trio.proofs.chain import chain_of
from cidadao_trio.proofs.keyfile import load_public
from cidadao_trio.proofs.signing import Signer
from cidadao_trio.proofs.verify import verify
from cidadao_trio.protocol.events import InvestigationProgress, ReportReady
from cidadao_trio.records.local import StoreRecords
from cidadao_trio.records.signing_key import ServerKey
from cidadao_trio.store.sqlite import SqliteStore

from ..contracts import HEALTH, small_dataset
from ..harness import http_get, running_server
from .helpers import retained_events


async def served_key(**settings: Any) -> dict[str, Any]:
    async with running_server(dataset=small_dataset(), **settings) as server:
        status, body = await http_get(server, "/api/v1/keys")
        assert status == 200
        keys: dict[str, Any] = json.loads(body)
        return keys


async def test_the_key_is_created_once_in_the_data_directory(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first = await served_key(store="sqlite", data_dir=str(tmp_path))
    (jwk,) = first["keys"]
    assert {k: jwk[k] for k in ("kty", "crv", "alg")} == {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA"}
    path = tmp_path / "signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await served_key(store="sqlite", data_dir=str(tmp_path)) == first  # survives the restart
    given = tmp_path / "given.pem"
    signer = Signer.ephemeral()
    given.write_bytes(signer.pem())
    given_keys = await served_key(store="sqlite", data_dir=str(tmp_path), signing_key=str(given))
    assert given_keys["keys"][0]["kid"] == signer.key_id


async def test_a_report_from_the_server_verifies_with_its_published_key(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(dataset=small_dataset(), investigation_step_delay=0.0) as server:
        assert server.engine is not None
        record = await server.engine.start(Filters(agency=HEALTH), "anon", public=True)
        path = f"/api/v1/investigations/{record.id}"
        while (report := await http_get(server, f"{path}/report?format=json"))[0] != 200 or b'"proof"' not in report[1]:
            await trio.sleep(0.1)
        keys, events = (await http_get(server, "/api/v1/keys"))[1], (await http_get(server, f"{path}/events"))[1]
        markdown = (await http_get(server, f"{path}/report?format=markdown"))[1].decode()
        html = (await http_get(server, f"{path}/report?format=html"))[1].decode()
    served = json.loads(report[1])
    verdict = verify(served, events=json.loads(events)["events"], trusted=load_public(keys))  # §8 page
    assert verdict.ok, verdict.lines
    assert served["markdown"] == markdown and "### Como verificar" in markdown
    assert "<h3>Como verificar</h3>" in html and "<code>cidadao-trio verify" in html


async def _cut_mid_investigation(path: Path) -> Investigation:
    """Start an investigation on the SQLite store at ``path`` and stop the process while it
    is fetching its contracts (the middle of an investigation)."""
    broker = LocalBroker(store=SqliteStore(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        stuck = _StuckSource()
        engine = InvestigationEngine(
            broker, StoreRecords(broker), small_dataset, in_thread=False, step_delay=0.0, source=stuck
        )
        await nursery.start(engine.run)
        record = await engine.start(Filters(agency=HEALTH), "anon", public=True)
        await stuck.fetching.wait()
        await broker.flush()
        nursery.cancel_scope.cancel()
    return record


async def test_the_chain_is_continued_by_the_process_that_publishes_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    record = await _cut_mid_investigation(path)  # the server stops in the middle of the investigation
    before = await _events_of(path, record.id)
    assert before and before[-1]["type"] == "investigation_progress"

    # The next process continues it (issue 20 resumes it through the engine; this is that seam).
    broker = LocalBroker(store=SqliteStore(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        records = StoreRecords(broker)
        prover = Prover(broker, ServerKey())
        stored = await records.investigation(record.id)
        assert stored is not None and stored.chain is not None
        for progress in (50, 100):
            stored = attrs.evolve(stored, progress=progress, chain=prover.mark(stored))
            await records.save_investigation(stored)
            await prover.publish(stored, InvestigationProgress(
                investigation_id=record.id, progress=progress,
                status="anomaly_detection" if progress < 100 else "completed",
                message="continuada", records_processed=40, anomalies_detected=0,
            ))
        contracts = [c for c in small_dataset() if c.agency == HEALTH]
        when = "2026-12-01T10:00:00.000Z"
        report = build_report(ReportInput(record.id, stored.title, stored.scope, when, contracts, [], []))
        sealed = await prover.seal(stored, report, prover.dataset_sha256(small_dataset()))
        await broker.publish(investigation_stream(record.id), ReportReady(
            investigation_id=record.id, summary={}, formats=("json",), url="", proof=sealed.proof
        ))
        await broker.flush()
        nursery.cancel_scope.cancel()
    events = await _events_of(path, record.id)
    assert events[: len(before)] == before and len(events) == len(before) + 3
    assert sealed.proof["events"] == len(before) + 2
    verdict = verify(json.loads(sealed.json), events=events)
    assert verdict.ok, verdict.lines


async def test_the_engine_keeps_the_chain_across_its_own_restart(tmp_path: Path) -> None:
    """Whatever a restart makes of an interrupted investigation (failed, or resumed), its
    record's chain mark is the chain of every event before it, from the first one."""
    path = tmp_path / "store.sqlite3"
    record = await _cut_mid_investigation(path)
    with trio.fail_after(30):
        broker = LocalBroker(store=SqliteStore(path))
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            engine = InvestigationEngine(broker, StoreRecords(broker), small_dataset, in_thread=False, step_delay=0.0)
            await nursery.start(engine.run)
            while not (engine.records.get(record.id) and engine.records[record.id].finished):
                await trio.sleep(0.01)
            await broker.flush()
            finished = await engine.repository.investigation(record.id)
            stored = await engine.report(record.id)
            nursery.cancel_scope.cancel()
    events = await _events_of(path, record.id)
    assert finished is not None and finished.chain is not None
    chained = events[: finished.chain.events]
    assert finished.chain.events > 1 and chain_of(record.id, chained) == finished.chain
    if stored is not None:  # resumed to its report: the whole chain verifies
        verdict = verify(json.loads(stored.json), events=events)
        assert verdict.ok, verdict.lines


class _StuckSource:
    """Fetches a first page, tells, then never answers: the server stops meanwhile."""

    def __init__(self) -> None:
        self.fetching = trio.Event()

    async def retrieve(self, scope: Any, progress: Any) -> Any:
        await progress("Página 1: 10 contratos recebidos", 0.3, 10)
        self.fetching.set()
        await trio.sleep_forever()


async def _events_of(path: Path, investigation_id: str) -> list[dict[str, Any]]:
    broker = LocalBroker(store=SqliteStore(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        events = await retained_events(broker, investigation_id)
        nursery.cancel_scope.cancel()
    return events
