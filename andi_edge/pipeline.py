"""Running a detector over many photos: decoding in worker threads, inference in order, with back-pressure.

JPEG decoding and letterboxing (Pillow, OpenCV) release the GIL, so a decode thread works while ONNX Runtime
runs the previous photo. At most ``max_in_flight`` photos are decoded ahead, which bounds memory.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from andi_edge.detections import ImageResult
from andi_edge.errors import PhotoError
from andi_edge.photos import PhotoSource
from andi_edge.runtime.detector import Detector, PreparedPhoto

log = logging.getLogger(__name__)

DEFAULT_DECODE_WORKERS = 1
DEFAULT_MAX_IN_FLIGHT = 4


@dataclass(frozen=True)
class PipelineSettings:
    decode_workers: int = DEFAULT_DECODE_WORKERS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        if self.decode_workers < 0:
            raise ValueError("decode_workers must be >= 0 (0 decodes in the calling thread)")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")


def _prepare(detector: Detector, source: PhotoSource) -> PreparedPhoto:
    return detector.prepare(source.path)


def _finish(detector: Detector, source: PhotoSource, future: Future[PreparedPhoto]) -> ImageResult:
    try:
        prepared = future.result()
    except PhotoError as exc:
        log.warning("%s", exc.message)
        return ImageResult(path=source.path, failure=f"{exc.reason}: {exc.message}")
    except (MemoryError, ValueError, RuntimeError) as exc:
        # A photo that breaks a decoder in an unforeseen way must not stop the run; keep the evidence in the log.
        log.exception("unexpected error while decoding %s", source.path)
        return ImageResult(path=source.path, failure=f"internal_error: {type(exc).__name__}: {exc}")
    return detector.infer(prepared)


def detect_many(
    detector: Detector, sources: Iterable[PhotoSource], settings: PipelineSettings | None = None
) -> Iterator[tuple[PhotoSource, ImageResult]]:
    """Results in the order of ``sources``. A bad photo yields a failure result; the run goes on."""
    settings = settings or PipelineSettings()
    if settings.decode_workers == 0:
        for source in sources:
            future: Future[PreparedPhoto] = Future()
            try:
                future.set_result(_prepare(detector, source))
            except Exception as exc:  # noqa: BLE001 - handed to _finish, which sorts photo faults from others
                future.set_exception(exc)
            yield source, _finish(detector, source, future)
        return
    with ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="andi-decode") as pool:
        pending: deque[tuple[PhotoSource, Future[PreparedPhoto]]] = deque()
        remaining = iter(sources)
        for source in remaining:
            pending.append((source, pool.submit(_prepare, detector, source)))
            if len(pending) >= settings.max_in_flight:
                break
        while pending:
            source, future = pending.popleft()
            next_source = next(remaining, None)
            if next_source is not None:
                pending.append((next_source, pool.submit(_prepare, detector, next_source)))
            yield source, _finish(detector, source, future)
