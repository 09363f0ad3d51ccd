"""Logging setup: human text by default, or one JSON object per line for log pipelines.

Context travels in ``extra=`` (``conn``, ``session``, ``investigation``, ``sub``, ``code``,
``reason``), never in free text that could carry a token; tokens are never logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

CONTEXT_FIELDS = ("conn", "session", "investigation", "sub", "code", "reason")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                event[field] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(event, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{f}={getattr(record, f)}" for f in CONTEXT_FIELDS if getattr(record, f, None) is not None]
        return f"{line} [{' '.join(context)}]" if context else line


def configure(level: str = "info", format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    elif format == "text":
        formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        raise ValueError("log format must be 'text' or 'json'")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # coredis logs each first use of a Lua script ("Retry attempt 1 due to error: No matching
    # script") at INFO: routine, not an operator's concern. Its warnings still show.
    logging.getLogger("coredis").setLevel(max(root.level, logging.WARNING))
