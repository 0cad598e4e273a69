"""The photo journal: an embedded SQLite database (WAL, synchronous=FULL) in the state folder.

Each photo is one row keyed by (card, path on the card, size, mtime). Life of a row:

    pending --claim--> claimed --done--> done        (outputs durable, result stored)
                               --fail--> failed      (undecodable, or unreadable after every attempt)
                               --release-> pending   (disk full, card pulled: not an attempt; try again)
                               --retry_later-> pending, not before retry_at (a read error that may pass)
                               --(the process ended)--> reaped at start: pending, one crash more; after
                                 ``max_crashes`` failed ("crashed: ..."), so one photo cannot stop the daemon
    failed --retry_failed--> pending                 (`andi-edge retry-failed`: a person asks for it)

A row is marked done only after its outputs are durable. Claims left by a crash are reaped at start, so the
photo is processed again; outputs are idempotent (same names, atomic replace), so it still ends up once. A photo
that was claimed when the process ended is claimed alone afterwards, so that a photo which crashes the process
is told apart from the ones claimed beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.errors import JournalError, JournalFullError, OutputError, is_disk_full
from andi_edge.record import RecordError, ResultRecord, dump_record, failure_record, load_record
from andi_edge.state.legacy import record_from_entry

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
DB_NAME = "journal.sqlite3"
#: the last journal that passed its integrity check, copied at each daemon start and stop (the documented way back)
BACKUP_NAME = "journal.backup.sqlite3"

_PHOTOS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    card_id TEXT NOT NULL,
    rel_path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done', 'failed', 'duplicate')),
    output_key TEXT,
    result_json TEXT,
    failure TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    discovered_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    -- schema 3: a photo that could not be read waits for retry_at; why it could not
    retry_at REAL,
    last_error TEXT,
    -- schema 3: the file's ctime when last seen, and a hash of its last 64 KiB once read: a file rewritten in
    -- place with the same size and mtime is told apart by them and gets a row of the next generation
    ctime_ns INTEGER,
    fingerprint TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    -- schema 4: how many times the process ended while this photo was claimed (a crash, an OOM kill, a hang)
    crashes INTEGER NOT NULL DEFAULT 0,
    -- schema 5: the photo's record (andi_edge.record, its own versioned schema); result_json, which held a
    -- MegaDetector entry up to schema 4, is read once into it when an older journal is migrated
    record_json TEXT,
    -- schema 6: the order rows were finished in (done or failed), 1, 2, 3...: what `andi-edge alerts` follows;
    -- the device's clock may jump (a Pi without a real-time clock), this does not
    finished_seq INTEGER,
    UNIQUE (card_id, rel_path, size_bytes, mtime_ns, generation)
);
"""
_SCHEMA = (
    _PHOTOS_TABLE.format(name="photos")
    + """
CREATE INDEX IF NOT EXISTS photos_state ON photos (state, id);
CREATE INDEX IF NOT EXISTS photos_card_hash ON photos (card_id, sha256);
-- schema 3: a card's output names are looked up for every new photo (a scan of the whole table without it)
CREATE INDEX IF NOT EXISTS photos_output_key ON photos (card_id, output_key);
CREATE INDEX IF NOT EXISTS photos_finished_seq ON photos (finished_seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- schema 6: counters that only grow (finished_seq: the last number given to a finished row)
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- schema 2: what a photo's outputs last said about its event and repeat flags, and people's verdicts on
-- repeat patterns (a pattern kept as real is never flagged again)
CREATE TABLE IF NOT EXISTS annotations (
    photo_id INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
    annotation_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repeat_verdicts (
    pattern_id TEXT PRIMARY KEY,
    verdict TEXT NOT NULL CHECK (verdict IN ('keep')),
    decided_at REAL NOT NULL
);
"""
)
#: failures an incomplete copy gives: a later version of the file at that path supersedes them
INCOMPLETE_FAILURES = ("corrupt:", "empty_file:", "unsupported_format:", "not_a_video:", "no_frames:", "no_video:")
#: rows in the works: a file change seen for them needs no check (the file is read afresh when claimed)
LIVE_STATES = ("pending", "claimed")
#: bytes at a file's end that its fingerprint covers
FINGERPRINT_BYTES = 64 * 1024


def fingerprint(tail: bytes) -> str:
    """The fingerprint of a file whose last FINGERPRINT_BYTES (or fewer, for a small file) are ``tail``."""
    return hashlib.sha256(tail[-FINGERPRINT_BYTES:]).hexdigest()[:16]


@dataclass(frozen=True)
class PhotoRow:
    id: int
    card_id: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    sha256: str | None
    state: str
    output_key: str | None
    #: the finished photo's record (None while it is in the works, or where a damaged one was left out)
    record: ResultRecord | None
    failure: str | None
    attempts: int
    updated_at: float
    #: a photo waiting to be read again: not claimed before this time (epoch seconds), and why
    retry_at: float | None = None
    last_error: str | None = None
    ctime_ns: int | None = None
    fingerprint: str | None = None
    generation: int = 0
    crashes: int = 0
    #: where it stands in the order rows were finished (None while in the works, or in an older journal)
    finished_seq: int | None = None


def text_to_db(text: str) -> str:
    """Card text as SQLite can hold it. A name with bytes that are not UTF-8 (held in Python as surrogate escapes,
    ``caf\udce9.JPG`` for the card's ``caf\xe9.JPG``) is stored as ``/`` + the name with those bytes and ``%``
    percent-escaped. A text that itself starts with ``/`` (no card path does) is marked the same way, so the form is
    unambiguous for any text; names that are valid UTF-8 (all but a few) are stored as they are."""
    if not _SURROGATE.search(text) and not text.startswith("/"):
        return text
    return "/" + "".join(
        f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else ("%25" if c == "%" else c) for c in text
    )


def text_from_db(text: str) -> str:
    """The inverse of ``text_to_db``."""
    if not text.startswith("/"):
        return text
    return _ESCAPED.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)) if m.group(1) != "25" else "%", text[1:])


_SURROGATE = re.compile("[\udc80-\udcff]")
_ESCAPED = re.compile("%([0-9A-F]{2})")


def _row(r: sqlite3.Row) -> PhotoRow:
    columns = r.keys()  # (a Row's `in` looks at its values, not its column names)
    return PhotoRow(
        id=r["id"],
        card_id=r["card_id"],
        rel_path=text_from_db(r["rel_path"]),
        size_bytes=r["size_bytes"],
        mtime_ns=r["mtime_ns"],
        sha256=r["sha256"],
        state=r["state"],
        output_key=None if r["output_key"] is None else text_from_db(r["output_key"]),
        record=_stored_record(r, columns),
        failure=None if r["failure"] is None else text_from_db(r["failure"]),
        attempts=r["attempts"],
        updated_at=r["updated_at"],
        # a journal of schema 2, read-only (status on a card from an older daemon), has neither column
        retry_at=r["retry_at"] if "retry_at" in columns else None,
        last_error=text_from_db(r["last_error"]) if "last_error" in columns and r["last_error"] else None,
        ctime_ns=r["ctime_ns"] if "ctime_ns" in columns else None,
        fingerprint=r["fingerprint"] if "fingerprint" in columns else None,
        generation=r["generation"] if "generation" in columns else 0,
        crashes=r["crashes"] if "crashes" in columns else 0,
        finished_seq=r["finished_seq"] if "finished_seq" in columns else None,
    )


class Journal:
    """One connection, used from one thread (the daemon's main loop)."""

    def __init__(self, state_dir: Path, read_only: bool = False, live: bool = False) -> None:
        """``read_only``: never write (status, report, the daemon's render thread). ``live``: another connection
        is writing meanwhile, so the file may not be read as it stands (no ``immutable`` fallback)."""
        self.path = state_dir / DB_NAME
        if read_only:
            self._db = _connect_read_only(self.path, immutable_ok=not live)
            self._db.row_factory = sqlite3.Row
            return
        existed = self.path.exists()
        if existed and self.path.stat().st_size == 0:
            raise _damaged(self.path, "it is empty (0 bytes)")
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            if not existed:
                _create_whole(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            if _is_full(exc):
                raise _full(self.path, exc) from exc
            raise OutputError(f"cannot open the journal in {state_dir}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        if existed:
            self._check_integrity()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._db.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
            with self._tx():
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
        except (sqlite3.Error, JournalFullError) as exc:
            self._db.close()
            if not existed:  # a journal begun on a full volume: leave no empty file to be taken for a damaged one
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        self.path.with_name(self.path.name + suffix).unlink()
            if isinstance(exc, JournalFullError) or _is_full(exc):
                raise _full(self.path, exc) from exc
            raise OutputError(f"cannot set up the journal {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Bring an older journal up to this schema, in place. Schema 2: the photos table is rebuilt (its unique
        key changed), following SQLite's own recipe (foreign keys off, new table, copy, drop, rename); schemas 3
        and 4: a column is added; schema 5: the stored MegaDetector entries become records; schema 6: rows already
        finished are numbered in the order they were finished (by time, then id)."""
        present = [row[1] for row in self._db.execute("PRAGMA table_info(photos)")]
        if not present:
            return
        if "generation" in present:
            with self._tx():
                if "crashes" not in present:
                    self._db.execute("ALTER TABLE photos ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")
                if "record_json" not in present:
                    self._db.execute("ALTER TABLE photos ADD COLUMN record_json TEXT")
                if "finished_seq" not in present:
                    self._db.execute("ALTER TABLE photos ADD COLUMN finished_seq INTEGER")
                    self._number_finished()
            self._migrate_results()
            return
        self._db.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._tx():
                self._db.execute(_PHOTOS_TABLE.format(name="photos_new"))
                wanted = [row[1] for row in self._db.execute("PRAGMA table_info(photos_new)")]
                columns = ", ".join(c for c in wanted if c in present)
                self._db.execute(f"INSERT INTO photos_new ({columns}) SELECT {columns} FROM photos")
                self._db.execute("DROP TABLE photos")
                self._db.execute("ALTER TABLE photos_new RENAME TO photos")
                self._number_finished()
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate_results()

    def _number_finished(self) -> None:
        """Schema 6: number the rows an older journal finished, in the order they were finished as far as it knows
        (their last update, then their id). Inside the caller's transaction."""
        self._db.execute(
            "UPDATE photos SET finished_seq = (SELECT n FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY updated_at, id) "
            "AS n FROM photos WHERE state IN ('done', 'failed')) AS numbered WHERE numbered.id = photos.id) "
            "WHERE state IN ('done', 'failed')"
        )

    def _migrate_results(self) -> None:
        """Schema 5: the MegaDetector entries older journals stored become records, in one transaction (a row
        that cannot be read keeps its old text, and is left out of the outputs as before)."""
        with self._tx():
            rows = self._db.execute(
                "SELECT * FROM photos WHERE record_json IS NULL AND result_json IS NOT NULL"
            ).fetchall()
            if not rows:
                return
            converted = []
            for r in rows:
                record = _stored_record(r, [])
                if record is not None:
                    converted.append((dump_record(record), r["id"]))
            self._db.executemany("UPDATE photos SET record_json=?, result_json=NULL WHERE id=?", converted)
        log.info("journal upgraded: %d stored result(s) moved to this version's records", len(converted))

    def _check_integrity(self) -> None:
        """SQLite's own quick check: a file that is not a database, or a damaged one, stops here with the way back."""
        try:
            verdict = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise _damaged(self.path, str(exc)) from exc
        if verdict != ["ok"]:
            self._db.close()
            raise _damaged(self.path, "; ".join(verdict[:3]))

    def back_up(self) -> Path:
        """Copy the journal, consistently (SQLite's online backup), to ``BACKUP_NAME`` beside it, atomically."""
        target = self.path.with_name(BACKUP_NAME)
        staging = self.path.with_name(BACKUP_NAME + ".tmp")
        try:
            copy = sqlite3.connect(staging)
            try:
                self._db.backup(copy)
            finally:
                copy.close()
            os.replace(staging, target)
        except (OSError, sqlite3.Error) as exc:  # a full state volume, say: no backup this time
            with contextlib.suppress(OSError):
                staging.unlink()
            raise OutputError(f"cannot back up the journal to {target}: {exc}") from exc
        return target

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction. SQLite's disk-full error (the state volume is full) is a JournalFullError, and
        the transaction is rolled back whole: the journal stays as it was, and the caller may try again later."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if _is_full(exc):
                raise _full(self.path, exc) from exc
            raise

    # -- discovery ----------------------------------------------------------------------------------------

    def enqueue(self, card_id: str, rel_path: str, size_bytes: int, mtime_ns: int) -> bool:
        """Record a complete photo as pending; False when this exact file is already known."""
        new, _ = self.enqueue_many([(card_id, rel_path, size_bytes, mtime_ns, None)])
        return new == 1

    def _insert_pending(self, key: tuple[str, str, int, int], ctime_ns: int | None, generation: int) -> bool:
        """A pending row for (card_id, rel_path as stored, size_bytes, mtime_ns); False when it is already there."""
        now = time.time()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO photos (card_id, rel_path, size_bytes, mtime_ns, ctime_ns, generation, state, "
            "discovered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (*key, ctime_ns, generation, now, now),
        )
        return cursor.rowcount == 1

    def enqueue_many(self, photos: list[tuple[str, str, int, int, int | None]]) -> tuple[int, list[PhotoRow]]:
        """Record complete photos (card_id, rel_path, size_bytes, mtime_ns, ctime_ns) as pending, in one
        transaction. Returns how many were new, and the finished rows whose file's ctime changed although size
        and mtime did not: perhaps rewritten in place (see ``fingerprint``), for the caller to look at."""
        new = 0
        suspects: list[PhotoRow] = []
        with self._tx():
            for card, rel, size, mtime, ctime in photos:
                key = (card, text_to_db(rel), size, mtime)
                if self._insert_pending(key, ctime, generation=0):
                    new += 1
                    continue
                if ctime is None:
                    continue
                known = self._db.execute(
                    "SELECT * FROM photos WHERE card_id=? AND rel_path=? AND size_bytes=? AND mtime_ns=? "
                    "ORDER BY generation DESC LIMIT 1",
                    key,
                ).fetchone()
                if known is None or known["ctime_ns"] == ctime:
                    continue
                # first seen since this journal kept ctimes (a row of schema 2), or still in the works: note it.
                # Otherwise a suspect, also where no fingerprint was taken yet (the caller compares the sha256)
                if known["ctime_ns"] is None or known["state"] in LIVE_STATES or known["state"] == "duplicate":
                    self._db.execute("UPDATE photos SET ctime_ns=? WHERE id=?", (ctime, known["id"]))
                else:
                    suspects.append(_row(known))
        return new, suspects

    def confirm_unchanged(self, photo_id: int, ctime_ns: int, fingerprint: str | None = None) -> None:
        """A suspect of ``enqueue_many`` whose content is what was processed: only its ctime moved. A row from
        before fingerprints (schema 2) gets its ``fingerprint`` now."""
        with self._tx():
            self._db.execute(
                "UPDATE photos SET ctime_ns=?, fingerprint=COALESCE(fingerprint, ?) WHERE id=?",
                (ctime_ns, fingerprint, photo_id),
            )

    def enqueue_rewritten(self, row: PhotoRow, ctime_ns: int) -> None:
        """A file rewritten in place (same size and mtime, other content): a new pending row, one generation on.
        The old row and its outputs stay; the new one gets outputs of its own."""
        key = (row.card_id, text_to_db(row.rel_path), row.size_bytes, row.mtime_ns)
        with self._tx():
            self._insert_pending(key, ctime_ns, generation=row.generation + 1)

    # -- processing -----------------------------------------------------------------------------------------

    def reap_stale_claims(self, max_crashes: int | None = None) -> tuple[int, list[PhotoRow]]:
        """Claims left by a process that ended go back to pending, each with one crash more; those that reach
        ``max_crashes`` are recorded as failed instead (returned), with a failure record,
        so that a photo which kills the process (a decoder crash, an OOM kill, a read stuck until the watchdog)
        cannot stop the daemon for good. Call at start, under the state-folder lock. Returns how many went back,
        and the photos given up on."""
        now = time.time()
        with self._tx():
            stale = [_row(r) for r in self._db.execute("SELECT * FROM photos WHERE state='claimed'").fetchall()]
            given_up = [
                dataclasses.replace(r, state="failed", crashes=r.crashes + 1, failure=crashed_failure(r))
                for r in stale
                if max_crashes is not None and r.crashes + 1 >= max_crashes
            ]
            gone = {r.id for r in given_up}
            self._db.executemany(
                "UPDATE photos SET state='pending', crashes=crashes+1, updated_at=? WHERE id=?",
                [(now, r.id) for r in stale if r.id not in gone],
            )
            self._db.executemany(
                "UPDATE photos SET state='failed', crashes=?, failure=?, record_json=?, retry_at=NULL, updated_at=? "
                "WHERE id=?",
                [
                    (
                        r.crashes,
                        text_to_db(r.failure or ""),
                        dump_record(failure_record(Path(r.rel_path), r.failure or "")),
                        now,
                        r.id,
                    )
                    for r in given_up
                ],
            )
        return len(stale) - len(given_up), given_up

    def release_claims(self) -> None:
        """Every claim back to pending, not as an attempt (a run interrupted by a full state volume, not a crash)."""
        with self._tx():
            self._db.execute(
                "UPDATE photos SET state='pending', attempts=MAX(attempts - 1, 0), updated_at=? WHERE state='claimed'",
                (time.time(),),
            )

    def claim(
        self, limit: int, card_id: str | None = None, now: float | None = None, max_wait_s: float | None = None
    ) -> list[PhotoRow]:
        """Oldest pending photos (of one card, if given) that are not waiting for a retry, marked claimed. A retry
        due further ahead than ``max_wait_s`` (the longest backoff) was scheduled before the clock stepped back
        (a box without a clock, set later by NTP or GPS): it is due now, not after the size of the step."""
        now = time.time() if now is None else now
        with self._tx():
            where = "state='pending' AND (retry_at IS NULL OR retry_at <= ? OR retry_at > ?)"
            where += " AND card_id=?" if card_id is not None else ""
            horizon = now + max_wait_s if max_wait_s is not None else float("inf")
            params: tuple[Any, ...] = (now, horizon, card_id) if card_id is not None else (now, horizon)
            rows = self._db.execute(f"SELECT * FROM photos WHERE {where} ORDER BY id LIMIT ?", (*params, limit))
            claimed = [_row(r) for r in rows.fetchall()]
            # a photo that was claimed when the process ended goes alone: should it end the process again, the
            # photos beside it are not counted with it
            suspect = next((i for i, r in enumerate(claimed) if r.crashes), None)
            if suspect is not None:
                claimed = claimed[:suspect] or claimed[:1]
            now = time.time()
            self._db.executemany(
                "UPDATE photos SET state='claimed', attempts=attempts+1, updated_at=? WHERE id=?",
                [(now, r.id) for r in claimed],
            )
        return claimed

    def output_key_owner(self, card_id: str, output_key: str) -> str | None:
        """The sha256 of the photo whose outputs live at ``output_key`` on this card, if any."""
        row = self._db.execute(
            "SELECT sha256 FROM photos WHERE card_id=? AND output_key=? AND state IN ('done', 'failed', 'claimed') "
            "AND sha256 IS NOT NULL LIMIT 1",
            (card_id, text_to_db(output_key)),
        ).fetchone()
        return None if row is None else str(row["sha256"])

    def done_with_hash(self, card_id: str, sha256: str, rel_path: str) -> PhotoRow | None:
        """The finished row this path's results now come from, if it holds these very bytes (a card inserted
        again). Only the newest counts: a file that went back to earlier bytes (gen 0, 1, then 0 again) is
        processed again, or its results would stay gen 1's."""
        row = self._db.execute(
            "SELECT * FROM photos WHERE card_id=? AND rel_path=? AND state IN ('done', 'failed') ORDER BY id DESC "
            "LIMIT 1",
            (card_id, text_to_db(rel_path)),
        ).fetchone()
        return None if row is None or row["sha256"] != sha256 else _row(row)

    def set_hash(self, photo_id: int, sha256: str, output_key: str, fingerprint: str | None = None) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE photos SET sha256=?, output_key=?, fingerprint=?, updated_at=? WHERE id=?",
                (sha256, text_to_db(output_key), fingerprint, time.time(), photo_id),
            )

    def mark_finished(self, photo_id: int, record: ResultRecord) -> None:
        """The photo's record committed: done, or failed when the record holds a failure."""
        failure = record.failure
        self._finish(photo_id, "done" if failure is None else "failed", dump_record(record), failure)

    def mark_duplicate(self, photo_id: int) -> None:
        """The same bytes at the same path were already processed (a re-inserted card): nothing to do."""
        self._finish(photo_id, "duplicate", None, None)

    def release(self, photo_id: int) -> None:
        """Give a claim back (disk full, card pulled, stopping): it will be tried again, and was not an attempt."""
        with self._tx():
            self._db.execute(
                "UPDATE photos SET state='pending', attempts=MAX(attempts - 1, 0), updated_at=? "
                "WHERE id=? AND state='claimed'",
                (time.time(), photo_id),
            )

    def retry_later(self, photo_id: int, error: str, retry_at: float) -> None:
        """A claimed photo that could not be read goes back to pending, not to be claimed before ``retry_at``."""
        with self._tx():
            self._db.execute(
                "UPDATE photos SET state='pending', retry_at=?, last_error=?, updated_at=? WHERE id=? "
                "AND state='claimed'",
                (retry_at, text_to_db(error), time.time(), photo_id),
            )

    def next_retry_at(self, now: float | None = None, max_wait_s: float | None = None) -> float | None:
        """When the next photo waiting for a retry may be claimed (None: none waits); ``now`` for one that is due
        further ahead than ``max_wait_s`` (see ``claim``)."""
        now = time.time() if now is None else now
        row = self._db.execute(
            "SELECT MIN(retry_at), MAX(retry_at) FROM photos WHERE state='pending' AND retry_at IS NOT NULL"
        )
        soonest, latest = row.fetchone()
        if soonest is None:
            return None
        if max_wait_s is not None and float(latest) > now + max_wait_s:
            return now
        return float(soonest)

    def retrying(self, limit: int = 10) -> list[PhotoRow]:
        """Photos waiting to be read again, soonest first (none in a journal from before retries: schema 2)."""
        if "last_error" not in self._columns():
            return []
        rows = self._db.execute(
            "SELECT * FROM photos WHERE state='pending' AND last_error IS NOT NULL ORDER BY retry_at, id LIMIT ?",
            (limit,),
        )
        return [_row(r) for r in rows.fetchall()]

    def retry_failed(self, card_id: str | None = None, reason: str | tuple[str, ...] | None = None) -> int:
        """Failed photos (of one card, whose failure starts with ``reason`` or one of them, if given) back to
        pending, with their attempts reset: `andi-edge retry-failed`, after a card was cleaned or a file made
        readable."""
        where, params = "state='failed'", []
        if card_id is not None:
            where += " AND card_id=?"
            params.append(card_id)
        with self._tx():
            rows = self._db.execute(f"SELECT id, failure FROM photos WHERE {where}", params).fetchall()
            ids = [r["id"] for r in rows if reason is None or text_from_db(r["failure"] or "").startswith(reason)]
            self._db.executemany(
                "UPDATE photos SET state='pending', attempts=0, crashes=0, retry_at=NULL, last_error=NULL, "
                "failure=NULL, record_json=NULL, finished_seq=NULL, updated_at=? WHERE id=?",
                [(time.time(), i) for i in ids],
            )
        return len(ids)

    def supersede_failed(self, card_id: str, rel_path: str, photo_id: int) -> int:
        """A file read again at a path where an earlier read failed as incomplete (a copy that stalled mid-file:
        ``corrupt``, ``empty_file``, ``unsupported_format``) is the same photo, finished: the failed rows go, so
        its outputs take the photo's own name and it counts once. Returns how many went."""
        with self._tx():
            rows = self._db.execute(
                "SELECT id, failure FROM photos WHERE card_id=? AND rel_path=? AND state='failed' AND id<>?",
                (card_id, text_to_db(rel_path), photo_id),
            ).fetchall()
            gone = [r["id"] for r in rows if text_from_db(r["failure"] or "").startswith(INCOMPLETE_FAILURES)]
            self._db.executemany("DELETE FROM photos WHERE id=?", [(i,) for i in gone])
        return len(gone)

    def forget(self, photo_id: int) -> None:
        """Drop a pending row whose file vanished before it was read (a half-copied file that was deleted)."""
        with self._tx():
            self._db.execute("DELETE FROM photos WHERE id=? AND state IN ('pending', 'claimed')", (photo_id,))

    def _finish(self, photo_id: int, state: str, record_json: str | None, failure: str | None) -> None:
        """A row finished: done and failed ones take the next number in the order of finishing, from a counter
        (one writer, in one transaction: numbers only grow, and one is never given twice, even when the row that
        held the highest is deleted, as a superseded failure is)."""
        with self._tx():
            seq = None
            if state in ("done", "failed"):
                self._db.execute(
                    "INSERT INTO counters (name, value) "
                    "VALUES ('finished_seq', (SELECT COALESCE(MAX(finished_seq), 0) FROM photos) + 1) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
                )
                seq = self._db.execute("SELECT value FROM counters WHERE name='finished_seq'").fetchone()[0]
            self._db.execute(
                "UPDATE photos SET state=?, record_json=?, failure=?, retry_at=NULL, last_error=NULL, updated_at=?, "
                "finished_seq=? WHERE id=?",
                (state, record_json, None if failure is None else text_to_db(failure), time.time(), seq, photo_id),
            )
            # what its sidecar last said belongs to an earlier result (a failed version read again): written anew
            self._db.execute("DELETE FROM annotations WHERE photo_id=?", (photo_id,))

    # -- reporting ------------------------------------------------------------------------------------------

    def cards(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT card_id FROM photos ORDER BY card_id")]

    def finished(self, card_id: str) -> list[PhotoRow]:
        rows = self._db.execute(
            "SELECT * FROM photos WHERE card_id=? AND state IN ('done', 'failed') ORDER BY rel_path, id",
            (card_id,),
        )
        return [_row(r) for r in rows.fetchall()]

    def latest_finished(self, card_id: str) -> list[PhotoRow]:
        """One row per path on the card: the newest, when other bytes reused a path (a card swap on a folder)."""
        latest: dict[str, PhotoRow] = {}
        for row in self.finished(card_id):  # ordered by path, then id: the newest of a path comes last
            latest[row.rel_path] = row
        return list(latest.values())

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(photos)")}

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in ("pending", "claimed", "done", "failed", "duplicate")}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM photos GROUP BY state"):
            counts[state] = n
        return counts

    def finished_clips(self) -> int:
        """How many done rows are video clips (by their record's kind; 0 for a journal from before records)."""
        if "record_json" not in self._columns():
            return 0
        row = self._db.execute(
            "SELECT COUNT(*) FROM photos WHERE state='done' AND record_json LIKE '%\"kind\":\"clip\"%'"
        ).fetchone()
        return int(row[0])

    def finished_after(self, seq: int, limit: int) -> list[PhotoRow]:
        """Rows finished after number ``seq``, in the order they were finished, at most ``limit``."""
        if "finished_seq" not in self._columns():
            return []
        rows = self._db.execute(
            "SELECT * FROM photos WHERE finished_seq > ? ORDER BY finished_seq LIMIT ?", (seq, limit)
        )
        return [_row(r) for r in rows.fetchall()]

    def last_finished_seq(self) -> int:
        """The number of the row finished last (0: none yet, or an older journal)."""
        if "finished_seq" not in self._columns():
            return 0
        row = self._db.execute("SELECT MAX(finished_seq) FROM photos").fetchone()
        return int(row[0] or 0)

    def done_since(self, epoch_s: float) -> int:
        """How many rows were finished as done at or after ``epoch_s`` (device clock)."""
        row = self._db.execute("SELECT COUNT(*) FROM photos WHERE state='done' AND updated_at >= ?", (epoch_s,))
        return int(row.fetchone()[0])

    def last_finished(self) -> PhotoRow | None:
        row = self._db.execute(
            "SELECT * FROM photos WHERE state IN ('done', 'failed') ORDER BY updated_at DESC, id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _row(row)

    def recent_failures(self, limit: int = 10) -> list[PhotoRow]:
        rows = self._db.execute("SELECT * FROM photos WHERE state='failed' ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [_row(r) for r in rows.fetchall()]

    # -- run facts, annotations, verdicts --------------------------------------------------------------------

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row["value"])
        return value if isinstance(value, dict) else None

    def set_card_root(self, card_id: str, root: str) -> None:
        """Where this card was last watched (its batch file's image_root): cards processed one after the other
        from different mount points share a journal."""
        self.set_meta(f"card_root:{card_id}", {"image_root": text_to_db(root)})

    def card_roots(self) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'card_root:%'")
        roots = {}
        for key, value in rows:
            root = json.loads(value).get("image_root") if value.startswith("{") else None
            if isinstance(root, str):
                roots[key.removeprefix("card_root:")] = text_from_db(root)
        return roots

    def annotations(self, card_id: str) -> dict[int, str]:
        rows = self._db.execute(
            "SELECT a.photo_id, a.annotation_json FROM annotations a JOIN photos p ON p.id = a.photo_id "
            "WHERE p.card_id=?",
            (card_id,),
        )
        return {int(r[0]): str(r[1]) for r in rows}

    def set_annotations(self, changed: list[tuple[int, str, float]]) -> None:
        """What each photo's sidecar now says: (photo id, annotation, the row's ``updated_at`` when it was read).
        A row that changed since (superseded, tried again, finished anew) keeps no annotation: its sidecar is due
        again."""
        with self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO annotations (photo_id, annotation_json) "
                "SELECT id, ? FROM photos WHERE id=? AND updated_at=? AND state IN ('done', 'failed')",
                [(text, photo_id, updated_at) for photo_id, text, updated_at in changed],
            )

    def kept_patterns(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._db.execute("SELECT pattern_id FROM repeat_verdicts WHERE verdict='keep'"))

    def keep_pattern(self, pattern_id: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO repeat_verdicts (pattern_id, verdict, decided_at) VALUES (?, 'keep', ?)",
                (pattern_id, time.time()),
            )

    def unkeep_pattern(self, pattern_id: str) -> bool:
        with self._tx():
            cursor = self._db.execute("DELETE FROM repeat_verdicts WHERE pattern_id=?", (pattern_id,))
        return cursor.rowcount == 1


def _stored_record(r: sqlite3.Row, columns: list[str]) -> ResultRecord | None:
    """A row's record: schema 5's, else a MegaDetector entry an older journal stored (read as it stands, by a
    read-only command on a journal not yet migrated). None, said in the log, where it cannot be read: a damaged
    row must not stop every render of its card, at every start."""
    path = Path(text_from_db(r["rel_path"]))
    try:
        if "record_json" in columns and r["record_json"]:
            return load_record(r["record_json"], path)
        if r["result_json"]:
            entry = json.loads(r["result_json"])
            if not isinstance(entry, dict):
                raise RecordError("not a JSON object")
            return record_from_entry(entry, path)
    except (RecordError, ValueError) as exc:
        log.error("photo %d: its stored result cannot be read (%s); it is left out of the outputs", r["id"], exc)
    return None


def crashed_failure(row: PhotoRow) -> str:
    return (
        f"crashed: the daemon stopped {row.crashes + 1} times while processing {row.rel_path} (a decoder crash, "
        "running out of memory, or a read that hung); `andi-edge retry-failed --reason crashed` tries it again"
    )


def _create_whole(path: Path) -> None:
    """A new journal takes its name only once its schema is on disk: made under ``NAME.new``, synced, renamed.
    Created in place, a kill between SQLite creating the file and writing its first page left an empty file that
    the next start rightly refuses as damaged (a journal that lost its data on a power cut looks the same)."""
    staging = path.with_name(path.name + ".new")
    for suffix in ("", "-wal", "-shm", "-journal"):  # what a kill during an earlier creation left
        with contextlib.suppress(FileNotFoundError):
            staging.with_name(staging.name + suffix).unlink()
    try:
        db = sqlite3.connect(staging, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        finally:
            db.close()  # the last connection's close checkpoints the WAL into the file
        with staging.open("rb") as made:
            os.fsync(made.fileno())
        os.replace(staging, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                staging.with_name(staging.name + suffix).unlink()
        raise


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return is_disk_full(exc)


def _full(path: Path, exc: BaseException) -> JournalFullError:
    return JournalFullError(
        f"no space left for the journal {path}: {exc}",
        hint=f"free space on the state volume ({path.parent}); the daemon waits and goes on by itself",
    )


def _damaged(path: Path, why: str) -> JournalError:
    backup = path.with_name(BACKUP_NAME)
    if backup.is_file():
        way_back = (
            f"restore the last good copy, kept by the daemon at its last start: mv {path} {path}.damaged && "
            f"cp {backup} {path}; photos finished since then are done again (their outputs are rewritten in place)"
        )
    else:
        way_back = (
            f"there is no backup ({backup}): move the damaged journal aside (mv {path} {path}.damaged) and start "
            "with --new-journal to process every photo on the card again (outputs are rewritten in place)"
        )
    return JournalError(f"the journal {path} is damaged: {why}", hint=way_back)


def check_not_lost(state_dir: Path, output_dir: Path) -> None:
    """A journal that is missing while outputs exist is a journal lost (a wiped state volume, a wrong --state):
    starting anew would re-do every photo without a word. Raises JournalError, with the way back."""
    if (state_dir / DB_NAME).exists():
        return
    backup = state_dir / BACKUP_NAME
    if backup.is_file():
        raise JournalError(
            f"the journal {state_dir / DB_NAME} is missing, but its backup is there",
            hint=f"restore it: cp {backup} {state_dir / DB_NAME}; or start with --new-journal to begin anew",
        )
    outputs = next(output_dir.glob("*/megadetector_results.json"), None) if output_dir.is_dir() else None
    if outputs is not None:
        raise JournalError(
            f"no journal in {state_dir}, but {output_dir} holds results of an earlier run ({outputs})",
            hint="is --state the folder the daemon used before? If the journal is really gone, start with "
            "--new-journal: every photo is processed again and its outputs rewritten in place",
        )


#: in an output folder: where the journal of the daemon writing it lives (written by `watch` at start), so that
#: `status OUTPUT` and the review commands find it whatever --state was
STATE_POINTER = ".andi-edge-state-dir"
#: the state folder inside the output folder when none was given
DEFAULT_STATE_NAME = ".andi-edge-state"


def find_state_dir(folder: Path) -> Path | None:
    """The state folder a user means by ``folder``: itself, its ``.andi-edge-state``, or the one the output
    folder's pointer names; None when it is none of these. PermissionError where it may not be looked into."""
    if (folder / DB_NAME).is_file():
        return folder
    if (folder / DEFAULT_STATE_NAME / DB_NAME).is_file():
        return folder / DEFAULT_STATE_NAME
    try:
        named = Path(os.fsdecode((folder / STATE_POINTER).read_bytes().rstrip(b"\n")))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return named if named.is_absolute() and (named / DB_NAME).is_file() else None


def needs_upgrade(state_dir: Path) -> bool:
    """Whether opening this journal to write would bring it up to this schema (it was made by an older daemon)."""
    db = _connect_read_only(state_dir / DB_NAME)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(photos)")}
    finally:
        db.close()
    return bool(columns) and not {"generation", "crashes", "record_json", "finished_seq"} <= columns


def open_existing(state_dir: Path, writable: bool = False) -> Journal:
    """Open a journal the daemon already made (status, report, export, repeats), without creating one: a wrong
    --state folder is an error, not a new empty journal. Read-only unless ``writable`` (`repeats --keep`), so
    that a journal on a read-only mount, or one the reader may not write, can still be read."""
    try:
        found = (state_dir / DB_NAME).is_file()
    except OSError as exc:  # e.g. a folder on the way that this user may not enter
        raise OutputError(
            f"cannot look into {state_dir}: {exc.strerror or exc}",
            hint="run as a user who may read the state folder (the daemon's, or root)",
        ) from exc
    if not found:
        raise OutputError(
            f"no journal in {state_dir}", hint="is this the --state folder of `andi-edge watch`? has it run yet?"
        )
    return Journal(state_dir, read_only=not writable)


def _connect_read_only(path: Path, immutable_ok: bool = True) -> sqlite3.Connection:
    """A read-only connection. SQLite's ``mode=ro`` still needs the WAL index (``-shm``) to be writable; where the
    folder cannot be written and no daemon is there to keep it, ``immutable=1`` reads the file as it stands."""
    uri = path.absolute().as_uri()
    errors = []
    for options in ("mode=ro", "mode=ro&immutable=1") if immutable_ok else ("mode=ro",):
        try:
            db = sqlite3.connect(f"{uri}?{options}", uri=True, isolation_level=None, timeout=30)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.Error as exc:
            errors.append(f"{options}: {exc}")
    raise OutputError(f"cannot read the journal {path}: {'; '.join(errors)}")
