"""Investigations that fetch their contracts from a (fake) Portal da Transparência while
they run: real progress, the report's account of the data, and every failure explained."""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from cidadao_trio.config import Settings
from cidadao_trio.investigations.engine import InvestigationEngine
from cidadao_trio.investigations.portal_api import PortalClient, PortalLimiter
from cidadao_trio.investigations.portal_cache import MemoryResponseCache
from cidadao_trio.investigations.portal_source import NO_BODY, NO_KEY, PortalContractSource, portal_source
from cidadao_trio.investigations.scope import Filters

from ..contracts import HEALTH
from .fake_portal import KEY, FakePortal, running_portal
from .test_engine import engine_running, watch

NOON = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
TODAY = dt.date(2025, 12, 31)


def live(portal: FakePortal, *, key: str = KEY, deadline: float = 600.0, cache: MemoryResponseCache | None = None,
         concurrency: int = 2) -> PortalContractSource:  # fmt: skip
    client = PortalClient(portal.url, key, limiter=PortalLimiter(wall=lambda: NOON), cache=cache,
                          concurrency=concurrency, rng=random.Random(3), wall=lambda: NOON)  # fmt: skip
    return PortalContractSource(client, deadline=deadline, today=lambda: TODAY)


async def investigate(engine: InvestigationEngine, scope: Filters) -> tuple[str, Any]:
    record = await engine.start(scope, "user:alice", public=False)
    sink = await watch(engine, record.id)
    with trio.fail_after(100_000):
        while not any(e["type"] in ("report_ready", "investigation_failed") for e in sink.events):
            sink.changed = trio.Event()
            await sink.changed.wait()
    return record.id, sink


async def test_live_investigation_reports_pages_as_they_arrive(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 70)  # 1.050 contracts
    async with running_portal(portal), engine_running(source=live(portal), step_delay=0.01) as engine:
        investigation_id, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("report_ready"), sink.of("investigation_failed")
    retrieval = [p for p in sink.of("investigation_progress") if p["status"] == "data_retrieval"]
    messages = [p["message"] for p in retrieval]
    assert "Página 1: 15 contratos recebidos" in messages
    assert "Página 70: 1.050 contratos recebidos" in messages
    values = [p["progress"] for p in retrieval]
    assert values[0] == 10 and values == sorted(values) and 10 < values[-1] < 30
    assert len(set(values)) > 5  # it moves as pages arrive
    assert retrieval[-1]["records_processed"] == 1050
    assert retrieval[-1]["message"].startswith("1.050 contratos de Ministério da Saúde recebidos do Portal")
    assert "Atenção" not in retrieval[-1]["message"]
    contracts = portal.requests_to("contratos")
    assert {(s.params["codigoOrgao"], s.params["dataInicial"], s.params["dataFinal"]) for s in contracts} == {
        ("36000", "31/12/2024", "31/12/2025")
    }  # the last 12 months by default
    report = await engine.report(investigation_id)
    assert report is not None
    stored = orjson.loads(report.json)
    assert stored["data_origin"] == "api"
    assert stored["summary"]["total_records"] == 1050
    assert ("Consultei o Portal da Transparência: 1.050 contratos de Ministério da Saúde (código SIAFI 36000)"
            in report.markdown)
    assert "amostra sintética" not in report.markdown
    assert "Os dados vêm da API de dados do Portal da Transparência" in report.markdown
    coverage = next(f for f in sink.of("agent_finding") if f["finding_type"] == "data_coverage")
    assert coverage["details"]["complete"] and coverage["details"]["pages_missing"] == []


async def test_the_year_asked_is_the_period(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 1)
    async with running_portal(portal), engine_running(source=live(portal)) as engine:
        _, sink = await investigate(engine, Filters(agency=HEALTH, year=2024))
    assert sink.of("report_ready")
    (first, *_) = portal.requests_to("contratos")
    assert (first.params["dataInicial"], first.params["dataFinal"]) == ("01/01/2024", "31/12/2024")


async def test_the_body_listing_refreshes_the_code(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(bodies=[{"codigo": "36901", "descricao": "MINISTERIO DA SAUDE"}])
    portal.pages("36901", 1)
    async with running_portal(portal), engine_running(source=live(portal)) as engine:
        _, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("report_ready")
    assert {s.params["codigoOrgao"] for s in portal.requests_to("contratos")} == {"36901"}
    assert portal.requests_to("orgaos-siafi")[0].params["descricao"] == HEALTH


async def test_a_refused_body_listing_falls_back_to_the_bundled_table(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(refused={"orgaos-siafi"})
    portal.pages("36000", 1)
    async with running_portal(portal), engine_running(source=live(portal)) as engine:
        _, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("report_ready")
    assert {s.params["codigoOrgao"] for s in portal.requests_to("contratos")} == {"36000"}


async def test_a_second_investigation_reads_the_cache(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal()
    portal.pages("36000", 4)
    cache = MemoryResponseCache()
    async with running_portal(portal), engine_running(source=live(portal, cache=cache)) as engine:
        await investigate(engine, Filters(agency=HEALTH))
        asked = len(portal.seen)
        _, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("report_ready") and len(portal.seen) == asked
    assert sink.of("investigation_progress")[-1]["records_processed"] == 60


async def test_partial_fetch_names_the_missing_pages_in_the_report(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(always_slow={("contratos", 3): 10_000.0})
    portal.pages("36000", 5)
    async with running_portal(portal), engine_running(source=live(portal, deadline=120)) as engine:
        investigation_id, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("report_ready")
    retrieval = [p for p in sink.of("investigation_progress") if p["status"] == "data_retrieval"]
    assert retrieval[-1]["message"].endswith("Atenção: faltam página 3 da consulta.")
    report = await engine.report(investigation_id)
    assert report is not None and "Dados incompletos: faltam página 3" in report.markdown
    assert "o prazo de 120 s da consulta acabou" in report.markdown
    coverage = next(f for f in sink.of("agent_finding") if f["finding_type"] == "data_coverage")
    assert coverage["details"]["pages_missing"] == [3] and coverage["details"]["pages_received"] == [1, 2, 4, 5]


async def test_cancelling_during_retrieval_stops_the_requests(autojump_clock: trio.testing.MockClock) -> None:
    portal = FakePortal(always_slow={("contratos", 2): 10_000.0})
    portal.pages("36000", 5)
    async with running_portal(portal), engine_running(source=live(portal, concurrency=1)) as engine:
        record = await engine.start(Filters(agency=HEALTH), "user:alice", public=False)
        sink = await watch(engine, record.id)
        while not any(p.get("message", "").startswith("Página 1") for p in sink.of("investigation_progress")):
            sink.changed = trio.Event()
            await sink.changed.wait()
        await trio.sleep(3)
        assert engine.cancel(record.id)
        await trio.sleep(0.5)
        asked = len(portal.seen)
        await trio.sleep(600)
        assert len(portal.seen) == asked
        assert (await engine.lookup(record.id)).status == "cancelled"  # type: ignore[union-attr]


FAILURES = [
    (dict(key="chave-errada-secreta"), Filters(agency=HEALTH),
     "O Portal da Transparência recusou a chave da API (HTTP 401): confira CIDADAO_PORTAL_API_KEY"),
    (dict(key="chave-errada-secreta", bad_key_status=403), Filters(agency=HEALTH),
     "O Portal da Transparência recusou a chave da API (HTTP 403)"),
    (dict(refused={"contratos"}), Filters(agency=HEALTH),
     "O Portal da Transparência recusou a consulta /api-de-dados/contratos para esta chave (HTTP 403): "
     "a chave vale para outras consultas, mas não para esta."),
    (dict(), Filters(unknown="Ministério da Pesca"),
     "O Portal da Transparência não lista o órgão “Ministério da Pesca”."),
    (dict(always_slow={("contratos", 1): 10_000.0, ("contratos", 2): 10_000.0}), Filters(agency=HEALTH),
     "Não consegui obter os contratos de Ministério da Saúde no Portal da Transparência "
     "(de 31/12/2024 a 31/12/2025): o prazo de 120 s da consulta acabou. "
     "Faltam páginas 1 e 2, e da página 3 em diante."),
    (dict(), Filters(), NO_BODY),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "scope", "reason"), FAILURES)
async def test_failures_are_explained(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, setup: dict[str, Any], scope: Filters,
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = setup.pop("key", KEY)
    portal = FakePortal(**setup)
    portal.pages("36000", 2)
    async with running_portal(portal), engine_running(source=live(portal, key=key, deadline=120)) as engine:
        investigation_id, sink = await investigate(engine, scope)
    (failed,) = sink.of("investigation_failed")
    assert failed["reason"].startswith(reason), failed["reason"]
    record = await engine.lookup(investigation_id)
    assert record is not None and record.status == "failed" and record.reason == failed["reason"]
    assert "chave-errada-secreta" not in caplog.text + str(sink.events)
    assert "Traceback" not in caplog.text


async def test_no_key_is_explained(autojump_clock: trio.testing.MockClock) -> None:
    async with engine_running(source=PortalContractSource(None)) as engine:
        _, sink = await investigate(engine, Filters(agency=HEALTH))
    assert sink.of("investigation_failed")[0]["reason"] == NO_KEY


def test_the_key_comes_from_the_environment_only() -> None:
    settings, cache = Settings(), MemoryResponseCache()
    assert portal_source(settings, cache, environ={}) is None  # no key: the dataset, as before
    blank = portal_source(settings, cache, environ={"CIDADAO_PORTAL_API_KEY": " "})
    assert blank is not None and blank.client is None
    source = portal_source(settings, cache, environ={"CIDADAO_PORTAL_API_KEY": "segredo-123"})
    assert source is not None and source.client is not None
    assert "segredo-123" not in repr(source.client)
    assert settings.portal_api_url == "https://api.portaldatransparencia.gov.br"
    assert settings.portal_cache_ttl == 24 * 3600
