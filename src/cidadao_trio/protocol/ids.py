"""Validation of the path ids (PROTOCOL.md §1)."""

from __future__ import annotations

import re

_PATH_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def is_valid_path_id(value: str) -> bool:
    return _PATH_ID_RE.fullmatch(value) is not None
