"""Intent routing and filter extraction on many Portuguese phrasings."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cidadao_trio.agents.intent import (
    AGENCY_ALIASES,
    Intent,
    find_agency,
    parse_amount,
    parse_intent,
)
from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.money import format_brl
from cidadao_trio.investigations.sample import AGENCIES
from cidadao_trio.investigations.scope import Filters

SAUDE = "Ministério da Saúde"
EDUCACAO = "Ministério da Educação"
DEFESA = "Ministério da Defesa"
JUSTICA = "Ministério da Justiça e Segurança Pública"


KINDS: dict[str, list[str]] = {
    "investigate": [
        "Investigar contratos do Ministério da Saúde",
        "investigue o MEC",
        "INVESTIGAR A DEFESA EM 2025",
        "quero auditar os contratos da educação",
        "Audite os gastos da Justiça",
        "analisar contratos da saúde em busca de anomalias",
        "analise os contratos do MEC e procure anomalias",
        "procure irregularidades nos contratos da Defesa",
        "Procure IRREGULARIDADES",
        "busque sobrepreço nos contratos da saúde",
        "há indícios de fraude no ministério da educacao?",
        "fiscalizar o ministério dos transportes",
        "faça um pente fino nos contratos do DNIT",
        "verifique se há fraudes no MEC",
        "tem algo suspeito no MEC?",
        "Oi, quero investigar a saúde",
    ],
    "analyze": [
        "Quais os maiores fornecedores do MEC?",
        "quais os maiores fornecedores",
        "quanto gastou o Ministério da Saúde em 2025?",
        "Quanto o ministério gastou?",
        "QUANTO O MINISTERIO DA SAUDE GASTOU",
        "gastos por mês da defesa",
        "top fornecedores",
        "Top 5 fornecedores da Cultura",
        "ranking de fornecedores",
        "qual o maior contrato da educação?",
        "quem mais recebeu dinheiro da saúde em 2024?",
        "contratos maiores que 500 mil",
        "quantos contratos a Fazenda assinou em 2025?",
        "qual o valor total de despesas do MEC",
        "Ministério da Saúde, 2025",
    ],
    "report": [
        "relatório",
        "Gerar relatório da investigação INV-2026-001",
        "gere o relatorio",
        "quero um RELATÓRIO dos contratos da saúde",
        "resumo da investigação INV-2026-001",
        "me manda o resumo da investigação",
        "crie um relatório de progresso",
    ],
    "status": [
        "status",
        "Qual o status da INV-2026-002?",
        "como está a investigação?",
        "COMO ESTA A INVESTIGACAO",
        "e o andamento?",
        "qual o progresso",
        "já terminou?",
        "em que pé está a análise?",
        "como anda o relatório?",
    ],
    "converse": [
        "oi",
        "Olá, Drummond!",
        "bom dia",
        "obrigado",
        "ajuda",
        "Como funciona?",
        "Como investigar?",
        "o que é sobrepreço?",
        "O que é uma anomalia?",
        "o que é fracionamento",
        "Quem são os agentes?",
        "quantos agentes existem?",
        "o que a Anita analisa?",
        "de onde vêm os dados?",
        "tchau",
        "tem algum problema com o sistema?",
        "isso é superfaturamento?",
        "FRACIONAMENTO DE COMPRAS",
        "PORTAL DA TRANSPARENCIA",
        "o que fazem com MEUS DADOS",
        "",
    ],
}


@pytest.mark.parametrize(
    ("kind", "message"), [(k, m) for k, ms in KINDS.items() for m in ms]
)
def test_kind(kind: str, message: str) -> None:
    assert parse_intent(message).kind == kind


def test_parse_intent_collects_everything() -> None:
    intent = parse_intent("Investigar contratos da SAÚDE em 2025 acima de R$ 1 milhão")
    assert intent == Intent(
        kind="investigate",
        filters=Filters(agency=SAUDE, year=2025, min_value=1_000_000.0),
        investigation_id=None,
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Gerar relatório da investigação INV-2026-001", "INV-2026-001"),
        ("status da inv-2026-042", "INV-2026-042"),
        ("resumo da investigação INV 2025 7", "INV-2025-7"),
        ("como está a investigação?", None),
    ],
)
def test_investigation_id(message: str, expected: str | None) -> None:
    assert parse_intent(message).investigation_id == expected


def test_investigation_id_digits_are_not_a_year() -> None:
    assert parse_intent("relatório INV-2026-001").filters.year is None
    assert parse_intent("relatório INV-2026-001 dos contratos de 2024").filters.year == 2024


# --------------------------------------------------------------------------- agencies

AGENCY_PHRASES: list[tuple[str, str]] = [
    ("contratos do Ministério da Saúde", SAUDE),
    ("gastos da saúde", SAUDE),
    ("GASTOS DA SAUDE", SAUDE),
    ("investigar o MS", SAUDE),
    ("verbas do SUS", SAUDE),
    ("educação", EDUCACAO),
    ("Educacao em 2025", EDUCACAO),
    ("investigue o mec", EDUCACAO),
    ("contratos da Defesa", DEFESA),
    ("compras do Exército", DEFESA),
    ("a justiça gastou quanto?", JUSTICA),
    ("Polícia Federal", JUSTICA),
    ("segurança pública", JUSTICA),
    ("Receita Federal", "Ministério da Fazenda"),
    ("fazenda", "Ministério da Fazenda"),
    ("agricultura", "Ministério da Agricultura e Pecuária"),
    ("ministerio da ciencia, tecnologia e inovacao",
     "Ministério da Ciência, Tecnologia e Inovação"),
    ("Ciência e Tecnologia", "Ministério da Ciência, Tecnologia e Inovação"),
    ("MCTI", "Ministério da Ciência, Tecnologia e Inovação"),
    ("Ministério das Cidades", "Ministério das Cidades"),
    ("transportes", "Ministério dos Transportes"),
    ("obras do DNIT", "Ministério dos Transportes"),
    ("meio ambiente", "Ministério do Meio Ambiente e Mudança do Clima"),
    ("Ibama", "Ministério do Meio Ambiente e Mudança do Clima"),
    ("cultura", "Ministério da Cultura"),
    ("Assistência Social", "Ministério do Desenvolvimento e Assistência Social"),
    ("MDS", "Ministério do Desenvolvimento e Assistência Social"),
    ("Minas e Energia", "Ministério de Minas e Energia"),
    ("comunicações", "Ministério das Comunicações"),
    ("Ministério do Trabalho", "Ministério do Trabalho e Emprego"),
    ("trabalho e emprego", "Ministério do Trabalho e Emprego"),
]


@pytest.mark.parametrize(("text", "agency"), AGENCY_PHRASES)
def test_find_agency(text: str, agency: str) -> None:
    assert find_agency(text) == agency


@pytest.mark.parametrize("agency", AGENCIES)
def test_every_sample_agency_is_found_by_its_own_name(agency: str) -> None:
    assert find_agency(f"Investigar contratos do {agency} em 2025") == agency
    assert find_agency(agency.upper()) == agency


def test_aliases_cover_every_sample_agency_and_every_known_body() -> None:
    from cidadao_trio.investigations.bodies import BODIES

    assert set(AGENCIES) <= set(AGENCY_ALIASES)
    assert set(AGENCY_ALIASES) == {b.name for b in BODIES}


@pytest.mark.parametrize(
    "text",
    [
        "mesmo assim, obrigado",  # "ms" inside a word
        "msg recebida",
        "contratos de Campo Grande/MS",  # a state, not the ministry
        "quanto se gastou com agricultura familiar",  # real Agricultura, checked below
        "defesa civil",
        "defesa do consumidor",
        "compra de energia solar",
        "tecnologia da informação",
        "infraestrutura de TI",
        "bom trabalho!",
        "para sua ciência",
        "transporte escolar",
        "mapa de gastos",
        "cidades do interior",
        "os gastos de hoje",
        "",
    ],
)
def test_no_false_agency(text: str) -> None:
    found = find_agency(text)
    if "agricultura" in text:
        assert found == "Ministério da Agricultura e Pecuária"
    else:
        assert found is None


def test_agricultura_is_not_cultura() -> None:
    assert find_agency("agricultura") == "Ministério da Agricultura e Pecuária"
    assert find_agency("cultura") == "Ministério da Cultura"


def test_first_mentioned_agency_wins() -> None:
    assert find_agency("compare a educação com a saúde") == EDUCACAO
    assert find_agency("compare a saúde com a educação") == SAUDE


# --------------------------------------------------------------------------- amounts and years


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("acima de R$ 1 milhão", 1_000_000.0),
        ("contratos acima de R$ 1,5 milhão", 1_500_000.0),
        ("maiores que 1 milhão", 1_000_000.0),
        ("contratos maiores que 500 mil", 500_000.0),
        ("acima de R$ 250.000,00", 250_000.0),
        ("mais de R$250000", 250_000.0),
        ("a partir de 2 milhões", 2_000_000.0),
        ("pelo menos 1.5 milhao", 1_500_000.0),
        ("superior a 300 mil reais", 300_000.0),
        ("contratos de 80 mil", 80_000.0),
        ("mais de 2 bilhões", 2_000_000_000.0),
        ("acima de 750 reais", 750.0),
        ("ACIMA DE R$ 1.000.000,00", 1_000_000.0),
    ],
)
def test_parse_amount(text: str, value: float) -> None:
    assert parse_amount(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "até R$ 50 mil",  # an upper bound is not a minimum
        "abaixo de 1 milhão",
        "contratos menores que 500 mil",
        "em 2025",
        "top 10 fornecedores",
        "INV-2026-001",
        "",
    ],
)
def test_no_amount(text: str) -> None:
    assert parse_amount(text) is None


@given(st.decimals(min_value=0, max_value=10**9, places=2))
def test_parse_amount_reads_format_brl(value: object) -> None:
    amount = float(value)  # type: ignore[arg-type]
    assert parse_amount(f"acima de {format_brl(amount)}") == round(amount, 2)


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("gastos de 2025", 2025),
        ("em 2024.", 2024),
        ("contratos de 2000", 2000),
        ("contratos de 2099 acima de 2 milhões", 2099),
        ("1999", None),
        ("2100", None),
        ("R$ 2025", None),
        ("acima de 2.025 mil", None),
        ("20250", None),
        ("sem ano", None),
    ],
)
def test_year(text: str, year: int | None) -> None:
    assert parse_intent(text).filters.year == year


# --------------------------------------------------------------------------- Filters


def contract(agency: str = SAUDE, year: int = 2025, value: float = 100_000.0,
             initial: float | None = None) -> Contract:  # fmt: skip
    return Contract(
        id="C1", agency=agency, supplier_name="Alfa Ltda", supplier_cnpj="11222333000181",
        object="Aquisição de insulina", category="medicamentos",
        initial_value=initial if initial is not None else value, global_value=value,
        signed_on=dt.date(year, 6, 1),
    )  # fmt: skip


def test_filters_match_everything_by_default() -> None:
    assert Filters().matches(contract())
    assert Filters().matches(contract(agency=EDUCACAO, year=2003, value=1.0))


def test_filters_agency_year_and_value() -> None:
    f = Filters(agency=SAUDE, year=2025, min_value=1_000_000.0)
    assert f.matches(contract(value=1_000_000.0))  # inclusive
    assert f.matches(contract(value=2_000_000.0))
    assert not f.matches(contract(value=999_999.99))
    assert not f.matches(contract(agency=EDUCACAO, value=2_000_000.0))
    assert not f.matches(contract(year=2024, value=2_000_000.0))


def test_filters_value_falls_back_to_initial_value() -> None:
    f = Filters(min_value=500_000.0)
    assert f.matches(contract(value=0.0, initial=600_000.0))
    assert not f.matches(contract(value=400_000.0, initial=600_000.0))  # amended down


@pytest.mark.parametrize(
    ("filters", "text"),
    [
        (Filters(), "todos os contratos"),
        (Filters(agency=SAUDE, year=2025, min_value=1e6),
         "Ministério da Saúde, 2025, acima de R$ 1.000.000,00"),
        (Filters(agency=EDUCACAO), "Ministério da Educação"),
        (Filters(year=2024), "2024"),
        (Filters(min_value=500_000.0), "acima de R$ 500.000,00"),
    ],
)  # fmt: skip
def test_filters_describe(filters: Filters, text: str) -> None:
    assert filters.describe() == text


def test_describe_round_trips_through_parse_intent() -> None:
    f = Filters(agency=JUSTICA, year=2024, min_value=1_234_567.89)
    assert parse_intent(f"quanto gastou {f.describe()}?").filters == f
