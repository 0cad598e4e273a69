from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from andi_edge.daemon.retry import RetryPolicy, unreadable
from andi_edge.settings import RetrySettings
from andi_edge.state.journal import DB_NAME, Journal


def test_backoff_doubles_up_to_its_cap_and_attempts_are_bounded() -> None:
    policy = RetryPolicy(RetrySettings(max_attempts=4, backoff_s=30, max_backoff_s=100))
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
    error = unreadable(OSError(errno.EIO, "Input/output error"), "DCIM/IMG_1.JPG")
    assert error.transient and error.message == "unreadable: DCIM/IMG_1.JPG: Input/output error"
    assert policy.decide(error, 1, now=1000.0).retry_at == 1030.0
    final = policy.decide(error, 4, now=1000.0)
    assert final.retry_at is None and "after 4 attempts" in final.failure and "retry-failed" in final.failure
    lasting = unreadable(OSError(errno.EISDIR, "Is a directory"), "DCIM/odd.JPG")
    assert not lasting.transient and policy.decide(lasting, 1, now=0.0).retry_at is None


def test_a_photo_waiting_for_a_retry_is_not_claimed_before_its_time(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.enqueue("local", "a.JPG", 1, 1)
    journal.enqueue("local", "b.JPG", 1, 1)
    first = journal.claim(1, now=100.0)[0]
    journal.retry_later(first.id, "unreadable: a.JPG: Input/output error", retry_at=200.0)
    assert [r.rel_path for r in journal.claim(10, now=150.0)] == ["b.JPG"]
    assert journal.next_retry_at() == 200.0
    assert [r.last_error for r in journal.retrying()] == ["unreadable: a.JPG: Input/output error"]
    again = journal.claim(10, now=200.0)
    assert [(r.rel_path, r.attempts) for r in again] == [("a.JPG", 1)]  # read before this claim counted
    journal.release(again[0].id)  # handing a claim back is not an attempt
    assert journal.claim(10, now=300.0)[0].attempts == 1
    journal.close()


def test_a_retry_scheduled_before_the_clock_stepped_back_is_due(tmp_path: Path) -> None:
    """No RTC: a retry set for 30 s ahead, then NTP sets the clock back a day. It is due, not in a day."""
    journal = Journal(tmp_path)
    journal.enqueue("local", "a.JPG", 1, 1)
    [row] = journal.claim(1, now=1_000_000.0)
    journal.retry_later(row.id, "unreadable: a.JPG: Input/output error", retry_at=1_000_030.0)
    stepped_back = 1_000_000.0 - 86400
    assert journal.next_retry_at(now=stepped_back, max_wait_s=900) == stepped_back
    assert [r.rel_path for r in journal.claim(10, now=stepped_back, max_wait_s=900)] == ["a.JPG"]
    journal.close()


SCHEMA_2_PHOTOS = """
CREATE TABLE photos (
    id INTEGER PRIMARY KEY, card_id TEXT NOT NULL, rel_path TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, sha256 TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done', 'failed', 'duplicate')),
    output_key TEXT, result_json TEXT, failure TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    discovered_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (card_id, rel_path, size_bytes, mtime_ns)
);
CREATE TABLE annotations (
    photo_id INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE, annotation_json TEXT NOT NULL
);
INSERT INTO photos VALUES (7, 'local', 'a.JPG', 1, 1, 'ab', 'done', 'a.JPG', '{}', NULL, 1, 0, 0);
INSERT INTO photos VALUES (8, 'local', 'b.JPG', 1, 1, NULL, 'pending', NULL, NULL, NULL, 0, 0, 0);
INSERT INTO annotations VALUES (7, '{"event": null}');
"""


def test_a_schema_2_journal_is_brought_up_to_date_in_place(tmp_path: Path) -> None:
    """The photos table is rebuilt (its unique key gained a generation): rows and annotations survive."""
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.executescript(SCHEMA_2_PHOTOS)
    journal = Journal(tmp_path)
    assert [r.rel_path for r in journal.claim(5)] == ["b.JPG"]
    assert journal.annotations("local") == {7: '{"event": null}'}
    assert [(r.id, r.generation) for r in journal.finished("local")] == [(7, 0)]
    journal.close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(photos)")}
        indexes = {row[1] for row in db.execute("PRAGMA index_list(photos)")}
    assert {"retry_at", "last_error", "ctime_ns", "fingerprint", "generation", "crashes"} <= columns
    assert "photos_output_key" in indexes


def test_a_schema_3_journal_gains_its_crash_counts(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.enqueue("local", "a.JPG", 1, 1)
    journal.close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("ALTER TABLE photos DROP COLUMN crashes")
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    journal = Journal(tmp_path)
    [row] = journal.claim(1)
    assert row.crashes == 0
    assert journal.reap_stale_claims(max_crashes=1)[1][0].rel_path == "a.JPG"
    journal.close()


def test_every_exception_of_a_photo_is_its_fault() -> None:
    """Memory pressure and output errors may pass (tried again); a model or classifier error is final."""
    from andi_edge.daemon.retry import fault_of
    from andi_edge.errors import OutputError, PhotoError

    assert fault_of(MemoryError(), "a.JPG").transient
    assert fault_of(MemoryError(), "a.JPG").message.startswith("out_of_memory: a.JPG")
    assert fault_of(OutputError("cannot write x"), "a.JPG").transient
    assert fault_of(OSError(errno.EIO, "Input/output error"), "a.JPG").transient
    final = fault_of(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION"), "a.JPG")
    assert not final.transient and final.message == (
        "internal_error: a.JPG: RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION"
    )
    assert fault_of(PhotoError("corrupt", "a.JPG: truncated"), "a.JPG").message == "corrupt: a.JPG: truncated"
    assert not fault_of(KeyError("x"), "a.JPG").transient
