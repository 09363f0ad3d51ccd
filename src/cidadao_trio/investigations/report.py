"""Tiradentes' report: an investigation's contracts, anomalies and findings, for citizens.

``build_report`` is pure: it computes the summary numbers and writes every section once,
as Markdown text plus structured fields, and ``Report`` renders the same sections as
JSON (for the UI) or one Markdown document (for download). Keeping one source for both
means the two can never disagree.

Risk score (0-10, one decimal), documented again in the report itself::

    weight         = low 1, medium 2, high 4, critical 8 (each level doubles the previous)
    money_part     = Σ over flagged contracts of value × (its worst weight ÷ 8) ÷ total value
    density        = Σ weight per 100 contracts in scope
    density_part   = density / (density + 10)
    risk_score     = round(10 × (0.5 × money_part + 0.5 × density_part), 1)

Both parts are shares of the scope, so a ministry with 50,000 contracts and a unit with
500 are compared on the same scale, and neither saturates: twice the anomalies in twice
the contracts score the same. Nothing found scores 0, and a scope with no contract gets no
score at all (``None``), never a reassuring "0,0".
"""

from __future__ import annotations

import datetime as dt
import html
import inspect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..portuguese import plural
from . import detectors as det
from .analysis import Finding
from .detectors import SEVERITIES
from .legal import DISPENSA_LIMITS
from .model import Anomaly, AnomalyType, Contract, Severity
from .money import contract_value, format_brl, format_percent

__all__ = [
    "SECTION_TITLES",
    "SEVERITY_LABELS",
    "SEVERITY_WEIGHTS",
    "TYPE_LABELS",
    "Report",
    "ReportInput",
    "brasilia_time",
    "build_report",
    "render_html",
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
DENSITY_HALF = 10.0  # Σ weight per 100 contracts at which the density part reaches 0.5
DENSITY_PART, VALUE_PART = 0.5, 0.5
BRASILIA = dt.timezone(dt.timedelta(hours=-3), "BRT")  # no daylight saving since 2019
SAMPLE_NOTICE = (
    "Atenção: estes dados são uma amostra sintética embutida no servidor, gerada para "
    "demonstração, e não dados reais do Portal da Transparência. Nenhum fornecedor ou "
    "órgão citado aqui deve ser tomado como real."
)

# Section keys in the order they appear; the titles are the Markdown headings.
SECTION_TITLES: dict[str, str] = {
    "executive_summary": "Resumo Executivo",
    "overview": "Visão Geral",
    "anomalies": "Anomalias",
    "risk_assessment": "Avaliação de Risco",
    "recommendations": "Recomendações",
    "methodology": "Metodologia",
}
VERIFY_TITLE = "Como verificar"
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
    data_origin: str = "memory"  # "sample" (the bundled synthetic one), "file", "memory"


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
    data_origin: str = "memory"

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
            "data_origin": self.data_origin,
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Report:
        """The report back from :meth:`as_json` (the store keeps that, not the object)."""
        fields = {a.name for a in attrs.fields(cls)}
        values = {k: v for k, v in stored.items() if k in fields}
        values["anomalies"] = tuple(values.get("anomalies", ()))
        return cls(**values)

    def as_markdown(self) -> str:
        """One document: title, identification line, then each section under its heading."""
        lines = [
            f"# {self.title}",
            "",
            f"**Investigação:** {self.investigation_id} · **Escopo:** {self.scope} · "
            f"**Gerado em:** {brasilia_time(self.generated_at)}",
        ]
        if self.data_origin == "sample":
            lines += ["", f"> **{SAMPLE_NOTICE}**"]
        for key in SECTION_TITLES:
            section = self.sections[key]
            lines += ["", f"## {section['title']}", "", str(section["content"])]
        lines += ["", f"### {VERIFY_TITLE}", "", *verify_instructions(self.investigation_id)]
        return "\n".join(lines) + "\n"


def verify_instructions(investigation_id: str) -> list[str]:
    """The closing note (PROTOCOL.md §11): how anyone checks this report, offline."""
    return [
        f"Este relatório é assinado pelo servidor. Baixe-o em JSON (`format=json`) e confira com "
        f"`cidadao-trio verify relatorio-{investigation_id}.json --key chave.json` (a chave pública do "
        "servidor está em `/api/v1/keys`; os eventos, com `--events`).",
        "",
        "A verificação mostra que o relatório saiu deste servidor sem alteração; não mostra que os dados "
        "ou as conclusões estejam certos.",
    ]


# --------------------------------------------------------------------------- numbers


def _risk_parts(
    anomalies: Sequence[Anomaly], by_id: Mapping[str, Contract], total_value: float
) -> tuple[int, float, float]:
    """Σ severity weight, money component and density component of the score."""
    weight = sum(SEVERITY_WEIGHTS[a.severity] for a in anomalies)
    worst: dict[str, int] = {}
    for a in anomalies:
        for i in a.contract_ids:
            if i in by_id:
                worst[i] = max(worst.get(i, 0), SEVERITY_WEIGHTS[a.severity])
    weighted = sum(contract_value(by_id[i]) * w / 8 for i, w in worst.items())
    money = min(1.0, weighted / total_value) if total_value > 0 else 0.0
    density = 100 * weight / len(by_id) if by_id else 0.0
    return weight, money, density / (density + DENSITY_HALF)


def risk_score(
    anomalies: Sequence[Anomaly], by_id: Mapping[str, Contract], total_value: float
) -> float | None:
    """The 0-10 score of the module docstring; None for a scope with no contract."""
    if not by_id:
        return None
    _, money, density = _risk_parts(anomalies, by_id, total_value)
    return round(10 * (VALUE_PART * money + DENSITY_PART * density), 1)


def brasilia_time(rfc3339: str) -> str:
    """"2026-01-15T12:00:00Z" -> "15/01/2026 09:00 (horário de Brasília)"."""
    try:
        moment = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return rfc3339
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(BRASILIA).strftime("%d/%m/%Y %H:%M") + " (horário de Brasília)"


def _risk_level(score: float | None) -> str:
    if score is None:
        return "sem dados"
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


def _severity_counts(anomalies: Sequence[Anomaly]) -> dict[Severity, int]:
    counts = Counter(a.severity for a in anomalies)
    return {s: counts[s] for s in reversed(SEVERITIES)}


def _severity_phrase(anomalies: Sequence[Anomaly]) -> str:
    """"2 críticas, 1 alta" (zero counts omitted)."""
    many = {"low": "baixas", "medium": "médias", "high": "altas", "critical": "críticas"}
    parts = [f"{n} {SEVERITY_LABELS[s].lower() if n == 1 else many[s]}"
             for s, n in _severity_counts(anomalies).items() if n]  # fmt: skip
    return ", ".join(parts)


def _types_present(anomalies: Sequence[Anomaly]) -> list[AnomalyType]:
    """Types found, in the detectors' canonical order."""
    present = {a.anomaly_type for a in anomalies}
    return [t for t in det.ANOMALY_TYPES if t in present]


# --------------------------------------------------------------------------- sections


def _executive_summary(data: ReportInput, summary: Mapping[str, Any], level: str) -> str:
    n, total = summary["total_records"], summary["total_value"]
    notice = f"{SAMPLE_NOTICE} " if data.data_origin == "sample" else ""
    if n == 0:
        return (
            f"{notice}Nenhum contrato corresponde ao recorte “{data.scope}”, por isso não há "
            "pontuação de risco: a ausência de dados não é sinal de regularidade. Confira o "
            "nome do órgão, o ano ou o valor mínimo pedidos."
        )
    head = (
        f"{notice}Tiradentes analisou {plural(n, 'contrato', 'contratos')} do recorte "
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
        f"{plural(len(data.anomalies), 'anomalia', 'anomalias')} "
        f"({_severity_phrase(data.anomalies)}), envolvendo {format_brl(suspicious)} "
        f"({format_percent(share)} do valor analisado). O tipo mais frequente é "
        f"{TYPE_LABELS[common]}. A pontuação de risco é {_decimal(summary['risk_score'])} de "
        f"10 ({level}). Anomalias são sinais para verificação, não provas de irregularidade: "
        "cada caso precisa ser verificado pelos órgãos de controle."
    )


def _decimal(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}".replace(".", ",")


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
    lines = ["| Severidade | Tipo | Fornecedor | Descrição | Contrato | Valor |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        value = format_brl(r["value"]) if r["value"] is not None else "—"
        supplier = str(r["details"].get("supplier") or "—")
        cells = (r["severity_label"], _capital(r["type_label"]), supplier, r["description"],
                 _ids(r["contract_ids"]), value)  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _risk_section(data: ReportInput, summary: Mapping[str, Any], level: str) -> dict[str, Any]:
    by_id = {c.id: c for c in data.contracts}
    weight, money, density = _risk_parts(data.anomalies, by_id, summary["total_value"])
    score = summary["risk_score"]
    content = "\n".join([
        f"**Pontuação de risco: {_decimal(score)} de 10 ({level}).**",
        "",
        "A pontuação combina a parte do dinheiro envolvida em anomalias, pesada pela "
        "gravidade, com a densidade de anomalias por contrato; as duas são proporções do "
        "recorte, por isso órgãos grandes e pequenos são comparáveis:",
        "",
        "- Peso de cada anomalia: baixa 1, média 2, alta 4, crítica 8. Soma dos pesos: "
        f"{weight}.",
        "- Componente de valor = Σ (valor do contrato × peso da sua anomalia mais grave ÷ 8) "
        f"÷ valor total = {_decimal3(money)}.",
        f"- Componente de densidade = d ÷ (d + {DENSITY_HALF:.0f}), com d = soma dos pesos "
        f"por 100 contratos = {_decimal3(density)}.",
        f"- Pontuação = 10 × (0,5 × valor + 0,5 × densidade) = {_decimal(score)}.",
        "",
        "Faixas: abaixo de 3 é baixo, de 3 a 5,9 moderado, de 6 a 7,9 alto, e 8 ou mais "
        "crítico. A pontuação orienta a verificação; não mede culpa de ninguém.",
    ])  # fmt: skip
    return {
        "content": content,
        "score": score,
        "level": level,
        "severity_weight": weight,
        "value_component": round(money, 4),
        "density_component": round(density, 4),
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
    cuts = [a for a in found if a.details.get("direction") == "reduction"]
    raises = [a for a in found if a.details.get("direction") != "reduction"]
    steps = []
    if raises:
        raised = _the_contracts([i for a in raises for i in a.contract_ids], of=True)
        steps.append(f"Requisitar os termos aditivos {raised} e verificar se respeitam o "
                     "limite de 25% (50% em reformas) do art. 125 da Lei 14.133/2021, "
                     "descontadas as prorrogações de vigência (art. 107), e se cada acréscimo "
                     "foi justificado.")
    if cuts:
        cut = _the_contracts([i for a in cuts for i in a.contract_ids], of=True)
        steps.append(f"Confirmar se a redução de valor {cut} corresponde a rescisão, "
                     "supressão acordada ou erro de registro.")
    return " ".join(steps)


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


def _methodology(data_origin: str = "memory") -> dict[str, Any]:
    price, conc = det.detect_price_deviation, det.detect_supplier_concentration
    spike, dup = det.detect_spending_spike, det.detect_duplicate_contracts
    limits = "; ".join(f"{y}: {format_brl(lim.value)} ({lim.source})"
                       for y, lim in sorted(DISPENSA_LIMITS.items()) if y >= 2023)  # fmt: skip
    detectors: dict[AnomalyType, str] = {
        "price_deviation":
            "compara o preço unitário só com contratos do mesmo item (mesmo código de "
            "catálogo, ou o mesmo item descrito na mesma unidade), de qualquer órgão, quando "
            f"há pelo menos {_default(price, 'min_peers')} deles; é anomalia o preço que fica "
            f"mais de {_decimal(_default(price, 'robust_z'))} desvios robustos (mediana e "
            "desvio absoluto mediano, em escala logarítmica) acima da mediana e pelo menos "
            f"{_decimal(_default(price, 'min_ratio'))} vez a mediana. Itens caros e raros não "
            "são comparados: caro não é sobrepreço. O excesso mostrado é (preço − mediana) × "
            "quantidade.",
        "supplier_concentration":
            f"um fornecedor (raiz do CNPJ, qualquer grafia do nome) com mais de "
            f"{format_percent(_default(conc, 'min_share'))} do valor de um órgão que tenha pelo "
            f"menos {_default(conc, 'min_contracts')} contratos; a gravidade cresce com a fatia.",
        "spending_spike":
            "um mês em que o órgão assinou pelo menos "
            f"{_decimal(_default(spike, 'min_ratio'))} vezes o esperado pela sua mediana "
            "mensal ajustada à sazonalidade (dezembro e o fim do exercício são meses cheios em "
            "todos os órgãos), depois de descontar o maior contrato competitivo do mês.",
        "duplicate_contract":
            "dois contratos do mesmo comprador (UG) com o mesmo fornecedor (raiz do CNPJ), "
            f"assinados com até {_default(dup, 'max_days')} dias de diferença, valores a até "
            f"{format_percent(_default(dup, 'max_value_gap'))} um do outro e objetos com pelo "
            f"menos {format_percent(_default(dup, 'min_similarity'))} das palavras em comum. "
            "Contratos da mesma licitação ou ata de registro de preços e a recontratação anual "
            "de um serviço contínuo não são duplicados.",
        "contract_splitting":
            "dispensas por valor (art. 75, II) da mesma UG, no mesmo exercício e para objetos "
            "da mesma natureza, de um ou de vários fornecedores, cuja soma passa o limite do "
            f"ano (art. 75, § 1º). Limites: {limits}. Dispensas emergenciais (art. 75, VIII) "
            "não entram na soma.",
        "value_divergence":
            "valor final acima do inicial mais os 25% (50% em reformas) do art. 125; a "
            "prorrogação da vigência de um serviço contínuo (art. 107) acrescenta o valor de "
            "cada novo período e não é acréscimo. Um valor final em branco ou 0,00 é dado "
            "ausente, não redução. Contrato emergencial com vigência acima de um ano também é "
            "apontado.",
    }  # fmt: skip
    source = (
        SAMPLE_NOTICE if data_origin == "sample" else
        "Os dados vêm de um arquivo do Portal da Transparência do Governo Federal (CGU) "
        "carregado no servidor." if data_origin == "file" else
        "Os dados vêm da API de dados do Portal da Transparência do Governo Federal (CGU), "
        "consultada durante a investigação." if data_origin == "api" else
        "Os dados foram fornecidos ao servidor por quem o iniciou."
    )  # fmt: skip
    lines = [
        f"{source} O valor de cada contrato é o valor final (com aditivos), ou o inicial "
        "quando o final falta.",
        "",
        "Zumbi dos Palmares aplicou seis detectores:",
        "",
        *(f"- **{_capital(TYPE_LABELS[t])}:** {text}" for t, text in detectors.items()),
        "",
        "A gravidade (baixa, média, alta, crítica) cresce com a força da evidência; a "
        "confiança (0 a 1) mede o quanto os dados sustentam o achado.",
        "",
        "Anita Garibaldi descreveu o escopo: maiores fornecedores e suas fatias, "
        "concentração de mercado pelo índice Herfindahl-Hirschman (abaixo de 1.500 baixa, "
        "de 1.500 a 2.500 moderada, acima alta), sazonalidade e a parte do valor contratada "
        "sem licitação.",
        "",
        "Os detectores veem números, não intenções: cada anomalia é um sinal para "
        "verificação, não prova de irregularidade nem acusação a ninguém.",
    ]
    return {"content": "\n".join(lines), "detectors": detectors, "data_origin": data_origin}


# --------------------------------------------------------------------------- entry point


def build_report(data: ReportInput) -> Report:
    """Compute the summary and write every section, in SECTION_TITLES order."""
    by_id = {c.id: c for c in data.contracts}
    total = sum(contract_value(c) for c in data.contracts)
    suspicious = _suspicious_value(data.anomalies, by_id)
    score = risk_score(data.anomalies, by_id, total)
    level = _risk_level(score)
    summary = {
        "total_records": len(data.contracts),
        "anomalies_found": len(data.anomalies),
        "total_value": _money(total),
        "suspicious_value": _money(suspicious),
        "risk_score": score,
        "data_origin": data.data_origin,
    }
    rows = _anomaly_rows(data, by_id)
    bodies: dict[str, dict[str, Any]] = {
        "executive_summary": {"content": _executive_summary(data, summary, level)},
        "overview": _overview(data, summary),
        "anomalies": {"content": _anomaly_table(rows)},
        "risk_assessment": _risk_section(data, summary, level),
        "recommendations": _recommendations(data),
        "methodology": _methodology(data.data_origin),
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
        data_origin=data.data_origin,
    )


# --------------------------------------------------------------------------- HTML


def _inline(text: str) -> str:
    """Escaped text with Markdown ``**bold**`` and ``_italic_`` turned into tags."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<em>\1</em>", out)


def _markdown_block(content: str) -> str:
    """The small Markdown subset the sections use: paragraphs, lists, tables, quotes."""
    parts: list[str] = []
    for block in content.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if lines[0].startswith("|"):
            rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
                    for ln in lines if not set(ln) <= set("|-: ")]  # fmt: skip
            head, *body = rows
            table = "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
            table += "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                             for r in body)  # fmt: skip
            parts.append(f"<table>{table}</table>")
        elif all(ln.lstrip().startswith("- ") for ln in lines):
            items = "".join(f"<li>{_inline(ln.lstrip()[2:])}</li>" for ln in lines)
            parts.append(f"<ul>{items}</ul>")
        elif lines[0].startswith("> "):
            parts.append(f"<blockquote>{_inline(' '.join(ln[2:] for ln in lines))}</blockquote>")
        else:
            parts.append(f"<p>{'<br>'.join(_inline(ln) for ln in lines)}</p>")
    return "\n".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b}table{border-collapse:collapse;width:100%;font-size:.9rem}"
    "th,td{border:1px solid #ccc;padding:.35rem .5rem;vertical-align:top;text-align:left}"
    "th{background:#f1f1f1}.notice{background:#fff3cd;border:1px solid #e0b000;padding:.75rem;"
    "font-weight:600}blockquote{margin:0;background:#fff3cd;padding:.75rem}"
)


def render_html(report: Report) -> str:
    """A self-contained HTML page of the report (PROTOCOL.md §1 ``format=html``): no
    script, no external resource, every text escaped. The HTTP route serves it as is."""
    title = html.escape(report.title)
    notice = (f'<p class="notice" role="alert">{html.escape(SAMPLE_NOTICE)}</p>'
              if report.data_origin == "sample" else "")  # fmt: skip
    sections = "\n".join(
        f"<section><h2>{html.escape(str(sec['title']))}</h2>"
        f"{_markdown_block(str(sec['content']))}</section>"
        for sec in (report.sections[k] for k in SECTION_TITLES if k in report.sections)
    )
    verify = "".join(
        "<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", _inline(line)) + "</p>"
        for line in verify_instructions(report.investigation_id) if line
    )
    sections += f"\n<section><h3>{VERIFY_TITLE}</h3>{verify}</section>"
    return (
        "<!doctype html>\n<html lang=\"pt-BR\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1><p><strong>Investigação:</strong> "
        f"{html.escape(report.investigation_id)} · <strong>Escopo:</strong> "
        f"{html.escape(report.scope)} · <strong>Gerado em:</strong> "
        f"{html.escape(brasilia_time(report.generated_at))}</p>{notice}\n{sections}"
        "</body></html>\n"
    )
