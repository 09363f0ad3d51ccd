"""The server API for backends (PROTOCOL.md §8): create an investigation run elsewhere,
publish its events, append messages to a session, all over HTTP with an API key.

What is published here goes through the engine's own path (``Broker.publish`` on the
investigation's stream, chained by the prover, copied to following sessions by the
broker's links), so WebSocket and SSE subscribers, resume, digests and reports see it as
they see the server's own events, on every node. An ``Idempotency-Key`` makes a retried
POST answer what the first did (kept 24 h in the records, so every node and a restart
agree) instead of appending twice.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

import attrs
import h11
import orjson
import trio

from ..auth import Principal, bearer_token
from ..broker.base import Broker, StoreUnavailable, session_stream
from ..investigations.engine import InvestigationEngine, PublishRefused
from ..protocol.ids import PATH_ID
from ..protocol.published import Refused, parse_batch, parse_messages
from ..records.base import Records
from .frontdoor import JSON, BadRequest, HttpResponse, RequestHead, error_response, json_error, read_body

log = logging.getLogger(__name__)

INVESTIGATIONS = "/api/v1/investigations"
EVENTS = re.compile(rf"/api/v1/investigations/(?P<id>{PATH_ID})/events")
MESSAGES = re.compile(rf"/api/v1/sessions/(?P<id>{PATH_ID})/messages")
MAX_BODY = 4 * 1024 * 1024  # bytes: a batch of 1,000 events with room to spare
IDEMPOTENCY_TTL = 24 * 3600.0
MAX_IDEMPOTENCY_KEY = 255
DURABLE_WITHIN = 5.0  # seconds (§7): a publish not committed by then is answered UNAVAILABLE
MAX_TITLE = 200
LATE = ("Aceito, mas o armazenamento ainda não confirmou a gravação; repita com o mesmo "
        "Idempotency-Key para receber os ids (sem ele, repetir grava de novo).")
MISMATCH = "Esta Idempotency-Key já foi usada com outro corpo; use uma chave nova para outra requisição."
BACKEND = Principal("server-api", roles=frozenset({"admin"}))  # an API key sees every investigation


@attrs.frozen
class ApiKeys:
    """``CIDADAO_API_KEYS``: compared in constant time, kept only as SHA-256 digests."""

    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, keys: str | None) -> ApiKeys:
        return cls(tuple(hashlib.sha256(k.strip().encode()).digest() for k in (keys or "").split(",") if k.strip()))

    @property
    def configured(self) -> bool:
        return bool(self.digests)

    def match(self, head: RequestHead) -> bytes | None:
        """The digest of the request's key (``Authorization: Bearer``), if it is one of ours.

        Every configured key is compared, so the time taken says nothing of which matched."""
        token = bearer_token(head.headers)
        if token is None:
            return None
        given = hashlib.sha256(token.encode()).digest()
        found = None
        for digest in self.digests:
            if hmac.compare_digest(given, digest):
                found = digest
        return found


@attrs.define(eq=False)
class BackendApi:
    keys: ApiKeys
    engine: InvestigationEngine
    broker: Broker
    records: Records
    body_timeout: float
    _in_flight: dict[str, trio.Lock] = attrs.field(factory=dict)  # one answer per idempotency key

    @staticmethod
    def matches(head: RequestHead) -> bool:
        path = head.path
        return path == INVESTIGATIONS or EVENTS.fullmatch(path) is not None or MESSAGES.fullmatch(path) is not None

    async def handle(self, stream: trio.abc.Stream, parser: h11.Connection, head: RequestHead) -> HttpResponse:
        """A POST of the server API; anything but a matching API key is refused first."""
        if not self.keys.configured:
            return error_response(404)  # no key configured: the routes do not exist
        key = self.keys.match(head)
        if key is None:
            return json_error(401, "UNAUTHORIZED", "Chave da API ausente ou inválida (Authorization: Bearer).")
        try:
            body = await read_body(stream, parser, head, MAX_BODY, self.body_timeout)
        except BadRequest as bad:
            return bad.response
        idempotency = head.header(b"idempotency-key")
        if idempotency is None:
            return await self._answer(head, body)
        if not 1 <= len(idempotency) <= MAX_IDEMPOTENCY_KEY or not idempotency.isascii():
            message = f"Idempotency-Key: de 1 a {MAX_IDEMPOTENCY_KEY} caracteres ASCII."
            return json_error(400, "INVALID_MESSAGE", message)
        try:
            return await self._once(key, head, idempotency, body)
        except StoreUnavailable as unavailable:  # the kept answers could not be read
            log.warning("server API: store unavailable: %s", unavailable)
            return json_error(503, "UNAVAILABLE", "Armazenamento indisponível; tente novamente.",
                              retry_after=unavailable.retry_after)

    async def _once(self, key: bytes, head: RequestHead, idempotency: bytes, body: bytes) -> HttpResponse:
        """The first answer to (key, route, Idempotency-Key), computed once and kept."""
        name = "idempotency:" + hashlib.sha256(b"\n".join((key, head.path.encode(), idempotency))).hexdigest()
        request = hashlib.sha256(body).hexdigest()
        lock = self._in_flight.setdefault(name, trio.Lock())
        try:
            async with lock:
                kept = await self.records.cached(name)
                if kept is not None:
                    first = orjson.loads(kept)
                    if first["request"] != request:
                        return json_error(422, "IDEMPOTENCY_MISMATCH", MISMATCH)
                    replayed = (("idempotent-replayed", "true"),)
                    return HttpResponse(first["status"], first["body"].encode(), JSON, replayed)
                answer, kept_answer = await self._answers(head, body)
                if kept_answer is not None:  # a refusal is not kept: the corrected retry runs
                    first = {"request": request, "status": kept_answer.status, "body": kept_answer.body.decode()}
                    try:
                        await self.records.cache(name, orjson.dumps(first).decode(), IDEMPOTENCY_TTL)
                    except StoreUnavailable as unavailable:  # it was accepted: say so, unkept
                        log.warning("server API: an idempotent answer could not be kept: %s", unavailable)
                return answer
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._in_flight.pop(name, None)

    async def _answer(self, head: RequestHead, body: bytes) -> HttpResponse:
        return (await self._answers(head, body))[0]

    async def _answers(self, head: RequestHead, body: bytes) -> tuple[HttpResponse, HttpResponse | None]:
        """The answer now, and the one a retry with the same Idempotency-Key gets (None:
        the retry runs again). Accepted but not yet committed within 5 s: 503 now, the 202
        for the retry, so a retried POST never appends twice."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return json_error(400, "INVALID_JSON", "O corpo não é JSON válido."), None
        try:
            if head.path == INVESTIGATIONS:
                answer = await self._create(document)
            elif (match := EVENTS.fullmatch(head.path)) is not None:
                answer = await self._publish(match["id"], document)
            else:
                match = MESSAGES.fullmatch(head.path)
                assert match is not None
                answer = await self._append(match["id"], document)
        except StoreUnavailable as unavailable:
            log.warning("server API: store unavailable: %s", unavailable)
            return json_error(503, "UNAVAILABLE", "Armazenamento indisponível; nada foi aceito.",
                              retry_after=unavailable.retry_after), None
        except _NotYetDurable as late:
            log.warning("server API: accepted, not committed within %.0f s", DURABLE_WITHIN)
            now = json_error(503, "UNAVAILABLE", LATE, retry_after=DURABLE_WITHIN)
            return now, late.accepted
        return answer, (answer if 200 <= answer.status < 300 else None)

    async def _create(self, document: object) -> HttpResponse:
        if not isinstance(document, dict):
            return _invalid("body", "O corpo deve ser um objeto JSON.")
        title, owner, public = document.get("title"), document.get("owner"), document.get("public", None)
        if set(document) - {"title", "owner", "public"}:
            return _invalid("body", "Membro desconhecido: o corpo tem só 'title', 'owner' e 'public'.")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            return _invalid("title", f"'title' deve ser um texto de 1 a {MAX_TITLE} caracteres.")
        if owner is not None and (not isinstance(owner, str) or not owner.strip()):
            return _invalid("owner", "'owner' deve ser o sub de um usuário ou null.")
        if public is None:
            public = owner is None  # like §6: an anonymous one is public, a user's private
        if not isinstance(public, bool):
            return _invalid("public", "'public' deve ser true ou false.")
        record = await self.engine.open_external(title.strip(), Principal(owner).owner_key, public)
        log.info("server API: investigation %s opened (public=%s)", record.id, public)
        return HttpResponse(201, orjson.dumps({"investigation_id": record.id, "status": record.status}), JSON)

    async def _publish(self, investigation_id: str, document: object) -> HttpResponse:
        try:
            checked = parse_batch(document, investigation_id)
        except Refused as refused:
            return _invalid(refused.field, f"Evento {refused.index}: {refused.message}.", index=refused.index)
        try:
            ids = await self.engine.publish_external(investigation_id, checked)
        except PublishRefused as refused:
            return json_error(409, "CONFLICT", str(refused))
        if ids is None:
            return json_error(404, "NOT_FOUND", "Investigação não encontrada.")
        answer = HttpResponse(202, orjson.dumps({"ids": ids}), JSON)
        await self._durable(answer)
        log.info("server API: %d events published to %s", len(ids), investigation_id)
        return answer

    async def _append(self, session_id: str, document: object) -> HttpResponse:
        try:
            messages = parse_messages(document)
        except Refused as refused:
            return _invalid(refused.field, f"Mensagem {refused.index}: {refused.message}.", index=refused.index)
        stream = session_stream(session_id)
        ids = [(await self.broker.publish(stream, message)).id for message in messages]
        answer = HttpResponse(202, orjson.dumps({"ids": ids}), JSON)
        await self._durable(answer)
        log.info("server API: %d messages appended to session %s", len(ids), session_id)
        return answer

    async def _durable(self, accepted: HttpResponse) -> None:
        """202 only once committed (the broker's flush), within §7's 5 s. Past them the
        events have ids and will be committed (the writer keeps them): not 'nothing accepted'."""
        with trio.move_on_after(DURABLE_WITHIN):
            await self.broker.flush()
            return
        raise _NotYetDurable(accepted)


class _NotYetDurable(Exception):
    def __init__(self, accepted: HttpResponse) -> None:
        super().__init__("accepted, not yet committed")
        self.accepted = accepted


def _invalid(field: str, message: str, index: int | None = None) -> HttpResponse:
    """400 naming the field (and, in a batch, the index) that does not follow §3."""
    if index is None:
        return json_error(400, "INVALID_MESSAGE", message, field=field)
    return json_error(400, "INVALID_MESSAGE", message, field=field, index=index)

