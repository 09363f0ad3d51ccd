"""Events a backend publishes through the server API (PROTOCOL.md §8), checked against the
§3 fields before anything is appended: a batch is refused whole, naming its first bad
event's index and field, so a backend never leaves half a batch behind a 400.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from .events import AgentFinding, AnomalyDetected, Event, InvestigationFailed, InvestigationProgress, ReportReady

MAX_EVENTS = 1000
MAX_TEXT = 8000  # characters of a message, description or summary
MAX_REPORT = 1024 * 1024  # characters of a report_ready's Markdown
SEVERITIES = ("low", "medium", "high", "critical")
# The phases of §3.2 a progress event may name; the endings are report_ready and investigation_failed.
PROGRESS_STATUSES = (
    "initializing", "data_retrieval", "anomaly_detection", "forensic_enrichment", "summary_generation", "completed",
)
SUMMARY_FIELDS = ("total_records", "anomalies_found", "total_value", "suspicious_value", "risk_score")


class Refused(Exception):
    """An event that does not follow §3; ``index`` and ``field`` name where (§8's 400)."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message


@attrs.frozen
class Published:
    event: Event
    report: str | None = None  # report_ready's optional Markdown, served by the report route


Check = Callable[[Any], str | None]  # the problem with a value, or None


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "deve ser um texto não vazio"
    return "é longo demais" if len(value) > MAX_TEXT else None


def _count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "deve ser um inteiro >= 0"


def _percent(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100
    return None if ok else "deve ser um inteiro de 0 a 100"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _confidence(value: Any) -> str | None:
    return None if _number(value) and 0 <= value <= 1 else "deve ser um número de 0 a 1"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "deve ser um objeto"


def _one_of(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"deve ser um de: {', '.join(options)}"

    return check


def _summary(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "deve ser um objeto"
    missing = [name for name in SUMMARY_FIELDS if not _number(value.get(name))]
    return f"precisa dos números {', '.join(missing)}" if missing else None


def _report(value: Any) -> str | None:
    if not isinstance(value, str):
        return "deve ser um texto (Markdown)"
    return "é longo demais" if len(value) > MAX_REPORT else None


def _formats(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(f, str) for f in value)
    return None if ok else "deve ser uma lista de textos"


# Each type's fields: name -> (check, required). investigation_id is checked for all.
FIELDS: dict[str, dict[str, tuple[Check, bool]]] = {
    "investigation_progress": {
        "update_type": (_one_of(("progress",)), False),
        "progress": (_percent, True),
        "status": (_one_of(PROGRESS_STATUSES), True),
        "message": (_text, True),
        "records_processed": (_count, False),
        "anomalies_detected": (_count, False),
    },
    "anomaly_detected": {
        "anomaly_id": (_text, True),
        "anomaly_type": (_text, True),
        "severity": (_one_of(SEVERITIES), True),
        "confidence": (_confidence, True),
        "description": (_text, True),
        "details": (_object, False),
        "agent_id": (_text, False),
    },
    "agent_finding": {
        "agent_id": (_text, True),
        "agent_name": (_text, True),
        "finding_type": (_text, True),
        "summary": (_text, True),
        "details": (_object, False),
    },
    "report_ready": {
        "summary": (_summary, True),
        "formats": (_formats, False),  # filled in by the server
        "url": (_text, False),  # filled in by the server
        "report": (_report, False),
    },
    "investigation_failed": {
        "reason": (_text, True),
    },
}
TYPES = tuple(FIELDS)  # the types a backend may publish


def parse_batch(document: Any, investigation_id: str) -> list[Mapping[str, Any]]:
    """One event or ``{"events": [...]}`` as a list of checked ``{"type", "data"}``."""
    if isinstance(document, dict) and "events" in document:
        if set(document) != {"events"}:
            raise Refused(0, "events", "um lote tem só o membro 'events'")
        events = document["events"]
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            raise Refused(0, "events", f"'events' deve ser uma lista de 1 a {MAX_EVENTS} eventos")
    else:
        events = [document]
    checked = [_check(index, event, investigation_id) for index, event in enumerate(events)]
    for index, event in enumerate(checked[:-1]):
        if event["type"] in ("report_ready", "investigation_failed"):
            raise Refused(index + 1, "type", "nenhum evento pode vir depois de report_ready ou investigation_failed")
    return checked


def _check(index: int, event: Any, investigation_id: str) -> Mapping[str, Any]:
    if not isinstance(event, dict):
        raise Refused(index, "", "cada evento deve ser um objeto {\"type\", \"data\"}")
    extra = set(event) - {"type", "data"}
    if extra:
        raise Refused(index, "event", "membro desconhecido; um evento tem só 'type' e 'data'")
    kind = event.get("type")
    if kind not in FIELDS:
        raise Refused(index, "type", f"'type' deve ser um de: {', '.join(TYPES)}")
    data = event.get("data", {})
    if not isinstance(data, dict):
        raise Refused(index, "data", "'data' deve ser um objeto")
    given = data.get("investigation_id", investigation_id)
    if given != investigation_id:
        raise Refused(index, "investigation_id", "não é a investigação do caminho")
    _check_fields(index, {k: v for k, v in data.items() if k != "investigation_id"}, FIELDS[kind], kind)
    return {"type": kind, "data": {**data, "investigation_id": investigation_id}}


def _check_fields(index: int, data: Mapping[str, Any], fields: Mapping[str, tuple[Check, bool]], kind: str) -> None:
    """Every member of ``data`` is one of ``fields``, every required one is there, each valid.
    An unknown member is not named back (PROTOCOL.md §1: nothing of the request is echoed)."""
    if any(name not in fields for name in data):
        raise Refused(index, "data", f"um membro de 'data' não é um campo de {kind} (os campos: {', '.join(fields)})")
    for name, (check, required) in fields.items():
        if name not in data:
            if required:
                raise Refused(index, name, f"'{name}' é obrigatório em {kind}")
            continue
        problem = check(data[name])
        if problem is not None:
            raise Refused(index, name, f"'{name}' {problem}")


def to_event(checked: Mapping[str, Any], *, records: int = 0, anomalies: int = 0, url: str = "") -> Published:
    """The typed event of a checked one; what it leaves out comes from the record."""
    data: dict[str, Any] = dict(checked["data"])
    match checked["type"]:
        case "investigation_progress":
            return Published(InvestigationProgress(
                investigation_id=data["investigation_id"], progress=data["progress"], status=data["status"],
                message=data["message"], records_processed=data.get("records_processed", records),
                anomalies_detected=data.get("anomalies_detected", anomalies),
            ))
        case "anomaly_detected":
            return Published(AnomalyDetected(
                investigation_id=data["investigation_id"], anomaly_id=data["anomaly_id"],
                anomaly_type=data["anomaly_type"], severity=data["severity"], confidence=data["confidence"],
                description=data["description"], details=data.get("details", {}),
                agent_id=data.get("agent_id", "external"),
            ))
        case "agent_finding":
            return Published(AgentFinding(
                investigation_id=data["investigation_id"], agent_id=data["agent_id"], agent_name=data["agent_name"],
                finding_type=data["finding_type"], summary=data["summary"], details=data.get("details", {}),
            ))
        case "report_ready":
            return Published(
                ReportReady(
                    investigation_id=data["investigation_id"], summary=data["summary"],
                    formats=("markdown", "json"), url=url,
                ),
                data.get("report"),
            )
        case _:
            return Published(InvestigationFailed(investigation_id=data["investigation_id"], reason=data["reason"]))


# --- a session's messages (§8 POST /api/v1/sessions/{id}/messages) ----------------------

MAX_MESSAGE_TEXT = 64 * 1024  # characters of one assistant message


@attrs.frozen(kw_only=True)
class AssistantMessage(Event):
    """A whole assistant message a backend appends to a session (not a streamed chunk)."""

    type: ClassVar[str] = "chat"
    role: str = "assistant"
    content: str
    agent_id: str
    agent_name: str
    chunk: bool = False
    reply_to: str | int | None = attrs.field(default=None, metadata={"omit_if_none": True})


def _long_text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "deve ser um texto não vazio"
    return "é longo demais" if len(value) > MAX_MESSAGE_TEXT else None


def _reply_to(value: Any) -> str | None:
    ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    return None if ok else "deve ser um texto ou um inteiro"


MESSAGE_FIELDS: dict[str, tuple[Check, bool]] = {
    "role": (_one_of(("assistant",)), False),
    "content": (_long_text, True),
    "agent_id": (_text, False),
    "agent_name": (_text, False),
    "reply_to": (_reply_to, False),
}


def parse_messages(document: Any) -> list[AssistantMessage]:
    """One ``{"type": "chat", "data": {...}}`` or ``{"messages": [...]}``, checked."""
    if isinstance(document, dict) and "messages" in document:
        messages = document["messages"]
        if set(document) != {"messages"} or not isinstance(messages, list) or not 1 <= len(messages) <= MAX_EVENTS:
            raise Refused(0, "messages", f"'messages' deve ser uma lista de 1 a {MAX_EVENTS} mensagens")
    else:
        messages = [document]
    return [_message(index, message) for index, message in enumerate(messages)]


def _message(index: int, message: Any) -> AssistantMessage:
    if not isinstance(message, dict) or message.get("type") != "chat":
        raise Refused(index, "type", "uma mensagem é {\"type\": \"chat\", \"data\": {...}}")
    extra = set(message) - {"type", "data"}
    if extra:
        raise Refused(index, "message", "membro desconhecido; uma mensagem tem só 'type' e 'data'")
    data = message.get("data")
    if not isinstance(data, dict):
        raise Refused(index, "data", "'data' deve ser um objeto")
    _check_fields(index, data, MESSAGE_FIELDS, "chat")
    return AssistantMessage(
        content=data["content"], agent_id=data.get("agent_id", "backend"),
        agent_name=data.get("agent_name", "Cidadão.AI"), reply_to=data.get("reply_to"),
    )
