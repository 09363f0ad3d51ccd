"""A client message's ``id`` among the session's accepted ids (PROTOCOL.md §2): how it is
named, and which claims this process is still acting on.

The chat endpoint claims an id before the message's effect and its answer are written,
so a node can die in between; whoever later finds the claim without the answer lets it
go (the turns' clean-up, a resent subscribe), unless the claim is still in flight here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import orjson

from ..protocol.inbound import ReplyTo

_in_flight: set[tuple[str, str]] = set()  # (session, claim key): effects running in this process


def claim_key(message_id: ReplyTo) -> str:
    """The id as JSON text, so the number 1 and the string "1" are different ids."""
    return orjson.dumps(message_id).decode()


@contextmanager
def acting_on(session_id: str, key: str) -> Iterator[None]:
    """While a claimed message's effect runs here, its missing answer is no sign of a crash."""
    _in_flight.add((session_id, key))
    try:
        yield
    finally:
        _in_flight.discard((session_id, key))


def in_flight(session_id: str, key: str) -> bool:
    return (session_id, key) in _in_flight
