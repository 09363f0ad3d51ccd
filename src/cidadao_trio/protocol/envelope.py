"""The server→client envelope (PROTOCOL.md §2) and its ids (§4).

An envelope is encoded to JSON text exactly once; the text is what travels through
the broker and every outbox, so fan-out to N connections costs one ``orjson.dumps``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import orjson

EPHEMERAL_PREFIX = "e-"
_ID_RE = re.compile(r"(?P<epoch>[A-Za-z0-9]{1,32})-(?P<offset>0|[1-9][0-9]{0,18})")

# Process-unique prefix so ephemeral ids never repeat across restarts.
_ephemeral_counter = itertools.count(1)
_ephemeral_prefix = EPHEMERAL_PREFIX + os.urandom(4).hex() + "-"


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """RFC 3339, UTC, millisecond precision, ``Z`` suffix."""
    if now is None:
        return _now_timestamp()
    now = now.astimezone(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


_second = [-1, ""]  # the current second, formatted once: timestamps are on the hot path


def _now_timestamp() -> str:
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))]
    return f"{_second[1]}{int((now - second) * 1000):03d}Z"


def ephemeral_id() -> str:
    return f"{_ephemeral_prefix}{next(_ephemeral_counter)}"


@attrs.frozen(order=True)
class DurableId:
    """``<epoch>-<offset>``: offset grows by one per message of a stream."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.offset}"

    @classmethod
    def parse(cls, text: str) -> DurableId | None:
        match = _ID_RE.fullmatch(text)
        if match is None:
            return None
        return cls(match["epoch"], int(match["offset"]))


@attrs.frozen
class Body:
    """An envelope without its id: ``data`` is encoded once, then stamped once per stream.

    The same investigation event lands in many session streams, each with its own id;
    splicing the id costs a string concatenation instead of a JSON encoding.
    """

    type: str
    prefix: str

    def stamp(self, id: str) -> str:
        return self.prefix + id + '"}'


def body(type: str, data: Mapping[str, Any], timestamp: str | None = None) -> Body:
    # type, timestamp and ids are ours and never need JSON escaping.
    data_json = orjson.dumps(data).decode()
    ts = timestamp or utc_timestamp()
    return Body(type, f'{{"type":"{type}","data":{data_json},"timestamp":"{ts}","id":"')


def restamp(text: str, id: str) -> str:
    """The same envelope under another id (the id is its last member)."""
    return text[: text.rindex('"id":"') + 6] + id + '"}'


def encode(type: str, data: Mapping[str, Any], id: str) -> str:
    return body(type, data).stamp(id)


def encode_batch(texts: Iterable[str], count: int) -> str:
    """A ``batch`` envelope built around already-encoded members (no re-encoding)."""
    head = '{"type":"batch","data":{"messages":['
    tail = f'],"count":{count}}},"timestamp":"{utc_timestamp()}","id":"{ephemeral_id()}"}}'
    return head + ",".join(texts) + tail
