"""An OpenAI-compatible chat-completions client that streams (``stream: true``).

Groq, Maritaca, OpenAI, Ollama, vLLM and llama.cpp's server all speak it: ``POST
{base_url}/chat/completions``, answered by Server-Sent Events whose ``data:`` lines carry
``choices[0].delta.content`` and end with ``data: [DONE]``. httpx runs under trio, so a
cancelled turn cancels the read and closing the response drops the connection: the model
server sees the disconnect and stops generating.

Every way the model can fail ends in :class:`ModelFailure` with an ``outcome`` (a metrics
label) within bounded time: nothing before the first token in ``first_token_timeout``
(waiting for a free slot included), nothing between two deltas for as long, and a
``Retry-After`` honoured only while it fits in both ``retry_after_max`` and the deadline.
The API key goes only into the ``Authorization`` header: never into a log line, a metric
or an exception message.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import ssl
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import orjson
import trio

if TYPE_CHECKING:  # httpx (~30 ms of imports) loads where a request is made: most servers make none
    import httpx

log = logging.getLogger(__name__)

__all__ = ["ChatModel", "ModelFailure", "ModelMetrics", "ModelSettings"]

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


class ModelFailure(Exception):
    """The model gave no complete answer; ``outcome`` is a bounded label, never a secret."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


class ModelMetrics(Protocol):
    """What the client reports (``metrics.Metrics`` implements it)."""

    def llm_request(self, outcome: str) -> None: ...

    def llm_first_token(self, seconds: float) -> None: ...

    def llm_tokens(self, count: int) -> None: ...


@attrs.frozen
class ModelSettings:
    base_url: str  # e.g. "http://127.0.0.1:11434/v1"
    model: str
    api_key: str = attrs.field(default="", repr=False)  # from CIDADAO_LLM_API_KEY only
    first_token_timeout: float = 20.0
    max_tokens: int = 512
    max_concurrency: int = 8
    retry_after_max: float = 10.0  # a longer Retry-After is a failure, not a wait
    connect_timeout: float = 5.0

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def endpoint(self) -> str:
        """For log lines: scheme, host and path, never credentials or a query."""
        import httpx

        parsed = httpx.URL(self.base_url)
        return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"


class _NoMetrics:
    def llm_request(self, outcome: str) -> None:
        pass

    def llm_first_token(self, seconds: float) -> None:
        pass

    def llm_tokens(self, count: int) -> None:
        pass


class ChatModel:
    """Streams completions, at most ``max_concurrency`` at once (the rest wait, bounded)."""

    def __init__(self, settings: ModelSettings, metrics: ModelMetrics | None = None) -> None:
        self.settings = settings
        self.metrics: ModelMetrics = metrics or _NoMetrics()
        self.slots = trio.CapacityLimiter(settings.max_concurrency)
        self._ssl: ssl.SSLContext | None = None  # built once: certifi's bundle is slow to load

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    def _body(self, messages: Sequence[Message]) -> bytes:
        return orjson.dumps({
            "model": self.settings.model, "messages": list(messages), "stream": True,
            "max_tokens": self.settings.max_tokens, "temperature": 0.2,
        })  # fmt: skip

    def _client(self) -> httpx.AsyncClient:
        """One client per request, so closing it hangs up; the TLS context is built once
        (loading the CA bundle costs tens of milliseconds of CPU, even for plain http)."""
        import httpx

        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        timeout = httpx.Timeout(None, connect=self.settings.connect_timeout)  # reads bounded below
        return httpx.AsyncClient(timeout=timeout, verify=self._ssl, trust_env=False)

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        """The reply's text deltas as they arrive. Close it (``aclosing``) to hang up."""
        started = trio.current_time()
        deadline = started + self.settings.first_token_timeout
        outcome = "cancelled"
        try:
            with trio.move_on_at(deadline) as waiting:
                await self.slots.acquire()
            if waiting.cancelled_caught:
                raise ModelFailure("timeout", "no free model slot before the first-token deadline")
            try:
                async with self._client() as client:
                    response = await self._open(client, messages, deadline)
                    try:
                        tokens = 0
                        async with aclosing(self._deltas(response, deadline)) as deltas:
                            async for delta in deltas:
                                if tokens == 0:
                                    self.metrics.llm_first_token(trio.current_time() - started)
                                tokens += 1
                                self.metrics.llm_tokens(1)
                                yield delta
                    finally:
                        with trio.CancelScope(shield=True):
                            await response.aclose()
            finally:
                self.slots.release()
            outcome = "completed"
        except ModelFailure as failure:
            outcome = failure.outcome
            log.warning("language model at %s: %s", self.settings.endpoint, failure.detail)
            raise
        finally:
            self.metrics.llm_request(outcome)

    async def _open(self, client: httpx.AsyncClient, messages: Sequence[Message], deadline: float) -> httpx.Response:
        """Send the request; answer with a 200 streaming response or fail (429 retried)."""
        import httpx

        body = self._body(messages)
        while True:
            with trio.move_on_at(deadline) as waiting:
                try:
                    request = client.build_request("POST", self.settings.url, content=body, headers=self._headers())
                    response = await client.send(request, stream=True)
                except httpx.ConnectError:
                    raise ModelFailure("refused", "connection refused or unreachable") from None
                except httpx.TimeoutException:
                    raise ModelFailure("timeout", "no connection within the connect timeout") from None
                except httpx.HTTPError as error:
                    raise ModelFailure("interrupted", f"request failed ({type(error).__name__})") from None
            if waiting.cancelled_caught:
                raise ModelFailure("timeout", f"no answer within {self.settings.first_token_timeout:g} s")
            if response.status_code == 200:
                return response
            await response.aclose()
            status = response.status_code
            if status in (401, 403):
                raise ModelFailure("unauthorized", f"HTTP {status}: the API key was refused")
            if status == 429:
                wait = _retry_after(response.headers.get("retry-after"))
                if wait is not None and wait <= self.settings.retry_after_max and trio.current_time() + wait < deadline:
                    await trio.sleep(wait)
                    continue
                raise ModelFailure("rate_limited", "HTTP 429: rate limited")
            raise ModelFailure("upstream_error", f"HTTP {status}")

    async def _deltas(self, response: httpx.Response, deadline: float) -> AsyncGenerator[str, None]:
        """``choices[0].delta.content`` of each ``data:`` line, up to ``[DONE]``."""
        import httpx

        lines = response.aiter_lines()
        first = True
        while True:
            bound = deadline if first else trio.current_time() + self.settings.first_token_timeout
            with trio.move_on_at(bound) as waiting:
                try:
                    line = await anext(lines)
                except StopAsyncIteration:
                    raise ModelFailure("interrupted", "the stream ended before [DONE]") from None
                except httpx.HTTPError as error:
                    raise ModelFailure("interrupted", f"the stream broke ({type(error).__name__})") from None
            if waiting.cancelled_caught:
                if first:
                    raise ModelFailure("timeout", f"no first token within {self.settings.first_token_timeout:g} s")
                raise ModelFailure("interrupted", "the stream stalled")
            if not line.startswith("data:"):
                continue  # blank separators, comments, event: and id: lines
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            delta = _content(payload)
            if delta:
                first = False
                yield delta


def _content(payload: str) -> str:
    try:
        event: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ModelFailure("malformed", "a data: line is not JSON") from None
    if not isinstance(event, dict):
        raise ModelFailure("malformed", "a data: line is not a JSON object")
    if "error" in event:
        raise ModelFailure("upstream_error", "the stream carried an error event")
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise ModelFailure("malformed", "an event without choices")
    if not choices:
        return ""  # e.g. a final usage-only event
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise ModelFailure("malformed", "delta.content is not text")
    return content or ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
