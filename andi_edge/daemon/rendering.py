"""The rendering part of the daemon: journal -> each card's MegaDetector batch JSON, events and repeat flags,
and the sidecars whose event or repeat flags changed since they were written.

Everything here is derived from the journal and can be rebuilt from it at any time (and is, at every start).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.daemon.notify import Notifier
from andi_edge.errors import OutputError
from andi_edge.results.records import PhotoRecord, record_from_row
from andi_edge.results.repeats import RepeatPattern
from andi_edge.results.review import build_review, find_patterns
from andi_edge.runtime.detector import Detector
from andi_edge.settings import WatchConfig
from andi_edge.sinks.atomic import write_json_atomic
from andi_edge.sinks.md_batch import annotate_entry, batch_document
from andi_edge.sinks.sidecar import sidecar_path, update_sidecar
from andi_edge.state.journal import Journal

log = logging.getLogger(__name__)

BATCH_JSON_NAME = "megadetector_results.json"
#: rows between two watchdog pings while a big card is rendered
_HEARTBEAT_EVERY = 2000


@dataclass
class _SidecarRewrite:
    """A finished photo whose event or repeat flags changed since its sidecar was written."""

    photo_id: int
    annotation_json: str
    path: Path
    entry: dict[str, Any]
    written: bool = False


@dataclass
class _PatternCache:
    """A card's last repeat-pattern search, and whether outputs rendered since used it for newer photos."""

    searched_at: float
    photos: int
    patterns: list[RepeatPattern]
    stale: bool = False


class Renderer:
    def __init__(
        self,
        config: WatchConfig,
        detector: Detector,
        output_dir: Path,
        root: Path,
        writer: ThreadPoolExecutor,
        notifier: Notifier,
        provenance: dict[str, Any],
    ) -> None:
        self.config = config
        self.detector = detector
        self.output_dir = output_dir
        self.root = root
        self.notifier = notifier
        self._writer = writer
        self._provenance = provenance
        self._dirty_cards: set[str] = set()
        self._last_render = time.monotonic()
        self._kept_patterns: frozenset[str] = frozenset()
        self._annotation_job: Future[None] | None = None
        self._annotation_rewrites: list[_SidecarRewrite] = []
        self._patterns: dict[str, _PatternCache] = {}
        #: each card's image root, as the journal has it (cards of one state folder may be watched at other roots)
        self._card_roots: dict[str, str] = {}

    def start(self, journal: Journal) -> None:
        """An earlier run may have died before its last render: every card is rebuilt from the journal."""
        self._kept_patterns = journal.kept_patterns()
        self._card_roots = journal.card_roots()
        self._dirty_cards.update(journal.cards())

    def changed(self, card_id: str) -> None:
        self._dirty_cards.add(card_id)

    def knows_root(self, card_id: str) -> bool:
        return card_id in self._card_roots

    def note_root(self, card_id: str, root: str) -> None:
        self._card_roots[card_id] = root

    def render(self, journal: Journal, force: bool = False) -> None:
        """Re-derive events and repeat flags of changed cards; rewrite their batch JSON and changed sidecars."""
        self._commit_annotations(journal, wait=force)
        due = time.monotonic() - self._last_render >= self.config.outputs.batch_json_interval_s
        if not (force or due):
            return
        kept = journal.kept_patterns()
        if kept != self._kept_patterns:  # a person confirmed or withdrew a repeat pattern: every card may change
            self._kept_patterns = kept
            self._dirty_cards.update(journal.cards())
        self._dirty_cards |= self._stale_pattern_cards(force)
        if not self._dirty_cards or (self._annotation_job is not None and not force):
            return
        rewrites: list[_SidecarRewrite] = []
        for card_id in sorted(self._dirty_cards):
            if not self._render_card(journal, card_id, kept, force, rewrites):
                return
        self._dirty_cards.clear()
        self._last_render = time.monotonic()
        if rewrites:
            if force:  # stopping: the writer thread is gone, and the last word must be on disk
                self._rewrite_sidecars(rewrites)
                self._commit_rewrites(journal, rewrites)
            else:  # behind new photos, on the writer thread, so inference does not wait for the disk
                self._annotation_job = self._writer.submit(self._rewrite_sidecars, rewrites)
                self._annotation_rewrites = rewrites

    def _render_card(
        self, journal: Journal, card_id: str, kept: frozenset[str], force: bool, rewrites: list[_SidecarRewrite]
    ) -> bool:
        rows = journal.latest_finished(card_id)
        self.notifier.heartbeat()
        records = [record_from_row(r) for r in rows]
        review = build_review(
            records,
            self.detector.class_names,
            self.config.events,
            self.config.repeats,
            self.detector.card.thresholds.typical,
            kept,
            patterns=self._repeat_patterns(card_id, records, force),
        )
        self.notifier.heartbeat()
        stored = journal.annotations(card_id)
        entries = []
        for n, (row, record) in enumerate(zip(rows, records, strict=True)):
            if n % _HEARTBEAT_EVERY == 0:
                self.notifier.heartbeat()
            if row.result is None:
                continue
            annotation = review.annotation(record)
            entry = annotate_entry(row.result, annotation)
            entries.append(entry)
            if row.state != "done" or not self.config.outputs.sidecars:
                continue
            text = json.dumps(annotation.to_json(), sort_keys=True)
            if stored.get(row.id) != text:
                target = sidecar_path(self.output_dir / card_id, record.output_key)
                rewrites.append(_SidecarRewrite(row.id, text, target, entry))
        document = batch_document(
            entries,
            self.detector.class_names,
            {**self._provenance, "image_root": self._card_roots.get(card_id, str(self.root)), "card_id": card_id},
            typical_threshold=self.detector.card.thresholds.typical,
            conservative_threshold=self.detector.card.thresholds.conservative,
            classification_names=self.detector.classification_names,
        )
        try:
            write_json_atomic(self.output_dir / card_id / BATCH_JSON_NAME, document)
        except OutputError as exc:
            log.error("could not write the batch results for %s: %s", card_id, exc)
            return False
        self.notifier.heartbeat()
        return True

    def _repeat_patterns(self, card_id: str, records: list[PhotoRecord], force: bool) -> list[RepeatPattern]:
        """The card's repeat patterns, searched again only every repeats.interval_s (the search is the costly
        part of a render on a big card). Patterns reused while photos arrived leave the card stale: it is
        rendered again once the interval is over, or when stopping, even if no photo arrives in between."""
        now = time.monotonic()
        cached = self._patterns.get(card_id)
        if force or cached is None or now - cached.searched_at >= self.config.repeats.interval_s:
            cached = _PatternCache(now, len(records), find_patterns(records, self.config.repeats))
            self._patterns[card_id] = cached
        cached.stale = cached.photos != len(records)
        return cached.patterns

    def _stale_pattern_cards(self, force: bool) -> set[str]:
        now = time.monotonic()
        return {
            card_id
            for card_id, cached in self._patterns.items()
            if cached.stale and (force or now - cached.searched_at >= self.config.repeats.interval_s)
        }

    def _rewrite_sidecars(self, rewrites: list[_SidecarRewrite]) -> None:
        provenance = {**self._provenance, "rewritten": True}
        for rewrite in rewrites:
            try:
                update_sidecar(rewrite.path, rewrite.entry, provenance)
            except OutputError as exc:  # tried again at the next render: its annotation is not committed
                log.warning("could not update %s: %s", rewrite.path, exc)
                return
            rewrite.written = True

    def _commit_annotations(self, journal: Journal, wait: bool) -> None:
        job = self._annotation_job
        if job is None or not (wait or job.done()):
            return
        job.result()
        self._commit_rewrites(journal, self._annotation_rewrites)
        self._annotation_job = None
        self._annotation_rewrites = []

    @staticmethod
    def _commit_rewrites(journal: Journal, rewrites: list[_SidecarRewrite]) -> None:
        journal.set_annotations([(r.photo_id, r.annotation_json) for r in rewrites if r.written])
