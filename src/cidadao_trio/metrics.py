"""Prometheus metrics for operators (served at ``/metrics``).

One :class:`Metrics` per server, each with its own registry, so several servers in one
process (tests) never share counters. Labels are bounded sets: endpoint names, close
codes, message types we know, auth failure reasons — never ids or tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .protocol.events import ALL_TYPES
from .protocol.inbound import COMMANDS

_OUT_TYPES = ALL_TYPES
_CLOSE_CODES = {1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1013}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LLM_OUTCOMES = frozenset({
    "completed", "cancelled", "refused", "unauthorized", "rate_limited", "upstream_error", "malformed",
    "timeout", "interrupted",
})  # fmt: skip


def _known(value: str, known: Iterable[str]) -> str:
    return value if value in known else "other"


class _Snapshot(Collector):
    """Values read at scrape time (open connections' outbox bytes, investigations)."""

    def __init__(
        self, outbox_bytes: Callable[[], float], investigations: Callable[[], dict[str, int]]
    ) -> None:
        self.outbox_bytes = outbox_bytes
        self.investigations = investigations

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "cidadao_outbox_bytes", "Bytes waiting in connection outboxes", value=self.outbox_bytes()
        )
        family = GaugeMetricFamily(
            "cidadao_investigations", "Investigations by status", labels=["status"]
        )
        for status, count in sorted(self.investigations().items()):
            family.add_metric([status], count)
        yield family


class Metrics:
    def __init__(
        self,
        *,
        outbox_bytes: Callable[[], float] = lambda: 0.0,
        investigations: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """``outbox_bytes`` and ``investigations`` are read at scrape time (the server's
        connections and the engine's records)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections_open = Gauge(
            "cidadao_connections_open", "Open WebSocket connections", ["endpoint"], registry=r
        )
        self.connects = Counter("cidadao_connects", "WebSocket connections accepted", ["endpoint"], registry=r)
        self.disconnects = Counter(
            "cidadao_disconnects", "WebSocket connections closed, by close code", ["code"], registry=r
        )
        self.messages_in = Counter("cidadao_messages_in", "Client messages received", ["type"], registry=r)
        self.messages_out = Counter("cidadao_messages_out", "Messages sent to clients", ["type"], registry=r)
        self.frames_out = Counter("cidadao_frames_out", "WebSocket frames sent (batches count once)", registry=r)
        self.frames_sent = 0  # the same count, read cheaply: the garbage collector's sign of traffic
        self.slow_consumers = Counter(
            "cidadao_slow_consumer_disconnects", "Connections closed 1013 as slow consumers", registry=r
        )
        self.rate_limited = Counter("cidadao_rate_limit_refusals", "Messages refused by the rate limit", registry=r)
        self.auth_failures = Counter("cidadao_auth_failures", "Refused tokens, by reason", ["reason"], registry=r)
        self.resumes = Counter(
            "cidadao_resumes", "Reconnects with last_id, by outcome", ["outcome"], registry=r
        )
        self.store_writes = Histogram(
            "cidadao_store_write_seconds",
            "Time to commit one window of writes to the store",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.llm_requests = Counter(
            "cidadao_llm_requests", "Language-model requests, by outcome", ["outcome"], registry=r
        )
        self.llm_first_token_seconds = Histogram(
            "cidadao_llm_first_token_seconds",
            "Time from a model request to its first token (waiting for a slot included)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
            registry=r,
        )
        self.llm_tokens_streamed = Counter(
            "cidadao_llm_tokens_streamed", "Text deltas streamed from the language model", registry=r
        )
        self._out: dict[str, Any] = {}
        self.snapshot = _Snapshot(outbox_bytes, investigations)
        r.register(self.snapshot)

    def disconnected(self, code: int) -> None:
        """Peers choose their close code: label only the ones we know (or 1006)."""
        known = code in _CLOSE_CODES
        self.disconnects.labels(str(code) if known else "other").inc()

    def message_in(self, type: str) -> None:
        self.messages_in.labels(_known(type, COMMANDS)).inc()

    def frame_out(self, count: int) -> None:
        self.frames_out.inc(count)
        self.frames_sent += count

    def message_out(self, type: str, count: int = 1) -> None:
        child = self._out.get(type)
        if child is None:  # on the fan-out hot path: resolve each label once
            child = self._out[type] = self.messages_out.labels(_known(type, _OUT_TYPES))
        child.inc(count)

    def llm_request(self, outcome: str) -> None:
        self.llm_requests.labels(_known(outcome, LLM_OUTCOMES)).inc()

    def llm_first_token(self, seconds: float) -> None:
        self.llm_first_token_seconds.observe(seconds)

    def llm_tokens(self, count: int) -> None:
        self.llm_tokens_streamed.inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
