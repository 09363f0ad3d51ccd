"""The embedded default store: stdlib sqlite3 in WAL mode, one transaction per write window.

``synchronous=NORMAL`` in WAL mode survives a killed process (SIGKILL) without an fsync
per commit; only a power loss can take the last commits, which is the usual trade-off
of embedded databases and documented in the README.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ..auth import ANONYMOUS_OWNER
from .base import (
    Append,
    CreateStream,
    Link,
    Op,
    SaveInvestigation,
    SaveReport,
    SaveSession,
    StoredMessage,
    StoredStream,
    Trim,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last_offset INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    stream TEXT NOT NULL,
    offset INTEGER NOT NULL,
    type TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL,
    coalesce_key TEXT,
    PRIMARY KEY (stream, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_target ON links (target);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    owner_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS investigations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    investigation_id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    investigation_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    markdown TEXT NOT NULL
);
"""


class SqliteStore:
    durable = True

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One worker thread at a time uses this connection (the broker serializes calls).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def load_stream(self, stream: str) -> StoredStream | None:
        row = self._db.execute(
            "SELECT epoch, last_offset FROM streams WHERE stream = ?", (stream,)
        ).fetchone()
        if row is None:
            return None
        messages = tuple(
            StoredMessage(offset, type, text, created, key)
            for offset, type, text, created, key in self._db.execute(
                "SELECT offset, type, text, created, coalesce_key FROM messages"
                " WHERE stream = ? ORDER BY offset",
                (stream,),
            )
        )
        links = tuple(
            target for (target,) in self._db.execute("SELECT target FROM links WHERE source = ?", (stream,))
        )
        return StoredStream(row[0], row[1], messages, links)

    def load_session_owner(self, session_id: str) -> str | None:
        row = self._db.execute(
            "SELECT owner_key FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def links_to(self, target: str) -> list[str]:
        return [s for (s,) in self._db.execute("SELECT source FROM links WHERE target = ?", (target,))]

    def load_investigations(self) -> list[str]:
        return [r for (r,) in self._db.execute("SELECT record FROM investigations ORDER BY seq")]

    def load_report(self, investigation_id: str) -> tuple[str, str] | None:
        row = self._db.execute(
            "SELECT json, markdown FROM reports WHERE investigation_id = ?", (investigation_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def load_investigation(self, investigation_id: str) -> str | None:
        row = self._db.execute(
            "SELECT record FROM investigations WHERE investigation_id = ?", (investigation_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def next_number(self, counter: str) -> int:
        row = self._db.execute(
            "INSERT INTO counters VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (counter,),
        ).fetchone()
        return int(row[0])

    def apply(self, ops: Sequence[Op]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for op in ops:
                match op:
                    case Append(stream=stream, message=m):
                        db.execute(
                            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                            (stream, m.offset, m.type, m.text, m.created, m.coalesce_key),
                        )
                        db.execute(
                            "UPDATE streams SET last_offset = ? WHERE stream = ?", (m.offset, stream)
                        )
                    case CreateStream(stream=stream, epoch=epoch):
                        db.execute("INSERT OR REPLACE INTO streams VALUES (?, ?, 0)", (stream, epoch))
                    case Trim(stream=stream, max_offset=max_offset, before=before):
                        db.execute(
                            "DELETE FROM messages WHERE stream = ? AND (offset <= ? OR created < ?)",
                            (stream, max_offset, before),
                        )
                    case Link(source=source, target=target, active=True):
                        db.execute("INSERT OR IGNORE INTO links VALUES (?, ?)", (source, target))
                    case Link(source=source, target=target, active=False):
                        db.execute("DELETE FROM links WHERE source = ? AND target = ?", (source, target))
                    case SaveSession(session_id=session_id, owner_key=owner_key):
                        db.execute(  # first owner wins; a user may claim an anonymous one
                            "INSERT INTO sessions VALUES (?, ?) ON CONFLICT (session_id)"
                            " DO UPDATE SET owner_key = excluded.owner_key"
                            " WHERE sessions.owner_key = ?",
                            (session_id, owner_key, ANONYMOUS_OWNER),
                        )
                    case SaveInvestigation(investigation_id=investigation_id, record=record):
                        db.execute(
                            "INSERT INTO investigations (investigation_id, record) VALUES (?, ?)"
                            " ON CONFLICT (investigation_id) DO UPDATE SET record = excluded.record",
                            (investigation_id, record),
                        )
                    case SaveReport(investigation_id=investigation_id, json=json, markdown=markdown):
                        db.execute(
                            "INSERT OR REPLACE INTO reports VALUES (?, ?, ?)",
                            (investigation_id, json, markdown),
                        )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
