"""Tiradentes' report: summary numbers, risk score, Markdown layout and JSON on crafted data."""

from __future__ import annotations

import datetime as dt
import math
import re

import orjson
import pytest

from cidadao_trio.agents.intent import parse_intent
from cidadao_trio.investigations.analysis import Finding, pattern_findings
from cidadao_trio.investigations.detectors import ANOMALY_TYPES, run_all
from cidadao_trio.investigations.model import Anomaly, AnomalyType, Contract, Severity
from cidadao_trio.investigations.report import (
    SECTION_TITLES,
    TYPE_LABELS,
    Report,
    ReportInput,
    build_report,
    risk_score,
)
from cidadao_trio.investigations.sample import generate_sample

SAUDE = "Ministério da Saúde"
HEADINGS = ["## Resumo Executivo", "## Visão Geral", "## Anomalias", "## Avaliação de Risco",
            "## Recomendações", "## Metodologia"]  # fmt: skip


def contract(id: str, value: float, supplier: str = "Alfa Ltda", month: int = 3) -> Contract:
    return Contract(
        id=id, agency=SAUDE, supplier_name=supplier, supplier_cnpj=f"{len(supplier):014d}",
        object="Aquisição de insulina", category="medicamentos", initial_value=value,
        global_value=value, signed_on=dt.date(2025, month, 10),
    )  # fmt: skip


def anomaly(
    anomaly_type: AnomalyType,
    severity: Severity,
    ids: tuple[str, ...],
    description: str = "Algo fora do padrão",
    **details: object,
) -> Anomaly:
    return Anomaly(anomaly_type, severity, 0.8, description, ids, dict(details))


# C1-C4 sum to R$ 1.000.000,00; anomalies touch C1, C2 and C3 (C1 twice): R$ 180.000,00.
CONTRACTS = [
    contract("C1", 100_000.0),
    contract("C2", 50_000.0, supplier="Beta | Filhos Ltda"),
    contract("C3", 30_000.0, month=12),
    contract("C4", 820_000.0, supplier="Gama S.A."),
]
ANOMALIES = [
    anomaly("price_deviation", "critical", ("C1",), "Preço 400% acima | da mediana"),
    anomaly("duplicate_contract", "high", ("C1", "C2"), "Contratos C1 e C2 iguais"),
    anomaly("value_divergence", "medium", ("C3",), "Valor final 80% acima"),
]
FINDINGS = [Finding("anita", "Anita Garibaldi", "top_suppliers", "Gama S.A. lidera.", {"n": 1})]


def report_input(anomalies: list[Anomaly] | None = None, **overrides: object) -> ReportInput:
    fields: dict[str, object] = {
        "investigation_id": "INV-2026-001",
        "title": "Investigação: Ministério da Saúde",
        "scope": "Ministério da Saúde, 2025",
        "generated_at": "2026-01-15T12:00:00Z",
        "contracts": CONTRACTS,
        "anomalies": ANOMALIES if anomalies is None else anomalies,
        "findings": FINDINGS,
    }
    fields.update(overrides)
    return ReportInput(**fields)  # type: ignore[arg-type]


def report(anomalies: list[Anomaly] | None = None, **overrides: object) -> Report:
    return build_report(report_input(anomalies, **overrides))


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next ``## `` heading."""
    start = markdown.index(heading + "\n") + len(heading) + 1
    end = markdown.find("\n## ", start)
    return markdown[start : end if end >= 0 else None]


def table_rows(markdown: str) -> list[str]:
    body = section(markdown, "## Anomalias")
    return [line for line in body.splitlines() if line.startswith("| ")][1:]  # minus header


# --------------------------------------------------------------------------- summary


def test_summary_numbers() -> None:
    assert report().summary == {
        "total_records": 4,
        "anomalies_found": 3,
        "total_value": 1_000_000.0,
        "suspicious_value": 180_000.0,  # C1 counted once although two anomalies name it
        "risk_score": 5.2,  # 10 × (0.6 × (1 − e^−1.4) + 0.4 × 0.18)
    }


def test_unknown_contracts_add_no_suspicious_value() -> None:
    r = report([anomaly("value_divergence", "low", ("NOT-THERE",))])
    assert r.summary["suspicious_value"] == 0.0
    assert r.as_json()["anomalies"][0]["value"] is None
    assert "| — |" in table_rows(r.as_markdown())[0]


def test_empty_investigation() -> None:
    r = report([], contracts=[], findings=[])
    assert r.summary == {"total_records": 0, "anomalies_found": 0, "total_value": 0.0,
                         "suspicious_value": 0.0, "risk_score": 0.0}  # fmt: skip
    md = r.as_markdown()
    assert [h for h in HEADINGS if h in md] == HEADINGS
    orjson.dumps(r.as_json())


# --------------------------------------------------------------------------- risk


def test_risk_is_zero_without_anomalies() -> None:
    assert report([]).summary["risk_score"] == 0.0
    assert risk_score([], 0.0, 1_000_000.0) == 0.0


def test_risk_formula() -> None:
    critical = anomaly("price_deviation", "critical", ("C1",))
    assert risk_score([critical], 0.0, 1.0) == round(6 * (1 - math.exp(-0.8)), 1) == 3.3
    assert risk_score([critical], 100_000.0, 1_000_000.0) == 3.7  # docstring example
    assert risk_score([critical], 5.0, 1.0) == round(6 * (1 - math.exp(-0.8)) + 4, 1)  # capped
    assert risk_score([critical] * 50, 1.0, 1.0) == 10.0


@pytest.mark.parametrize("lower", ["low", "medium", "high"])
def test_critical_anomalies_weigh_more(lower: Severity) -> None:
    mild = report([anomaly("value_divergence", lower, ("C3",))]).summary["risk_score"]
    severe = report([anomaly("value_divergence", "critical", ("C3",))]).summary["risk_score"]
    assert 0 < mild < severe <= 10


def test_risk_grows_with_suspicious_value() -> None:
    small = report([anomaly("value_divergence", "high", ("C3",))]).summary["risk_score"]
    large = report([anomaly("value_divergence", "high", ("C4",))]).summary["risk_score"]
    assert small < large


def test_risk_section_explains_the_formula() -> None:
    body = section(report().as_markdown(), "## Avaliação de Risco")
    assert "5,2 de 10 (moderado)" in body
    assert "baixa 1, média 2, alta 4, crítica 8" in body
    assert "Soma dos pesos: 14" in body
    assert "1 − e^(−soma dos pesos ÷ 10) = 0,753" in body
    assert "valor total = 0,180" in body
    assert "10 × (0,6 × gravidade + 0,4 × valor)" in body
    risk = report().as_json()["sections"]["risk_assessment"]
    assert risk["score"] == 5.2 and risk["severity_weight"] == 14
    assert risk["value_component"] == 0.18


# --------------------------------------------------------------------------- markdown


def test_markdown_headings_in_order() -> None:
    md = report().as_markdown()
    assert md.startswith("# Investigação: Ministério da Saúde\n")
    positions = [md.index(h + "\n") for h in HEADINGS]
    assert positions == sorted(positions)
    assert re.findall(r"^## .+$", md, flags=re.MULTILINE) == HEADINGS
    assert "INV-2026-001" in md and "2026-01-15T12:00:00Z" in md


def test_anomaly_table_has_one_row_per_anomaly() -> None:
    md = report().as_markdown()
    body = section(md, "## Anomalias")
    assert "| Severidade | Tipo | Descrição | Contrato | Valor |" in body
    assert "|---|---|---|---|---|" in body
    rows = table_rows(md)
    assert rows == [
        "| Crítica | Sobrepreço | Preço 400% acima \\| da mediana | C1 | R$ 100.000,00 |",
        "| Alta | Contratos duplicados | Contratos C1 e C2 iguais | C1, C2 | R$ 150.000,00 |",
        "| Média | Divergência de valor | Valor final 80% acima | C3 | R$ 30.000,00 |",
    ]


def test_pipes_and_line_breaks_are_escaped_in_cells() -> None:
    weird = anomaly("price_deviation", "low", ("C|X",), "a | b\nc || d")
    rows = table_rows(report([weird]).as_markdown())
    assert rows == ["| Baixa | Sobrepreço | a \\| b c \\|\\| d | C\\|X | — |"]
    unescaped = re.sub(r"\\\|", "", rows[0])
    assert unescaped.count("|") == 6  # exactly the five columns' borders


def test_many_contracts_are_abbreviated_in_a_cell() -> None:
    ids = tuple(f"C{i}" for i in range(1, 5)) + ("X1", "X2", "X3")
    rows = table_rows(report([anomaly("supplier_concentration", "high", ids)]).as_markdown())
    assert "| C1, C2, C3, C4, X1 e mais 2 |" in rows[0]
    assert "| R$ 1.000.000,00 |" in rows[0]


def test_no_anomalies_says_so() -> None:
    md = report([]).as_markdown()
    assert table_rows(md) == []
    assert "Nenhuma anomalia foi encontrada" in section(md, "## Anomalias")
    assert "não encontraram anomalias" in section(md, "## Resumo Executivo")
    assert "repetir a análise periodicamente" in section(md, "## Recomendações")


def test_executive_summary_and_overview() -> None:
    md = report().as_markdown()
    summary = section(md, "## Resumo Executivo")
    assert "4 contratos" in summary and "R$ 1.000.000,00" in summary
    assert "3 anomalias (1 crítica, 1 alta, 1 média)" in summary
    assert "R$ 180.000,00 (18% do valor analisado)" in summary
    overview = section(md, "## Visão Geral")
    assert "**Contratos analisados:** 4" in overview
    assert "10/03/2025 a 10/12/2025" in overview
    assert "Sobrepreço: 1" in overview and "Contratos duplicados: 1" in overview
    assert "Gama S.A. lidera. _(Anita Garibaldi)_" in overview


def test_recommendations_per_type_present() -> None:
    body = section(report().as_markdown(), "## Recomendações")
    assert "Verificar a pesquisa de preços do contrato C1" in body
    assert "Conferir se os contratos C1, C2 pagam duas vezes" in body
    assert "termos aditivos do contrato C3" in body
    assert "Solicitar à CGU" not in body  # no concentration found
    assert "fracionamento" not in body


def test_recommendations_for_every_type() -> None:
    found = [
        anomaly("supplier_concentration", "high", ("C4",), supplier="Gama S.A."),
        anomaly("spending_spike", "medium", ("C3",), month="2025-12"),
        anomaly("contract_splitting", "high", ("C1", "C2", "C3")),
    ]
    body = section(report(found).as_markdown(), "## Recomendações")
    assert "Solicitar à CGU auditoria dos contratos com Gama S.A." in body
    assert "meses de pico (2025-12)" in body
    assert "fracionamento de despesa nos contratos C1, C2, C3" in body
    assert "Fala.BR" in body
    items = report(found).as_json()["sections"]["recommendations"]["items"]
    assert len(items) == 4  # one per type present, plus where to report


def test_methodology() -> None:
    body = section(report().as_markdown(), "## Metodologia")
    assert "Portal da Transparência" in body and "amostra sintética" in body
    for label in TYPE_LABELS.values():
        assert label[:1].upper() + label[1:] in body
    assert "R$ 57.208,33" in body  # dispensa limit
    assert "mais de 70%" in body  # concentration threshold
    assert "mais de 50%" in body  # value divergence threshold
    assert "Herfindahl-Hirschman" in body


def test_every_type_has_a_portuguese_label() -> None:
    assert set(TYPE_LABELS) == set(ANOMALY_TYPES)
    assert TYPE_LABELS["price_deviation"] == "sobrepreço"
    assert TYPE_LABELS["contract_splitting"] == "fracionamento de despesa"


# --------------------------------------------------------------------------- JSON


def test_json_shape_and_serializable() -> None:
    data = report().as_json()
    assert list(data) == ["investigation_id", "title", "scope", "generated_at", "summary",
                          "sections", "anomalies"]  # fmt: skip
    assert list(data["sections"]) == list(SECTION_TITLES)
    assert [s["title"] for s in data["sections"].values()] == [h[3:] for h in HEADINGS]
    assert data["anomalies"][1] == {
        "anomaly_type": "duplicate_contract", "type_label": "contratos duplicados",
        "severity": "high", "severity_label": "Alta", "confidence": 0.8,
        "description": "Contratos C1 e C2 iguais", "contract_ids": ["C1", "C2"],
        "value": 150_000.0, "details": {},
    }  # fmt: skip
    assert orjson.loads(orjson.dumps(data)) == data


def test_markdown_is_built_from_the_json_sections() -> None:
    r = report()
    md = r.as_markdown()
    for s in r.as_json()["sections"].values():
        assert f"## {s['title']}\n\n{s['content']}" in md


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sample_contracts() -> tuple[Contract, ...]:
    return generate_sample().contracts


def test_end_to_end_on_the_sample(sample_contracts: tuple[Contract, ...]) -> None:
    intent = parse_intent("Investigar contratos do Ministério da Saúde em 2025")
    assert intent.kind == "investigate"
    scope = intent.filters.describe()
    selected = [c for c in sample_contracts if intent.filters.matches(c)]
    anomalies = run_all(selected)
    r = build_report(ReportInput("INV-2026-001", "Saúde 2025", scope, "2026-01-15T12:00:00Z",
                                 selected, anomalies, pattern_findings(selected, scope)))
    assert selected and r.summary["total_records"] == len(selected)
    assert r.summary["anomalies_found"] == len(anomalies)
    assert 0 <= r.summary["suspicious_value"] <= r.summary["total_value"]
    assert 0 <= r.summary["risk_score"] <= 10
    assert len(table_rows(r.as_markdown())) == len(anomalies)
    orjson.dumps(r.as_json())
