"""Drummond: topic recognition, streamed chunks, suggested actions, pacing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import trio

from cidadao_trio.agents import (
    FALLBACK,
    Agent,
    AgentReply,
    AgentRequest,
    Drummond,
    StreamedReply,
    compose_answer,
    match_topic,
    split_chunks,
)


def request(message: str) -> AgentRequest:
    return AgentRequest(session_id="s-1", message=message, context={})


async def collect(reply: AgentReply) -> list[str]:
    return [chunk async for chunk in reply]


PHRASINGS: dict[str, list[str]] = {
    "greeting": ["Olá!", "oi", "OLA", "Bom dia", "BOA TARDE", "boa noite, Drummond"],
    "thanks": ["Obrigado!", "muito obrigada", "VALEU", "agradeço muito"],
    "help": ["ajuda", "Preciso de AJUDA", "O que você faz?", "o que voce faz", "Como funciona?",
             "COMO FUNCIONA"],
    "agents": ["Quem são os agentes?", "quais agentes existem", "O que o ZUMBI faz?",
               "quem e anita garibaldi"],
    "investigate": ["Como investigar?", "como faco uma investigacao", "QUERO INVESTIGAR"],
    "anomaly": ["O que é uma anomalia?", "o que e anomalia", "ANOMALIAS?"],
    "overpricing": ["O que é sobrepreço?", "o que e sobrepreco", "SOBREPREÇO",
                    "isso é superfaturamento?"],
    "splitting": ["O que é fracionamento?", "o que e fracionamento", "FRACIONAMENTO DE COMPRAS"],
    "data_source": ["De onde vêm os dados?", "qual a fonte dos dados", "PORTAL DA TRANSPARENCIA"],
    "privacy": ["E a minha privacidade?", "privacidade", "o que fazem com MEUS DADOS", "lgpd"],
    "goodbye": ["Tchau!", "ate logo", "ATÉ MAIS", "adeus"],
}

EXPECTED_WORDS: dict[str, list[str]] = {
    "greeting": ["Drummond", "Cidadão.AI", "dinheiro público"],
    "thanks": ["Por nada", "cidadão"],
    "help": ["Drummond", "Investigar contratos do Ministério da Saúde", "sobrepreço"],
    "agents": ["Zumbi dos Palmares", "Anita Garibaldi", "Tiradentes", "Drummond", "Abaporu",
               "anomalias", "padrões", "relatórios"],
    "investigate": ["Investigar contratos do Ministério da Saúde", "tempo real", "relatório"],
    "anomaly": ["anomalia", "padrão", "não é prova"],
    "overpricing": ["Sobrepreço", "preço de mercado"],
    "splitting": ["Fracionamento", "licitação"],
    "data_source": ["Portal da Transparência", "CGU", "públicas"],
    "privacy": ["privacidade", "dados pessoais"],
    "goodbye": ["Até logo", "dinheiro público"],
    "fallback": ["não sei", "Investigar contratos do Ministério da Saúde", "agentes"],
}


@pytest.mark.parametrize(
    ("topic", "message"),
    [(topic, message) for topic, messages in PHRASINGS.items() for message in messages],
)
def test_topic_recognized(topic: str, message: str) -> None:
    assert match_topic(message).name == topic


@pytest.mark.parametrize(
    ("message", "topic"),
    [
        ("Oi, o que é sobrepreço?", "overpricing"),
        ("bom dia! como investigar contratos?", "investigate"),
        ("Obrigado, tchau", "thanks"),
        ("boa noite, tchau", "goodbye"),
        ("Como funciona o Portal da Transparência?", "data_source"),
        ("Quais agentes investigam os contratos?", "agents"),
    ],
)
def test_specific_topic_wins_over_generic(message: str, topic: str) -> None:
    assert match_topic(message).name == topic


@pytest.mark.parametrize(
    "message", ["Qual é a capital da França?", "asdf qwerty", "Me conta uma piada", "42"]
)
def test_unknown_text_gets_fallback(message: str) -> None:
    assert match_topic(message) is FALLBACK


@pytest.mark.parametrize(
    ("message", "opening"),
    [("bom dia", "Bom dia!"), ("BOA TARDE", "Boa tarde!"), ("Boa noite!", "Boa noite!"),
     ("oi", "Olá!")],
)
def test_greeting_echoes_time_of_day(message: str, opening: str) -> None:
    _, answer = compose_answer(message)
    assert answer.startswith(opening + " ")
    assert "{" not in answer


@pytest.mark.parametrize("topic", [*PHRASINGS, "fallback"])
async def test_reply_streams_full_portuguese_answer(topic: str) -> None:
    message = PHRASINGS[topic][0] if topic != "fallback" else "Qual é a capital da França?"
    _, answer = compose_answer(message)
    reply = Drummond().reply(request(message))

    chunks = await collect(reply)

    assert "".join(chunks) == answer
    assert len(chunks) > 1
    assert all(chunk for chunk in chunks)
    for word in EXPECTED_WORDS[topic]:
        assert word in answer
    assert 2 <= sum(answer.count(mark) for mark in ".!?") <= 6  # short: 2-5 sentences
    assert reply.investigation_id is None


@pytest.mark.parametrize("topic", [*PHRASINGS, "fallback"])
async def test_suggested_actions_set_after_iteration(topic: str) -> None:
    message = PHRASINGS[topic][0] if topic != "fallback" else "xyz"
    reply = Drummond().reply(request(message))

    await collect(reply)

    assert 2 <= len(reply.suggested_actions) <= 3
    assert all(action.strip() for action in reply.suggested_actions)
    assert len(set(reply.suggested_actions)) == len(reply.suggested_actions)


def test_suggested_actions_are_understood() -> None:
    """Clicking a suggestion must never land on the fallback."""
    topics = [match_topic(m) for messages in PHRASINGS.values() for m in messages] + [FALLBACK]
    actions = {action for topic in topics for action in topic.suggested_actions}
    assert "Investigar contratos do Ministério da Saúde" in actions
    for action in actions:
        assert match_topic(action) is not FALLBACK, action


async def test_chunks_are_word_groups() -> None:
    reply = Drummond().reply(request("Quem são os agentes?"))
    chunks = await collect(reply)
    sizes = [len(chunk.split()) for chunk in chunks]
    assert max(sizes) <= 8
    assert min(sizes[:-1]) >= 3
    assert all(not chunk.startswith(" ") for chunk in chunks)


async def test_reply_is_consumed_once() -> None:
    reply = Drummond().reply(request("oi"))
    first = await collect(reply)
    assert first
    assert await collect(reply) == []


async def test_chunk_delay_paces_the_stream(autojump_clock: trio.abc.Clock) -> None:
    delay = 0.05
    reply = Drummond(chunk_delay=delay).reply(request("O que é fracionamento?"))
    start = trio.current_time()
    arrivals: list[float] = []
    async for _ in reply:
        arrivals.append(trio.current_time() - start)

    assert len(arrivals) > 1
    assert arrivals[0] == pytest.approx(0.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps == pytest.approx([delay] * len(gaps))


async def test_no_delay_takes_no_time(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    chunks = await collect(Drummond().reply(request("O que é fracionamento?")))
    assert len(chunks) > 1
    assert trio.current_time() == start


async def test_delayed_reply_can_be_cancelled(autojump_clock: trio.abc.Clock) -> None:
    received: list[str] = []
    with trio.move_on_after(0.25):
        async for chunk in Drummond(chunk_delay=0.1).reply(request("Quem são os agentes?")):
            received.append(chunk)
    assert len(received) == 3  # at t=0, 0.1, 0.2; cancelled while waiting for t=0.3


def test_negative_delay_rejected() -> None:
    with pytest.raises(ValueError):
        Drummond(chunk_delay=-1.0)
    agent = Drummond()
    with pytest.raises(ValueError):
        agent.chunk_delay = -0.5
    assert agent.chunk_delay == 0.0


def test_identity_and_interface() -> None:
    agent: Agent = Drummond()
    assert (agent.agent_id, agent.agent_name) == ("drummond", "Carlos Drummond de Andrade")
    assert isinstance(agent.reply(request("oi")), StreamedReply)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "uma", "duas palavras", "  espaço antes e depois  ",
     "Uma frase curta. Outra frase, com vírgula; e mais\n\nlinhas   aqui!",
     " ".join(f"p{i}" for i in range(40))],
)
def test_split_chunks_preserves_text(text: str) -> None:
    chunks = split_chunks(text)
    assert "".join(chunks) == text
    assert all(len(chunk.split()) <= 8 for chunk in chunks)


def test_split_chunks_breaks_at_punctuation_and_limit() -> None:
    assert split_chunks("a b c. d e f g h i j k l") == ["a b c. ", "d e f g h i ", "j k l"]
    assert split_chunks("um dois três quatro cinco seis sete oito nove dez") == [
        "um dois três quatro cinco seis sete ",
        "oito nove dez",
    ]
    assert split_chunks("a b c d. e") == ["a b c d. e"]  # short tail merged
    assert split_chunks("a b c d e", min_words=2, max_words=2) == ["a b ", "c d ", "e"]


def test_split_chunks_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        split_chunks("a b", min_words=5, max_words=2)


async def test_streamed_reply_wraps_any_async_iterator() -> None:
    async def gen() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    reply = StreamedReply(gen(), suggested_actions=["x"], investigation_id="INV-1")
    assert await collect(reply) == ["a", "b"]
    assert (reply.suggested_actions, reply.investigation_id) == (["x"], "INV-1")


# --------------------------------------------------------------------------- issue 11 item 19


def test_asked_if_the_data_is_real_on_the_sample_drummond_says_no() -> None:
    from cidadao_trio.agents.drummond import compose_answer

    for question in ("Os dados são reais?", "De onde vêm os dados?", "isso é uma amostra?"):
        topic, answer = compose_answer(question, "sample")
        assert topic.name == "data_source"
        assert "amostra sintética" in answer and "não são dados reais" in answer


def test_on_a_real_file_drummond_names_the_portal() -> None:
    from cidadao_trio.agents.drummond import compose_answer

    _, answer = compose_answer("Os dados são reais?", "file")
    assert "Portal da Transparência" in answer and "sintética" not in answer


def test_the_router_wires_drummond_to_the_engine_origin() -> None:
    import attrs

    from cidadao_trio.agents.drummond import Drummond
    from cidadao_trio.agents.router import AgentRouter

    @attrs.define
    class FakeEngine:
        data_origin: str = "sample"

    @attrs.define
    class FakeAnita:
        engine: FakeEngine
        agent_id: str = "anita"
        agent_name: str = "Anita"

    drummond = Drummond()
    engine = FakeEngine()
    AgentRouter(converse=drummond, analyze=FakeAnita(engine))  # type: ignore[arg-type]
    assert drummond.data_origin is not None and drummond.data_origin() == "sample"
    engine.data_origin = "file"
    assert drummond.data_origin() == "file"
