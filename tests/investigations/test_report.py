"""Tiradentes' report: summary numbers, risk score, Markdown layout and JSON on crafted data."""

from __future__ import annotations

import datetime as dt
import re

import attrs
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
    render_html,
    risk_score,
)
from cidadao_trio.investigations.sample import load_default_sample

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
        "risk_score": 5.5,  # 10 × (0.5 × money 0.128 + 0.5 × density 350/360)
        "data_origin": "memory",
    }


def test_unknown_contracts_add_no_suspicious_value() -> None:
    r = report([anomaly("value_divergence", "low", ("NOT-THERE",))])
    assert r.summary["suspicious_value"] == 0.0
    assert r.as_json()["anomalies"][0]["value"] is None
    assert "| — |" in table_rows(r.as_markdown())[0]


def test_empty_investigation() -> None:
    r = report([], contracts=[], findings=[])
    # No contract: no score at all, never a reassuring "risco 0,0".
    assert r.summary == {"total_records": 0, "anomalies_found": 0, "total_value": 0.0,
                         "suspicious_value": 0.0, "risk_score": None,
                         "data_origin": "memory"}  # fmt: skip
    md = r.as_markdown()
    assert "0,0 de 10" not in md and "não há pontuação de risco" in md
    assert [h for h in HEADINGS if h in md] == HEADINGS
    orjson.dumps(r.as_json())


# --------------------------------------------------------------------------- risk


def test_risk_is_zero_without_anomalies() -> None:
    assert report([]).summary["risk_score"] == 0.0


def _contracts(n: int, value: float = 1000.0) -> dict[str, Contract]:
    return {f"K{i}": attrs.evolve(CONTRACTS[0], id=f"K{i}", initial_value=value,
                                  global_value=value) for i in range(n)}  # fmt: skip


def test_risk_formula_does_not_saturate_and_compares_sizes() -> None:
    small = _contracts(100)
    one = [anomaly("price_deviation", "critical", ("K0",))]
    # money: 1000 × 8/8 ÷ 100.000 = 0.01; density: 8 per 100 contracts -> 8/18
    assert risk_score(one, small, 100_000.0) == round(10 * (0.5 * 0.01 + 0.5 * 8 / 18), 1)
    # Ten times the contracts with ten times the anomalies scores the same.
    large = _contracts(1000)
    ten = [anomaly("price_deviation", "critical", (f"K{i}",)) for i in range(10)]
    assert risk_score(ten, large, 1_000_000.0) == risk_score(one, small, 100_000.0)
    # Many anomalies in a huge ministry do not pin the score near 10.
    many = [anomaly("value_divergence", "medium", (f"K{i}",)) for i in range(50)]
    assert risk_score(many, large, 1_000_000.0) < 5
    assert risk_score([], {}, 0.0) is None


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
    assert "5,5 de 10 (moderado)" in body
    assert "baixa 1, média 2, alta 4, crítica 8" in body
    assert "Soma dos pesos: 14" in body
    assert "10 × (0,5 × valor + 0,5 × densidade)" in body
    risk = report().as_json()["sections"]["risk_assessment"]
    assert risk["score"] == 5.5 and risk["severity_weight"] == 14
    assert risk["density_component"] == round(350 / 360, 4)


# --------------------------------------------------------------------------- markdown


def test_markdown_headings_in_order() -> None:
    md = report().as_markdown()
    assert md.startswith("# Investigação: Ministério da Saúde\n")
    positions = [md.index(h + "\n") for h in HEADINGS]
    assert positions == sorted(positions)
    assert re.findall(r"^## .+$", md, flags=re.MULTILINE) == HEADINGS
    assert "INV-2026-001" in md and "15/01/2026 09:00 (horário de Brasília)" in md


def test_anomaly_table_has_one_row_per_anomaly() -> None:
    md = report().as_markdown()
    body = section(md, "## Anomalias")
    assert "| Severidade | Tipo | Fornecedor | Descrição | Contrato | Valor |" in body
    assert "|---|---|---|---|---|---|" in body
    rows = table_rows(md)
    assert rows == [
        "| Crítica | Sobrepreço | — | Preço 400% acima \\| da mediana | C1 | R$ 100.000,00 |",
        "| Alta | Contratos duplicados | — | Contratos C1 e C2 iguais | C1, C2 | R$ 150.000,00 |",
        "| Média | Divergência de valor | — | Valor final 80% acima | C3 | R$ 30.000,00 |",
    ]


def test_pipes_and_line_breaks_are_escaped_in_cells() -> None:
    weird = anomaly("price_deviation", "low", ("C|X",), "a | b\nc || d")
    rows = table_rows(report([weird]).as_markdown())
    assert rows == ["| Baixa | Sobrepreço | — | a \\| b c \\|\\| d | C\\|X | — |"]
    unescaped = re.sub(r"\\\|", "", rows[0])
    assert unescaped.count("|") == 7  # exactly the six columns' borders


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
    for label in TYPE_LABELS.values():
        assert label[:1].upper() + label[1:] in body
    for limit in ("R$ 57.208,33", "R$ 59.906,02", "R$ 62.725,59", "R$ 65.492,11"):
        assert limit in body  # every year's dispensa limit, with its decree
    assert "Decreto 12.807/2025" in body
    assert "mais de 50%" in body  # concentration threshold
    assert "25% (50% em reformas)" in body and "art. 107" in body
    assert "Herfindahl-Hirschman" in body


def test_every_type_has_a_portuguese_label() -> None:
    assert set(TYPE_LABELS) == set(ANOMALY_TYPES)
    assert TYPE_LABELS["price_deviation"] == "sobrepreço"
    assert TYPE_LABELS["contract_splitting"] == "fracionamento de despesa"


# --------------------------------------------------------------------------- JSON


def test_json_shape_and_serializable() -> None:
    data = report().as_json()
    assert list(data) == ["investigation_id", "title", "scope", "generated_at", "summary",
                          "sections", "anomalies", "data_origin"]  # fmt: skip
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
    """The server's sample, read back from its cache (~0.15 s, not ~1.8 s to generate it again):
    tests/investigations/test_data.py proves it equal to ``generate_sample()``."""
    return load_default_sample().contracts


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


def test_a_real_file_report_does_not_call_itself_a_sample() -> None:
    assert "amostra sintética" not in report().as_markdown()


def test_sample_origin_notice_in_markdown_html_and_summary() -> None:
    data = ReportInput("INV-2026-009", "Saúde", "Ministério da Saúde", "2026-01-15T12:00:00Z",
                       CONTRACTS, [], [], data_origin="sample")
    r = build_report(data)
    assert r.summary["data_origin"] == "sample"
    md = r.as_markdown()
    assert "amostra sintética" in md.split("## Resumo Executivo")[0]
    assert "não dados reais do Portal da Transparência" in md
    page = render_html(r)
    assert page.startswith("<!doctype html>") and "amostra sintética" in page
    assert "<script" not in page


def test_render_html_escapes_and_renders_tables() -> None:
    weird = anomaly("price_deviation", "low", ("C1",), "<b>x</b> & y")
    page = render_html(report([weird]))
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in page and "<b>x</b>" not in page
    assert "<table>" in page and "<th>Severidade</th>" in page
    assert "horário de Brasília" in page
