"""Process limits shared by every benchmark process (servers and orchestrator)."""

from __future__ import annotations

import resource


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (10,000 sockets need it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
