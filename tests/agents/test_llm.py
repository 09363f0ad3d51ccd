"""Answers voiced by a language model, through a fake OpenAI-compatible server on loopback:
real streaming, cancellation that hangs up on the model, every failure mode bounded, the
API key kept secret, the concurrency bound.

The clock is real while bytes travel over loopback (a virtual clock would jump past the
model's deadline while a socket is being read); tests of timeouts use a MockClock that
jumps only when the whole program has been idle for a moment, i.e. when the fake model
is deliberately silent."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from cidadao_trio.agents.llm import NOTES
from tests.agents.fake_openai import FakeOpenAI, Script, fake_openai, refused_url
from tests.contracts import small_dataset
from tests.harness import connect, is_turn_end, receive, receive_until, running_server, send

QUESTION = "Quanto o Ministério da Saúde gastou?"
SECRET = "sk-test-" + "s3cr3t" * 6
LLM = {"llm_model": "fake-model", "reply_chunk_delay": 0.0}


@pytest.fixture
def idle_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after 50 ms of real idleness (the fake model silent)."""
    return trio.testing.MockClock(autojump_threshold=0.05)


def assistant_chunks(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["content"] for m in messages if m["type"] == "chat" and m["data"].get("role") == "assistant"]


async def ask(ws: Any, message: str = QUESTION, id: str = "c1") -> list[dict[str, Any]]:
    await send(ws, "chat", {"message": message}, id=id)
    return await receive_until(ws, is_turn_end)


async def one_turn(fake: FakeOpenAI | None, message: str = QUESTION, **settings: Any) -> list[dict[str, Any]]:
    base_url = fake.base_url if fake is not None else settings.pop("llm_base_url")
    async with running_server(small_dataset(), llm_base_url=base_url, **{**LLM, **settings}) as server, \
            connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
        await receive(ws)
        return await ask(ws, message)


def complete(turn: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m["data"] for m in turn if m["type"] == "chat_complete")


async def test_chunks_reach_the_client_before_the_model_finishes() -> None:
    async with fake_openai() as fake:
        deltas = ["Segundo os dados ", "carregados, ", "o Ministério ", "da Saúde ", "gastou muito."]
        fake.default = Script(deltas=deltas, hold_after=3)
        async with running_server(small_dataset(), llm_base_url=fake.base_url, **LLM) as server, \
                connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
            await receive(ws)
            await send(ws, "chat", {"message": QUESTION}, id="c1")
            first = await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk") is True)
            assert first[-1]["data"]["content"].startswith("Segundo os dados")
            assert first[-1]["data"]["agent_id"] == "anita"
            assert not fake.seen[0].finished  # the model is still "generating"
            fake.release.set()
            rest = await receive_until(ws, is_turn_end)
    turn = first + rest
    done = complete(turn)
    assert done["status"] == "completed"
    assert done["content"] == "".join(fake.default.deltas) == "".join(assistant_chunks(turn))
    chunks = [m["data"]["chunk_index"] for m in turn if m["type"] == "chat" and m["data"].get("chunk")]
    assert chunks == list(range(len(chunks)))
    body = fake.seen[0].body
    assert body["stream"] is True and body["model"] == "fake-model"
    system = body["messages"][0]["content"]
    assert "Use somente os números" in system and "amostra sintética" in system
    assert "contratos" in system and "R$" in system  # Anita's computed figures are the context
    assert body["messages"][-1] == {"role": "user", "content": QUESTION}


async def test_drummond_sees_the_recent_turns() -> None:
    async with fake_openai() as fake:
        async with running_server(small_dataset(), llm_base_url=fake.base_url, **LLM) as server, \
                connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
            await receive(ws)
            await ask(ws, "O que é sobrepreço?", "c1")
            await ask(ws, "Explique melhor", "c2")
    later = fake.seen[1].body["messages"]
    assert {"role": "user", "content": "O que é sobrepreço?"} in later
    assert {"role": "assistant", "content": "".join(fake.default.deltas)} in later
    assert "Sobrepreço" in later[0]["content"]  # "explique melhor" is read as a follow-up


async def test_cancel_hangs_up_on_the_model() -> None:
    async with fake_openai() as fake:
        fake.default = Script(deltas=["Uma resposta ", "bem longa ", "que não acaba."], hold_after=1)
        async with running_server(small_dataset(), llm_base_url=fake.base_url, **LLM) as server, \
                connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
            await receive(ws)
            await send(ws, "chat", {"message": QUESTION}, id="c1")
            await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk") is True)
            await send(ws, "cancel", {"reply_to": "c1"})
            rest = await receive_until(ws, is_turn_end)
            with trio.fail_after(10):
                await fake.seen[0].disconnected.wait()
    assert complete(rest)["status"] == "cancelled"
    assert not fake.seen[0].finished


async def test_shutdown_hangs_up_on_the_model() -> None:
    async with fake_openai() as fake:
        fake.default = Script(hold_after=1)
        # the drain waits up to drain_timeout for the reply, then the turn is cut: the model is hung up on
        async with running_server(small_dataset(), llm_base_url=fake.base_url, drain_timeout=0.5, **LLM) as server, \
                connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
            await receive(ws)
            await send(ws, "chat", {"message": QUESTION}, id="c1")
            await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk") is True)
        with trio.fail_after(10):
            await fake.seen[0].disconnected.wait()
    assert not fake.seen[0].finished


async def test_closing_the_tab_does_not_stop_the_reply() -> None:
    async with fake_openai() as fake:
        fake.default = Script(hold_after=1)
        async with running_server(small_dataset(), llm_base_url=fake.base_url, **LLM) as server:
            async with connect(server, "/api/v1/ws/chat/s1") as ws:
                await receive(ws)
                await send(ws, "chat", {"message": QUESTION}, id="c1")
                await receive_until(ws, lambda m: m["type"] == "chat" and m["data"].get("chunk") is True)
            fake.release.set()  # the tab is gone; the model goes on
            async with connect(server, "/api/v1/ws/chat/s1?last_id=0-0") as again:
                replayed = await receive_until(again, lambda m: m["type"] == "chat_complete")
    assert fake.seen[0].finished and not fake.seen[0].disconnected.is_set()
    assert replayed[-1]["data"]["status"] == "completed"
    assert replayed[-1]["data"]["content"] == "".join(fake.default.deltas)


FAILURES: dict[str, Script] = {
    "unauthorized": Script(status=401),
    "rate_limited": Script(status=429, headers=[("retry-after", "3600")]),
    "upstream_error": Script(status=503),
    "malformed": Script(malformed=True),
}


@pytest.mark.parametrize("outcome", sorted(FAILURES))
async def test_a_failing_model_gives_the_rule_based_answer_with_a_note(outcome: str) -> None:
    async with fake_openai() as fake:
        fake.default = FAILURES[outcome]
        turn = await one_turn(fake)
    assert_fallback(turn, outcome)


async def test_a_refused_connection_gives_the_rule_based_answer() -> None:
    assert_fallback(await one_turn(None, llm_base_url=refused_url()), "refused")


async def test_a_model_cut_mid_way_keeps_what_was_sent_and_adds_the_answer() -> None:
    async with fake_openai() as fake:
        fake.default = Script(deltas=["Os gastos ", "do ministério ", "foram"], cut_after=2)
        turn = await one_turn(fake)
    done = complete(turn)
    assert done["status"] == "completed"
    assert done["content"].startswith("Os gastos do ministério ")
    assert NOTES["interrupted"] in done["content"] and "No recorte" in done["content"]


async def test_no_first_token_in_time_falls_back(idle_clock: trio.testing.MockClock) -> None:
    async with fake_openai() as fake:
        fake.default = Script(hold_after=0)  # headers, then silence
        turn = await one_turn(fake, llm_timeout=20.0)
    assert_fallback(turn, "timeout")


async def test_a_stalled_stream_falls_back(idle_clock: trio.testing.MockClock) -> None:
    async with fake_openai() as fake:
        fake.default = Script(deltas=["Os gastos ", "do ministério ", "foram"], hold_after=1)
        turn = await one_turn(fake, llm_timeout=20.0)
    done = complete(turn)
    assert done["content"].startswith("Os gastos ") and NOTES["interrupted"] in done["content"]


async def test_retry_after_is_honoured_within_the_bound(idle_clock: trio.testing.MockClock) -> None:
    async with fake_openai() as fake:
        fake.scripts.append(Script(status=429, headers=[("retry-after", "2")]))
        turn = await one_turn(fake)
    assert len(fake.seen) == 2
    assert complete(turn)["content"] == "".join(fake.default.deltas)


def assert_fallback(turn: list[dict[str, Any]], outcome: str) -> None:
    done = complete(turn)
    assert done["status"] == "completed"
    assert done["content"].startswith("No recorte “Ministério da Saúde”, encontrei 40 contratos")  # Anita's answer
    assert NOTES[outcome] in done["content"] and "resposta automática" in done["content"]
    assert done["content"] == "".join(assistant_chunks(turn))


async def test_the_api_key_is_sent_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CIDADAO_LLM_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    seen_by_client: list[dict[str, Any]] = []
    async with fake_openai() as fake:
        fake.scripts.append(Script(status=401))
        async with running_server(small_dataset(), llm_base_url=fake.base_url, **LLM) as server, \
                connect(server, "/api/v1/ws/chat/s1") as ws:  # fmt: skip
            await receive(ws)
            seen_by_client += await ask(ws, QUESTION, "c1")
            seen_by_client += await ask(ws, "O que é sobrepreço?", "c2")
            exposition = server.metrics.exposition().decode()
    assert [s.headers["authorization"] for s in fake.seen] == [f"Bearer {SECRET}"] * 2
    assert SECRET not in caplog.text and "s3cr3t" not in caplog.text
    assert SECRET not in exposition and "s3cr3t" not in str(seen_by_client)
    assert 'cidadao_llm_requests_total{outcome="unauthorized"} 1.0' in exposition
    assert 'cidadao_llm_requests_total{outcome="completed"} 1.0' in exposition
    assert "cidadao_llm_first_token_seconds_count 1.0" in exposition
    assert f"cidadao_llm_tokens_streamed_total {float(len(fake.default.deltas))}" in exposition


async def test_concurrent_requests_are_bounded() -> None:
    sessions = 5
    async with fake_openai() as fake:
        fake.default = Script(hold_after=1)
        async with running_server(small_dataset(), llm_base_url=fake.base_url, llm_max_concurrency=2, **LLM) as server:
            done: list[dict[str, Any]] = []

            async def citizen(n: int) -> None:
                async with connect(server, f"/api/v1/ws/chat/s{n}") as ws:
                    await receive(ws)
                    done.append(complete(await ask(ws, QUESTION, f"c{n}")))

            async with trio.open_nursery() as nursery:
                for n in range(sessions):
                    nursery.start_soon(citizen, n)
                await fake.wait_in_flight(2)
                fake.release.set()
    assert fake.max_in_flight == 2 and len(fake.seen) == sessions
    assert [d["content"] for d in done] == ["".join(fake.default.deltas)] * sessions
