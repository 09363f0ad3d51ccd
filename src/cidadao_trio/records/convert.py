"""The one converter between records and the JSON text every store keeps.

Stored texts keep the shape they had before this converter (field names, order, enum
values), so stores written by earlier versions read back unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar

from cattrs.preconf.orjson import make_converter

T = TypeVar("T")

converter = make_converter()


def dumps(record: Any) -> str:
    """A record as the JSON text stores keep."""
    return converter.dumps(record).decode()


def loads(raw: str | bytes, cls: type[T]) -> T:
    """A stored JSON text as its record (unknown fields from newer versions are ignored)."""
    return converter.loads(raw, cls)
