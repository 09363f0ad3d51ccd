"""What ``serve`` checks before it listens, and how a start-up that fails is told.

An operator's mistake (a short secret, a missing file, a port in use, a damaged database)
gets one line that says what is wrong and what to do, never a traceback: usage errors
before anything starts (exit 2), runtime errors once it was trying (exit 1). A failure not
foreseen here is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from . import config
from .config import Settings

SQLITE_FILE = "cidadao.sqlite3"  # the file ``app.open_broker`` opens under --data-dir


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def usage_problem(settings: Settings) -> str | None:
    """Why these settings cannot work, whether they came from flags, environment or file."""
    for field in config.fields():
        choices = field.metadata.get("choices")
        value = getattr(settings, field.name)
        if choices and value not in choices:
            return f"{flag(field.name)} must be {' or '.join(choices)}, not {value!r}"
    from .session.access import Gatekeeper

    try:
        Gatekeeper.from_settings(settings)
    except OSError as unreadable:
        return f"cannot read {unreadable.filename}: {unreadable.strerror}"
    except ValueError as bad:
        return str(bad)
    if settings.dataset:
        path = Path(settings.dataset)
        if not path.is_file():
            return f"--dataset {settings.dataset}: no such file"
        if not os.access(path, os.R_OK):
            return f"--dataset {settings.dataset}: permission denied"
    return None


def leaves(failure: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) groups: a nursery wraps what its task raised."""
    if isinstance(failure, BaseExceptionGroup):
        for inner in failure.exceptions:
            yield from leaves(inner)
    else:
        yield failure


def interrupted(failure: BaseException) -> bool:
    """Ctrl-C before the signal handler was installed (imports, the first instants)."""
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(failure))


def runtime_problem(failure: BaseException, settings: Settings) -> str | None:
    """One line for a start-up failure an operator can fix; None for a bug."""
    for leaf in leaves(failure):
        if isinstance(leaf, sqlite3.DatabaseError):
            database = Path(settings.data_dir) / SQLITE_FILE
            return (
                f"{database} is not a usable SQLite database ({leaf}): check its permissions, restore it "
                f"from a backup, or move it aside to start with an empty store"
            )
        if isinstance(leaf, OSError) and leaf.errno == errno.EADDRINUSE:
            return (
                f"cannot listen on {settings.host}:{settings.port}: address already in use "
                f"(another server is running there? choose another --port)"
            )
        if isinstance(leaf, OSError) and leaf.errno in (errno.EACCES, errno.EADDRNOTAVAIL) and not leaf.filename:
            return f"cannot listen on {settings.host}:{settings.port}: {leaf.strerror}"
        if isinstance(leaf, OSError):
            where = f"{leaf.filename}: " if leaf.filename else ""
            return f"{where}{leaf.strerror or leaf}"
    return None
