"""The ingest part of the daemon: discovery -> journal. Complete photos become pending rows, in one
transaction per poll (the first scan of a big card is thousands of photos: one fsync, not one per photo).

A file is known by its card, path, size and mtime. One rewritten in place with the same size and mtime (a card
reformatted by a camera whose clock reset, a copy tool that keeps times) shows a new ctime: its last 64 KiB are
read and compared with the fingerprint taken when it was processed (a row from before fingerprints: the whole
file with its sha256, once), and if they differ it is a new photo (a row of the next generation, with outputs of
its own).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from andi_edge.daemon.watcher import Discovery
from andi_edge.errors import JournalFullError
from andi_edge.runtime.model_meta import file_sha256
from andi_edge.state.journal import FINGERPRINT_BYTES, Journal, PhotoRow, fingerprint

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, *, discovery: Discovery, root: str) -> None:
        """``root``: the watched folder, recorded in the journal as the image root of each card found there."""
        self.discovery = discovery
        self.root = root
        #: cards whose image root this run has recorded
        self._rooted: set[str] = set()

    def poll(self, journal: Journal, full_scan: bool) -> int:
        """Record what discovery found complete; returns how many were new to the journal.

        When the journal cannot take them (JournalFullError), discovery forgets what it handed over, so the
        next scan hands the same photos over again: none is lost while the state volume is full."""
        found = self.discovery.poll(force_scan=full_scan)
        if not found:
            return 0
        try:
            for card_id in {p.card_id for p in found} - self._rooted:
                journal.set_card_root(card_id, self.root)
                self._rooted.add(card_id)
            new, suspects = journal.enqueue_many(
                [(p.card_id, p.rel_path, p.size_bytes, p.mtime_ns, p.ctime_ns) for p in found]
            )
            ctimes = {(p.card_id, p.rel_path): p.ctime_ns for p in found}
            for row in suspects:
                new += self._check_rewritten(journal, row, ctimes[(row.card_id, row.rel_path)])
            return new
        except JournalFullError:
            self.discovery.forget_handed_over()
            raise

    def _check_rewritten(self, journal: Journal, row: PhotoRow, ctime_ns: int) -> int:
        """Compare the file with what was processed: by its fingerprint, or, for a row from before fingerprints
        (schema 2), by its whole sha256, once, recording the fingerprint then."""
        path = self.discovery.root / row.rel_path
        try:
            tail = _read_tail(path)
            same = fingerprint(tail) == row.fingerprint if row.fingerprint else file_sha256(path) == row.sha256
        except OSError:
            return 0  # looked at again at the next full scan
        if same:
            journal.confirm_unchanged(row.id, ctime_ns, fingerprint(tail))
            return 0
        log.warning("%s was rewritten in place (same size and time, other content): processing it again", row.rel_path)
        journal.enqueue_rewritten(row, ctime_ns)
        return 1


def _read_tail(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, FINGERPRINT_BYTES, max(0, size - FINGERPRINT_BYTES))
    finally:
        os.close(fd)
