from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_process import RedisProcess, redis_process


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with redis_process(tmp_path) as server:
        yield server


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """AOF with fsync on every write: what Redis acknowledged survives a SIGKILL."""
    with redis_process(tmp_path, persistent=True) as server:
        yield server
