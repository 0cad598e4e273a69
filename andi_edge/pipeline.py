"""Running a detector over many photos: work in threads, results in order, with back-pressure.

Two ways to use the cores (``plan_pipeline`` picks one):

- **parallel**: each worker thread reads, decodes and infers one photo, so several photos are in inference at
  once, each on one ONNX Runtime thread. ONNX Runtime runs concurrent calls on one session (weights loaded once),
  and decoding, letterboxing and inference release the GIL, so two workers keep two cores busy whichever stage is
  slower. The most photos/s on CPUs: two inferences on one thread each finish more photos per second than one
  inference on two threads (the measurements: benchmarks/results/).
- **split**: decode workers decode ahead while one inference at a time runs on the remaining cores. For
  backends that run one inference at a time (OpenVINO's request, DeepSparse) and for GPUs.

At most ``max_in_flight`` photos are decoded ahead, which bounds memory.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from andi_edge.config import BackendSettings, PipelineSettings
from andi_edge.detections import ImageResult
from andi_edge.errors import PhotoError
from andi_edge.photos import PhotoSource
from andi_edge.results.labels import LabelSpace
from andi_edge.runtime.backends import BackendOptions
from andi_edge.runtime.detector import Detector, PreparedPhoto

log = logging.getLogger(__name__)


Item = TypeVar("Item")
Prepared = TypeVar("Prepared")


#: ONNX Runtime providers that run concurrent calls on the CPU cores themselves
_CPU_PROVIDERS = frozenset({"", "CPUExecutionProvider"})


@dataclass(frozen=True)
class PipelinePlan:
    """How a run uses the machine: the threads of the pipeline and the backend's own."""

    settings: PipelineSettings
    backend: BackendOptions

    @property
    def parallel(self) -> bool:
        return self.settings.parallel

    def describe(self) -> str:
        s = self.settings
        if s.parallel:
            workers = "1 worker" if s.decode_workers == 1 else f"{s.decode_workers} workers"
            return f"parallel: {workers}, {self.backend.intra_op_threads} inference thread(s) each"
        return f"split: {s.decode_workers} decode worker(s), {self.backend.intra_op_threads} inference thread(s)"


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plan_pipeline(
    settings: PipelineSettings,
    threads: int,
    providers: tuple[str, ...],
    backend: str = "ort",
    cpus: int | None = None,
    precision: str = "f32",
) -> PipelinePlan:
    """The plan for ``settings`` on this machine (``cpus``: the cores this run may use; None = all).

    ``auto`` is parallel when the inference runs on the CPU (ONNX Runtime with no GPU or OpenVINO provider
    asked for, or OpenVINO's CPU device), the run may use two cores or more and the inference threads are not
    set by hand; split otherwise. Parallel asked for on a backend that cannot run concurrent inferences falls
    back to split, with a warning. ``precision`` goes to the backend (``BackendOptions.precision``).
    """
    cores = cpus if cpus is not None else available_cpus()
    concurrent = (backend == "ort" and set(providers) <= _CPU_PROVIDERS) or (
        backend == "openvino" and set(providers) <= {"CPU"}
    )
    if settings.mode == "parallel" and not concurrent:
        log.warning("pipeline mode parallel needs inference on the CPU, by ONNX Runtime or OpenVINO (backend %s, "
                    "providers %s): using split", backend, ", ".join(providers) or "default")  # fmt: skip
    parallel = concurrent and (settings.mode == "parallel" or (settings.mode == "auto" and cores >= 2 and not threads))
    if parallel:
        workers = settings.workers or cores
        resolved = replace(
            settings,
            parallel=True,
            decode_workers=workers,
            max_in_flight=max(settings.max_in_flight, 2 * workers),
        )
        options = BackendOptions(
            intra_op_threads=threads or 1,
            providers=providers,
            allow_spinning=False,
            memory_pattern=False,
            precision=precision,
            concurrent_runs=workers,
        )
        return PipelinePlan(resolved, options)
    split = replace(settings, parallel=False)
    options = replace(backend_options_for(threads, providers, split, cpus=cores), precision=precision)
    return PipelinePlan(split, options)


def left_to_the_machine(settings: PipelineSettings, backend: BackendSettings) -> bool:
    """Whether how many inferences run at once was left to this run (mode auto, no workers or threads set):
    then a memory limit too tight for several at once makes it run one at a time (``one_inference_at_a_time``)
    rather than refuse. Set by hand, the settings are kept, or refused."""
    return settings.mode == "auto" and settings.workers == 0 and backend.threads == 0


def one_inference_at_a_time(
    settings: PipelineSettings, backend: BackendSettings, cpus: int | None = None
) -> tuple[PipelineSettings, BackendSettings]:
    """The settings that run one inference at a time on every core (``cpus``: the cores the run may use; None:
    all): one worker decodes a photo, then infers it, so no input waits ahead. What a model too big for several
    inferences at once asks for; each inference at once keeps buffers of its own, and for such a model one photo
    on every core is about as fast (benchmarks/results/megadetector_cpu.md: 0.87 s a photo against 0.83 for
    two at once, peak 727 MiB)."""
    cores = cpus if cpus is not None else available_cpus()
    return replace(settings, mode="parallel", workers=1), replace(backend, threads=cores)


def one_inference_at_a_time_words(threads: int) -> str:
    """``one_inference_at_a_time``'s settings as a config sets them, for what the daemon and `check` say."""
    return f"pipeline.mode: parallel, pipeline.workers: 1, backend.threads: {threads}"


def backend_options_for(
    threads: int, providers: tuple[str, ...], settings: PipelineSettings, cpus: int | None = None
) -> BackendOptions:
    """Inference threads that leave the decode workers their cores.

    ``threads=0`` (auto) gives inference the cores the decoders do not use, and stops ONNX Runtime's threads
    from spinning while they wait, which would steal those cores (the measurements: benchmarks/results/).
    """
    if threads > 0:
        return BackendOptions(intra_op_threads=threads, providers=providers)
    cores = cpus if cpus is not None else available_cpus()
    return BackendOptions(
        intra_op_threads=max(1, cores - settings.decode_workers),
        providers=providers,
        allow_spinning=settings.decode_workers == 0,
    )


class ItemTimeoutError(TimeoutError):
    """An item's work did not finish within the time allowed (a read stuck on a card that stopped answering)."""


def prefetch_ordered(
    items: Iterable[Item],
    prepare: Callable[[Item], Prepared],
    settings: PipelineSettings,
    timeout_s: float | Callable[[Item], float | None] | None = None,
) -> Iterator[tuple[Item, Future[Prepared]]]:
    """Run ``prepare`` ahead on worker threads; yield each item with its finished (or failed) future, in order.

    ``timeout_s``: an item whose work takes longer (a number, or each item's own: a video clip's decoding has a
    limit of its own) is yielded with an ItemTimeoutError and given up on (its thread, stuck in a read the kernel
    does not interrupt, is left behind: the others go on)."""
    if settings.decode_workers == 0:
        for item in items:
            future: Future[Prepared] = Future()
            try:
                future.set_result(prepare(item))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer through the future
                future.set_exception(exc)
            yield item, future
        return
    pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="andi-decode")
    abandoned = False
    try:
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
            limit = timeout_s(item) if callable(timeout_s) else timeout_s
            try:
                future.exception(timeout=limit)  # wait here, so the consumer's work never overlaps a decode
            except TimeoutError:
                abandoned = True
                given_up: Future[Prepared] = Future()
                given_up.set_exception(ItemTimeoutError(f"no answer within {limit:g} s"))
                future = given_up
            yield item, future
    finally:
        pool.shutdown(wait=not abandoned, cancel_futures=abandoned)


def label_space(detector: Detector) -> LabelSpace:
    """What this detector's boxes are called: categories, and the species its classifier names (native classes
    riding along as classifications never name a box: a COCO "sheep" is not what an owl is)."""
    classifier = detector.classifier
    if classifier is None:
        return LabelSpace(detector.class_names)
    return LabelSpace(detector.class_names, classifier.names, classifier.settings.label_threshold)


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
    """Results in the order of ``sources``. A bad photo yields a failure result; the run goes on.

    ``settings`` as ``plan_pipeline`` resolved them (``parallel``: the workers infer too)."""
    settings = settings or PipelineSettings()

    def prepare(source: PhotoSource) -> PreparedPhoto | ImageResult:
        prepared = detector.prepare(source.path)
        return detector.infer(prepared) if settings.parallel else prepared

    for source, future in prefetch_ordered(sources, prepare, settings):
        exc = future.exception()
        if exc is None:
            done = future.result()
            yield source, done if isinstance(done, ImageResult) else detector.infer(done)
            continue
        failure = photo_failure(exc)
        if failure is None:
            raise exc
        # a failure names the photo once, as the results do: relative to the folder given
        failure = failure.replace(str(source.path), source.relative)
        if isinstance(exc, PhotoError):
            log.warning("%s", failure)
        else:
            log.error("unexpected error while decoding %s", source.relative, exc_info=exc)
        yield source, ImageResult(path=source.path, failure=failure)
