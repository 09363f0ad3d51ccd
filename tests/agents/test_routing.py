"""The misroutes of issue 15, asked as citizens ask, answered by the rule-based default
through a real server (in-memory sockets, virtual time)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from tests.contracts import small_dataset
from tests.harness import connect, is_turn_end, receive, receive_until, running_server, send

SETTINGS = {"investigation_step_delay": 0.0}


async def ask(ws: Any, message: str, id: str) -> dict[str, Any]:
    await send(ws, "chat", {"message": message}, id=id)
    turn = await receive_until(ws, is_turn_end)
    return next(m["data"] for m in turn if m["type"] == "chat_complete")


async def investigate(ws: Any) -> str:
    done = await ask(ws, "Investigar contratos do Ministério da Saúde", "start")
    investigation_id = done["investigation_id"]
    await receive_until(ws, lambda m: m["type"] == "report_ready")
    return str(investigation_id)


async def test_questions_about_an_existing_investigation(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(small_dataset(), **SETTINGS) as server, connect(server, "/api/v1/ws/chat/a") as ws:
        await receive(ws)
        inv = await investigate(ws)
        anomalies = await ask(ws, f"Quais as anomalias da investigação {inv}?", "q1")
        assert anomalies["agent_id"] == "tiradentes" and "investigation_id" not in anomalies
        assert f"A investigação {inv}" in anomalies["content"] and "As mais graves: 1." in anomalies["content"]
        status = await ask(ws, f"Qual o status da investigação {inv}?", "q2")
        assert status["agent_id"] == "abaporu" and "concluída" in status["content"]
        missing = await ask(ws, "Qual o status da investigação INV-2099-999?", "q3")
        assert "Não encontrei a investigação INV-2099-999" in missing["content"]
        assert inv in missing["content"]  # the session's own are named
        report = await ask(ws, "Gerar relatório", "q4")
        assert f"Relatório da investigação {inv}" in report["content"]
        assert len(server.engine.records) == 1 if server.engine else False  # nothing new started


async def test_a_new_session_gets_no_other_sessions_investigation(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(small_dataset(), **SETTINGS) as server:
        async with connect(server, "/api/v1/ws/chat/a") as first:
            await receive(first)
            inv = await investigate(first)
        async with connect(server, "/api/v1/ws/chat/b") as second:
            await receive(second)
            report = await ask(second, "Gerar relatório", "r1")
            assert inv not in report["content"] and "não abriu nem acompanha" in report["content"]
            status = await ask(second, "Qual o status da investigação?", "r2")
            assert inv not in status["content"]
            named = await ask(second, f"Qual o status da investigação {inv}?", "r3")  # public: named, it is shown
            assert f"A investigação {inv}" in named["content"]


async def test_data_questions_answered_with_the_right_figures(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(small_dataset(), **SETTINGS) as server, connect(server, "/api/v1/ws/chat/a") as ws:
        await receive(ws)
        supplier = await ask(ws, "Quanto o governo pagou para a empresa Fornecedor 3 Ltda?", "d1")
        assert supplier["agent_id"] == "anita"
        assert supplier["content"].startswith("Em todos os contratos, Fornecedor 3 Ltda tem ")
        bodies = await ask(ws, "Quais ministérios gastaram mais?", "d2")
        assert "os órgãos que mais gastaram" in bodies["content"]
        assert "1º Ministério da" in bodies["content"] and "2º Ministério da" in bodies["content"]
        company = await ask(ws, "Qual empresa recebeu mais dinheiro do governo?", "d3")
        assert "a empresa que mais recebeu foi Fornecedor" in company["content"]
        second = await ask(ws, "E o segundo maior?", "d4")  # a follow-up of the previous answer
        assert second["content"].startswith("A 2ª empresa que mais recebeu foi Fornecedor")
        year = await ask(ws, "Quanto o Ministério da Saúde gastou em 2025?", "d5")
        other = await ask(ws, "E em 2024?", "d6")
        assert "Ministério da Saúde, 2025" in year["content"] and "Ministério da Saúde, 2024" in other["content"]


async def test_conversation_topics_and_scope_limits(autojump_clock: trio.testing.MockClock) -> None:
    async with running_server(small_dataset(), **SETTINGS) as server, connect(server, "/api/v1/ws/chat/a") as ws:
        await receive(ws)
        denounce = await ask(ws, "Como denunciar uma irregularidade?", "t1")
        assert all(word in denounce["content"] for word in ("Fala.BR", "CGU", "TCU", "Ministério Público"))
        risk = await ask(ws, "O que significa pontuação de risco 5,1?", "t2")
        assert "de 0 a 10" in risk["content"] and "5,1 está na faixa de risco moderado" in risk["content"]
        city = await ask(ws, "Investigar a prefeitura de São Paulo", "t3")
        assert "investigation_id" not in city and "governo federal" in city["content"]
        assert "Prefeitura de São Paulo não faz parte deles" in city["content"]
        assert server.engine is not None and not server.engine.records  # nothing was investigated
        english = await ask(ws, "Which ministry spent the most?", "t4")
        assert english["content"].startswith("Você escreveu em inglês; eu respondo em português.")
        assert "os órgãos que mais gastaram" in english["content"]
        hello = await ask(ws, "How do I report fraud?", "t5")
        assert "inglês" in hello["content"] and "Fala.BR" in hello["content"]
