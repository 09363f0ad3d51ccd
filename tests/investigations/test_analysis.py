"""Anita's analysis on crafted contracts whose shares, months and modalities are known exactly."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from cidadao_trio.investigations.analysis import (
    Finding,
    SupplierShare,
    answer_question,
    hhi,
    pattern_findings,
    top_suppliers,
)
from cidadao_trio.investigations.model import Contract
from cidadao_trio.investigations.money import contract_value
from cidadao_trio.investigations.scope import Filters

SAUDE = "Ministério da Saúde"
EDUCACAO = "Ministério da Educação"
PREGAO, DISPENSA, INEXIG = "Pregão Eletrônico", "Dispensa de Licitação", "Inexigibilidade"

CNPJ = {
    "Alfa Medicamentos Ltda": "11111111000111",
    "Beta Hospitalar S.A.": "22222222000122",
    "Gama Diagnóstica Ltda": "33333333000133",
    "Delta Serviços Ltda": "44444444000144",
    "Épsilon Comércio Ltda": "55555555000155",
    "Zeta Informática Ltda": "66666666000166",
}


def contract(
    id: str,
    supplier: str,
    value: float,
    signed_on: dt.date,
    *,
    agency: str = SAUDE,
    modality: str = PREGAO,
    initial: float | None = None,
    cnpj: str | None = None,
) -> Contract:
    return Contract(
        id=id, agency=agency, supplier_name=supplier,
        supplier_cnpj=cnpj if cnpj is not None else CNPJ[supplier],
        object=f"Objeto do contrato {id}", category="medicamentos",
        initial_value=initial if initial is not None else value, global_value=value,
        signed_on=signed_on, modality=modality,
    )  # fmt: skip


# Shares of the R$ 1.000.000,00 total: Alfa 50%, Beta 25%, Gama 15%, Delta 6%, Épsilon 3%,
# Zeta 1%. HHI = 2500 + 625 + 225 + 36 + 9 + 1 = 3396. Oct-Dec: 620 mil (62%); December:
# 360 mil (36%). Without licitação: Beta (dispensa, 25%) + Gama (inexigibilidade, 15%).
SAUDE_CONTRACTS = [
    contract("S-1", "Alfa Medicamentos Ltda", 300_000.0, dt.date(2025, 12, 10)),
    contract("S-2", "Alfa Medicamentos Ltda", 200_000.0, dt.date(2025, 3, 5), initial=150_000.0),
    contract("S-3", "Beta Hospitalar S.A.", 250_000.0, dt.date(2025, 11, 20), modality=DISPENSA),
    contract("S-4", "Gama Diagnóstica Ltda", 150_000.0, dt.date(2025, 1, 15), modality=INEXIG),
    contract("S-5", "Delta Serviços Ltda", 60_000.0, dt.date(2025, 12, 1)),
    contract("S-6", "Épsilon Comércio Ltda", 30_000.0, dt.date(2025, 6, 30)),
    contract("S-7", "Zeta Informática Ltda", 10_000.0, dt.date(2025, 10, 2), modality=""),
]
OTHER_CONTRACTS = [
    contract("E-1", "Zeta Informática Ltda", 5_000_000.0, dt.date(2025, 5, 5), agency=EDUCACAO),
    contract("E-2", "Alfa Medicamentos Ltda", 700_000.0, dt.date(2024, 5, 5), agency=EDUCACAO),
]
ALL = SAUDE_CONTRACTS + OTHER_CONTRACTS


def by_type(findings: list[Finding]) -> dict[str, Finding]:
    return {f.finding_type: f for f in findings}


# --------------------------------------------------------------------------- suppliers


def test_top_suppliers_exact_shares() -> None:
    top = top_suppliers(SAUDE_CONTRACTS)
    assert [(s.name, s.total, s.contracts) for s in top] == [
        ("Alfa Medicamentos Ltda", 500_000.0, 2),
        ("Beta Hospitalar S.A.", 250_000.0, 1),
        ("Gama Diagnóstica Ltda", 150_000.0, 1),
        ("Delta Serviços Ltda", 60_000.0, 1),
        ("Épsilon Comércio Ltda", 30_000.0, 1),
    ]
    assert [s.share for s in top] == pytest.approx([0.50, 0.25, 0.15, 0.06, 0.03])
    assert top[0] == SupplierShare("Alfa Medicamentos Ltda", "11111111000111", 500_000.0, 0.5, 2)


def test_top_suppliers_n_and_empty() -> None:
    assert [s.name for s in top_suppliers(SAUDE_CONTRACTS, n=2)] == [
        "Alfa Medicamentos Ltda", "Beta Hospitalar S.A.",
    ]  # fmt: skip
    assert len(top_suppliers(SAUDE_CONTRACTS, n=10)) == 6
    assert top_suppliers([]) == []


def test_suppliers_are_grouped_by_cnpj_and_named_after_their_largest_contract() -> None:
    cs = [
        contract("X-1", "ALFA MEDICAMENTOS", 10.0, dt.date(2025, 1, 1), cnpj="1"),
        contract("X-2", "Alfa Medicamentos Ltda", 30.0, dt.date(2025, 1, 2), cnpj="1"),
        contract("X-3", "Alfa Medicamentos Ltda", 60.0, dt.date(2025, 1, 3), cnpj="2"),
    ]
    top = top_suppliers(cs)
    assert [(s.cnpj, s.name, s.total) for s in top] == [
        ("2", "Alfa Medicamentos Ltda", 60.0),
        ("1", "Alfa Medicamentos Ltda", 40.0),
    ]


def test_ties_are_broken_by_name() -> None:
    cs = [
        contract("T-1", "Zeta Informática Ltda", 100.0, dt.date(2025, 1, 1)),
        contract("T-2", "Alfa Medicamentos Ltda", 100.0, dt.date(2025, 1, 1)),
    ]
    assert [s.name for s in top_suppliers(cs)] == [s.name for s in top_suppliers(cs[::-1])] == [
        "Alfa Medicamentos Ltda", "Zeta Informática Ltda",
    ]  # fmt: skip


def test_current_value_is_the_global_value_or_the_initial_one() -> None:
    assert contract_value(SAUDE_CONTRACTS[1]) == 200_000.0  # amended from 150 mil
    zero_global = contract("Z", "Alfa Medicamentos Ltda", 0.0, dt.date(2025, 1, 1), initial=9.0)
    assert contract_value(zero_global) == 9.0


def test_hhi() -> None:
    assert hhi(SAUDE_CONTRACTS) == pytest.approx(3396.0)
    assert hhi(SAUDE_CONTRACTS[:2]) == pytest.approx(10_000.0)
    assert hhi([]) == 0.0


# --------------------------------------------------------------------------- findings


def test_pattern_findings_types_and_agent() -> None:
    findings = pattern_findings(SAUDE_CONTRACTS, "Ministério da Saúde, 2025")
    assert [f.finding_type for f in findings] == [
        "top_suppliers", "supplier_concentration", "seasonality", "procurement_modality",
    ]  # fmt: skip
    assert {(f.agent_id, f.agent_name) for f in findings} == {("anita", "Anita Garibaldi")}
    assert all("Ministério da Saúde, 2025" in f.summary for f in findings)
    orjson.dumps([f.details for f in findings])  # JSON-serializable


def test_pattern_findings_empty_scope() -> None:
    assert pattern_findings([], "todos os contratos") == []


def test_top_suppliers_finding() -> None:
    f = by_type(pattern_findings(SAUDE_CONTRACTS, "Ministério da Saúde"))["top_suppliers"]
    assert f.details["total_value"] == 1_000_000.0
    assert f.details["combined_share"] == pytest.approx(0.99)
    assert [s["share"] for s in f.details["suppliers"]] == [0.5, 0.25, 0.15, 0.06, 0.03]
    assert f.details["suppliers"][0] == {
        "name": "Alfa Medicamentos Ltda", "cnpj": "11111111000111", "total": 500_000.0,
        "share": 0.5, "contracts": 2,
    }  # fmt: skip
    assert "99%" in f.summary
    assert "Alfa Medicamentos Ltda (50%, R$ 500.000,00)" in f.summary
    assert "Zeta" not in f.summary


def test_concentration_finding_high() -> None:
    f = by_type(pattern_findings(SAUDE_CONTRACTS, "Ministério da Saúde"))[
        "supplier_concentration"
    ]
    assert f.details["hhi"] == 3396.0
    assert f.details["level"] == "alta"
    assert f.details["suppliers"] == 6
    assert f.details["equivalent_suppliers"] == pytest.approx(10_000 / 3396, abs=0.01)
    assert "3.396" in f.summary and "concentração alta" in f.summary


@pytest.mark.parametrize(
    ("suppliers", "level"),
    [(10, "baixa"), (5, "moderada"), (3, "alta")],  # HHI 1000, 2000, 3333
)
def test_concentration_levels(suppliers: int, level: str) -> None:
    cs = [contract(f"L-{i}", "Alfa Medicamentos Ltda", 100.0, dt.date(2025, 1, 1), cnpj=str(i))
          for i in range(suppliers)]  # fmt: skip
    f = by_type(pattern_findings(cs, "x"))["supplier_concentration"]
    assert f.details["level"] == level
    assert f.details["hhi"] == pytest.approx(10_000 / suppliers, abs=0.1)


def test_seasonality_finding() -> None:
    f = by_type(pattern_findings(SAUDE_CONTRACTS, "Ministério da Saúde"))["seasonality"]
    d = f.details
    assert d["peak_month"] == "2025-12"
    assert d["peak_value"] == 360_000.0
    assert d["peak_share"] == pytest.approx(0.36)
    assert d["last_quarter_share"] == pytest.approx(0.62)
    assert d["december_share"] == pytest.approx(0.36)
    assert d["year_end_rush"] is True
    assert d["monthly"][0] == {"month": "2025-01", "total": 150_000.0}
    assert len(d["monthly"]) == 6
    assert "dezembro/2025" in f.summary and "R$ 360.000,00" in f.summary
    assert "62%" in f.summary and "corrida de fim de ano" in f.summary


def test_seasonality_without_rush() -> None:
    cs = [contract(f"M-{m}", "Alfa Medicamentos Ltda", 100.0 + m, dt.date(2024, m, 1))
          for m in range(1, 13)]  # fmt: skip
    d = by_type(pattern_findings(cs, "x"))["seasonality"].details
    assert d["peak_month"] == "2024-12"
    assert d["last_quarter_share"] == pytest.approx(
        (110 + 111 + 112) / sum(range(101, 113)), abs=1e-4
    )
    assert d["year_end_rush"] is False


def test_modality_finding() -> None:
    f = by_type(pattern_findings(SAUDE_CONTRACTS, "Ministério da Saúde"))[
        "procurement_modality"
    ]
    d = f.details
    assert d["direct_share"] == pytest.approx(0.40)
    assert d["dispensa_share"] == pytest.approx(0.25)
    assert d["inexigibilidade_share"] == pytest.approx(0.15)
    assert d["direct_value"] == 400_000.0
    assert d["by_modality"][0] == {
        "modality": PREGAO, "total": 590_000.0, "share": 0.59, "contracts": 4,
    }  # fmt: skip
    assert {r["modality"] for r in d["by_modality"]} == {PREGAO, DISPENSA, INEXIG, "Não informada"}
    assert "40% do valor (R$ 400.000,00)" in f.summary
    assert "25% por dispensa" in f.summary and "15% por inexigibilidade" in f.summary
    assert "parcela alta" in f.summary


# --------------------------------------------------------------------------- questions


def test_answer_question_with_real_figures() -> None:
    answer = answer_question(Filters(agency=SAUDE, year=2025), ALL)
    assert "“Ministério da Saúde, 2025”" in answer
    assert "7 contratos, que somam R$ 1.000.000,00" in answer
    for name, total, share in [
        ("Alfa Medicamentos Ltda", "R$ 500.000,00", "50%"),
        ("Beta Hospitalar S.A.", "R$ 250.000,00", "25%"),
        ("Gama Diagnóstica Ltda", "R$ 150.000,00", "15%"),
        ("Delta Serviços Ltda", "R$ 60.000,00", "6%"),
        ("Épsilon Comércio Ltda", "R$ 30.000,00", "3%"),
    ]:
        assert f"{name}, com {total} ({share})" in answer
    assert "Zeta" not in answer  # 6th supplier, and the big Educação contract is filtered out
    assert "R$ 5.000.000,00" not in answer
    assert "O maior contrato é o S-1, de R$ 300.000,00" in answer
    assert "R$ 142.857,14 por contrato" in answer  # mean
    assert "dezembro/2025" in answer
    assert 3 <= answer.count(". ") + 1 <= 12  # a short paragraph ("S.A." adds periods)


def test_answer_question_min_value_filter() -> None:
    answer = answer_question(Filters(min_value=250_000.0), ALL)
    assert "4 contratos, que somam R$ 6.250.000,00" in answer  # S-1, S-3, E-1, E-2
    assert "O maior contrato é o E-1, de R$ 5.000.000,00" in answer
    assert "Gama" not in answer


def test_answer_question_single_supplier() -> None:
    answer = answer_question(Filters(agency=EDUCACAO, year=2024), ALL)
    assert "encontrei 1 contrato, que soma R$ 700.000,00" in answer
    assert "O único fornecedor é Alfa Medicamentos Ltda, com R$ 700.000,00 (100%)" in answer
    assert "Juntos" not in answer


def test_answer_question_no_match_is_kind() -> None:
    answer = answer_question(Filters(agency=EDUCACAO, year=2019), ALL)
    assert answer.startswith("Não encontrei contratos para Ministério da Educação, 2019.")
    assert "Que tal tentar outro órgão" in answer
    assert "R$ 0,00" not in answer
    assert answer_question(Filters(), []).startswith("Não encontrei contratos para todos os")
