"""The alerts' delivery state: an SQLite queue (WAL, synchronous=FULL) in its own folder.

Store and forward: each evaluated batch of journal rows becomes queued messages, the rule state and the new journal
position in one transaction, so a kill -9 at any moment loses nothing and invents nothing (rows evaluated again
give the same message ids, and a message already queued is not queued twice). A message is delivered to each
transport independently; a transport's delivery is recorded only once it acknowledged it (MQTT PUBACK, HTTP 2xx).
Thumbnails are bounded: beyond ``backlog_thumbnails_mb`` undelivered, the oldest are dropped, never the messages.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.errors import OutputError

DB_NAME = "alerts.sqlite3"
SCHEMA_VERSION = 1
#: delivered messages keep their id (so that one evaluated again is known) but lose their body after this long
KEEP_BODIES_S = 30 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    card_id TEXT NOT NULL,
    label TEXT NOT NULL,
    payload TEXT,
    thumbnail BLOB,
    thumbnail_dropped INTEGER NOT NULL DEFAULT 0,
    journal_seq INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivered (
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    transport TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    PRIMARY KEY (message_seq, transport)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Queued:
    seq: int
    id: str
    kind: str
    label: str
    payload: dict[str, Any]
    thumbnail: bytes | None
    thumbnail_dropped: bool


@dataclass(frozen=True)
class NewMessage:
    id: str
    kind: str
    card_id: str
    label: str
    payload: dict[str, Any]
    thumbnail: bytes | None
    journal_seq: int


class Outbox:
    """One connection, used from the alerts' main thread."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / DB_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._set("schema_version", SCHEMA_VERSION)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(
                f"cannot open the alerts' delivery state {self.path}: {exc}",
                hint="alerts.state must be a folder this user may write (not the journal's own folder under systemd)",
            ) from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def _get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- evaluation -------------------------------------------------------------------------------------------

    @property
    def position(self) -> int | None:
        """The last journal row evaluated (None: never run on a journal yet)."""
        value = self._get("position")
        return None if value is None else int(value)

    @property
    def rule_state(self) -> dict[str, Any] | None:
        value = self._get("rule_state")
        return value if isinstance(value, dict) else None

    def commit(self, messages: Sequence[NewMessage], position: int, rule_state: dict[str, Any]) -> int:
        """Queue ``messages`` (one already queued, by id, is left as it is), and save the position and the rule
        state, all at once. Returns how many were new."""
        now = time.time()
        with self._tx():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO messages "
                "(id, kind, card_id, label, payload, thumbnail, journal_seq, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.id, m.kind, m.card_id, m.label, json.dumps(m.payload), m.thumbnail, m.journal_seq, now)
                    for m in messages
                ],
            )
            added = self._db.total_changes - before
            self._set("position", position)
            self._set("rule_state", rule_state)
        return added

    def restart_from(self, position: int) -> None:
        """The journal was replaced (restored from its backup, or started anew): evaluate from ``position``.
        Messages already queued keep their ids, so rows evaluated again are not sent twice."""
        with self._tx():
            self._set("position", position)

    # -- delivery ---------------------------------------------------------------------------------------------

    def register(self, transport: str) -> None:
        """A transport seen for the first time gets what is queued from now on (a destination added to a running
        site is not sent its history)."""
        with self._tx():
            if self._get(f"start:{transport}") is None:
                start = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0])
                self._set(f"start:{transport}", start)

    def pending(self, transport: str, limit: int) -> list[Queued]:
        """Messages ``transport`` has not acknowledged, oldest first."""
        start = int(self._get(f"start:{transport}") or 0)
        rows = self._db.execute(
            "SELECT seq, id, kind, label, payload, thumbnail, thumbnail_dropped FROM messages m "
            "WHERE seq > ? AND payload IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM delivered d WHERE d.message_seq = m.seq AND d.transport = ?) ORDER BY seq LIMIT ?",
            (start, transport, limit),
        ).fetchall()
        return [Queued(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], bool(r[6])) for r in rows]

    def acknowledge(self, transport: str, seqs: Sequence[int]) -> None:
        now = time.time()
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO delivered (message_seq, transport, delivered_at) VALUES (?, ?, ?)",
                [(s, transport, now) for s in seqs],
            )

    def backlog(self, transports: Sequence[str]) -> dict[str, int]:
        """Messages waiting, per transport."""
        counts = {}
        for transport in transports:
            counts[transport] = _waiting(self._db, transport, int(self._get(f"start:{transport}") or 0))
        return counts

    def bound_thumbnails(self, max_bytes: int) -> int:
        """Drop the oldest thumbnails while those queued take more than ``max_bytes``. Returns how many went."""
        total = int(self._db.execute("SELECT COALESCE(SUM(LENGTH(thumbnail)), 0) FROM messages").fetchone()[0])
        if total <= max_bytes:
            return 0
        dropped = 0
        with self._tx():
            for seq, size in self._db.execute(
                "SELECT seq, LENGTH(thumbnail) FROM messages WHERE thumbnail IS NOT NULL ORDER BY seq"
            ).fetchall():
                if total <= max_bytes:
                    break
                self._db.execute("UPDATE messages SET thumbnail=NULL, thumbnail_dropped=1 WHERE seq=?", (seq,))
                total -= int(size)
                dropped += 1
        return dropped

    def prune(self, transports: Sequence[str], now: float | None = None) -> None:
        """Thumbnails of messages every transport acknowledged are dropped at once, their bodies after
        KEEP_BODIES_S (the id stays: a row evaluated again is still known)."""
        now = time.time() if now is None else now
        if not transports:
            return
        marks = ",".join("?" * len(transports))
        everywhere = (
            f"(SELECT COUNT(DISTINCT transport) FROM delivered d WHERE d.message_seq = messages.seq "
            f"AND d.transport IN ({marks})) = ?"
        )
        with self._tx():
            self._db.execute(
                f"UPDATE messages SET thumbnail=NULL WHERE thumbnail IS NOT NULL AND {everywhere}",
                (*transports, len(transports)),
            )
            self._db.execute(
                f"UPDATE messages SET payload=NULL WHERE payload IS NOT NULL AND created_at < ? AND {everywhere}",
                (now - KEEP_BODIES_S, *transports, len(transports)),
            )

    def dropped_thumbnails(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM messages WHERE thumbnail_dropped=1").fetchone()[0])


def read_summary(folder: Path) -> dict[str, Any] | None:
    """What `andi-edge status` shows of the alerts: the status they last published (``status.json`` beside the
    queue), with the backlog counted now from the queue itself; None when no alerts ran with this delivery state."""
    try:
        data = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        db = sqlite3.connect(f"{(folder / DB_NAME).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            backlog = {}
            for transport in data.get("backlog") or {}:
                start = db.execute("SELECT value FROM meta WHERE key=?", (f"start:{transport}",)).fetchone()
                backlog[transport] = _waiting(db, transport, int(json.loads(start[0])) if start else 0)
            data["backlog"] = backlog
            data["backlog_counted_now"] = True
        finally:
            db.close()
    except sqlite3.Error:
        data["backlog_counted_now"] = False
    return data


def _waiting(db: sqlite3.Connection, transport: str, start: int) -> int:
    row = db.execute(
        "SELECT COUNT(*) FROM messages m WHERE seq > ? AND payload IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM delivered d WHERE d.message_seq = m.seq AND d.transport = ?)",
        (start, transport),
    ).fetchone()
    return int(row[0])
