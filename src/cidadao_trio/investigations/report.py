"""Tiradentes' report: an investigation's contracts, anomalies and findings, for citizens.

``build_report`` is pure: it computes the summary numbers and writes every section once,
as Markdown text plus structured fields, and ``Report`` renders the same sections as
JSON (for the UI) or one Markdown document (for download). Keeping one source for both
means the two can never disagree.

Risk score (0-10, one decimal), documented again in the report itself::

    weight      = low 1, medium 2, high 4, critical 8 (each level doubles the previous)
    severity    = 1 - exp(-Σ weight / 10)         # 0 with no anomalies, → 1 as they pile up
    value_share = suspicious_value / total_value  # money touched by anomalies
    risk_score  = round(10 × (0.6 × severity + 0.4 × value_share), 1)

Severity dominates because a single critical anomaly matters even in a large budget; the
value share says how much of the money is at stake. One critical anomaly on 10% of the
money scores 3.7; nothing found scores 0.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from . import detectors as det
from .analysis import Finding, contract_value
from .detectors import SEVERITIES, format_brl, format_percent
from .model import Anomaly, AnomalyType, Contract, Severity

__all__ = [
    "SECTION_TITLES",
    "SEVERITY_LABELS",
    "SEVERITY_WEIGHTS",
    "TYPE_LABELS",
    "Report",
    "ReportInput",
    "build_report",
    "risk_score",
]

TYPE_LABELS: dict[AnomalyType, str] = {
    "price_deviation": "sobrepreço",
    "supplier_concentration": "concentração de fornecedor",
    "spending_spike": "pico de gastos",
    "duplicate_contract": "contratos duplicados",
    "contract_splitting": "fracionamento de despesa",
    "value_divergence": "divergência de valor",
}
SEVERITY_LABELS: dict[Severity, str] = {
    "low": "Baixa", "medium": "Média", "high": "Alta", "critical": "Crítica",
}  # fmt: skip
SEVERITY_WEIGHTS: dict[Severity, int] = {"low": 1, "medium": 2, "high": 4, "critical": 8}
SEVERITY_SCALE = 10.0  # Σ weight at which the severity part reaches 1 - 1/e ≈ 63%
SEVERITY_PART, VALUE_PART = 0.6, 0.4

# Section keys in the order they appear; the titles are the Markdown headings.
SECTION_TITLES: dict[str, str] = {
    "executive_summary": "Resumo Executivo",
    "overview": "Visão Geral",
    "anomalies": "Anomalias",
    "risk_assessment": "Avaliação de Risco",
    "recommendations": "Recomendações",
    "methodology": "Metodologia",
}
_MAX_IDS = 5  # contract ids listed in a cell or a recommendation before "e mais N"


@attrs.frozen
class ReportInput:
    """Everything Tiradentes needs; the caller has already run Zumbi and Anita."""

    investigation_id: str
    title: str
    scope: str  # Filters.describe()
    generated_at: str  # RFC 3339
    contracts: Sequence[Contract]
    anomalies: Sequence[Anomaly]
    findings: Sequence[Finding]


@attrs.frozen
class Report:
    """A finished report; ``sections`` maps keys of SECTION_TITLES to title, content, extras."""

    investigation_id: str
    title: str
    scope: str
    generated_at: str
    summary: Mapping[str, Any]  # total_records, anomalies_found, total_value, ...
    sections: Mapping[str, Mapping[str, Any]]
    anomalies: tuple[Mapping[str, Any], ...]

    def as_json(self) -> dict[str, Any]:
        """Plain dicts and lists, ready for orjson."""
        return {
            "investigation_id": self.investigation_id,
            "title": self.title,
            "scope": self.scope,
            "generated_at": self.generated_at,
            "summary": dict(self.summary),
            "sections": {key: dict(section) for key, section in self.sections.items()},
            "anomalies": [dict(a) for a in self.anomalies],
        }

    def as_markdown(self) -> str:
        """One document: title, identification line, then each section under its heading."""
        lines = [
            f"# {self.title}",
            "",
            f"**Investigação:** {self.investigation_id} · **Escopo:** {self.scope} · "
            f"**Gerado em:** {self.generated_at}",
        ]
        for key in SECTION_TITLES:
            section = self.sections[key]
            lines += ["", f"## {section['title']}", "", str(section["content"])]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- numbers


def _risk_parts(
    anomalies: Sequence[Anomaly], suspicious_value: float, total_value: float
) -> tuple[int, float, float]:
    """Σ severity weight, severity component and value component of the score."""
    weight = sum(SEVERITY_WEIGHTS[a.severity] for a in anomalies)
    severity = 1 - math.exp(-weight / SEVERITY_SCALE)
    share = min(1.0, suspicious_value / total_value) if total_value > 0 else 0.0
    return weight, severity, share


def risk_score(anomalies: Sequence[Anomaly], suspicious_value: float, total_value: float) -> float:
    """The 0-10 score of the module docstring."""
    _, severity, share = _risk_parts(anomalies, suspicious_value, total_value)
    return round(10 * (SEVERITY_PART * severity + VALUE_PART * share), 1)


def _risk_level(score: float) -> str:
    if score >= 8:
        return "crítico"
    if score >= 6:
        return "alto"
    if score >= 3:
        return "moderado"
    return "baixo"


def _involved(anomaly: Anomaly, by_id: Mapping[str, Contract]) -> list[Contract]:
    """The anomaly's contracts that are in the dataset, each once."""
    return [by_id[i] for i in dict.fromkeys(anomaly.contract_ids) if i in by_id]


def _suspicious_value(anomalies: Sequence[Anomaly], by_id: Mapping[str, Contract]) -> float:
    """A contract flagged by two detectors is money at stake once, not twice."""
    ids = {i for a in anomalies for i in a.contract_ids if i in by_id}
    return sum(contract_value(by_id[i]) for i in ids)


def _money(value: float) -> float:
    return round(float(value), 2)


# --------------------------------------------------------------------------- text helpers


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _ids(ids: Iterable[str], limit: int = _MAX_IDS) -> str:
    unique = list(dict.fromkeys(ids))
    shown = ", ".join(unique[:limit])
    rest = len(unique) - limit
    return f"{shown} e mais {rest}" if rest > 0 else shown


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plural(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _severity_counts(anomalies: Sequence[Anomaly]) -> dict[Severity, int]:
    counts = Counter(a.severity for a in anomalies)
    return {s: counts[s] for s in reversed(SEVERITIES)}


def _severity_phrase(anomalies: Sequence[Anomaly]) -> str:
    """"2 críticas, 1 alta" (zero counts omitted)."""
    plural = {"low": "baixas", "medium": "médias", "high": "altas", "critical": "críticas"}
    parts = [f"{n} {SEVERITY_LABELS[s].lower() if n == 1 else plural[s]}"
             for s, n in _severity_counts(anomalies).items() if n]  # fmt: skip
    return ", ".join(parts)


def _types_present(anomalies: Sequence[Anomaly]) -> list[AnomalyType]:
    """Types found, in the detectors' canonical order."""
    present = {a.anomaly_type for a in anomalies}
    return [t for t in det.ANOMALY_TYPES if t in present]


# --------------------------------------------------------------------------- sections


def _executive_summary(data: ReportInput, summary: Mapping[str, Any], level: str) -> str:
    n, total = summary["total_records"], summary["total_value"]
    head = (
        f"Tiradentes analisou {_plural(n, 'contrato', 'contratos')} do recorte "
        f"“{data.scope}”, que somam {format_brl(total)}."
    )
    if not data.anomalies:
        return (
            f"{head} Os detectores de Zumbi dos Palmares não encontraram anomalias neste "
            f"escopo, e a pontuação de risco é 0,0 de 10 ({level}). Isso não garante que tudo "
            "esteja regular, mas nenhum dos padrões de alerta conhecidos apareceu."
        )
    suspicious = summary["suspicious_value"]
    share = suspicious / total if total > 0 else 0.0
    counts = Counter(a.anomaly_type for a in data.anomalies)
    common = max(_types_present(data.anomalies), key=lambda t: counts[t])
    return (
        f"{head} Os detectores de Zumbi dos Palmares encontraram "
        f"{_plural(len(data.anomalies), 'anomalia', 'anomalias')} "
        f"({_severity_phrase(data.anomalies)}), envolvendo {format_brl(suspicious)} "
        f"({format_percent(share)} do valor analisado). O tipo mais frequente é "
        f"{TYPE_LABELS[common]}. A pontuação de risco é {_decimal(summary['risk_score'])} de "
        f"10 ({level}). Anomalias são sinais de alerta, não provas de irregularidade: "
        "cada caso precisa ser verificado pelos órgãos de controle."
    )


def _decimal(value: float) -> str:
    return f"{value:.1f}".replace(".", ",")


def _overview(data: ReportInput, summary: Mapping[str, Any]) -> dict[str, Any]:
    contracts = data.contracts
    total, suspicious = summary["total_value"], summary["suspicious_value"]
    by_type = Counter(a.anomaly_type for a in data.anomalies)
    lines = [
        f"- **Contratos analisados:** {len(contracts)}",
        f"- **Valor total:** {format_brl(total)}",
        f"- **Órgãos:** {len({c.agency for c in contracts})} · **Fornecedores:** "
        f"{len({c.supplier_cnpj or c.supplier_name for c in contracts})}",
    ]
    if contracts:
        first = min(c.signed_on for c in contracts)
        last = max(c.signed_on for c in contracts)
        lines.append(f"- **Período:** {first:%d/%m/%Y} a {last:%d/%m/%Y}")
    share = suspicious / total if total > 0 else 0.0
    lines += [
        f"- **Anomalias encontradas:** {len(data.anomalies)}"
        + (f" ({_severity_phrase(data.anomalies)})" if data.anomalies else ""),
        f"- **Valor envolvido em anomalias:** {format_brl(suspicious)} "
        f"({format_percent(share)} do total)",
    ]
    for t in _types_present(data.anomalies):
        lines.append(f"  - {_capital(TYPE_LABELS[t])}: {by_type[t]}")
    if data.findings:
        lines += ["", "**Padrões observados:**", ""]
        lines += [f"- {' '.join(f.summary.split())} _({f.agent_name})_" for f in data.findings]
    return {
        "content": "\n".join(lines),
        "anomalies_by_type": {t: by_type[t] for t in _types_present(data.anomalies)},
        "anomalies_by_severity": _severity_counts(data.anomalies),
        "findings": [
            {"agent_id": f.agent_id, "agent_name": f.agent_name, "finding_type": f.finding_type,
             "summary": f.summary, "details": dict(f.details)}
            for f in data.findings
        ],
    }  # fmt: skip


def _anomaly_rows(data: ReportInput, by_id: Mapping[str, Contract]) -> list[dict[str, Any]]:
    rows = []
    for a in data.anomalies:
        involved = _involved(a, by_id)
        rows.append({
            "anomaly_type": a.anomaly_type,
            "type_label": TYPE_LABELS[a.anomaly_type],
            "severity": a.severity,
            "severity_label": SEVERITY_LABELS[a.severity],
            "confidence": a.confidence,
            "description": a.description,
            "contract_ids": list(a.contract_ids),
            "value": _money(sum(contract_value(c) for c in involved)) if involved else None,
            "details": dict(a.details),
        })  # fmt: skip
    return rows


def _anomaly_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "Nenhuma anomalia foi encontrada pelos detectores neste escopo."
    lines = ["| Severidade | Tipo | Descrição | Contrato | Valor |", "|---|---|---|---|---|"]
    for r in rows:
        value = format_brl(r["value"]) if r["value"] is not None else "—"
        cells = (r["severity_label"], _capital(r["type_label"]), r["description"],
                 _ids(r["contract_ids"]), value)  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _risk_section(data: ReportInput, summary: Mapping[str, Any], level: str) -> dict[str, Any]:
    weight, severity, share = _risk_parts(
        data.anomalies, summary["suspicious_value"], summary["total_value"]
    )
    score = summary["risk_score"]
    content = "\n".join([
        f"**Pontuação de risco: {_decimal(score)} de 10 ({level}).**",
        "",
        "A pontuação combina quantas anomalias foram encontradas, pesadas pela gravidade, "
        "com a parte do dinheiro que elas envolvem:",
        "",
        "- Peso de cada anomalia: baixa 1, média 2, alta 4, crítica 8 (cada nível vale o "
        f"dobro do anterior). Soma dos pesos: {weight}.",
        f"- Componente de gravidade = 1 − e^(−soma dos pesos ÷ {SEVERITY_SCALE:.0f}) = "
        f"{_decimal3(severity)}. Vale 0 sem anomalias e se aproxima de 1 quando elas se "
        "acumulam.",
        f"- Componente de valor = valor envolvido em anomalias ÷ valor total = "
        f"{_decimal3(share)}.",
        f"- Pontuação = 10 × (0,6 × gravidade + 0,4 × valor) = {_decimal(score)}.",
        "",
        "Faixas: abaixo de 3 é baixo, de 3 a 5,9 moderado, de 6 a 7,9 alto, e 8 ou mais "
        "crítico. A gravidade pesa mais porque uma única anomalia crítica já justifica "
        "atenção, mesmo num orçamento grande.",
    ])  # fmt: skip
    return {
        "content": content,
        "score": score,
        "level": level,
        "severity_weight": weight,
        "severity_component": round(severity, 4),
        "value_component": round(share, 4),
    }


def _decimal3(value: float) -> str:
    return f"{value:.3f}".replace(".", ",")


def _of_type(anomalies: Sequence[Anomaly], t: AnomalyType) -> list[Anomaly]:
    return [a for a in anomalies if a.anomaly_type == t]


def _detail_values(anomalies: Sequence[Anomaly], key: str) -> str:
    values = dict.fromkeys(str(a.details[key]) for a in anomalies if a.details.get(key))
    return _ids(values, 3)


def _the_contracts(ids: Sequence[str], of: bool) -> str:
    """"dos contratos A, B" / "do contrato A" (``of``), or "os contratos A, B" / "o contrato A"."""
    unique = list(dict.fromkeys(ids))
    if len(unique) == 1:
        return f"{'do' if of else 'o'} contrato {unique[0]}"
    return f"{'dos' if of else 'os'} contratos {_ids(unique)}"


def _recommend(t: AnomalyType, found: Sequence[Anomaly]) -> str:
    """One concrete step for a type of anomaly, naming the contracts it concerns."""
    all_ids = [i for a in found for i in a.contract_ids]
    of_ids, the_ids = _the_contracts(all_ids, of=True), _the_contracts(all_ids, of=False)
    if t == "price_deviation":
        return (f"Verificar a pesquisa de preços {of_ids} (art. 23 da Lei "
                "14.133/2021) e compará-la com o Painel de Preços do governo federal; "
                "confirmado o sobrepreço, pedir a repactuação ou a devolução da diferença.")
    if t == "supplier_concentration":
        who = _detail_values(found, "supplier") or "fornecedor apontado"
        return (f"Solicitar à CGU auditoria dos contratos com {who}, verificando se as "
                "licitações tiveram competição real (número de participantes, exigências "
                "que restringem a concorrência, repetição de vencedores).")
    if t == "spending_spike":
        months = _detail_values(found, "month") or "do pico"
        return (f"Examinar os contratos assinados nos meses de pico ({months}), em especial "
                f"{the_ids}, e conferir se constavam do plano anual de contratações ou se foram "
                "compras às pressas para gastar o orçamento.")
    if t == "duplicate_contract":
        return (f"Conferir se {the_ids} pagam duas vezes pelo mesmo objeto, "
                "cruzando notas fiscais, atestes de recebimento e ordens de serviço.")
    if t == "contract_splitting":
        return (f"Apurar possível fracionamento de despesa n{the_ids} (art. 75, "
                "§ 1º, da Lei 14.133/2021): somar as compras do mesmo objeto no exercício e, "
                "se ultrapassarem o limite de dispensa, comunicar ao TCU e à CGU.")
    return (f"Requisitar os termos aditivos {of_ids} e verificar se respeitam o "
            "limite de 25% (50% em reformas) do art. 125 da Lei 14.133/2021 e se cada "
            "acréscimo foi justificado.")


def _recommendations(data: ReportInput) -> dict[str, Any]:
    items = [_recommend(t, _of_type(data.anomalies, t)) for t in _types_present(data.anomalies)]
    if items:
        items.append("Registrar as suspeitas na plataforma Fala.BR (ouvidoria do governo "
                     "federal) ou enviá-las ao Ministério Público Federal, anexando este "
                     "relatório, para que os órgãos de controle as verifiquem.")
    else:
        items.append("Nenhuma ação corretiva é indicada pelos detectores; repetir a análise "
                     "periodicamente, à medida que novos contratos forem publicados.")
    return {"content": "\n".join(f"- {i}" for i in items), "items": items}


def _default(fn: Callable[..., Any], name: str) -> Any:
    """A detector's default threshold, read from its signature so the text never drifts."""
    return inspect.signature(fn).parameters[name].default


def _methodology() -> dict[str, Any]:
    pct = format_percent
    price, conc = det.detect_price_deviation, det.detect_supplier_concentration
    spike, dup = det.detect_spending_spike, det.detect_duplicate_contracts
    split, div = det.detect_contract_splitting, det.detect_value_divergence
    detectors = {
        "price_deviation":
            f"compara o preço unitário com os contratos da mesma categoria (pelo menos "
            f"{_default(price, 'min_peers')}); é anomalia o preço acima da mediana com escore "
            f"z robusto (mediana e desvio absoluto mediano) maior que "
            f"{_decimal(_default(price, 'modified_z'))} ou escore z clássico maior que "
            f"{_decimal(_default(price, 'classic_z'))}.",
        "supplier_concentration":
            f"um fornecedor com mais de {pct(_default(conc, 'min_share'))} do valor de um "
            f"órgão que tenha pelo menos {_default(conc, 'min_contracts')} contratos.",
        "spending_spike":
            f"um mês em que o órgão assinou pelo menos "
            f"{_decimal(_default(spike, 'min_ratio'))} vez a média dos outros meses, com "
            f"escore z acima de {_decimal(_default(spike, 'z_threshold'))}, exigindo pelo "
            f"menos {_default(spike, 'min_months')} meses de histórico.",
        "duplicate_contract":
            f"dois contratos do mesmo órgão cujos objetos compartilham mais de "
            f"{pct(_default(dup, 'min_similarity'))} das palavras (índice de Jaccard), "
            f"ignorando objetos vagos com menos de {_default(dup, 'min_tokens')} palavras.",
        "contract_splitting":
            f"pelo menos {_default(split, 'min_contracts')} dispensas do mesmo órgão com o "
            f"mesmo fornecedor em até {_default(split, 'window_days')} dias, cada uma entre "
            f"{pct(_default(split, 'band'))} e 100% do limite de dispensa de "
            f"{format_brl(_default(split, 'threshold'))}.",
        "value_divergence":
            f"valor final do contrato mais de {pct(_default(div, 'max_change'))} diferente "
            "do valor assinado, além da margem mais larga permitida para aditivos.",
    }  # fmt: skip
    lines = [
        "Os dados vêm do Portal da Transparência do Governo Federal, mantido pela "
        "Controladoria-Geral da União (CGU); na demonstração, de uma amostra sintética "
        "reprodutível de contratos federais com anomalias plantadas. O valor de cada "
        "contrato é o valor global (com aditivos), ou o inicial quando o global falta.",
        "",
        "Zumbi dos Palmares aplicou seis detectores, cada um com limites fixos:",
        "",
        *(f"- **{_capital(TYPE_LABELS[t])}:** {text}" for t, text in detectors.items()),
        "",
        "A gravidade (baixa, média, alta, crítica) mede o quanto o caso foge do padrão; a "
        "confiança (0 a 1) mede o quanto os dados sustentam o achado, e cresce com o tamanho "
        "do grupo de comparação.",
        "",
        "Anita Garibaldi descreveu o escopo: maiores fornecedores e suas fatias, "
        "concentração de mercado pelo índice Herfindahl-Hirschman (abaixo de 1.500 baixa, "
        "de 1.500 a 2.500 moderada, acima alta), sazonalidade (mês de maior gasto e peso do "
        "último trimestre) e a parte do valor contratada sem licitação (dispensa e "
        "inexigibilidade).",
        "",
        "Os detectores veem números, não intenções: uma anomalia é um sinal de alerta que "
        "precisa ser verificado, nunca uma acusação.",
    ]  # fmt: skip
    return {"content": "\n".join(lines), "detectors": detectors}


# --------------------------------------------------------------------------- entry point


def build_report(data: ReportInput) -> Report:
    """Compute the summary and write every section, in SECTION_TITLES order."""
    by_id = {c.id: c for c in data.contracts}
    total = sum(contract_value(c) for c in data.contracts)
    suspicious = _suspicious_value(data.anomalies, by_id)
    score = risk_score(data.anomalies, suspicious, total)
    level = _risk_level(score)
    summary = {
        "total_records": len(data.contracts),
        "anomalies_found": len(data.anomalies),
        "total_value": _money(total),
        "suspicious_value": _money(suspicious),
        "risk_score": score,
    }
    rows = _anomaly_rows(data, by_id)
    bodies: dict[str, dict[str, Any]] = {
        "executive_summary": {"content": _executive_summary(data, summary, level)},
        "overview": _overview(data, summary),
        "anomalies": {"content": _anomaly_table(rows)},
        "risk_assessment": _risk_section(data, summary, level),
        "recommendations": _recommendations(data),
        "methodology": _methodology(),
    }
    sections = {key: {"title": title, **bodies[key]} for key, title in SECTION_TITLES.items()}
    return Report(
        investigation_id=data.investigation_id,
        title=data.title,
        scope=data.scope,
        generated_at=data.generated_at,
        summary=summary,
        sections=sections,
        anomalies=tuple(rows),
    )
