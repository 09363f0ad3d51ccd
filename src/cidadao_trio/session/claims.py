"""How a client message's ``id`` is named among the session's accepted ids (PROTOCOL.md §2).

One definition, because two places need it: the chat endpoint claims the id, and the
restart's clean-up lets go of the claim of a message that was never echoed.
"""

from __future__ import annotations

import orjson

from ..protocol.inbound import ReplyTo


def claim_key(message_id: ReplyTo) -> str:
    """The id as JSON text, so the number 1 and the string "1" are different ids."""
    return orjson.dumps(message_id).decode()
