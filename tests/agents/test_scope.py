"""Scopes as people type them (issue 12): any case or accents, current and former official
names, SIAFI codes and UGs; a scope that matches nothing is answered with the closest names
and never widened to every contract."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import trio

from cidadao_trio.agents.base import AgentRequest
from cidadao_trio.agents.intent import find_agency, find_ug, parse_intent, unknown_body
from cidadao_trio.agents.investigators import Zumbi
from cidadao_trio.investigations.bodies import body_named, closest_names, matches_body
from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.scope import Filters

MDS = "Ministério do Desenvolvimento e Assistência Social"
MDS_OFFICIAL = "Ministério do Desenvolvimento e Assistência Social, Família e Combate à Fome"
SAUDE = "Ministério da Saúde"


def contract(agency: str, *, code: str = "", ug: str = "", year: int = 2025, n: int = 1) -> Contract:
    return Contract(id=f"{n:05d}/{year} (UG {ug or '000000'})", agency=agency, supplier_name="Alfa Ltda",
                    supplier_cnpj="", object="Aquisição de papel", category="", initial_value=1000.0,
                    global_value=1000.0, signed_on=dt.date(year, 3, 1), agency_code=code, ug=ug)  # fmt: skip


@pytest.mark.parametrize("typed", [MDS_OFFICIAL, MDS_OFFICIAL.upper(), "ministerio do desenvolvimento e "
                                   "assistencia social, familia e combate a fome", "MDS"])  # fmt: skip
def test_the_current_official_name_of_mds_is_found_and_matches_its_contracts(typed: str) -> None:
    filters = parse_intent(f"Investigar o {typed}").filters
    assert filters.agency == MDS and filters.unknown is None
    assert filters.matches(contract(MDS_OFFICIAL))  # the portal spells it in full
    assert filters.matches(contract(MDS_OFFICIAL.upper()))
    assert filters.matches(contract(MDS))  # the sample's spelling
    assert not filters.matches(contract(SAUDE))


def test_upper_case_and_accentless_names_match() -> None:
    filters = parse_intent("investigar MINISTÉRIO DA SAÚDE").filters
    assert filters.agency == SAUDE
    for spelling in (SAUDE, SAUDE.upper(), "MINISTERIO DA SAUDE", "ministerio da saude"):
        assert filters.matches(contract(spelling)), spelling
    assert not Filters(agency="Ministério da Educação").matches(contract(SAUDE.upper()))


def test_the_siafi_code_decides_when_the_contract_carries_one() -> None:
    assert matches_body(SAUDE, contract("MS - Sede", code="36000"))  # an unusual spelling
    assert not matches_body(SAUDE, contract(SAUDE, code="26000"))  # the code says MEC
    assert matches_body("Ministério da Fazenda", contract("MINISTÉRIO DA ECONOMIA"))  # former name
    assert body_named("ministerio da infraestrutura").name == "Ministério dos Transportes"


def test_siafi_codes_and_ugs_people_type() -> None:
    assert find_agency("investigar o órgão 36000") == SAUDE
    assert find_agency("código SIAFI 26000 em 2024") == "Ministério da Educação"
    assert find_agency("contratos acima de R$ 36000") is None  # money, not a code
    assert find_agency("investigar 12345") is None  # no body has that code
    assert find_ug("investigar a UG 250005 em 2025") == "250005"
    assert find_ug("unidade gestora 250005") == "250005"
    filters = parse_intent("Investigar a UG 250005").filters
    assert filters.ug == "250005" and "UG 250005" in filters.describe()
    assert filters.matches(contract(SAUDE, ug="250005"))
    assert not filters.matches(contract(SAUDE, ug="250006"))


def test_a_ministry_we_do_not_know_is_kept_as_typed() -> None:
    assert unknown_body("Investigar o Ministério do Esporte em 2024") == "ministerio do esporte"
    assert unknown_body("Investigar o Ministério da Saúde") is None
    assert unknown_body("Quanto gastou a saúde?") is None
    assert parse_intent("investigar o Ministerio dos Povos Indigenas").filters.unknown == (
        "ministerio dos povos indigenas")


def test_closest_names_are_accent_and_case_blind() -> None:
    known = [SAUDE, "Ministério da Educação", "Ministério dos Transportes", MDS]
    assert closest_names("ministerio da saud", known)[0] == SAUDE
    assert closest_names("MINISTÉRIO DA EDUCACÃO", known)[0] == "Ministério da Educação"
    assert "Ministério dos Transportes" in closest_names("ministerio do transporte", known)
    assert closest_names("ministerio da xyzzy", known) == []


class _Engine:
    """Just what Zumbi reads before starting: a loaded dataset; ``start`` must not run."""

    def __init__(self, contracts: list[Contract]) -> None:
        self.dataset = contracts
        self.ready = trio.Event()
        self.ready.set()
        self.started: list[Any] = []

    async def compute(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def start(self, scope: Any, *args: Any, **kwargs: Any) -> Any:
        self.started.append(scope)
        raise RuntimeError("must not start")


async def _reply(engine: _Engine, message: str) -> tuple[str, list[str]]:
    reply = Zumbi(engine).reply(AgentRequest(session_id="s", message=message, context={}))  # type: ignore[arg-type]
    text = "".join([chunk async for chunk in reply])
    return text, reply.suggested_actions


DATA = [contract(SAUDE, n=1), contract("Ministério da Educação", n=2), contract("Ministério dos Transportes", n=3)]


async def test_an_unknown_ministry_is_answered_with_the_closest_names() -> None:
    engine = _Engine(DATA)
    text, actions = await _reply(engine, "Investigar o Ministério do Transporte Urbano")
    assert engine.started == []
    assert "não abri a investigação" in text and "Ministério dos Transportes" in text
    assert "Investigar contratos do Ministério dos Transportes" in actions


async def test_a_known_body_absent_from_the_data_is_not_widened_to_everything() -> None:
    engine = _Engine(DATA)
    text, _ = await _reply(engine, "Investigar o Ministério da Cultura")
    assert engine.started == []
    assert "Não encontrei contratos de Ministério da Cultura" in text


async def test_a_year_with_no_contract_of_the_body_says_so() -> None:
    engine = _Engine(DATA)
    text, _ = await _reply(engine, "Investigar o Ministério da Saúde em 2019")
    assert engine.started == []
    assert "Nenhum contrato de Ministério da Saúde, 2019" in text


async def test_a_scope_that_matches_starts_the_investigation() -> None:
    engine = _Engine([contract(SAUDE.upper(), n=1)])
    with pytest.raises(RuntimeError, match="must not start"):
        await _reply(engine, "Investigar o Ministério da Saúde")
    assert engine.started and engine.started[0].agency == SAUDE


async def test_the_investigate_command_refuses_an_unknown_ministry(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from cidadao_trio.terminal import run_investigate

    args = argparse.Namespace(query="Ministério dos Transporte Aéreo", dataset="", output="")
    assert await run_investigate(args) == 2
    out = capsys.readouterr().out
    assert "nada foi investigado" in out and "Ministério dos Transportes" in out


async def test_anita_does_not_answer_for_every_contract_when_the_ministry_is_unknown() -> None:
    from cidadao_trio.agents.investigators import Anita

    engine = _Engine(DATA)
    reply = Anita(engine).reply(  # type: ignore[arg-type]
        AgentRequest(session_id="s", message="Quanto gastou o Ministério do Transporte Urbano?", context={}))
    text = "".join([chunk async for chunk in reply.chunks])
    assert "Não reconheci o órgão" in text and "Ministério dos Transportes" in text
