"""The processing part of the daemon: claim -> read and decode (ahead, in a thread) -> infer -> outputs (behind,
on the writer thread) -> commit, in order.

Crash safety comes from the order of things: outputs are written atomically (crops first, the sidecar last),
and only then is the photo marked done in the journal. A crash anywhere leaves either no trace (the claim is
reaped at start and the photo processed again, rewriting the same files) or a finished photo.

What happens to a photo that fails is decided in one place each: anything one photo does while it is read,
decoded, inferred, classified or written, by ``retry`` (``fault_of``, ``RetryPolicy``: tried again later, or
recorded with its reason); a full disk, by ``space.SpacePolicy`` (handed back, never a failure); a photo that
ends the process, by the journal at the next start (``reap_stale_claims``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge.daemon.metrics import DaemonMetrics
from andi_edge.daemon.notify import Notifier
from andi_edge.daemon.rendering import Renderer
from andi_edge.daemon.retry import PhotoFaultError, RetryPolicy, fault_of, unreadable
from andi_edge.daemon.space import MIB, DiskFullError, SpacePolicy
from andi_edge.daemon.watcher import Discovery
from andi_edge.detections import ImageResult
from andi_edge.errors import OutputError, PhotoError, is_disk_full
from andi_edge.pipeline import PipelineSettings, label_space, prefetch_ordered
from andi_edge.runtime.decode import decode_photo, read_bounded
from andi_edge.runtime.detector import Detector, PreparedPhoto
from andi_edge.settings import WatchConfig
from andi_edge.sinks.crops import write_crops
from andi_edge.sinks.md_batch import image_entry
from andi_edge.sinks.sidecar import sidecar_path, write_sidecar
from andi_edge.state.journal import Journal, PhotoRow, fingerprint

log = logging.getLogger(__name__)

#: the scales (1/n) crops are cut at, the first whose decode fits the memory budget
CROP_SCALES = (1, 2, 4, 8)


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
class _Loaded:
    """What the decode thread produced for one claimed photo."""

    data: bytes
    sha256: str
    prepared: PreparedPhoto | None
    failure: str | None
    #: the detections, when the pipeline is parallel (the worker inferred too)
    result: ImageResult | None = None

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.data) if self.data else None


def failure_entry(row: PhotoRow, failure: str) -> dict[str, Any]:
    """What the outputs say of a photo that failed without a result."""
    return image_entry(ImageResult(path=Path(row.rel_path), failure=failure), row.rel_path)


class Processor:
    def __init__(
        self,
        config: WatchConfig,
        detector: Detector,
        root: Path,
        output_dir: Path,
        discovery: Discovery,
        space: SpacePolicy,
        renderer: Renderer,
        writer: ThreadPoolExecutor,
        metrics: DaemonMetrics,
        notifier: Notifier,
        stop: threading.Event,
        provenance: dict[str, Any],
        pipeline: PipelineSettings,
    ) -> None:
        """``pipeline``: as ``pipeline.plan_pipeline`` resolved it for the detector's backend."""
        self.config = config
        self.pipeline = pipeline
        self.detector = detector
        self.labels = label_space(detector)
        self.root = root
        self.output_dir = output_dir
        self.discovery = discovery
        self.space = space
        self.retry = RetryPolicy(config.retry)
        self.renderer = renderer
        self.metrics = metrics
        self.notifier = notifier
        self._writer = writer
        self._stop = stop
        self._provenance = provenance

    def process(self, journal: Journal, rows: list[PhotoRow]) -> None:
        """Decode ahead (threads; parallel: they infer too), infer here (split), write outputs behind (writer
        thread), commit here, in order."""
        settings = self.pipeline
        results = prefetch_ordered(rows, self._load, settings, timeout_s=self.config.retry.read_timeout_s)
        writes: deque[_PendingWrite] = deque()
        handed_back = False
        for row, future in results:
            if self._stop.is_set() or handed_back or self.space.paused():
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
                self.space.pause(str(exc), "output")
                return True
            except Exception as exc:  # noqa: BLE001 - any other failure to write is this photo's, not the loop's
                self._faulted(journal, write.row, fault_of(exc, write.row.rel_path))
                continue
            if write.failure is not None:
                journal.mark_failed(write.row.id, write.entry, write.failure)
                self.metrics.failed_total += 1
            else:
                journal.mark_done(write.row.id, write.entry)
                self.metrics.processed_total += 1
                self.metrics.observe(write.timings_ms)
            self.space.progressed()
            self.renderer.changed(write.row.card_id)
        return False

    # -- one photo ------------------------------------------------------------------------------------------

    def _load(self, row: PhotoRow) -> _Loaded:
        """Decode thread: read, hash, decode, letterbox; and infer, when the pipeline is parallel."""
        path = self.root / row.rel_path
        try:
            data = read_bounded(path, self.detector.settings.max_decode_bytes)
        except FileNotFoundError:
            raise CardGoneError(row.rel_path) from None
        except OSError as exc:
            if not self.discovery.available():
                raise CardGoneError(row.rel_path) from exc
            raise unreadable(exc, row.rel_path) from exc
        except PhotoError as exc:  # too large to read: final, and not hashed (it is not read)
            return _Loaded(b"", "", None, f"{exc.reason}: {exc.message}")
        sha256 = hashlib.sha256(data).hexdigest()
        if not data:
            return _Loaded(data, sha256, None, f"empty_file: {row.rel_path}: file is empty (0 bytes)")
        try:
            prepared = self.detector.prepare_bytes(data, path)
            result = self.detector.infer(prepared) if self.pipeline.parallel else None
        except Exception as exc:  # whatever a photo does to the decoder, the model or the classifier
            fault = fault_of(exc, row.rel_path)
            if fault.transient:
                raise fault from exc
            return _Loaded(data, sha256, None, fault.message)
        return _Loaded(data, sha256, prepared, None, result)

    def _finish(self, journal: Journal, row: PhotoRow, future: Future[_Loaded]) -> _PendingWrite | None:
        """Infer on a decoded photo and hand its outputs to the writer; None when there is nothing to write."""
        exc = future.exception()
        if isinstance(exc, CardGoneError):
            if self.discovery.available() and not (self.root / row.rel_path).exists():
                log.info("%s vanished before it was read; forgetting it", row.rel_path)
                journal.forget(row.id)
                self.discovery.hand_over_again(row.rel_path)
                return None
            raise exc
        if exc is not None:
            fault = fault_of(exc, row.rel_path)
            if not fault.transient:
                log.error("%s", fault.message, exc_info=exc)
            failure = self._retry_or_fail(journal, row, fault)
            if failure is None:
                return None
            loaded = _Loaded(b"", "", None, failure)
        else:
            loaded = future.result()
        if journal.done_with_hash(row.card_id, loaded.sha256, row.rel_path) is not None:
            log.info("%s: already processed (same bytes); skipping", row.rel_path)
            journal.mark_duplicate(row.id)
            return None
        if journal.supersede_failed(row.card_id, row.rel_path, row.id):
            log.info("%s: read again after an incomplete copy; this version replaces the failed one", row.rel_path)
        output_key = self._output_key(journal, row, loaded.sha256)
        journal.set_hash(row.id, loaded.sha256, output_key, loaded.fingerprint)
        card_out = self.output_dir / row.card_id
        failure = None
        if loaded.failure is not None or loaded.prepared is None:
            failure = loaded.failure or "internal_error: nothing decoded"
            log.warning("%s: %s", row.rel_path, failure)
            result = ImageResult(path=Path(row.rel_path), failure=failure)
        elif loaded.result is not None:
            result = loaded.result
        else:
            try:
                result = self.detector.infer(loaded.prepared)
            except Exception as exc:  # the model or the classifier raised on this photo
                fault = fault_of(exc, row.rel_path)
                if fault.transient:
                    self._faulted(journal, row, fault)
                    return None
                log.error("%s", fault.message, exc_info=exc)
                failure = fault.message
                result = ImageResult(path=Path(row.rel_path), failure=failure)
        entry = image_entry(result, row.rel_path)
        job = self._writer.submit(self._write_outputs, card_out, output_key, row, loaded, result, entry)
        return _PendingWrite(row=row, job=job, entry=entry, failure=failure, timings_ms=result.timings_ms)

    def _retry_or_fail(self, journal: Journal, row: PhotoRow, fault: PhotoFaultError) -> str | None:
        """The policy's decision for a claimed photo: None when it waits for another attempt (back to pending,
        not before its backoff), else the failure to record."""
        attempt = row.attempts + 1  # the row was read before its claim counted
        decision = self.retry.decide(fault, attempt, time.time())
        if decision.retry_at is None:
            return decision.failure
        wait_s = decision.retry_at - time.time()
        log.warning("%s (attempt %d): trying again in %.0f s", fault.message, attempt, wait_s)
        journal.retry_later(row.id, fault.message, decision.retry_at)
        self.metrics.retried_total += 1
        return None

    def _faulted(self, journal: Journal, row: PhotoRow, fault: PhotoFaultError) -> None:
        """A photo that failed after its result was known (its outputs could not be written, say)."""
        failure = self._retry_or_fail(journal, row, fault)
        if failure is None:
            return
        log.error("%s", failure)
        journal.mark_failed(row.id, failure_entry(row, failure), failure)
        self.metrics.failed_total += 1
        self.renderer.changed(row.card_id)

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
        free = self.space.check_outputs()
        written: list[Path] = []
        crops_skipped: str | None = None
        crops_scale: float | None = None
        try:
            crops: list[str] = []
            detections = result.detections
            if outputs.crops and detections is not None and self.space.crops_allowed(free):
                wanted = detections.above(outputs.crop_threshold)
                if len(wanted):
                    try:  # cut from the photo at the largest scale its decode fits the memory budget
                        upright, scale = self._decode_for_crops(loaded.data, row.rel_path, result)
                    except PhotoError as exc:
                        crops_skipped = f"{exc.reason}: {exc.message}"
                        log.warning("%s: crops skipped, the detections are kept (%s)", row.rel_path, exc.message)
                    else:
                        if scale != 1.0:
                            crops_scale = scale
                            wanted = dataclasses.replace(wanted, xyxy_px=wanted.xyxy_px * np.float32(scale))
                        crops = write_crops(
                            card_out,
                            output_key,
                            upright,
                            wanted,
                            self.labels,
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
                if crops_scale is not None:
                    provenance["crops_scale"] = round(crops_scale, 4)
                if result.photo is not None:
                    provenance["camera_serial"] = result.photo.camera_serial
                target = sidecar_path(card_out, output_key)
                write_sidecar(target, entry, provenance)
                written.append(target)
        except (OutputError, PhotoError) as exc:
            if isinstance(exc, OutputError) and is_disk_full(exc):
                for path in written:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise DiskFullError(str(exc)) from exc
            raise
