"""Running a detector over many photos: decoding in worker threads, inference in order, with back-pressure.

JPEG decoding and letterboxing (Pillow, OpenCV) release the GIL, so a decode thread works while ONNX Runtime
runs the previous photo. At most ``max_in_flight`` photos are decoded ahead, which bounds memory.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from andi_edge.detections import ImageResult
from andi_edge.errors import PhotoError
from andi_edge.photos import PhotoSource
from andi_edge.runtime.backends import BackendOptions
from andi_edge.runtime.detector import Detector, PreparedPhoto

log = logging.getLogger(__name__)

DEFAULT_DECODE_WORKERS = 1
DEFAULT_MAX_IN_FLIGHT = 4

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")


@dataclass(frozen=True)
class PipelineSettings:
    decode_workers: int = DEFAULT_DECODE_WORKERS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        if self.decode_workers < 0:
            raise ValueError("decode_workers must be >= 0 (0 decodes in the calling thread)")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def backend_options_for(
    threads: int, providers: tuple[str, ...], settings: PipelineSettings, cpus: int | None = None
) -> BackendOptions:
    """Inference threads that leave the decode workers their cores.

    ``threads=0`` (auto) gives inference the cores the decoders do not use, and stops ONNX Runtime's threads
    from spinning while they wait, which would steal those cores. Measured on 2 cores with YOLOv5n at 320 px
    on 120 real photos: ONNX Runtime's defaults 44 photos/s; 1 inference thread, no spinning, 1 decode
    worker 72 photos/s (see benchmarks/README.md).
    """
    if threads > 0:
        return BackendOptions(intra_op_threads=threads, providers=providers)
    cores = cpus if cpus is not None else available_cpus()
    return BackendOptions(
        intra_op_threads=max(1, cores - settings.decode_workers),
        providers=providers,
        allow_spinning=settings.decode_workers == 0,
    )


def prefetch_ordered(
    items: Iterable[Item], prepare: Callable[[Item], Prepared], settings: PipelineSettings
) -> Iterator[tuple[Item, Future[Prepared]]]:
    """Run ``prepare`` ahead on worker threads; yield each item with its finished (or failed) future, in order."""
    if settings.decode_workers == 0:
        for item in items:
            future: Future[Prepared] = Future()
            try:
                future.set_result(prepare(item))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer through the future
                future.set_exception(exc)
            yield item, future
        return
    with ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="andi-decode") as pool:
        pending: deque[tuple[Item, Future[Prepared]]] = deque()
        remaining = iter(items)
        for item in remaining:
            pending.append((item, pool.submit(prepare, item)))
            if len(pending) >= settings.max_in_flight:
                break
        while pending:
            item, future = pending.popleft()
            upcoming = next(remaining, None)
            if upcoming is not None:
                pending.append((upcoming, pool.submit(prepare, upcoming)))
            future.exception()  # wait here, so the consumer's work never overlaps an unfinished decode
            yield item, future


def photo_failure(exc: BaseException) -> str | None:
    """The failure string for an exception raised while reading/decoding one photo; None if it is not one."""
    if isinstance(exc, PhotoError):
        return f"{exc.reason}: {exc.message}"
    if isinstance(exc, (MemoryError, ValueError, RuntimeError)):
        # A photo that breaks a decoder in an unforeseen way must not stop the run.
        return f"internal_error: {type(exc).__name__}: {exc}"
    return None


def detect_many(
    detector: Detector, sources: Iterable[PhotoSource], settings: PipelineSettings | None = None
) -> Iterator[tuple[PhotoSource, ImageResult]]:
    """Results in the order of ``sources``. A bad photo yields a failure result; the run goes on."""

    def prepare(source: PhotoSource) -> PreparedPhoto:
        return detector.prepare(source.path)

    for source, future in prefetch_ordered(sources, prepare, settings or PipelineSettings()):
        exc = future.exception()
        if exc is None:
            yield source, detector.infer(future.result())
            continue
        failure = photo_failure(exc)
        if failure is None:
            raise exc
        if isinstance(exc, PhotoError):
            log.warning("%s", exc.message)
        else:
            log.error("unexpected error while decoding %s", source.path, exc_info=exc)
        yield source, ImageResult(path=source.path, failure=failure)
