"""Envelope encoding (PROTOCOL.md §2), durable ids (§4) and path ids (§1)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao_trio.protocol.envelope import (
    DurableId,
    body,
    encode,
    encode_batch,
    ephemeral_id,
    utc_timestamp,
)
from cidadao_trio.protocol.ids import is_valid_path_id

RFC3339_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ENVELOPE_KEYS = {"type", "data", "timestamp", "id"}


# --- timestamps -----------------------------------------------------------------------


def test_utc_timestamp_explicit() -> None:
    now = dt.datetime(2026, 11, 29, 10, 30, 5, 123456, tzinfo=dt.UTC)
    assert utc_timestamp(now) == "2026-11-29T10:30:05.123Z"


@pytest.mark.parametrize(
    "micro,expected", [(0, ".000"), (999, ".000"), (1000, ".001"), (999999, ".999"), (500000, ".500")]
)
def test_utc_timestamp_milliseconds_truncated(micro: int, expected: str) -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=dt.UTC)
    assert utc_timestamp(now) == f"2026-01-02T03:04:05{expected}Z"


def test_utc_timestamp_now_is_utc_and_current() -> None:
    before = dt.datetime.now(dt.UTC)
    text = utc_timestamp()
    after = dt.datetime.now(dt.UTC)
    assert RFC3339_MS_Z.fullmatch(text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= parsed <= after


def test_utc_timestamp_converts_other_offsets_to_utc() -> None:
    brasilia = dt.timezone(dt.timedelta(hours=-3))
    now = dt.datetime(2026, 11, 29, 7, 30, 5, 123000, tzinfo=brasilia)
    assert utc_timestamp(now) == "2026-11-29T10:30:05.123Z"


@settings(max_examples=200)
@given(st.datetimes(min_value=dt.datetime(1000, 1, 1), timezones=st.just(dt.UTC)))
def test_utc_timestamp_round_trips_to_the_millisecond(now: dt.datetime) -> None:
    text = utc_timestamp(now)
    assert RFC3339_MS_Z.fullmatch(text)
    back = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert back == now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- durable ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,epoch,offset",
    [
        ("a-0", "a", 0),
        ("ep1-1", "ep1", 1),
        ("0123abcd-42", "0123abcd", 42),
        ("Z" * 32 + "-" + "9" * 19, "Z" * 32, 10**19 - 1),
    ],
)
def test_durable_id_parse(text: str, epoch: str, offset: int) -> None:
    parsed = DurableId.parse(text)
    assert parsed == DurableId(epoch, offset)
    assert str(parsed) == text


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "a-b",
        "-1",
        "x-01",
        "x-00",
        "x-1\n",
        "\nx-1",
        " x-1",
        "x-1 ",
        "x-",
        "x",
        "1",
        "x--1",
        "x-1-2",
        "e-abcd1234-5",
        "x-+1",
        "x--0",
        "x-1.0",
        "x-1e3",
        "x_y-1",
        "ação-1",
        "x-١",  # Arabic-Indic digit one
        "x-¹",
        "A" * 33 + "-1",
        "x-" + "1" * 20,
    ],
)
def test_durable_id_rejects_junk(junk: str) -> None:
    assert DurableId.parse(junk) is None


@given(
    epoch=st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
    offset=st.integers(0, 10**19 - 1),
)
def test_durable_id_round_trip(epoch: str, offset: int) -> None:
    durable = DurableId(epoch, offset)
    assert DurableId.parse(str(durable)) == durable


@given(st.text(max_size=40))
def test_durable_id_parse_never_raises(text: str) -> None:
    parsed = DurableId.parse(text)
    if parsed is not None:
        assert str(parsed) == text


def test_ephemeral_ids_unique_and_not_durable() -> None:
    ids = [ephemeral_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("e-") and DurableId.parse(i) is None for i in ids)


# --- encode ---------------------------------------------------------------------------


def test_encode_is_valid_envelope() -> None:
    data = {"content": 'Olá "cidadão"\n\\ <script>', "n": 1, "nested": {"list": [1, None, True]}}
    text = encode("chat", data, "ep1-7")
    envelope = json.loads(text)
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["type"] == "chat"
    assert envelope["data"] == data
    assert envelope["id"] == "ep1-7"
    assert RFC3339_MS_Z.fullmatch(envelope["timestamp"])


def test_encode_empty_data_is_an_object() -> None:
    envelope = json.loads(encode("pong", {}, "e-1"))
    assert envelope["data"] == {}


def test_body_stamps_many_ids_with_one_encoding() -> None:
    b = body("anomaly_detected", {"severity": "high"}, timestamp="2026-11-29T10:30:05.123Z")
    first, second = json.loads(b.stamp("a-1")), json.loads(b.stamp("b-99"))
    assert b.type == "anomaly_detected"
    assert first == {
        "type": "anomaly_detected",
        "data": {"severity": "high"},
        "timestamp": "2026-11-29T10:30:05.123Z",
        "id": "a-1",
    }
    assert {**second, "id": "a-1"} == first


@settings(max_examples=200)
@given(
    type=st.sampled_from(["chat", "typing", "investigation_progress", "error", "connection"]),
    data=st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    ),
    id=st.from_regex(r"[A-Za-z0-9]{1,8}-[1-9][0-9]{0,5}", fullmatch=True),
)
def test_encode_property(type: str, data: dict, id: str) -> None:
    envelope = json.loads(encode(type, data, id))
    assert envelope == {"type": type, "data": data, "timestamp": envelope["timestamp"], "id": id}
    assert list(envelope) == ["type", "data", "timestamp", "id"]
    assert RFC3339_MS_Z.fullmatch(envelope["timestamp"])


# --- batch ----------------------------------------------------------------------------


def test_encode_batch_wraps_members() -> None:
    members = [
        encode("chat", {"content": "a"}, "ep-1"),
        encode("typing", {"isTyping": True}, ephemeral_id()),
        encode("chat", {"content": "ç\"}"}, "ep-2"),
    ]
    envelope = json.loads(encode_batch(members, len(members)))
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["type"] == "batch"
    assert envelope["data"] == {"messages": [json.loads(m) for m in members], "count": 3}
    assert envelope["id"].startswith("e-")
    assert RFC3339_MS_Z.fullmatch(envelope["timestamp"])


def test_encode_batch_accepts_a_generator_and_single_member() -> None:
    member = encode("pong", {}, "e-x")
    envelope = json.loads(encode_batch((m for m in [member]), 1))
    assert envelope["data"]["messages"] == [json.loads(member)] and envelope["data"]["count"] == 1


def test_encode_batch_ids_differ() -> None:
    member = encode("pong", {}, "e-x")
    a, b = json.loads(encode_batch([member], 1)), json.loads(encode_batch([member], 1))
    assert a["id"] != b["id"]


# --- path ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "INV-2026-001", "s1", "A.b_c:d-e", "0", "x" * 64, "-", ".", ":", "_"]
)
def test_path_id_valid(value: str) -> None:
    assert is_valid_path_id(value)


@pytest.mark.parametrize(
    "value",
    ["", "x" * 65, "a\n", "\na", "a/b", "a b", " ", "a\tb", "ação", "ｓ1", "a?b", "a#b", "a%20", "a\x00", "é", "١"],
)
def test_path_id_invalid(value: str) -> None:
    assert not is_valid_path_id(value)


@given(st.text(max_size=80))
def test_path_id_property(value: str) -> None:
    expected = 1 <= len(value) <= 64 and all(
        c.isascii() and (c.isalnum() or c in "_.:-") for c in value
    )
    assert is_valid_path_id(value) == expected
