"""A session following an investigation: the subscription is a link between two streams.

Both steps of each operation run shielded: a connection closing halfway must not leave a
durable ``subscribed`` without the link (or a link after ``unsubscribed``). The shield is
bounded, so a store that is away (a Redis restart) cannot hold a drain forever.
"""

from __future__ import annotations

import trio

from ..broker.base import Broker, investigation_stream, session_stream
from ..protocol.events import Subscribed, Unsubscribed
from ..protocol.inbound import ReplyTo

SHIELD_SECONDS = 10.0


async def follow(broker: Broker, session_id: str, investigation_id: str, reply_to: ReplyTo = None) -> None:
    """Reply ``subscribed``, then replay the investigation so far, then stream it live."""
    stream = session_stream(session_id)
    message = f"Acompanhando a investigação {investigation_id}."
    with trio.move_on_after(SHIELD_SECONDS, shield=True):
        await broker.publish(stream, Subscribed(investigation_id=investigation_id, message=message, reply_to=reply_to))
        await broker.link(investigation_stream(investigation_id), stream)


async def unfollow(broker: Broker, session_id: str, investigation_id: str, reply_to: ReplyTo = None) -> None:
    stream = session_stream(session_id)
    message = f"Você deixou de acompanhar a investigação {investigation_id}."
    with trio.move_on_after(SHIELD_SECONDS, shield=True):
        await broker.unlink(investigation_stream(investigation_id), stream)
        await broker.publish(
            stream, Unsubscribed(investigation_id=investigation_id, message=message, reply_to=reply_to)
        )
