"""Client→server parsing (PROTOCOL.md §2–3): typed commands or a ProtocolError, nothing else."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao_trio.protocol.codes import DEFAULT_MESSAGES, ErrorCode
from cidadao_trio.protocol.inbound import (
    MAX_CHAT_CHARS,
    Auth,
    Cancel,
    Chat,
    ClientMessage,
    Ping,
    ProtocolError,
    Subscribe,
    Typing,
    Unsubscribe,
    parse,
)


def msg(type: Any, data: Any = ..., **extra: Any) -> str:
    raw: dict[str, Any] = {"type": type, **extra}
    if data is not ...:
        raw["data"] = data
    return json.dumps(raw)


def refused(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(text)
    return info.value


# --- every client type ----------------------------------------------------------------


def test_chat() -> None:
    parsed = parse(msg("chat", {"message": "Quais contratos da saúde?"}))
    assert parsed == ClientMessage("chat", Chat("Quais contratos da saúde?", {}), None)


def test_chat_with_context_and_extra_keys() -> None:
    parsed = parse(msg("chat", {"message": "oi", "context": {"page": "/x", "n": [1]}, "extra": 1}))
    assert parsed.command == Chat("oi", {"page": "/x", "n": [1]})


def test_chat_content_alias() -> None:
    parsed = parse(msg("chat", {"content": "Olá"}))
    assert parsed.type == "chat" and parsed.command == Chat("Olá")


def test_chat_message_wins_over_content() -> None:
    assert parse(msg("chat", {"message": "a", "content": "b"})).command == Chat("a")


def test_typing_values() -> None:
    assert parse(msg("typing", {"isTyping": True})).command == Typing(True)
    assert parse(msg("typing", {"isTyping": False})).command == Typing(False)


@pytest.mark.parametrize("data", [..., None, {}])
def test_typing_without_data_defaults_true(data: Any) -> None:
    assert parse(msg("typing", data)).command == Typing(True)


def test_subscribe_and_unsubscribe() -> None:
    assert parse(msg("subscribe", {"investigation_id": "INV-2026-001"})).command == Subscribe("INV-2026-001")
    assert parse(msg("unsubscribe", {"investigation_id": "INV-2026-001"})).command == Unsubscribe(
        "INV-2026-001"
    )


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x" * 65, "ação", "a\n"])
def test_subscribe_rejects_bad_ids(kind: str, bad: str) -> None:
    error = refused(msg(kind, {"investigation_id": bad}, id="r1"))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "investigation_id" in error.message
    assert error.reply_to == "r1"


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_subscribe_requires_id(kind: str) -> None:
    error = refused(msg(kind, {}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "investigation_id" in error.message and "obrigatório" in error.message


@pytest.mark.parametrize("reply_to", ["c1", 7, None])
def test_cancel(reply_to: Any) -> None:
    assert parse(msg("cancel", {"reply_to": reply_to})).command == Cancel(reply_to)


def test_cancel_without_data() -> None:
    assert parse(msg("cancel")).command == Cancel(None)


@pytest.mark.parametrize("bad", [True, False, 1.5, [1], {"a": 1}])
def test_cancel_reply_to_type(bad: Any) -> None:
    error = refused(msg("cancel", {"reply_to": bad}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "reply_to" in error.message


@pytest.mark.parametrize("data", [..., None, {}, {"anything": 1}])
def test_ping(data: Any) -> None:
    parsed = parse(msg("ping", data))
    assert parsed.type == "ping" and parsed.command == Ping() and parsed.id is None


def test_literal_ping_from_protocol() -> None:
    assert parse('{"type":"ping"}').command == Ping()
    assert parse(b'{"type":"ping"}').command == Ping()


def test_auth() -> None:
    parsed = parse(msg("auth", {"token": "eyJ.abc.def"}))
    assert parsed.command == Auth("eyJ.abc.def")
    assert parsed.command.token == "eyJ.abc.def"


def test_auth_requires_token() -> None:
    error = refused(msg("auth", {}))
    assert error.code is ErrorCode.INVALID_MESSAGE and "token" in error.message


# --- ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["p-1", 42, 0, -3, "", "x" * 128])
def test_id_is_echoed(client_id: Any) -> None:
    assert parse(msg("ping", id=client_id)).id == client_id


def test_id_null_is_none() -> None:
    assert parse(msg("ping", id=None)).id is None


@pytest.mark.parametrize("bad", [True, False, 1.5, [1], {"a": 1}, "x" * 129])
def test_bad_id_refused(bad: Any) -> None:
    error = refused(msg("ping", id=bad))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'id'" in error.message
    assert error.reply_to is None


def test_reply_to_echoed_in_errors() -> None:
    assert refused(msg("chat", {"message": ""}, id="c9")).reply_to == "c9"
    assert refused(msg("chat", "oops", id=5)).reply_to == 5
    assert refused(msg(3, id="t")).reply_to == "t"


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "not json", '{"type":"ping",}', "{'type':'ping'}", b"\xff\xfe", "NaN"])
def test_invalid_json(text: str | bytes) -> None:
    error = refused(text)
    assert error.code is ErrorCode.INVALID_JSON
    assert error.message == DEFAULT_MESSAGES[ErrorCode.INVALID_JSON]
    assert error.reply_to is None


@pytest.mark.parametrize("text", ["[]", '[{"type":"ping"}]', "1", '"ping"', "null", "true"])
def test_non_object_json(text: str) -> None:
    error = refused(text)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "objeto" in error.message


@pytest.mark.parametrize("raw", [{}, {"type": None}, {"type": 1}, {"type": True}, {"type": ["chat"]}])
def test_type_missing_or_not_a_string(raw: dict[str, Any]) -> None:
    error = refused(json.dumps(raw))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'type'" in error.message


@pytest.mark.parametrize("kind", ["dance", "Chat", "PING", "", "batch", "pong", "connection"])
def test_unknown_type(kind: str) -> None:
    error = refused(msg(kind, {}, id="u1"))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.reply_to == "u1"


def test_unknown_type_message_is_bounded() -> None:
    error = refused(msg("z" * 5000))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert len(error.message) < 200


@pytest.mark.parametrize("data", ["x", 1, [1], True])
def test_data_not_an_object(data: Any) -> None:
    error = refused(msg("ping", data, id=1))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'data'" in error.message and error.reply_to == 1


@pytest.mark.parametrize("field", ["message", "content"])
@pytest.mark.parametrize("text", ["", " ", "   \n\t ", "x" * (MAX_CHAT_CHARS + 1)])
def test_chat_text_bounds(field: str, text: str) -> None:
    error = refused(msg("chat", {field: text}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.message.startswith("Mensagem inválida")
    assert "'message'" in error.message or "'content'" in error.message
    assert "8000" in error.message


def test_chat_at_the_limits_accepted() -> None:
    assert parse(msg("chat", {"message": "x" * MAX_CHAT_CHARS})).command.message == "x" * MAX_CHAT_CHARS
    assert parse(msg("chat", {"message": "é" * MAX_CHAT_CHARS})).command.message == "é" * MAX_CHAT_CHARS
    assert parse(msg("chat", {"message": "?"})).command == Chat("?")
    assert parse(msg("chat", {"message": "  oi  "})).command == Chat("  oi  ")


@pytest.mark.parametrize("bad", [None, 1, 0, True, False, ["oi"], {"text": "oi"}, 1.5])
def test_chat_message_must_be_string(bad: Any) -> None:
    error = refused(msg("chat", {"message": bad}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'message'" in error.message and "tipo inválido" in error.message


def test_chat_message_required() -> None:
    error = refused(msg("chat", {"context": {}}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'message'" in error.message and "obrigatório" in error.message


@pytest.mark.parametrize("bad", [None, "ctx", [1], 1, True])
def test_chat_context_must_be_object(bad: Any) -> None:
    error = refused(msg("chat", {"message": "oi", "context": bad}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'context'" in error.message


@pytest.mark.parametrize("bad", ["true", 1, 0, None, [], {}])
def test_typing_requires_a_real_boolean(bad: Any) -> None:
    error = refused(msg("typing", {"isTyping": bad}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "'isTyping'" in error.message


@pytest.mark.parametrize(
    "kind,field",
    [("subscribe", "investigation_id"), ("unsubscribe", "investigation_id"), ("auth", "token")],
)
@pytest.mark.parametrize("bad", [True, False, 1, None, ["x"]])
def test_string_fields_refuse_non_strings(kind: str, field: str, bad: Any) -> None:
    error = refused(msg(kind, {field: bad}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert f"'{field}'" in error.message


def test_several_problems_are_all_named() -> None:
    error = refused(msg("chat", {"message": 5, "context": "x"}))
    assert "'message'" in error.message and "'context'" in error.message


def test_errors_are_protocol_errors_not_closes() -> None:
    error = refused("{")
    assert isinstance(error, Exception)
    assert str(error).startswith("INVALID_JSON")


# --- secrets --------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdXNlciJ9.c2VjcmV0LXNpZ25hdHVyZQ"


def test_auth_token_never_in_repr() -> None:
    parsed = parse(msg("auth", {"token": TOKEN}, id="a1"))
    assert TOKEN not in repr(parsed)
    assert TOKEN not in repr(parsed.command)
    assert TOKEN not in str(parsed)


def test_auth_token_never_in_error() -> None:
    for text in (
        msg("auth", {"token": TOKEN}, id=True),
        msg("auth", {"token": [TOKEN]}),
        msg("auth", {"token": {"value": TOKEN}}),
        msg("auth", TOKEN),
    ):
        error = refused(text)
        assert TOKEN not in error.message and TOKEN not in str(error) and TOKEN not in repr(error)


# --- property: never another exception ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

field_values = json_values | st.sampled_from(["", " ", "ok", "INV-1", "x" * 8001, "a/b"])
data_objects = st.dictionaries(
    st.sampled_from(["message", "content", "context", "isTyping", "investigation_id", "reply_to", "token", "other"]),
    field_values,
    max_size=4,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["chat", "typing", "subscribe", "unsubscribe", "cancel", "ping", "auth", "x"])
        | json_values,
        "data": data_objects | json_values,
        "id": json_values,
    },
)


def _check(text: str | bytes) -> None:
    try:
        result = parse(text)
    except ProtocolError as error:
        assert isinstance(error.code, ErrorCode)
        assert error.code in ErrorCode
        assert isinstance(error.message, str) and error.message
        assert error.reply_to is None or (
            isinstance(error.reply_to, (str, int)) and not isinstance(error.reply_to, bool)
        )
    else:
        assert isinstance(result, ClientMessage)
        assert result.type in {"chat", "typing", "subscribe", "unsubscribe", "cancel", "ping", "auth"}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=150, deadline=None)
@given(st.binary())
def test_parse_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_parse_arbitrary_json_values(value: Any) -> None:
    _check(orjson.dumps(value).decode())


@settings(max_examples=200, deadline=None)
@given(envelopes)
def test_parse_arbitrary_envelopes(value: dict[str, Any]) -> None:
    _check(orjson.dumps(value))
