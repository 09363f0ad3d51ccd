"""Validation of the path ids (PROTOCOL.md §1)."""

from __future__ import annotations

import re

PATH_ID = r"[A-Za-z0-9_.:-]{1,64}"  # PROTOCOL.md §1: session and investigation ids
_PATH_ID_RE = re.compile(PATH_ID)


def is_valid_path_id(value: str) -> bool:
    return _PATH_ID_RE.fullmatch(value) is not None
