"""The embedded default store: stdlib sqlite3 in WAL mode, one transaction per write window.

``synchronous=NORMAL`` in WAL mode survives a killed process (SIGKILL) without an fsync
per commit; only a power loss can take the last commits, which is the usual trade-off
of embedded databases and documented in the README.

A session's copy of an investigation event is a reference row (``ref_stream``,
``ref_offset``, empty ``text``): the event's text is stored once, in the investigation's
stream. Trimming a source row that copies still reference first writes its text into
them, so a copy never outlives its text. Texts arrive as UTF-8 bytes (the frame the broker
already holds) and are stored as such; reads cast them back to text.
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
    SaveClaim,
    SaveInvestigation,
    SaveReport,
    SaveSession,
    SaveTurn,
    StoredMessage,
    StreamHead,
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
    ref_stream TEXT,
    ref_offset INTEGER,
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
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL,
    turn_key TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (session_id, turn_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL
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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "ref_stream" not in columns:  # a store written before copies became references
            self._db.execute("ALTER TABLE messages ADD COLUMN ref_stream TEXT")
            self._db.execute("ALTER TABLE messages ADD COLUMN ref_offset INTEGER")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS messages_by_ref ON messages (ref_stream, ref_offset)"
            " WHERE ref_stream IS NOT NULL"
        )

    def load_head(self, stream: str) -> StreamHead | None:
        row = self._db.execute(
            "SELECT epoch, last_offset FROM streams WHERE stream = ?", (stream,)
        ).fetchone()
        if row is None:
            return None
        links = tuple(
            target for (target,) in self._db.execute("SELECT target FROM links WHERE source = ?", (stream,))
        )
        return StreamHead(row[0], row[1], links)

    def load_messages(self, stream: str, after: int, upto: int, limit: int) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT m.offset, m.type, CAST(COALESCE(s.text, m.text) AS TEXT), m.created,"
            " m.coalesce_key, m.ref_stream, m.ref_offset"
            " FROM messages AS m LEFT JOIN messages AS s"
            " ON m.ref_stream IS NOT NULL AND s.stream = m.ref_stream AND s.offset = m.ref_offset"
            " WHERE m.stream = ? AND m.offset > ? AND m.offset <= ? ORDER BY m.offset LIMIT ?",
            (stream, after, upto, limit),
        )
        return [
            StoredMessage(offset, type, text, created, key, None if source is None else (source, source_offset))
            for offset, type, text, created, key, source, source_offset in rows
        ]

    def load_oldest(self, stream: str, min_offset: int, created_since: float) -> int | None:
        row = self._db.execute(
            "SELECT MIN(offset) FROM messages WHERE stream = ? AND offset >= ? AND created >= ?",
            (stream, min_offset, created_since),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def load_last_ref(self, stream: str, source: str) -> int:
        row = self._db.execute(
            "SELECT MAX(ref_offset) FROM messages WHERE stream = ? AND ref_stream = ?", (stream, source)
        ).fetchone()
        return 0 if row[0] is None else int(row[0])

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

    def load_open_turns(self) -> list[tuple[str, str, str]]:
        rows = self._db.execute("SELECT session_id, turn_key, record FROM turns").fetchall()
        return [(str(s), str(k), str(r)) for s, k, r in rows]

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

    def load_claim(self, name: str, now: float) -> str | None:
        row = self._db.execute(
            "SELECT value FROM claims WHERE name = ? AND (expires_at IS NULL OR expires_at > ?)", (name, now)
        ).fetchone()
        return None if row is None else str(row[0])

    def load_claims(self, prefix: str, now: float) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT name, value FROM claims WHERE substr(name, 1, ?) = ? AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY name",
            (len(prefix), prefix, now),
        ).fetchall()
        return [(str(name), str(value)) for name, value in rows]

    def apply(self, ops: Sequence[Op]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for op in ops:
                match op:
                    case Append(stream=stream, message=m):
                        source, source_offset = m.ref or (None, None)
                        db.execute(
                            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (stream, m.offset, m.type, m.text, m.created, m.coalesce_key, source, source_offset),
                        )
                        db.execute(
                            "UPDATE streams SET last_offset = ? WHERE stream = ?", (m.offset, stream)
                        )
                    case CreateStream(stream=stream, epoch=epoch):
                        db.execute("INSERT OR REPLACE INTO streams VALUES (?, ?, 0)", (stream, epoch))
                    case Trim(stream=stream, max_offset=max_offset, before=before):
                        db.execute(  # copies still referencing what goes take its text first
                            "UPDATE messages SET text = (SELECT s.text FROM messages AS s"
                            " WHERE s.stream = messages.ref_stream AND s.offset = messages.ref_offset)"
                            " WHERE ref_stream = ?1 AND text = '' AND ref_offset IN (SELECT offset FROM"
                            " messages WHERE stream = ?1 AND (offset <= ?2 OR created < ?3))",
                            (stream, max_offset, before),
                        )
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
                    case SaveTurn(session_id=session_id, turn_key=turn_key, record=None):
                        db.execute(
                            "DELETE FROM turns WHERE session_id = ? AND turn_key = ?", (session_id, turn_key)
                        )
                    case SaveTurn(session_id=session_id, turn_key=turn_key, record=str(record)):
                        db.execute(
                            "INSERT OR REPLACE INTO turns VALUES (?, ?, ?)", (session_id, turn_key, record)
                        )
                    case SaveClaim(name=name, value=None):
                        db.execute("DELETE FROM claims WHERE name = ?", (name,))
                    case SaveClaim(name=name, value=str(value), expires_at=expires_at, prune_before=prune_before):
                        if prune_before is not None:
                            db.execute("DELETE FROM claims WHERE expires_at < ?", (prune_before,))
                        db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (name, value, expires_at))
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
            if db.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
