"""Checking a sealed report offline (``cidadao-trio verify``): every check, in Portuguese.

:func:`verify` takes what was read (the JSON report, optionally the investigation's
events, trusted public keys and the dataset's bytes) and says what holds and, for each
thing that does not, exactly what does not match. It never stops at the first problem:
a citizen contesting a report needs the whole list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import sha256_hex
from .chain import ProofChain
from .sealing import MARKDOWN, PROOF, SIGNING_KEY, report_json_sha256
from .signing import key_from_jwk, key_id, signature_valid

REPORT_READY = "report_ready"
EPHEMERAL_PREFIX = "e-"
CAVEAT = (
    "A prova mostra de onde vieram o relatório e os eventos e que não foram alterados; "
    "não mostra que os dados ou as conclusões estejam certos."
)


@attrs.frozen
class Verdict:
    ok: bool
    lines: tuple[str, ...]


def parse_events(text: str) -> list[dict[str, Any]]:
    """A JSON array of envelopes, ``{"events": [...]}``, or one envelope per line.

    ``batch`` envelopes are unpacked; ephemeral messages (``e-`` ids) are left out.
    Raises ``ValueError`` when the text is none of these.
    """
    stripped = text.strip()
    try:
        document: Any = json.loads(stripped) if stripped else []
    except json.JSONDecodeError:
        document = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    if isinstance(document, dict):
        document = document.get("events", document.get("messages", [document]))
    if not isinstance(document, list) or not all(isinstance(e, dict) for e in document):
        raise ValueError("esperava uma lista JSON de mensagens, ou uma mensagem JSON por linha")
    out: list[dict[str, Any]] = []
    for envelope in document:
        if envelope.get("type") == "batch":
            out.extend(m for m in envelope.get("data", {}).get("messages", []) if isinstance(m, dict))
        else:
            out.append(envelope)
    return [e for e in out if isinstance(e.get("id"), str) and not e["id"].startswith(EPHEMERAL_PREFIX)]


def _offset(envelope: Mapping[str, Any]) -> tuple[str, int] | None:
    epoch, _, offset = str(envelope.get("id", "")).rpartition("-")
    return (epoch, int(offset)) if epoch and offset.isdigit() else None


def _short(digest: object) -> str:
    return f"{str(digest)[:16]}…"


@attrs.define
class _Checks:
    problems: list[str] = attrs.Factory(list)
    facts: list[str] = attrs.Factory(list)


def _check_key(
    report: Mapping[str, Any], proof: Mapping[str, Any], trusted: Sequence[Ed25519PublicKey] | None, c: _Checks
) -> Ed25519PublicKey | None:
    named = str(proof.get("key_id", ""))
    if trusted is not None:
        match = next((k for k in trusted if key_id(k) == named), None)
        if match is None:
            given = ", ".join(key_id(k) for k in trusted) or "nenhuma"
            c.problems.append(f"A prova foi assinada pela chave {named}, que não é a chave dada em --key ({given}).")
            return None
        c.facts.append(f"Assinado pela chave do servidor {named} (Ed25519), a mesma dada em --key.")
        return match
    try:
        embedded = key_from_jwk(report.get(SIGNING_KEY) or {})
    except ValueError:
        c.problems.append("O relatório não traz a chave pública do servidor: dê-a com --key (GET /api/v1/keys).")
        return None
    if key_id(embedded) != named:
        c.problems.append(f"A chave pública do relatório ({key_id(embedded)}) não é a que assinou a prova ({named}).")
        return None
    c.facts.append(
        f"Assinado pela chave {named} (Ed25519) que vem no relatório; confira que é a do servidor "
        "em GET /api/v1/keys, ou dê-a com --key."
    )
    return embedded


def _check_report(report: Mapping[str, Any], proof: Mapping[str, Any], c: _Checks) -> None:
    markdown = report.get(MARKDOWN)
    if not isinstance(markdown, str):
        c.problems.append("O relatório JSON não traz o texto Markdown (campo markdown).")
    elif sha256_hex(markdown.encode()) != proof.get("report_sha256"):
        c.problems.append(
            f"O texto Markdown do relatório foi alterado: SHA-256 {_short(sha256_hex(markdown.encode()))}, "
            f"a prova diz {_short(proof.get('report_sha256'))}."
        )
    if report_json_sha256(report) != proof.get("report_json_sha256"):
        c.problems.append(
            "O conteúdo do relatório JSON foi alterado (resumo, seções ou anomalias): "
            f"SHA-256 {_short(report_json_sha256(report))}, a prova diz {_short(proof.get('report_json_sha256'))}."
        )
    elif isinstance(markdown, str) and sha256_hex(markdown.encode()) == proof.get("report_sha256"):
        c.facts.append(f"Relatório íntegro (Markdown SHA-256 {_short(proof.get('report_sha256'))}).")


def _check_events(
    investigation_id: str, proof: Mapping[str, Any], events: Sequence[Mapping[str, Any]], c: _Checks
) -> None:
    chained: list[Mapping[str, Any]] = []
    ready = None
    for envelope in events:
        if envelope.get("type") == REPORT_READY:
            ready = envelope
            break
        chained.append(envelope)
    if ready is not None and (ready.get("data") or {}).get(PROOF) != dict(proof):
        c.problems.append(f"O report_ready dos eventos ({ready.get('id')}) traz uma prova diferente da do relatório.")
    in_order = True
    previous: tuple[str, int] | None = None
    for n, envelope in enumerate(chained, start=1):
        owner = (envelope.get("data") or {}).get("investigation_id")
        if owner != investigation_id:
            c.problems.append(
                f"O evento {n} ({envelope.get('id')}) é da investigação {owner}, não de {investigation_id}."
            )
        at = _offset(envelope)
        if at is not None and previous is not None:
            if at[0] != previous[0]:
                c.problems.append(f"O evento {n} ({envelope.get('id')}) é de outra época do fluxo que o anterior.")
                in_order = False
            elif at[1] <= previous[1]:
                c.problems.append(
                    f"Eventos fora de ordem: o evento {n} ({envelope.get('id')}) vem depois de "
                    f"{previous[0]}-{previous[1]}."
                )
                in_order = False
            elif at[1] != previous[1] + 1:
                c.problems.append(
                    f"Faltam {at[1] - previous[1] - 1} evento(s) entre {previous[0]}-{previous[1]} "
                    f"e {envelope.get('id')}."
                )
        previous = at if at is not None else previous
    expected = proof.get("events")
    if len(chained) != expected:
        c.problems.append(
            f"A prova cobre {expected} eventos; o arquivo de eventos tem {len(chained)} antes do report_ready."
        )
    chain = ProofChain(investigation_id)
    chain.extend(chained)
    head = chain.mark.head
    if head != proof.get("chain_head"):
        if in_order and len(chained) == expected:
            c.problems.append(
                "A cadeia de eventos não confere: o conteúdo de pelo menos um evento foi alterado "
                f"(cabeça calculada {_short(head)}, a prova diz {_short(proof.get('chain_head'))})."
            )
        else:
            c.problems.append(
                f"A cadeia de eventos não confere (cabeça calculada {_short(head)}, a prova diz "
                f"{_short(proof.get('chain_head'))})."
            )
    else:
        c.facts.append(f"Cadeia de {len(chained)} eventos conferida evento a evento (cabeça {_short(head)}).")


def _check_dataset(proof: Mapping[str, Any], dataset: tuple[str, bytes] | None, c: _Checks) -> None:
    claimed = proof.get("dataset_sha256")
    if dataset is None:
        if claimed is None:
            c.facts.append("Sem conjunto de dados: a investigação foi publicada pela API do servidor.")
        else:
            c.facts.append(f"Conjunto de dados: SHA-256 {claimed} (dê o arquivo com --dataset para conferi-lo).")
        return
    name, data = dataset
    actual = hashlib.sha256(data).hexdigest()
    if claimed is None:
        c.problems.append(f"A prova não cita conjunto de dados, mas foi dado {name}.")
    elif actual != claimed:
        c.problems.append(
            f"O conjunto de dados {name} não é o investigado: SHA-256 {_short(actual)}, a prova diz {_short(claimed)}."
        )
    else:
        c.facts.append(f"Conjunto de dados {name} conferido (SHA-256 {_short(actual)}).")


def verify(
    report: Any,
    *,
    events: Sequence[Mapping[str, Any]] | None = None,
    trusted: Sequence[Ed25519PublicKey] | None = None,
    dataset: tuple[str, bytes] | None = None,
) -> Verdict:
    if not isinstance(report, Mapping) or not isinstance(report.get(PROOF), Mapping):
        return Verdict(False, ("Este arquivo não é um relatório com prova (falta o campo proof).",))
    proof = report[PROOF]
    investigation_id = str(report.get("investigation_id", ""))
    c = _Checks()
    key = _check_key(report, proof, trusted, c)
    if key is not None and not signature_valid(proof, investigation_id, key):
        c.problems.append(
            f"A assinatura não confere com a chave {proof.get('key_id')}: a prova ou o id da investigação foram "
            "alterados, ou ela não foi feita por esta chave."
        )
    _check_report(report, proof, c)
    if events is None:
        c.facts.append(f"Cadeia de {proof.get('events')} eventos (cabeça {_short(proof.get('chain_head'))}); "
                       "dê os eventos com --events para conferi-los.")
    else:
        _check_events(investigation_id, proof, events, c)
    _check_dataset(proof, dataset, c)
    if c.problems:
        head = f"O relatório {investigation_id} NÃO confere ({len(c.problems)} problema(s)):"
        return Verdict(False, (head, *(f"- {p}" for p in c.problems)))
    return Verdict(True, (f"Relatório {investigation_id} verificado.", *(f"- {f}" for f in c.facts), CAVEAT))
