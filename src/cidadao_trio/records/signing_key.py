"""Where the server's signing key (PROTOCOL.md §11) is kept, by kind of store.

- ``--signing-key FILE``: that file (PKCS#8 PEM); several nodes may share it.
- Redis (``--store redis``): key ``signing_key`` after the broker's prefix, the first
  node's key, shared by all (whoever can read that Redis can sign: give every node the
  same ``--signing-key`` file instead to keep it out of Redis).
- the SQLite store: ``<data-dir>/signing-key.pem``, created (0600) at first start.
- the memory store: a key of this process only (nothing else survives it either).

Resolved at first use, not at start: a Redis unreachable at start must not keep the
server from listening.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..proofs.keyfile import KEY_FILE, load_or_create, load_private, private_from_pem
from ..proofs.signing import Signer

if TYPE_CHECKING:  # coredis is imported only where Redis is used (0.7 s at every start)
    from ..broker.redis import RedisBroker

log = logging.getLogger(__name__)

__all__ = ["KEY_FILE", "ServerKey"]

# KEYS: signing_key. ARGV: a candidate PEM. The first node's key wins; every node gets it.
CLAIM_SIGNING_KEY = """
local key = redis.call('GET', KEYS[1])
if not key then redis.call('SET', KEYS[1], ARGV[1]) key = ARGV[1] end
return key
"""
_scripts: dict[str, Any] = {}


def _claim_script() -> Any:
    if "claim" not in _scripts:
        from coredis.commands import Script

        _scripts["claim"] = Script(script=CLAIM_SIGNING_KEY)
    return _scripts["claim"]


class ServerKey:
    """The signing key, loaded or created once, on first :meth:`signer`."""

    def __init__(
        self, *, key_file: Path | None = None, redis: RedisBroker | None = None, data_dir: Path | None = None
    ) -> None:
        self._key_file = key_file
        self._redis = redis
        self._data_dir = data_dir
        self._signer: Signer | None = None
        self._lock = trio.Lock()

    async def signer(self) -> Signer:
        async with self._lock:
            if self._signer is None:
                self._signer = await self._open()
            return self._signer

    async def _open(self) -> Signer:
        if self._key_file is not None:
            signer = Signer(load_private(self._key_file))  # a few hundred bytes, once: no thread
            log.info("signing key %s from %s", signer.key_id, self._key_file)
        elif self._redis is not None:
            signer = await self._claim(self._redis)
        elif self._data_dir is not None:
            path = self._data_dir / KEY_FILE
            key, created = load_or_create(path)
            signer = Signer(key)
            log.info("signing key %s %s %s", signer.key_id, "created in" if created else "from", path)
        else:
            signer = Signer.ephemeral()
            log.info("signing key %s of this process only (memory store)", signer.key_id)
        return signer

    @staticmethod
    async def _claim(redis: RedisBroker) -> Signer:
        candidate = Signer.ephemeral()
        keys, args = [redis.key("signing_key")], [candidate.pem().decode()]
        claim = _claim_script()
        pem = await redis.write(lambda c, _: claim(keys=keys, args=args, client=c))
        signer = Signer(private_from_pem(str(pem).encode(), "the signing key stored in Redis"))
        created = " (created)" if signer.key_id == candidate.key_id else ""
        log.info("signing key %s shared in Redis%s", signer.key_id, created)
        return signer


