"""The processing part of the daemon: claim -> read and decode (ahead, in a thread) -> infer -> crops (behind,
on the writer thread) -> commit the photo's record, in order.

Crash safety comes from the order of things: crops are written atomically, and only then is the photo's record
committed to the journal (the sidecar and the batch file are rendered from the journal afterwards). A crash anywhere
leaves either no trace (the claim is reaped at start and the photo processed again, rewriting the same crops) or a
finished photo.

What becomes of a claimed photo is one ``Outcome``, decided by the steps below and applied to the journal in one
place (``Processor._apply``). Whether a fault is tried again is ``retry``'s to say (``fault_of``, ``RetryPolicy``);
a full disk, ``space.SpacePolicy``'s (the photo is handed back, never a failure); a photo that ends the process,
the journal's at the next start (``reap_stale_claims``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from andi_edge.config import PipelineSettings
from andi_edge.daemon.context import DaemonContext
from andi_edge.daemon.retry import PhotoFaultError, RetryPolicy, fault_of, unreadable
from andi_edge.daemon.space import MIB, DiskFullError, SpacePolicy
from andi_edge.daemon.watcher import Discovery
from andi_edge.detections import Detections, ImageResult
from andi_edge.errors import OutputError, PhotoError, is_disk_full
from andi_edge.photos import is_clip_for
from andi_edge.pipeline import label_space, prefetch_ordered
from andi_edge.record import OutputFacts, ResultRecord, failure_record
from andi_edge.runtime.clips import detect_clip_with_poster, disguised_clip
from andi_edge.runtime.decode import decode_photo, read_bounded
from andi_edge.runtime.detector import Detector, PreparedPhoto
from andi_edge.sinks.crops import write_crops
from andi_edge.state.journal import FINGERPRINT_BYTES, Journal, PhotoRow, fingerprint

log = logging.getLogger(__name__)

#: the scales (1/n) crops are cut at, the first whose decode fits the memory budget
CROP_SCALES = (1, 2, 4, 8)


class CardGoneError(Exception):
    """The photo's card was removed while we worked on it."""


OutcomeKind = Literal["finished", "retry", "duplicate", "deferred", "forgotten"]


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed photo.

    - finished: its record is committed: done, or failed when the record holds a failure
    - retry: a fault that may pass: pending again, not before ``retry_at``, with ``error`` said in ``status``
    - duplicate: the same bytes at the same path were processed already (a card inserted again)
    - deferred: handed back untouched, not an attempt (stopping, a full disk, the card pulled)
    - forgotten: the file vanished before it was read (a half-copied file deleted): discovery may find it again
    """

    kind: OutcomeKind
    record: ResultRecord | None = None
    error: str | None = None
    retry_at: float | None = None


DEFERRED = Outcome("deferred")


@dataclass
class Processed:
    """What one ``process`` call leaves for the loop: the cards with photos finished (their outputs are due), and
    the files that vanished before they were read (discovery may find them again, should they come back)."""

    cards: set[str] = field(default_factory=set)
    vanished: list[str] = field(default_factory=list)


@dataclass
class _PendingWrite:
    """A photo whose result is known and whose crops the writer thread is making durable."""

    row: PhotoRow
    job: Future[OutputFacts]
    result: ImageResult


@dataclass
class _Loaded:
    """What the decode thread produced for one claimed photo."""

    data: bytes
    sha256: str
    prepared: PreparedPhoto | None
    failure: str | None
    #: the detections, when the pipeline is parallel (the worker inferred too), or a clip's
    result: ImageResult | None = None
    #: a clip, which is never read into memory
    clip: _LoadedClip | None = None

    @property
    def fingerprint(self) -> str | None:
        if self.clip is not None:
            return self.clip.fingerprint
        return fingerprint(self.data) if self.data else None

    @property
    def frame_rgb(self) -> dict[int, npt.NDArray[np.uint8]]:
        return self.clip.frame_rgb if self.clip is not None else {}


@dataclass
class _LoadedClip:
    """A clip's fingerprint (its last bytes, hashed as it streamed), and the pixels of the frames its crops are cut
    from, by frame number."""

    fingerprint: str
    frame_rgb: dict[int, npt.NDArray[np.uint8]] = field(default_factory=dict)


class Processor:
    def __init__(
        self,
        *,
        context: DaemonContext,
        detector: Detector,
        pipeline: PipelineSettings,
        discovery: Discovery,
        space: SpacePolicy,
        writer: ThreadPoolExecutor,
    ) -> None:
        """``pipeline``: as ``pipeline.plan_pipeline`` resolved it for the detector's backend; ``writer``: the
        thread that writes crops behind inference."""
        self.context = context
        self.config = context.config
        self.pipeline = pipeline
        self.detector = detector
        self.labels = label_space(detector)
        self.discovery = discovery
        self.space = space
        self.retry = RetryPolicy(context.config.retry)
        self._writer = writer
        #: what the current ``process`` call leaves for the loop
        self._processed = Processed()

    def process(self, journal: Journal, rows: list[PhotoRow]) -> Processed:
        """Decode ahead (threads; parallel: they infer too), infer here (split), write crops behind (writer
        thread), commit here, in order."""
        settings = self.pipeline
        results = prefetch_ordered(rows, self._load, settings, timeout_s=self._timeout_s)
        writes: deque[_PendingWrite] = deque()
        handed_back = False
        for row, future in results:
            if self.context.stop.is_set() or handed_back or self.space.paused():
                self._apply(journal, row, DEFERRED)  # SIGTERM or a pause: what is not started stays pending
                continue
            try:
                step = self._finish(journal, row, future)
            except CardGoneError:
                self._apply(journal, row, DEFERRED)
                handed_back = True
                continue
            if isinstance(step, Outcome):
                self._apply(journal, row, step)
            else:
                writes.append(step)
            handed_back = self._commit_written(journal, writes, keep=settings.max_in_flight) or handed_back
            self.context.notifier.heartbeat()
        self._commit_written(journal, writes, keep=0)
        processed, self._processed = self._processed, Processed()
        return processed

    def _commit_written(self, journal: Journal, writes: deque[_PendingWrite], keep: int) -> bool:
        """Commit photos whose crops are durable, oldest first, until at most ``keep`` are in flight.

        Returns True when a full disk made us hand the rest back (they stay pending; their crops, if any got
        written, are rewritten identically on the retry).
        """
        while writes and (writes[0].job.done() or len(writes) > keep):
            write = writes.popleft()
            try:
                outputs = write.job.result()
            except DiskFullError as exc:
                self._apply(journal, write.row, DEFERRED)
                for later in writes:
                    later.job.exception()  # let it finish before its photo is handed back
                    self._apply(journal, later.row, DEFERRED)
                writes.clear()
                self.space.pause(str(exc), "output")
                return True
            except Exception as exc:  # noqa: BLE001 - any other failure to write is this photo's, not the loop's
                self._apply(journal, write.row, self._retry_or_fail(write.row, fault_of(exc, write.row.rel_path)))
                continue
            record = ResultRecord(result=write.result, outputs=outputs, run_id=self.context.run_id)
            self._apply(journal, write.row, Outcome("finished", record=record))
        return False

    def _apply(self, journal: Journal, row: PhotoRow, outcome: Outcome) -> None:
        """The one place an outcome reaches the journal and the counters."""
        metrics = self.context.metrics
        if outcome.kind == "finished":
            assert outcome.record is not None
            journal.mark_finished(row.id, outcome.record)
            result = outcome.record.result
            if result.failure is None:
                metrics.processed_total += 1
                metrics.observe(result.timings_ms)
            else:
                metrics.failed_total += 1
            if metrics.first_finished_at is None:
                metrics.first_finished_at = time.monotonic()
            self.space.progressed()
            self._processed.cards.add(row.card_id)
        elif outcome.kind == "retry":
            assert outcome.retry_at is not None
            wait_s = outcome.retry_at - self.context.now()
            log.warning("%s (attempt %d): trying again in %.0f s", outcome.error, row.attempts + 1, wait_s)
            journal.retry_later(row.id, outcome.error or "", outcome.retry_at)
            metrics.retried_total += 1
        elif outcome.kind == "duplicate":
            journal.mark_duplicate(row.id)
        elif outcome.kind == "deferred":
            journal.release(row.id)
        else:
            journal.forget(row.id)
            self._processed.vanished.append(row.rel_path)

    # -- one photo ------------------------------------------------------------------------------------------

    def _load(self, row: PhotoRow) -> _Loaded:
        """Decode thread: read, hash, decode, letterbox; and infer, when the pipeline is parallel. A video clip:
        hashed as it streams, its sampled frames decoded in a child process and inferred here."""
        path = self.context.root / row.rel_path
        if is_clip_for(path.name, self.config.media):
            return self._load_clip(row, path)
        try:
            data = read_bounded(path, self.detector.settings.max_decode_bytes)
        except OSError as exc:
            raise self._read_fault(row, exc) from exc
        except PhotoError as exc:  # too large to read: final, and not hashed (it is not read)
            return _Loaded(b"", "", None, f"{exc.reason}: {exc.message}")
        sha256 = hashlib.sha256(data).hexdigest()
        if not data:
            return _Loaded(data, sha256, None, f"empty_file: {row.rel_path}: file is empty (0 bytes)")
        try:
            prepared = self.detector.prepare_bytes(data, path)
            result = self.detector.infer(prepared) if self.pipeline.parallel else None
        except Exception as exc:  # whatever a photo does to the decoder, the model or the classifier
            if isinstance(exc, PhotoError) and disguised_clip(f"{exc.reason}:", path, self.config.media):
                return self._load_clip(row, path)  # a clip named like a photo: found by its content
            fault = fault_of(exc, row.rel_path)
            if fault.transient:
                raise fault from exc
            return _Loaded(data, sha256, None, fault.message)
        return _Loaded(data, sha256, prepared, None, result)

    def _read_fault(self, row: PhotoRow, exc: OSError) -> Exception:
        """What a failed read means: the card is gone (the file vanished, or the card with it), or the photo could
        not be read (``retry``'s to judge)."""
        if isinstance(exc, FileNotFoundError) or not self.discovery.available():
            return CardGoneError(row.rel_path)
        return unreadable(exc, row.rel_path)

    def _load_clip(self, row: PhotoRow, path: Path) -> _Loaded:
        try:
            sha256, tail = _stream_hash(path)
        except OSError as exc:
            raise self._read_fault(row, exc) from exc
        result, frame_rgb = detect_clip_with_poster(self.detector, path, self.config.video)  # (it logs a failure)
        return _Loaded(b"", sha256, None, None, result, clip=_LoadedClip(fingerprint(tail), frame_rgb))

    def _timeout_s(self, row: PhotoRow) -> float:
        """How long one item may take: a photo's read, or a clip's decoding (its own limit, and the hashing)."""
        if is_clip_for(row.rel_path, self.config.media):
            return self.config.video.decode_timeout_s + self.config.retry.read_timeout_s
        return self.config.retry.read_timeout_s

    def _finish(self, journal: Journal, row: PhotoRow, future: Future[_Loaded]) -> Outcome | _PendingWrite:
        """Infer on a decoded photo and hand its crops to the writer; or the outcome, when there is nothing to
        write."""
        exc = future.exception()
        if isinstance(exc, CardGoneError):
            if self.discovery.available() and not (self.context.root / row.rel_path).exists():
                log.info("%s vanished before it was read; forgetting it", row.rel_path)
                return Outcome("forgotten")
            raise exc
        if exc is not None:
            fault = fault_of(exc, row.rel_path)
            if not fault.transient:
                log.error("%s", fault.message, exc_info=exc)
            outcome = self._retry_or_fail(row, fault)
            if outcome.record is None:
                return outcome
            loaded = _Loaded(b"", "", None, outcome.record.failure)
        else:
            loaded = future.result()
        if journal.done_with_hash(row.card_id, loaded.sha256, row.rel_path) is not None:
            log.info("%s: already processed (same bytes); skipping", row.rel_path)
            return Outcome("duplicate")
        if journal.supersede_failed(row.card_id, row.rel_path, row.id):
            log.info("%s: read again after an incomplete copy; this version replaces the failed one", row.rel_path)
        output_key = self._output_key(journal, row, loaded.sha256)
        journal.set_hash(row.id, loaded.sha256, output_key, loaded.fingerprint)
        if loaded.result is not None:  # inferred by the decode worker (a photo in parallel mode, or a clip)
            result = loaded.result
        elif loaded.failure is not None or loaded.prepared is None:
            failure = loaded.failure or "internal_error: nothing decoded"
            log.warning("%s: %s", row.rel_path, failure)
            result = ImageResult(path=Path(row.rel_path), failure=failure)
        else:
            try:
                result = self.detector.infer(loaded.prepared)
            except Exception as exc:  # the model or the classifier raised on this photo
                fault = fault_of(exc, row.rel_path)
                if fault.transient:
                    return self._retry_or_fail(row, fault)
                log.error("%s", fault.message, exc_info=exc)
                result = ImageResult(path=Path(row.rel_path), failure=fault.message)
        card_out = self.context.output_dir / row.card_id
        job = self._writer.submit(self._write_crops, card_out, output_key, row, loaded, result)
        return _PendingWrite(row=row, job=job, result=result)

    def _retry_or_fail(self, row: PhotoRow, fault: PhotoFaultError) -> Outcome:
        """The policy's decision for a claimed photo that faulted: another attempt later (not before its backoff),
        or its failure recorded."""
        attempt = row.attempts + 1  # the row was read before its claim counted
        decision = self.retry.decide(fault, attempt, self.context.now())
        if decision.retry_at is not None:
            return Outcome("retry", error=fault.message, retry_at=decision.retry_at)
        if fault.transient:  # (a final fault was logged where it was raised, with its traceback)
            log.error("%s", decision.failure)
        record = failure_record(Path(row.rel_path), decision.failure, self.context.run_id)
        return Outcome("finished", record=record)

    def _write_clip_crops(
        self, card_out: Path, output_key: str, loaded: _Loaded, result: ImageResult, free: int
    ) -> OutputFacts:
        """A clip's crops (``_clip_crop_boxes``), each cut from its own frame and named with the clip and the frame
        number."""
        outputs = self.config.outputs
        clip = result.clip
        if not outputs.crops or clip is None or not loaded.frame_rgb:
            return OutputFacts()
        wanted_of = _clip_crop_boxes(result, outputs.crop_threshold)
        frames = [f for f in result.frames if f.frame_number in loaded.frame_rgb and f.frame_number in wanted_of]
        if not frames:
            return OutputFacts()
        if not self.space.crops_allowed(free):
            log.warning("%s: low on disk space (%d MiB free): crops skipped", output_key, free // MIB)
            return OutputFacts()
        stem, dot, suffix = output_key.rpartition(".")
        crops: list[str] = []
        scale = 1.0
        for frame in frames:
            wanted = frame.detections.select(np.asarray(wanted_of[frame.frame_number], dtype=np.intp))
            rgb = loaded.frame_rgb[frame.frame_number]
            scale = rgb.shape[1] / clip.width_px
            tag = f"_frame{frame.frame_number:06d}"
            crops += self._cut(card_out, f"{stem}{tag}.{suffix}" if dot else f"{output_key}{tag}", rgb, wanted, scale)
        return OutputFacts(crops=tuple(crops), crops_scale=None if scale == 1.0 else round(scale, 4))

    def _cut(self, card_out: Path, key: str, rgb: npt.NDArray[np.uint8], wanted: Detections, scale: float) -> list[str]:
        """The crops of ``wanted`` (boxes in full-size pixels) from ``rgb`` (decoded at ``scale``); a full disk is
        DiskFullError."""
        outputs = self.config.outputs
        if scale != 1.0:
            wanted = dataclasses.replace(wanted, xyxy_px=wanted.xyxy_px * np.float32(scale))
        try:
            return write_crops(card_out, key, rgb, wanted, self.labels, outputs.crop_padding, outputs.crop_jpeg_quality)
        except OutputError as exc:
            if is_disk_full(exc):
                raise DiskFullError(str(exc)) from exc
            raise

    def _decode_for_crops(self, data: bytes, name: str, result: ImageResult) -> tuple[npt.NDArray[np.uint8], float]:
        """The upright photo for cutting crops, and its scale against the original: full resolution when its
        decode fits detector.max_decode_mb, else the largest JPEG DCT scale (1/2, 1/4, 1/8) that does, so that a
        48 MP photo gets its crops at 12 MP instead of taking the daemon past its memory limit. PhotoError when
        even 1/8 does not fit (or the photo is a PNG over the budget)."""
        settings = self.detector.settings
        long_side = max(result.photo.width_px, result.photo.height_px) if result.photo is not None else 0
        error: PhotoError | None = None
        for divisor in CROP_SCALES:
            target = None if divisor == 1 else max(1, -(-long_side // divisor))
            if divisor != 1 and not long_side:
                break
            try:
                decoded = decode_photo(
                    data,
                    target_long_side_px=target,
                    max_image_pixels=settings.max_image_pixels,
                    max_decode_bytes=self.detector.decode_budget_bytes,
                    oversample=0.99,  # just under 1: exactly 1/divisor is what is asked for
                    name=name,
                )
            except PhotoError as exc:
                if exc.reason != "too_large":
                    raise
                error = exc
                continue
            scale = decoded.rgb.shape[1] / decoded.info.width_px if decoded.info.width_px else 1.0
            return decoded.rgb, 1.0 if abs(scale - 1.0) < 1e-6 else scale
        assert error is not None
        raise error

    def _output_key(self, journal: Journal, row: PhotoRow, sha256: str) -> str:
        """The photo's path on the card, unless another photo (other bytes) already owns those outputs."""
        if row.output_key:
            return row.output_key
        owner = journal.output_key_owner(row.card_id, row.rel_path)
        if owner is None or owner == sha256:
            return row.rel_path
        stem, dot, suffix = row.rel_path.rpartition(".")
        return f"{stem}~{sha256[:12]}.{suffix}" if dot else f"{row.rel_path}~{sha256[:12]}"

    def _write_crops(
        self, card_out: Path, output_key: str, row: PhotoRow, loaded: _Loaded, result: ImageResult
    ) -> OutputFacts:
        """The writer thread: the photo's crops, and what became of them. On a full disk, the crops of this attempt
        are removed and DiskFullError raised."""
        outputs = self.config.outputs
        free = self.space.check_outputs()
        if result.clip is not None:
            return self._write_clip_crops(card_out, output_key, loaded, result, free)
        detections = result.detections
        if not outputs.crops or detections is None or not len(detections.above(outputs.crop_threshold)):
            return OutputFacts()
        if not self.space.crops_allowed(free):
            log.warning("%s: low on disk space (%d MiB free): crops skipped", row.rel_path, free // MIB)
            return OutputFacts()
        wanted = detections.above(outputs.crop_threshold)
        try:  # cut from the photo at the largest scale its decode fits the memory budget
            upright, scale = self._decode_for_crops(loaded.data, row.rel_path, result)
        except PhotoError as exc:
            log.warning("%s: crops skipped, the detections are kept (%s)", row.rel_path, exc.message)
            return OutputFacts(crops_skipped=f"{exc.reason}: {exc.message}")
        crops = self._cut(card_out, output_key, upright, wanted, scale)
        return OutputFacts(crops=tuple(crops), crops_scale=None if scale == 1.0 else round(scale, 4))


def _stream_hash(path: Path) -> tuple[str, bytes]:
    """A file's sha256, read in pieces (a clip is never held in memory), and its last FINGERPRINT_BYTES."""
    digest = hashlib.sha256()
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            tail = (tail + chunk)[-FINGERPRINT_BYTES:]
    return digest.hexdigest(), tail


def _clip_crop_boxes(result: ImageResult, threshold: float) -> dict[int, list[int]]:
    """Which boxes of a clip get crops, by frame number: every box of its poster frame at or above ``threshold``,
    and each category's most confident box of the clip (the box its batch entry keeps) where that is elsewhere."""
    wanted: dict[int, list[int]] = {}
    poster = result.poster_frame
    if poster is not None:
        chosen = [i for i, conf in enumerate(poster.detections.confidence.tolist()) if conf >= threshold]
        if chosen:
            wanted[poster.frame_number] = chosen
    best: dict[int, tuple[float, int, int]] = {}
    for frame in result.frames:
        for i, (cls, conf) in enumerate(
            zip(frame.detections.class_id.tolist(), frame.detections.confidence.tolist(), strict=True)
        ):
            if conf >= threshold and conf > best.get(cls, (-1.0, -1, -1))[0]:
                best[cls] = (conf, frame.frame_number, i)
    for _, number, index in best.values():
        if poster is None or number != poster.frame_number:
            wanted.setdefault(number, []).append(index)
    return wanted
