"""A fake Portal da Transparência API on 127.0.0.1: real HTTP (trio + h11), the real JSON
shape, paging of 15, and scripted misbehaviour per page (429 with Retry-After, 5xx, slow
answers) or per endpoint (403), a key it checks. Used by the tests and benchmarks/portal.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import orjson
import trio

from cidadao_trio.portuguese import normalize

KEY = "chave-de-teste-0123456789abcdef"
PAGE_SIZE = 15  # what the real API serves per page


@attrs.frozen
class Seen:
    """One request as the server saw it."""

    path: str
    params: dict[str, str]
    key: str | None
    at: float  # trio.current_time() when it arrived


def contract_item(n: int, *, code: str = "36000", name: str = "Ministério da Saúde", value: float = 10_000.0,
                  signed: dt.date = dt.date(2025, 3, 10)) -> dict[str, Any]:  # fmt: skip
    """One ``/contratos`` item in the API's shape (field names and nesting as it sends them)."""
    return {
        "id": 700_000 + n,
        "numero": f"{n:05d}/2025",
        "objeto": f"Aquisição de {10 + n % 7} unidades de insumo hospitalar lote {n}",
        "numeroProcesso": "Sem informação",
        "fundamentoLegal": "Lei 14.133/2021, Art. 28, I",
        "compra": {"numero": f"{90 + n:05d}/2024", "objeto": "Insumos", "numeroProcesso": f"25000.{n:06d}/2024-11"},
        "situacaoContrato": "Vigente",
        "modalidadeCompra": "Pregão",
        "unidadeGestora": {
            "codigo": "250005",
            "nome": "COORDENAÇÃO-GERAL DE MATERIAL E PATRIMÔNIO",
            "descricaoPoder": "EXECUTIVO",
            "orgaoVinculado": {"codigoSIAFI": code, "cnpj": "00394544000185", "sigla": "MS", "nome": name},
            "orgaoMaximo": {"codigo": code, "sigla": "MS", "nome": name},
        },
        "dataAssinatura": signed.isoformat(),
        "dataPublicacaoDOU": signed.isoformat(),
        "dataInicioVigencia": signed.isoformat(),
        "dataFimVigencia": (signed + dt.timedelta(days=365)).isoformat(),
        "fornecedor": {"id": n, "cpfFormatado": "", "cnpjFormatado": "11.222.333/0001-81",
                       "nome": f"FORNECEDORA {n % 5} LTDA", "razaoSocialReceita": f"FORNECEDORA {n % 5} LTDA",
                       "tipo": "Entidades Empresariais Privadas"},  # fmt: skip
        "valorInicialCompra": value + n,
        "valorFinalCompra": value + n,
    }


BODY_LISTING = [
    {"codigo": "36000", "descricao": "Ministério da Saúde", "codigoDescricaoFormatado": "36000 - Ministério da Saúde"},
    {"codigo": "26000", "descricao": "Ministério da Educação",
     "codigoDescricaoFormatado": "26000 - Ministério da Educação"},  # fmt: skip
]


@attrs.define
class FakePortal:
    contracts: dict[str, list[dict[str, Any]]] = attrs.Factory(dict)  # codigoOrgao -> items
    bodies: list[dict[str, Any]] = attrs.Factory(lambda: list(BODY_LISTING))
    key: str = KEY
    bad_key_status: int = 401  # what a wrong or missing key gets (the API sends 401 or 403)
    refused: set[str] = attrs.Factory(set)  # endpoints answering 403 to a good key
    # (endpoint, page) -> what to do on each request, first first: "429:<s>", "500", "503", "slow:<s>"
    script: dict[tuple[str, int], list[str]] = attrs.Factory(dict)
    always_slow: dict[tuple[str, int], float] = attrs.Factory(dict)
    seen: list[Seen] = attrs.Factory(list)
    port: int = 0

    def pages(self, code: str, count: int, **kwargs: Any) -> None:
        """``count`` full pages of contracts for body ``code``."""
        self.contracts[code] = [contract_item(n, code=code, **kwargs) for n in range(1, count * PAGE_SIZE + 1)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, endpoint: str) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith(endpoint)]

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._request(conn, stream)
                if request is None:
                    return
                status, headers, body = await self._answer(request)
                headers = [*headers, ("content-type", "application/json"), ("content-length", str(len(body)))]
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _request(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _answer(self, request: h11.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(request.target.decode())
        params = dict(parse_qsl(target.query))
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.seen.append(Seen(target.path, params, headers.get("chave-api-dados"), trio.current_time()))
        if headers.get("chave-api-dados") != self.key:
            return self.bad_key_status, [], b'{"Error": "Chave de API invalida"}'
        endpoint = target.path.removeprefix("/api-de-dados/")
        if endpoint in self.refused:
            return 403, [], b'{"Error": "Acesso negado"}'
        page = int(params.get("pagina", "0") or 0)
        steps = self.script.get((endpoint, page))
        step = steps.pop(0) if steps else ""
        if (endpoint, page) in self.always_slow:
            await trio.sleep(self.always_slow[(endpoint, page)])
        if step.startswith("429"):
            return 429, [("retry-after", step.split(":")[1])], b'{"Error": "Too Many Requests"}'
        if step in ("500", "502", "503"):
            return int(step), [], b"<html>erro</html>"
        if step.startswith("slow:"):
            await trio.sleep(float(step.split(":")[1]))
        if endpoint == "contratos":
            if "codigoOrgao" not in params:
                return 400, [], b'{"Error": "Filtros minimos: Codigo do Orgao (SIAFI)"}'
            items = self.contracts.get(params["codigoOrgao"], [])
        elif endpoint == "orgaos-siafi":
            wanted = normalize(params.get("descricao", ""))  # the search ignores case and accents
            items = [b for b in self.bodies if wanted in normalize(b["descricao"])]
            items = [b for b in items if b["codigo"] == params["codigo"]] if params.get("codigo") else items
        else:
            return 404, [], b'{"Error": "Not found"}'
        start = (page - 1) * PAGE_SIZE
        return 200, [], orjson.dumps(items[start : start + PAGE_SIZE] if page >= 1 else [])


@asynccontextmanager
async def running_portal(portal: FakePortal | None = None) -> AsyncIterator[FakePortal]:
    portal = portal or FakePortal()
    async with trio.open_nursery() as nursery:
        await nursery.start(portal.serve)
        yield portal
        nursery.cancel_scope.cancel()
