"""§11 across two nodes on one Redis: one signing key for the cluster, and an
investigation's chain continued by the node that publishes next."""

from __future__ import annotations

import json

import attrs
import trio

from cidadao_trio.broker.base import investigation_stream
from cidadao_trio.investigations.model import Investigation
from cidadao_trio.investigations.proving import Prover
from cidadao_trio.investigations.report import ReportInput, build_report
from cidadao_trio.proofs.signing import key_from_jwk
from cidadao_trio.proofs.verify import verify
from cidadao_trio.protocol.events import InvestigationProgress, ReportReady
from cidadao_trio.records.redis import RedisRecords
from cidadao_trio.records.signing_key import ServerKey

from ..contracts import HEALTH, small_dataset
from .helpers import WAIT, started
from .redis_process import RedisProcess

WHEN = "2026-12-01T10:00:00.000Z"


async def _advance(
    prover: Prover, records: RedisRecords, record: Investigation, progress: int, status: str
) -> Investigation:
    """What the engine does at every step: the record with its chain mark, then the event."""
    record = attrs.evolve(record, progress=progress, status=status, chain=prover.mark(record))
    await records.save_investigation(record)
    await prover.publish(record, InvestigationProgress(
        investigation_id=record.id, progress=progress, status=status, message=f"{progress}%",
        records_processed=40, anomalies_detected=0,
    ))
    return record


async def test_two_nodes_sign_with_one_key_and_continue_one_chain(nursery: trio.Nursery, redis: RedisProcess) -> None:
    with trio.fail_after(WAIT):
        a, b = await started(nursery, redis.url), await started(nursery, redis.url)
        key_a, key_b = ServerKey(redis=a), ServerKey(redis=b)
        signer_a, signer_b = await key_a.signer(), await key_b.signer()
        assert signer_a.key_id == signer_b.key_id  # the first node's key, stored in Redis
        assert (await ServerKey(redis=await started(nursery, redis.url)).signer()).jwk() == signer_a.jwk()

        records_a, records_b = RedisRecords(a), RedisRecords(b)
        prover_a, prover_b = Prover(a, key_a), Prover(b, key_b)
        record = Investigation("INV-2026-001", "Contratos", HEALTH, "anon", True)
        record = await _advance(prover_a, records_a, record, 0, "initializing")
        record = await _advance(prover_a, records_a, record, 10, "data_retrieval")
        await a.flush()  # node A goes away here

        adopted = await records_b.investigation(record.id)
        assert adopted is not None and adopted.chain == record.chain
        adopted = await _advance(prover_b, records_b, adopted, 30, "anomaly_detection")
        adopted = await _advance(prover_b, records_b, adopted, 100, "completed")
        contracts = [c for c in small_dataset() if c.agency == HEALTH]
        report = build_report(ReportInput(record.id, record.title, HEALTH, WHEN, contracts, [], []))
        sealed = await prover_b.seal(adopted, report, None)
        await b.publish(investigation_stream(record.id), ReportReady(
            investigation_id=record.id, summary={}, formats=("json",), url="", proof=sealed.proof
        ))
        events = [json.loads(d.text) for d in await a.retained(investigation_stream(record.id))]
    assert [e["data"]["progress"] for e in events[:-1]] == [0, 10, 30, 100]
    verdict = verify(json.loads(sealed.json), events=events, trusted=[key_from_jwk(signer_a.jwk())])
    assert verdict.ok, verdict.lines
    assert "Sem conjunto de dados" in "\n".join(verdict.lines)  # the seam of §8: dataset_sha256 null
