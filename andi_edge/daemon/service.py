"""The watch loop: discover -> journal -> claim -> decode (ahead, in a thread) -> infer -> outputs -> done.

Crash safety comes from the order of things: outputs are written atomically (crops first, the sidecar last),
and only then is the photo marked done in the journal. A crash anywhere leaves either no trace (the claim is
reaped at start and the photo processed again, rewriting the same files) or a finished photo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from andi_edge import __version__
from andi_edge.daemon.metrics import DaemonMetrics
from andi_edge.daemon.notify import Notifier
from andi_edge.daemon.retry import RetryPolicy, UnreadableError, unreadable
from andi_edge.daemon.watcher import Discovery
from andi_edge.detections import ImageResult
from andi_edge.errors import OutputError, PhotoError, UsageError
from andi_edge.pipeline import PipelineSettings, photo_failure, prefetch_ordered
from andi_edge.results.records import PhotoRecord, record_from_row
from andi_edge.results.repeats import RepeatPattern
from andi_edge.results.review import build_review, find_patterns
from andi_edge.runtime.decode import decode_photo
from andi_edge.runtime.detector import Detector, PreparedPhoto
from andi_edge.settings import WatchConfig
from andi_edge.sinks.atomic import remove_stale_temp_files, write_json_atomic
from andi_edge.sinks.crops import write_crops
from andi_edge.sinks.md_batch import annotate_entry, batch_document, image_entry
from andi_edge.sinks.sidecar import sidecar_path, update_sidecar, write_sidecar
from andi_edge.state.journal import Journal, PhotoRow, check_not_lost

log = logging.getLogger(__name__)

BATCH_JSON_NAME = "megadetector_results.json"
LOCK_NAME = "watch.lock"
IDLE_SLEEP_S = 0.2
LOCK_POLL_S = 0.5
MIB = 1 << 20


class DiskFullError(Exception):
    """Outputs cannot be written for lack of space; the photo goes back to pending."""


class StopBeforeStartError(Exception):
    """A stop was asked for before the run began (while waiting for the state folder's lock)."""


class CardGoneError(Exception):
    """The photo's card was removed while we worked on it."""


@dataclass
class _PendingWrite:
    """A photo whose result is known and whose outputs the writer thread is making durable."""

    row: PhotoRow
    job: Future[None]
    entry: dict[str, Any]
    failure: str | None
    timings_ms: dict[str, float]


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


@dataclass
class _Loaded:
    """What the decode thread produced for one claimed photo."""

    data: bytes
    sha256: str
    prepared: PreparedPhoto | None
    failure: str | None


class WatchService:
    def __init__(
        self,
        config: WatchConfig,
        detector: Detector,
        state_dir: Path,
        once: bool = False,
        notifier: Notifier | None = None,
        new_journal: bool = False,
        card_id: str | None = None,
        wait_for_lock: bool = False,
    ) -> None:
        self.config = config
        #: begin a journal anew even where outputs of an earlier run exist (the documented recovery)
        self.new_journal = new_journal
        #: another watch holds the state folder (a second card inserted): wait for it instead of failing
        self.wait_for_lock = wait_for_lock
        self.detector = detector
        self.root = Path(os.path.abspath(config.watch))
        self.output_dir = Path(config.output)
        self.state_dir = state_dir
        self.once = once
        self.notifier = notifier or Notifier()
        self.discovery = Discovery(self.root, config.discovery, card_id=card_id)
        self.retry = RetryPolicy(config.retry)
        self.metrics = DaemonMetrics(started_at=time.time())
        self._stop = threading.Event()
        self._dirty_cards: set[str] = set()
        self._last_batch_render = time.monotonic()
        self._last_metrics = 0.0
        self._paused_until = 0.0
        self._lock_file: Any = None
        # Crops need a full-resolution decode and JPEG encodes: as costly as inference, so they run behind it.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="andi-write")
        self._provenance = detector.provenance()
        self._kept_patterns: frozenset[str] = frozenset()
        self._annotation_job: Future[None] | None = None
        self._annotation_rewrites: list[_SidecarRewrite] = []
        self._patterns: dict[str, _PatternCache] = {}
        #: each card's image root, as the journal has it (cards of one state folder may be watched at other roots)
        self._card_roots: dict[str, str] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: finishing the current photo, then stopping", signal.Signals(signum).name)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        try:
            self._acquire_lock()
        except StopBeforeStartError:
            log.info("stopped before starting: nothing was done")
            return 0
        if not self.new_journal:
            check_not_lost(self.state_dir, self.output_dir)
        journal = Journal(self.state_dir)  # a damaged journal stops here, with the way back (JournalError)
        try:
            self._back_up(journal)
            reaped = journal.reap_stale_claims()
            if reaped:
                log.warning("re-queued %d photo(s) claimed by an earlier run that did not finish", reaped)
            journal.set_meta("run", self._run_facts())
            self._kept_patterns = journal.kept_patterns()
            self._card_roots = journal.card_roots()
            # An earlier run may have died before its last render: rebuild every card's batch file from the journal.
            self._dirty_cards.update(journal.cards())
            self.output_dir.mkdir(parents=True, exist_ok=True)
            # ...or in the middle of an atomic write: its final files are whole, but its temp file stays.
            swept = remove_stale_temp_files(self.output_dir)
            if swept:
                log.warning("removed %d temp file(s) left by an interrupted write", swept)
            self.discovery.start()
            self.notifier.ready(f"watching {self.root}")
            log.info("watching %s -> %s (state %s)", self.root, self.output_dir, self.state_dir)
            self._loop(journal)
        finally:
            self._writer.shutdown(wait=True)
            self.notifier.stopping("flushing results")
            self.discovery.stop()
            with contextlib.suppress(OutputError):
                self._render_batches(journal, force=True)
                self._write_metrics(journal, force=True)
            counts = journal.counts()
            self._back_up(journal)
            journal.close()
            self.notifier.close()
            log.info("stopped: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    @staticmethod
    def _back_up(journal: Journal) -> None:
        """The rolling backup a damaged journal is restored from (at start, once checked, and at stop)."""
        try:
            journal.back_up()
        except OutputError as exc:
            log.warning("%s: the previous backup stays", exc.message)

    def _run_facts(self) -> dict[str, Any]:
        """What `report` and `export-camtrap-dp` need to know about this run, kept in the journal."""
        card = self.detector.card
        return {
            **self._provenance,
            "andi_edge_version": __version__,
            "class_names": list(self.detector.class_names),
            "typical_threshold": card.thresholds.typical,
            "conservative_threshold": card.thresholds.conservative,
            "watch_root": str(self.root),
            "output_dir": str(Path(os.path.abspath(self.output_dir))),
            "events": dataclasses.asdict(self.config.events),
            "repeats": dataclasses.asdict(self.config.repeats),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _acquire_lock(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = (self.state_dir / LOCK_NAME).open("a+")
        except OSError as exc:
            raise OutputError(f"cannot use the state folder {self.state_dir}: {exc.strerror or exc}") from exc
        waiting = False
        while True:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not self.wait_for_lock:
                    raise UsageError(
                        f"another andi-edge watch is already using the state folder {self.state_dir}",
                        hint="stop it first, give this one its own --state folder, or pass --wait-for-lock",
                    ) from None
            if not waiting:
                log.info("another andi-edge watch is using %s: waiting for it to finish", self.state_dir)
                self.notifier.status("waiting for another run to finish")
                waiting = True
            self.notifier.heartbeat()
            if self._stop.wait(LOCK_POLL_S):
                raise StopBeforeStartError("stopped while waiting for the state folder")

    # -- the loop -------------------------------------------------------------------------------------------

    def _loop(self, journal: Journal) -> None:
        first_scan = True
        while not self._stop.is_set():
            self.notifier.heartbeat()
            if not self.discovery.available():
                self._wait_for_card(journal)
                first_scan = True
                continue
            self.metrics.paused_card = False
            for found in self.discovery.poll(force_scan=first_scan):
                if found.card_id not in self._card_roots:
                    journal.set_card_root(found.card_id, str(self.root))
                    self._card_roots[found.card_id] = str(self.root)
                journal.enqueue(found.card_id, found.rel_path, found.size_bytes, found.mtime_ns)
            first_scan = False
            if time.monotonic() < self._paused_until:
                self._stop.wait(IDLE_SLEEP_S)
                continue
            claimed = journal.claim(self.config.pipeline.max_in_flight * 2)
            if claimed:
                self._process(journal, claimed)
            elif self.once and self.discovery.settling() == 0 and journal.next_retry_at() is None:
                break  # --once: everything there is done, and no photo waits to be read again
            else:
                self._stop.wait(IDLE_SLEEP_S)
            self._render_batches(journal)
            self._write_metrics(journal)

    def _wait_for_card(self, journal: Journal) -> None:
        if not self.metrics.paused_card:
            log.warning("the card at %s is gone: pausing until it comes back", self.root)
            self.notifier.status(f"waiting for a card at {self.root}")
            self._render_batches(journal, force=True)
        self.metrics.paused_card = True
        self.discovery.forget_handed_over()
        self.notifier.heartbeat()  # waiting for a card is healthy, not a hang
        self._write_metrics(journal)
        self._stop.wait(self.config.discovery.poll_interval_s)
        if self.once and not self.discovery.available():
            log.error("the card at %s is gone and --once was given: stopping", self.root)
            self._stop.set()

    def _process(self, journal: Journal, rows: list[PhotoRow]) -> None:
        """Decode ahead (thread), infer here, write outputs behind (writer thread), commit here, in order."""
        settings = PipelineSettings(self.config.pipeline.decode_workers, self.config.pipeline.max_in_flight)
        results = prefetch_ordered(rows, self._load, settings)
        writes: deque[_PendingWrite] = deque()
        handed_back = False
        for row, future in results:
            if self._stop.is_set() or handed_back or time.monotonic() < self._paused_until:
                journal.release(row.id)  # SIGTERM or a pause: what is not started stays pending
                continue
            try:
                write = self._finish(journal, row, future)
            except CardGoneError:
                journal.release(row.id)
                handed_back = True
                continue
            if write is not None:
                writes.append(write)
            handed_back = self._commit_written(journal, writes, keep=settings.max_in_flight) or handed_back
            self.notifier.heartbeat()
        self._commit_written(journal, writes, keep=0)

    def _commit_written(self, journal: Journal, writes: deque[_PendingWrite], keep: int) -> bool:
        """Mark photos done whose outputs are durable, oldest first, until at most ``keep`` are in flight.

        Returns True when a full disk made us hand the rest back (they stay pending; their outputs, if any got
        written, are rewritten identically on the retry).
        """
        while writes and (writes[0].job.done() or len(writes) > keep):
            write = writes.popleft()
            try:
                write.job.result()
            except DiskFullError as exc:
                journal.release(write.row.id)
                for later in writes:
                    later.job.exception()  # let it finish before its photo is handed back
                    journal.release(later.row.id)
                writes.clear()
                self._pause_for_disk(str(exc))
                return True
            if write.failure is not None:
                journal.mark_failed(write.row.id, write.entry, write.failure)
                self.metrics.failed_total += 1
            else:
                journal.mark_done(write.row.id, write.entry)
                self.metrics.processed_total += 1
                self.metrics.observe(write.timings_ms)
            self._dirty_cards.add(write.row.card_id)
        return False

    # -- one photo ------------------------------------------------------------------------------------------

    def _load(self, row: PhotoRow) -> _Loaded:
        """Decode thread: read, hash, decode, letterbox."""
        path = self.root / row.rel_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CardGoneError(row.rel_path) from None
        except OSError as exc:
            if not self.discovery.available():
                raise CardGoneError(row.rel_path) from exc
            raise unreadable(exc, row.rel_path) from exc
        sha256 = hashlib.sha256(data).hexdigest()
        if not data:
            return _Loaded(data, sha256, None, f"empty_file: {row.rel_path}: file is empty (0 bytes)")
        try:
            prepared = self.detector.prepare_bytes(data, path)
        except Exception as exc:  # sorted by photo_failure below; anything else is re-raised
            failure = photo_failure(exc)
            if failure is None:
                raise
            return _Loaded(data, sha256, None, failure)
        return _Loaded(data, sha256, prepared, None)

    def _finish(self, journal: Journal, row: PhotoRow, future: Future[_Loaded]) -> _PendingWrite | None:
        """Infer on a decoded photo and hand its outputs to the writer; None when there is nothing to write."""
        exc = future.exception()
        if isinstance(exc, CardGoneError):
            if self.discovery.available() and not (self.root / row.rel_path).exists():
                log.info("%s vanished before it was read; forgetting it", row.rel_path)
                journal.forget(row.id)
                return None
            raise exc
        if isinstance(exc, UnreadableError):
            attempt = row.attempts + 1  # the row was read before its claim counted
            decision = self.retry.decide(exc, attempt, time.time())
            if decision.retry_at is not None:
                wait_s = decision.retry_at - time.time()
                log.warning("%s (attempt %d): trying again in %.0f s", exc.message, attempt, wait_s)
                journal.retry_later(row.id, exc.message, decision.retry_at)
                self.metrics.retried_total += 1
                return None
            loaded = _Loaded(b"", "", None, decision.failure)
        elif exc is not None:
            raise exc
        else:
            loaded = future.result()
        if journal.done_with_hash(row.card_id, loaded.sha256, row.rel_path) is not None:
            log.info("%s: already processed (same bytes); skipping", row.rel_path)
            journal.mark_duplicate(row.id)
            return None
        output_key = self._output_key(journal, row, loaded.sha256)
        journal.set_hash(row.id, loaded.sha256, output_key)
        card_out = self.output_dir / row.card_id
        failure = None
        if loaded.failure is not None or loaded.prepared is None:
            failure = loaded.failure or "internal_error: nothing decoded"
            log.warning("%s: %s", row.rel_path, failure)
            result = ImageResult(path=Path(row.rel_path), failure=failure)
        else:
            result = self.detector.infer(loaded.prepared)
        entry = image_entry(result, row.rel_path)
        job = self._writer.submit(self._write_outputs, card_out, output_key, row, loaded, result, entry)
        return _PendingWrite(row=row, job=job, entry=entry, failure=failure, timings_ms=result.timings_ms)

    def _output_key(self, journal: Journal, row: PhotoRow, sha256: str) -> str:
        """The photo's path on the card, unless another photo (other bytes) already owns those outputs."""
        if row.output_key:
            return row.output_key
        owner = journal.output_key_owner(row.card_id, row.rel_path)
        if owner is None or owner == sha256:
            return row.rel_path
        stem, dot, suffix = row.rel_path.rpartition(".")
        return f"{stem}~{sha256[:12]}.{suffix}" if dot else f"{row.rel_path}~{sha256[:12]}"

    def _write_outputs(
        self,
        card_out: Path,
        output_key: str,
        row: PhotoRow,
        loaded: _Loaded,
        result: ImageResult,
        entry: dict[str, Any],
    ) -> None:
        """Crops first, sidecar last; on a full disk, remove what this attempt wrote and raise DiskFullError."""
        outputs = self.config.outputs
        free = self._free_bytes()
        if free < self.config.disk.min_free_mb * MIB:
            raise DiskFullError(f"only {free // MIB} MiB free in {self.output_dir}")
        written: list[Path] = []
        crops_skipped: str | None = None
        try:
            crops: list[str] = []
            detections = result.detections
            if outputs.crops and detections is not None and free >= self.config.disk.crops_min_free_mb * MIB:
                wanted = detections.above(outputs.crop_threshold)
                if len(wanted):
                    settings = self.detector.settings
                    try:  # crops are cut from the full-resolution photo: it must fit the decode budget too
                        upright = decode_photo(
                            loaded.data,
                            max_image_pixels=settings.max_image_pixels,
                            max_decode_bytes=settings.max_decode_bytes,
                            name=row.rel_path,
                        ).rgb
                    except PhotoError as exc:
                        crops_skipped = f"{exc.reason}: {exc.message}"
                        log.warning("%s: crops skipped, the detections are kept (%s)", row.rel_path, exc.message)
                    else:
                        crops = write_crops(
                            card_out,
                            output_key,
                            upright,
                            wanted,
                            self.detector.class_names,
                            outputs.crop_padding,
                            outputs.crop_jpeg_quality,
                        )
                        written.extend(card_out / c for c in crops)
            elif outputs.crops and detections is not None and len(detections.above(outputs.crop_threshold)):
                log.warning("%s: low on disk space (%d MiB free): crops skipped", row.rel_path, free // MIB)
            if outputs.sidecars:
                provenance = {
                    **self._provenance,
                    "card_id": row.card_id,
                    "sha256": loaded.sha256,
                    "size_bytes": row.size_bytes,
                    "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
                    "crops": crops,
                }
                if crops_skipped is not None:
                    provenance["crops_skipped"] = crops_skipped
                if result.photo is not None:
                    provenance["camera_serial"] = result.photo.camera_serial
                target = sidecar_path(card_out, output_key)
                write_sidecar(target, entry, provenance)
                written.append(target)
        except (OutputError, PhotoError) as exc:
            if isinstance(exc, OutputError) and _is_disk_full(exc):
                for path in written:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise DiskFullError(str(exc)) from exc
            raise

    def _pause_for_disk(self, reason: str) -> None:
        retry = self.config.disk.retry_interval_s
        log.error("disk full (%s): pausing for %.0f s; nothing partial was left behind", reason, retry)
        self.notifier.status(f"paused: disk full ({reason})")
        self.metrics.paused_disk = True
        self._paused_until = time.monotonic() + retry

    def _free_bytes(self) -> int:
        try:
            free = shutil.disk_usage(self.output_dir).free
        except OSError:
            return 0
        self.metrics.free_bytes = free
        if self.metrics.paused_disk and free >= self.config.disk.min_free_mb * MIB:
            self.metrics.paused_disk = False
        return free

    # -- card-level outputs ---------------------------------------------------------------------------------

    def _render_batches(self, journal: Journal, force: bool = False) -> None:
        """Re-derive events and repeat flags of changed cards; rewrite their batch JSON and changed sidecars."""
        self._commit_annotations(journal, wait=force)
        due = time.monotonic() - self._last_batch_render >= self.config.outputs.batch_json_interval_s
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
            rows = journal.latest_finished(card_id)
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
            stored = journal.annotations(card_id)
            entries = []
            for row, record in zip(rows, records, strict=True):
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
                return
        self._dirty_cards.clear()
        self._last_batch_render = time.monotonic()
        if rewrites:
            if force:  # stopping: the writer thread is gone, and the last word must be on disk
                self._rewrite_sidecars(rewrites)
                self._commit_rewrites(journal, rewrites)
            else:  # behind new photos, on the writer thread, so inference does not wait for the disk
                self._annotation_job = self._writer.submit(self._rewrite_sidecars, rewrites)
                self._annotation_rewrites = rewrites

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

    def _write_metrics(self, journal: Journal, force: bool = False) -> None:
        textfile = self.config.metrics.textfile
        now = time.monotonic()
        if not textfile or (not force and now - self._last_metrics < self.config.metrics.interval_s):
            return
        self._last_metrics = now
        self.metrics.photos = journal.counts()
        self._free_bytes()
        try:
            self.metrics.write(Path(textfile))
        except OutputError as exc:
            log.warning("could not write metrics: %s", exc)


def _is_disk_full(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__
    return False
