"""The ingest part of the daemon: discovery -> journal. Complete photos become pending rows, in one
transaction per poll (the first scan of a big card is thousands of photos: one fsync, not one per photo)."""

from __future__ import annotations

from andi_edge.daemon.rendering import Renderer
from andi_edge.daemon.watcher import Discovery
from andi_edge.errors import JournalFullError
from andi_edge.state.journal import Journal


class Ingest:
    def __init__(self, discovery: Discovery, renderer: Renderer, root: str) -> None:
        self.discovery = discovery
        self.renderer = renderer
        self.root = root

    def poll(self, journal: Journal, full_scan: bool) -> int:
        """Record what discovery found complete; returns how many were new to the journal.

        When the journal cannot take them (JournalFullError), discovery forgets what it handed over, so the
        next scan hands the same photos over again: none is lost while the state volume is full."""
        found = self.discovery.poll(force_scan=full_scan)
        if not found:
            return 0
        try:
            for photo in found:
                if not self.renderer.knows_root(photo.card_id):
                    journal.set_card_root(photo.card_id, self.root)
                    self.renderer.note_root(photo.card_id, self.root)
            return journal.enqueue_many([(p.card_id, p.rel_path, p.size_bytes, p.mtime_ns) for p in found])
        except JournalFullError:
            self.discovery.forget_handed_over()
            raise
