"""The bytes §11 hashes and signs: Python's ``json.dumps`` with sorted keys, no spaces, UTF-8.

Values are taken as they travel (parsed back from the JSON text that was sent or
stored), so a float or a tuple hashes the same on the server and in the verifier.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
