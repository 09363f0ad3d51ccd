"""The plain-HTTP side of the front door: health, readiness, investigations and reports."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from importlib import resources

import attrs
import orjson

from ..auth import AuthError, Principal, bearer_token, may_see_investigation
from ..broker.base import investigation_stream
from ..investigations.engine import InvestigationEngine
from ..investigations.model import Investigation, public_view
from ..investigations.report import Report, render_html
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import Metrics
from ..protocol.envelope import DurableId
from ..protocol.ids import PATH_ID
from ..session.access import Gatekeeper
from .backend_api import BACKEND, ApiKeys
from .connection import auth_refusal_message
from .frontdoor import JSON, HttpResponse, RequestHead, error_response
from .sdk_files import JAVASCRIPT, sdk_module

MARKDOWN = "text/markdown; charset=utf-8"
HTML = "text/html; charset=utf-8"
CONSOLE = (resources.files("cidadao_trio") / "static" / "console.html").read_bytes()

INVESTIGATION = re.compile(rf"/api/v1/investigations/(?P<id>{PATH_ID})")
REPORT = re.compile(rf"/api/v1/investigations/(?P<id>{PATH_ID})/report")
EVENTS = re.compile(rf"/api/v1/investigations/(?P<id>{PATH_ID})/events")
KEYS = "/api/v1/keys"
MAX_PAGE = 1000  # events of one history page (§8)


def _integer(raw: str | None, default: int) -> int | None:
    """A query parameter as an integer >= 0 (its default when absent), None if it is not one."""
    if raw is None:
        return default
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


async def _nobody(investigation_id: str) -> int:
    return 0


def _json(status: int, payload: object) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(payload), JSON)


def _error(status: int, message: str) -> HttpResponse:
    return error_response(status, message)


@attrs.define
class HttpApi:
    gate: Gatekeeper
    engine: InvestigationEngine
    not_ready: Callable[[], str | None]  # why the server is not ready, or None
    metrics: Metrics
    api_keys: ApiKeys = attrs.field(factory=lambda: ApiKeys(()))  # the server API's (§8): see every investigation

    watching: Callable[[str], Awaitable[int]] = attrs.field(default=_nobody, kw_only=True)  # §9

    async def handle(self, head: RequestHead) -> HttpResponse:
        if head.path == "/healthz":
            return HttpResponse(200, b"ok\n")
        if head.path == "/readyz":
            reason = self.not_ready()
            return _error(503, f"Não está pronto: {reason}.") if reason else HttpResponse(200, b"ready\n")
        if head.path == "/metrics":
            return HttpResponse(200, self.metrics.exposition(), METRICS_CONTENT_TYPE)
        if head.path in ("/", "/index.html"):
            return HttpResponse(200, CONSOLE, HTML)
        if (module := sdk_module(head.path)) is not None:  # the JavaScript SDK (issue 18)
            return HttpResponse(200, module, JAVASCRIPT)
        if head.path == "/api/v1/info":  # what a page needs before connecting (issue 18)
            await self.engine.ready.wait()  # the data's origin is known once it is loaded
            origin = self.engine.data_origin
            return _json(200, {"auth": "required" if self.gate.required else "optional", "data_origin": origin})
        if head.path == KEYS:
            return await self._keys()
        if (match := REPORT.fullmatch(head.path)) is not None:
            return await self._report(head, match["id"])
        if (match := EVENTS.fullmatch(head.path)) is not None:
            return await self._events(head, match["id"])
        if (match := INVESTIGATION.fullmatch(head.path)) is not None:
            return await self._status(head, match["id"])
        return error_response(404)

    def _principal(self, head: RequestHead) -> Principal | HttpResponse:
        if self.api_keys.configured and self.api_keys.match(head) is not None:
            return BACKEND
        token = head.query.get("token") or bearer_token(head.headers)
        if token is None and self.gate.required:
            return _error(401, "Autenticação necessária.")
        try:
            return self.gate.identify(token)
        except AuthError as refused:
            return _error(401, auth_refusal_message(refused))

    async def _visible(self, head: RequestHead, investigation_id: str) -> Investigation | HttpResponse:
        """The record when the caller may see it; else the same 404 for unknown and hidden.

        Both take the same steps (one engine lookup, which always asks the store), so a
        hidden investigation does not answer measurably faster than a missing one.
        """
        principal = self._principal(head)
        if isinstance(principal, HttpResponse):
            return principal
        record = await self.engine.lookup(investigation_id)
        if record is None or not may_see_investigation(principal, record.owner_key, record.public):
            return _error(404, "Investigação não encontrada.")
        return record

    async def _status(self, head: RequestHead, investigation_id: str) -> HttpResponse:
        record = await self._visible(head, investigation_id)
        if isinstance(record, HttpResponse):
            return record
        return _json(200, {**public_view(record), "watching": await self.watching(investigation_id)})

    async def _keys(self) -> HttpResponse:
        """The public key that signs reports (§11), as a JWKS."""
        signer = await self.engine.prover.key.signer()
        return _json(200, {"keys": [signer.jwk()]})

    async def _events(self, head: RequestHead, investigation_id: str) -> HttpResponse:
        """The investigation stream's history by offset (§8), oldest first: ``{"epoch",
        "events", "next_after", "complete"}``; ``complete`` once the page reaches the end of
        an investigation that ended (nothing more will come). ``verify --events`` reads it."""
        record = await self._visible(head, investigation_id)
        if isinstance(record, HttpResponse):
            return record
        after, limit = _integer(head.query.get("after"), 0), _integer(head.query.get("limit"), MAX_PAGE)
        if after is None or limit is None or not 1 <= limit <= MAX_PAGE:
            return _error(400, f"Use after=N (N >= 0) e limit=L (1 a {MAX_PAGE}).")
        stream = investigation_stream(investigation_id)
        retained = await self.engine.broker.retained(stream)
        epoch = (DurableId.parse(await self.engine.broker.last_id(stream)) or DurableId("", 0)).epoch
        later = [(at, d) for d in retained if d.durable and (at := DurableId.parse(d.id)) and at.offset > after]
        page = later[:limit]
        next_after = page[-1][0].offset if page else after
        complete = len(page) == len(later) and record.finished
        text = ",".join(d.text for _, d in page)
        body = f'{{"epoch":{orjson.dumps(epoch).decode()},"events":[{text}],"next_after":{next_after},'
        body += f'"complete":{"true" if complete else "false"}}}'
        return HttpResponse(200, body.encode(), JSON)

    async def _report(self, head: RequestHead, investigation_id: str) -> HttpResponse:
        record = await self._visible(head, investigation_id)
        if isinstance(record, HttpResponse):
            return record
        form = head.query.get("format", "markdown")
        if form not in ("markdown", "json", "html"):
            return _error(400, "Formato inválido: use format=markdown, format=json ou format=html.")
        stored = await self.engine.report(investigation_id)
        if stored is None:
            return _error(404, "O relatório ainda não está pronto.")
        if form == "json":
            return HttpResponse(200, stored.json.encode(), JSON)
        if form == "html" and record.external:  # a backend's Markdown, shown as it was written
            return HttpResponse(200, _markdown_page(record.title, stored.markdown).encode(), HTML)
        if form == "html":
            page = render_html(Report.from_json(orjson.loads(stored.json)))
            return HttpResponse(200, page.encode(), HTML)
        return HttpResponse(200, stored.markdown.encode(), MARKDOWN)


def _markdown_page(title: str, markdown: str) -> str:
    """An external investigation's report for a browser: its Markdown, escaped, as text."""
    return (
        f'<!doctype html><html lang="pt-BR"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f'<body><pre style="white-space: pre-wrap">{html.escape(markdown)}</pre></body></html>'
    )
