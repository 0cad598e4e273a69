"""The rendering part of the daemon: journal -> each card's MegaDetector batch JSON, events and repeat flags, and
each finished photo's sidecar: written once when the photo is finished, and again only when its event or repeat
flags change. Every output is rendered from the photos' records (``andi_edge.record``), never from another output.

Everything here is derived from the journal and can be rebuilt from it at any time (and is, at every start).
While the daemon runs, a render happens on a thread of its own, with its own read-only connection to the
journal (SQLite's WAL lets it read while the main loop writes): on a card of 100,000 photos it takes seconds,
and the main loop goes on claiming and committing photos, and feeding the watchdog, meanwhile. Its results
(sidecars to rewrite, annotations to commit) are handed back to the main loop. When stopping, or when a card
is pulled, the render runs on the main loop itself, to the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from andi_edge.daemon.context import DaemonContext
from andi_edge.errors import OutputError
from andi_edge.pipeline import label_space
from andi_edge.record import ResultRecord
from andi_edge.results.records import PhotoRecord, record_from_row
from andi_edge.results.repeats import RepeatPattern
from andi_edge.results.review import build_review, find_patterns
from andi_edge.runtime.detector import Detector
from andi_edge.sinks.md_batch import annotate_entry, batch_document, image_entry, write_batch
from andi_edge.sinks.names import BATCH_JSON_NAME
from andi_edge.sinks.sidecar import sidecar_path, sidecar_provenance, write_sidecar
from andi_edge.state.journal import Journal, PhotoRow

log = logging.getLogger(__name__)

#: rows between two watchdog pings while a big card is rendered
_HEARTBEAT_EVERY = 2000
#: at most this share of the time goes to rendering: a card whose render takes 10 s is rendered every 100 s at
#: most, however short outputs.batch_json_interval_s (the render thread competes with inference for the CPU)
RENDER_SHARE = 0.1


@dataclass
class _SidecarRewrite:
    """A finished photo whose sidecar is due: not written yet, or its event or repeat flags changed since."""

    photo_id: int
    #: the row's updated_at when it was read: an annotation is committed only for a row that did not change since
    updated_at: float
    annotation_json: str
    path: Path
    entry: dict[str, Any]
    provenance: dict[str, Any]
    written: bool = False


@dataclass
class _Rendered:
    """What one render produced: sidecars to rewrite, and the cards whose batch file could not be written."""

    rewrites: list[_SidecarRewrite] = field(default_factory=list)
    failed_cards: set[str] = field(default_factory=set)


@dataclass
class _PatternCache:
    """A card's last repeat-pattern search, and whether outputs rendered since used it for newer photos."""

    searched_at: float
    photos: int
    patterns: list[RepeatPattern]
    stale: bool = False


class Renderer:
    def __init__(self, *, context: DaemonContext, detector: Detector, writer: ThreadPoolExecutor) -> None:
        """``writer``: the thread sidecars are written on, behind the photos' crops."""
        self.context = context
        self.config = context.config
        self.detector = detector
        self.labels = label_space(detector)
        self.output_dir = context.output_dir
        self.notifier = context.notifier
        self._writer = writer
        self._dirty_cards: set[str] = set()
        self._last_render = -math.inf  # the first render (every card, at start) is due at once
        #: how long the last render took: renders are spaced so that they take at most RENDER_SHARE of the time
        self._last_render_s = 0.0
        self._kept_patterns: frozenset[str] = frozenset()
        self._annotation_job: Future[None] | None = None
        self._annotation_rewrites: list[_SidecarRewrite] = []
        #: the render running on its own thread, if any
        self._render_job: Future[_Rendered] | None = None
        self._rendering: list[str] = []
        self._render_thread = ThreadPoolExecutor(1, thread_name_prefix="andi-render")
        self._patterns: dict[str, _PatternCache] = {}
        #: the provenance of each run that produced records (kept in the journal), by its id
        self._runs: dict[str, dict[str, Any]] = {context.run_id: context.provenance}

    def start(self, journal: Journal) -> None:
        """An earlier run may have died before its last render: every card is rebuilt from the journal."""
        self._kept_patterns = journal.kept_patterns()
        self._dirty_cards.update(journal.cards())

    def changed(self, cards: set[str]) -> None:
        self._dirty_cards |= cards

    def render(self, journal: Journal, force: bool = False) -> None:
        """Re-derive events and repeat flags of changed cards; rewrite their batch JSON and changed sidecars.
        Due every outputs.batch_json_interval_s, on the render thread; ``force``: now, to the end, here."""
        self._collect(journal, wait=force)
        interval = max(self.config.outputs.batch_json_interval_s, self._last_render_s / RENDER_SHARE)
        due = time.monotonic() - self._last_render >= interval
        if not (force or due) or self._render_job is not None or self._annotation_job is not None:
            return
        kept = self._dirty_now(journal, force)
        if not self._dirty_cards:
            return
        cards = sorted(self._dirty_cards)
        self._dirty_cards.clear()
        self._last_render = time.monotonic()
        if force:
            try:
                self._hand_back(journal, self._render_cards(journal, cards, kept, True, self.notifier.heartbeat), True)
            except Exception:  # a render that fails leaves its cards dirty, never the loop: tried again later
                log.exception("could not render the batch results")
                self._dirty_cards.update(cards)
        else:
            self._rendering = cards
            self._render_job = self._render_thread.submit(self._render_apart, cards, kept)

    def close(self) -> None:
        self._render_thread.shutdown(wait=True)

    def _dirty_now(self, journal: Journal, force: bool) -> frozenset[str]:
        kept = journal.kept_patterns()
        if kept != self._kept_patterns:  # a person confirmed or withdrew a repeat pattern: every card may change
            self._kept_patterns = kept
            self._dirty_cards.update(journal.cards())
        self._dirty_cards |= self._stale_pattern_cards(force)
        return kept

    def _render_apart(self, cards: list[str], kept: frozenset[str]) -> _Rendered:
        """The render thread: its own read-only connection (a Journal is used from one thread only); it does
        not feed the watchdog, which stays the main loop's to feed."""
        journal = Journal(self.context.state_dir, read_only=True, live=True)
        try:
            return self._render_cards(journal, cards, kept, False, lambda: None)
        finally:
            journal.close()

    def _collect(self, journal: Journal, wait: bool) -> None:
        """Hand a finished render's sidecar rewrites to the writer, and commit the annotations written."""
        job = self._render_job
        if job is not None and (wait or job.done()):
            self._render_job = None
            try:
                rendered = job.result()
            except Exception:  # whatever failed, its cards stay dirty: tried again at the next render
                log.exception("could not render the batch results")
                self._dirty_cards.update(self._rendering)
            else:
                self._hand_back(journal, rendered, wait)
        self._commit_annotations(journal, wait=wait)

    def _hand_back(self, journal: Journal, rendered: _Rendered, now: bool) -> None:
        self._dirty_cards |= rendered.failed_cards
        if not rendered.rewrites:
            return
        if now:  # stopping: the writer thread is gone, and the last word must be on disk
            self._rewrite_sidecars(rendered.rewrites)
            self._commit_rewrites(journal, rendered.rewrites)
        else:  # behind new photos, on the writer thread, so inference does not wait for the disk
            self._annotation_job = self._writer.submit(self._rewrite_sidecars, rendered.rewrites)
            self._annotation_rewrites = rendered.rewrites

    def _render_cards(
        self, journal: Journal, cards: list[str], kept: frozenset[str], force: bool, ping: Callable[[], None]
    ) -> _Rendered:
        rendered = _Rendered()
        begin = time.monotonic()
        for card_id in cards:
            if not self._render_card(journal, card_id, kept, force, rendered.rewrites, ping):
                rendered.failed_cards.add(card_id)
        self._last_render_s = time.monotonic() - begin
        log.debug("rendered %d card(s) in %.2f s", len(cards), self._last_render_s)
        return rendered

    def _render_card(
        self,
        journal: Journal,
        card_id: str,
        kept: frozenset[str],
        force: bool,
        rewrites: list[_SidecarRewrite],
        ping: Callable[[], None],
    ) -> bool:
        rows = journal.latest_finished(card_id)
        image_root = journal.card_roots().get(card_id, str(self.context.root))
        ping()
        records = [record_from_row(r) for r in rows]
        review = build_review(
            records,
            self.labels,
            self.config.events,
            self.config.repeats,
            self.detector.card.thresholds.typical,
            kept,
            patterns=self._repeat_patterns(card_id, records, force),
        )
        ping()
        stored = journal.annotations(card_id)
        entries = []
        for n, (row, record) in enumerate(zip(rows, records, strict=True)):
            if n % _HEARTBEAT_EVERY == 0:
                ping()
            if row.record is None:
                continue
            annotation = review.annotation(record)
            result = row.record.result
            entry = annotate_entry(
                image_entry(result, row.rel_path, all_frames=self.config.video.all_frames), annotation
            )
            entries.append(entry)
            if not self.config.outputs.sidecars:
                continue
            if result.clip is not None:  # a clip's sidecar holds every analysed frame's boxes
                entry = annotate_entry(image_entry(result, row.rel_path, all_frames=True), annotation)
            text = json.dumps(annotation.to_json(), sort_keys=True)
            if stored.get(row.id) != text:
                target = sidecar_path(self.output_dir / card_id, record.output_key)
                provenance = self._sidecar_provenance(journal, row, row.record)
                rewrites.append(_SidecarRewrite(row.id, row.updated_at, text, target, entry, provenance))
        document = batch_document(
            entries,
            self.detector.class_names,
            {**self.context.provenance, "image_root": image_root, "card_id": card_id},
            typical_threshold=self.detector.card.thresholds.typical,
            conservative_threshold=self.detector.card.thresholds.conservative,
            classification_names=self.detector.classification_names,
        )
        try:
            write_batch(self.output_dir / card_id / BATCH_JSON_NAME, document)
        except OutputError as exc:
            log.error("could not write the batch results for %s: %s", card_id, exc)
            return False
        ping()
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

    def _sidecar_provenance(self, journal: Journal, row: PhotoRow, record: ResultRecord) -> dict[str, Any]:
        """What produced this photo's result (the run that processed it, which may be an earlier one) and how."""
        run = self._runs.get(record.run_id or "")
        if run is None and record.run_id is not None:
            run = journal.get_meta(f"run:{record.run_id}")
            if run is not None:
                self._runs[record.run_id] = run
        run = run if run is not None else self.context.provenance  # a record from before runs were kept
        return sidecar_provenance(run, record, row.card_id, row.sha256, row.size_bytes)

    @staticmethod
    def _rewrite_sidecars(rewrites: list[_SidecarRewrite]) -> None:
        for rewrite in rewrites:
            try:
                write_sidecar(rewrite.path, rewrite.entry, rewrite.provenance)
            except OutputError as exc:  # tried again at the next render: its annotation is not committed
                log.warning("could not update %s: %s", rewrite.path, exc)
                return
            rewrite.written = True

    def _commit_annotations(self, journal: Journal, wait: bool) -> None:
        job = self._annotation_job
        if job is None or not (wait or job.done()):
            return
        try:
            job.result()
        except Exception:  # the sidecars not rewritten keep their annotations uncommitted: tried again
            log.exception("could not update the sidecars")
        self._commit_rewrites(journal, self._annotation_rewrites)
        self._annotation_job = None
        self._annotation_rewrites = []

    @staticmethod
    def _commit_rewrites(journal: Journal, rewrites: list[_SidecarRewrite]) -> None:
        journal.set_annotations([(r.photo_id, r.annotation_json, r.updated_at) for r in rewrites if r.written])
