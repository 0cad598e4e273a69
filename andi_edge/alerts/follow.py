"""Reading the watch daemon's journal from another process, read-only, while the daemon writes it.

Each look opens the journal, reads what was finished after a position, and closes it again: nothing is held open
between looks (the daemon checkpoints and may remove its WAL files as it pleases). A look is skipped while the
journal's files are unchanged, so an idle follower costs a few stat calls.

Under systemd the journal's folder is read-only to the alerts unit. SQLite then needs the daemon's WAL index
(``-shm``) to exist; when the daemon is not running there is none, and the file alone is complete: it is read as
it stands (``immutable``), and the read is kept only if no writer appeared meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from andi_edge.errors import OutputError
from andi_edge.state.journal import DB_NAME, Journal, PhotoRow


@dataclass(frozen=True)
class Snapshot:
    rows: list[PhotoRow]
    #: the highest finishing number in the journal (below the follower's position: the journal was replaced)
    last_seq: int
    run_meta: dict[str, Any] | None
    card_roots: dict[str, str]


@dataclass(frozen=True)
class Activity:
    """What the status says of the daemon's work (read at each status, not at each look)."""

    done_today: int
    last_finished: PhotoRow | None


T = TypeVar("T")


class JournalFollower:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self._seen: tuple[Any, ...] | None = None

    def _signature(self) -> tuple[Any, ...]:
        parts: list[Any] = []
        for suffix in ("", "-wal"):
            try:
                info = os.stat(f"{self.path}{suffix}")
                parts.append((info.st_size, info.st_mtime_ns, info.st_ino))
            except OSError:
                parts.append(None)
        return tuple(parts)

    def changed(self) -> bool:
        """Whether the journal's files changed since the last read of its rows (True before the first)."""
        return self._signature() != self._seen

    def read(self, after: int, limit: int) -> Snapshot:
        """Rows finished after ``after`` (at most ``limit``), and what evaluating them needs. OutputError when the
        journal cannot be read now (not made yet, or being replaced)."""
        before = self._signature()
        snapshot = self._with_journal(
            lambda journal: Snapshot(
                rows=journal.finished_after(after, limit),
                last_seq=journal.last_finished_seq(),
                run_meta=journal.get_meta("run"),
                card_roots=journal.card_roots(),
            )
        )
        self._seen = before
        return snapshot

    def activity(self, day_start: float) -> Activity:
        """Photos done since ``day_start`` and the last one finished (OutputError as ``read``)."""
        return self._with_journal(
            lambda journal: Activity(done_today=journal.done_since(day_start), last_finished=journal.last_finished())
        )

    def _with_journal(self, reading: Callable[[Journal], T]) -> T:
        """``reading`` on a read-only connection opened for it alone; where the folder is read-only and no daemon
        keeps a WAL index, on the file as it stands, kept only if no writer appeared meanwhile."""
        before = self._signature()
        immutable = False
        try:
            journal = Journal(self.state_dir, read_only=True, live=True)
        except OutputError:
            wal, shm = (Path(f"{self.path}{s}").exists() for s in ("-wal", "-shm"))
            if wal or shm or not self.path.is_file():
                raise
            journal = Journal(self.state_dir, read_only=True)  # no writer: the file as it stands
            immutable = True
        try:
            result = reading(journal)
        finally:
            journal.close()
        if immutable and self._signature() != before:
            raise OutputError(f"{self.path} changed while it was read as it stood; reading it again")
        return result
