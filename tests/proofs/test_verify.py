"""A sealed report, checked offline: verified as served, and each tampering named."""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cidadao_trio.investigations.dataset import load_contracts
from cidadao_trio.investigations.proving import Prover
from cidadao_trio.proofs.signing import Signer
from cidadao_trio.proofs.verify import parse_events, verify
from cidadao_trio.records.signing_key import ServerKey

from ..contracts import HEALTH
from ..operator import InProcess
from .helpers import sealed_investigation


@pytest.fixture
def sealed(autojump_clock: trio.testing.MockClock) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return trio.run(sealed_investigation, clock=autojump_clock)


def problems(report: Any, **given: Any) -> str:
    verdict = verify(report, **given)
    assert not verdict.ok, verdict.lines
    return "\n".join(verdict.lines)


def test_a_report_as_served_is_verified_with_its_events(sealed: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, events = sealed
    proof = report["proof"]
    assert events[-1]["type"] == "report_ready" and events[-1]["data"]["proof"] == proof
    assert proof["events"] == len(events) - 1  # every durable event before report_ready
    assert sorted(proof) == sorted(
        ["chain_head", "events", "dataset_sha256", "report_sha256", "report_json_sha256", "key_id", "signature"]
    )
    verdict = verify(report, events=events, trusted=[ServerKeyless.public_of(report)])
    assert verdict.ok, verdict.lines
    text = "\n".join(verdict.lines)
    assert f"Relatório {report['investigation_id']} verificado." in text
    assert f"chave do servidor {proof['key_id']}" in text and f"Cadeia de {proof['events']} eventos conferida" in text
    assert proof["dataset_sha256"][:16] in text
    assert "não mostra que os dados ou as conclusões estejam certos" in text
    assert "### Como verificar" in report["markdown"] and "cidadao-trio verify" in report["markdown"]


class ServerKeyless:
    """The key a report names, read from the report itself (the tests trust it)."""

    @staticmethod
    def public_of(report: dict[str, Any]) -> Any:
        from cidadao_trio.proofs.signing import key_from_jwk

        return key_from_jwk(report["signing_key"])


def test_one_changed_byte_in_the_report_is_named(sealed: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, _ = sealed
    changed = copy.deepcopy(report)
    changed["summary"]["total_value"] += 1
    assert "O conteúdo do relatório JSON foi alterado" in problems(changed)
    changed = copy.deepcopy(report)
    changed["markdown"] = changed["markdown"].replace("Anomalias", "Anomalia ", 1)
    assert "O texto Markdown do relatório foi alterado" in problems(changed)
    changed = copy.deepcopy(report)
    changed["investigation_id"] = "INV-2026-002"
    assert "A assinatura não confere" in problems(changed)
    changed = copy.deepcopy(report)
    changed["proof"]["events"] -= 1
    assert "A assinatura não confere" in problems(changed)
    assert "não é um relatório com prova" in problems({"summary": {}})


def test_one_changed_byte_in_any_event_is_detected(sealed: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, events = sealed
    for n in range(len(events) - 1):
        changed = copy.deepcopy(events)
        changed[n]["timestamp"] = changed[n]["timestamp"][:-2] + ("8Z" if changed[n]["timestamp"][-2] != "8" else "9Z")
        assert "o conteúdo de pelo menos um evento foi alterado" in problems(report, events=changed), n
    changed = copy.deepcopy(events)
    n = next(n for n, e in enumerate(events) if e["type"] == "anomaly_detected")
    changed[n]["data"]["confidence"] = round(changed[n]["data"]["confidence"] - 0.01, 2)
    assert "A cadeia de eventos não confere" in problems(report, events=changed)


def test_events_out_of_order_or_missing_are_named(sealed: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, events = sealed
    swapped = [*events[:2], events[3], events[2], *events[4:]]
    text = problems(report, events=swapped)
    assert f"Eventos fora de ordem: o evento 4 ({events[2]['id']}) vem depois de {events[3]['id']}" in text
    text = problems(report, events=[*events[:5], *events[6:]])
    assert f"Faltam 1 evento(s) entre {events[4]['id']} e {events[6]['id']}" in text
    assert f"A prova cobre {report['proof']['events']} eventos" in text


def test_a_report_signed_by_another_key_is_refused(sealed: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, events = sealed
    server = ServerKeyless.public_of(report)
    other = Signer.ephemeral()
    forged = copy.deepcopy(report)  # re-signed by someone else, with their key inside
    fields = {k: v for k, v in forged["proof"].items() if k not in ("key_id", "signature")}
    forged["proof"] = other.sign(fields, forged["investigation_id"])
    forged["signing_key"] = other.jwk()
    assert verify(forged, events=events[:-1]).ok  # consistent by itself: only a trusted key tells
    assert "O report_ready dos eventos" in problems(forged, events=events)
    text = problems(forged, events=events, trusted=[server])
    assert f"assinada pela chave {other.key_id}, que não é a chave dada em --key ({report['proof']['key_id']})" in text
    assert f"({other.key_id})" in problems(report, trusted=[other.public])


def test_a_changed_dataset_is_detected(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    from ..investigations.test_data import PORTAL_ROWS, _portal_csv

    path = tmp_path / "202412_Compras.csv"
    path.write_bytes(_portal_csv(PORTAL_ROWS).replace(b"MINIST\xc9RIO DA SA\xdaDE", HEALTH.encode("latin-1")))
    def prover(broker: Any) -> Prover:
        return Prover(broker, ServerKey(), dataset_file=str(path))

    run = partial(sealed_investigation, partial(load_contracts, str(path)), prover)
    report, events = trio.run(run, clock=autojump_clock)
    data = path.read_bytes()
    verdict = verify(report, events=events, dataset=(path.name, data))
    assert verdict.ok, verdict.lines
    assert f"Conjunto de dados {path.name} conferido" in "\n".join(verdict.lines)
    changed = data.replace(b"500,00", b"501,00", 1)
    assert changed != data
    assert f"O conjunto de dados {path.name} não é o investigado" in problems(report, dataset=(path.name, changed))


def test_verify_runs_offline_from_the_command_line(
    sealed: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path: Path, in_process: InProcess
) -> None:
    report, events = sealed
    (tmp_path / "relatorio.json").write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "eventos.json").write_text("\n".join(json.dumps(e) for e in events), encoding="utf-8")  # JSON lines
    (tmp_path / "chave.json").write_text(json.dumps({"keys": [report["signing_key"]]}), encoding="utf-8")
    (tmp_path / "outra.json").write_text(json.dumps(Signer.ephemeral().jwk()), encoding="utf-8")
    ok = in_process.run("verify", "relatorio.json", "--events", "eventos.json", "--key", "chave.json", cwd=tmp_path)
    assert ok.returncode == 0, ok
    assert "verificado" in ok.stdout and f"Cadeia de {len(events) - 1} eventos conferida" in ok.stdout
    refused = in_process.run("verify", "relatorio.json", "--key", "outra.json", cwd=tmp_path)
    assert refused.returncode == 1 and "NÃO confere" in refused.stdout
    assert "não é a chave dada em --key" in refused.stdout
    missing = in_process.run("verify", "nada.json", cwd=tmp_path)
    assert missing.returncode == 2 and "não consegui ler o relatório nada.json" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_event_files_in_every_shape_a_client_saves() -> None:
    events = [{"type": "chat", "id": "ab-1", "data": {}}, {"type": "typing", "id": "e-1", "data": {}}]
    batch = {"type": "batch", "id": "e-2", "data": {"count": 1, "messages": [events[0]]}}
    assert parse_events(json.dumps(events)) == parse_events(json.dumps({"events": events})) == [events[0]]
    assert parse_events(json.dumps(batch)) == parse_events("\n".join(json.dumps(e) for e in events)) == [events[0]]
    with pytest.raises(ValueError):
        parse_events('"texto"')
