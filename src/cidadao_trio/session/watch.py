"""Behaviour of ``/api/v1/ws/investigations/{investigation_id}``: a receive-only stream."""

from __future__ import annotations

import attrs

from ..auth import Principal, may_see_investigation
from ..broker.base import investigation_stream
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.inbound import ClientMessage
from .hub import Hub, Visibility
from .participant import Participant


@attrs.define(eq=False)
class WatchEndpoint:
    hub: Hub
    investigation_id: str
    last_id: str | None = None

    @property
    def stream(self) -> str:
        return investigation_stream(self.investigation_id)

    _access: Visibility | None = None
    _prepared: bool = False  # looked up once, found or not: a missing one is not asked twice

    def permits(self, principal: Principal) -> bool:
        access = self._access
        return access is not None and may_see_investigation(principal, access.owner_key, access.public)

    async def prepare(self) -> None:
        self._access = await self.hub.lookup(self.investigation_id)
        self._prepared = True

    async def open(self, client: Participant) -> None:
        if not self._prepared:
            await self.prepare()
        if not self.permits(client.principal):
            client.close(CloseCode.POLICY, "not found", ErrorCode.NOT_FOUND)
            return
        identity = {"investigation_id": self.investigation_id}
        await self.hub.open_stream(client, self.stream, self.last_id, identity, [self.stream], replay_all=True)

    async def upgraded(self, client: Participant) -> bool:
        return False  # an investigation's visibility is set when it starts

    async def close(self, client: Participant) -> None:
        self.hub.close_stream(client, self.stream)

    async def handle(self, client: Participant, message: ClientMessage) -> None:
        """Receive-only: ping and auth are answered by the connection; the rest is refused."""
        client.error(
            ErrorCode.UNSUPPORTED,
            "Este canal apenas transmite a investigação; use o chat para enviar mensagens.",
            message.id,
        )
