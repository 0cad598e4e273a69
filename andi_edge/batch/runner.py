"""``andi-edge batch``: find the photos, skip what earlier runs finished, run an engine, merge one results file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.assemble import assemble, config_to_data, plan_for, with_absolute_paths
from andi_edge.batch.shards import ShardStore, file_identity, load_previous_results, run_identity
from andi_edge.batch.work import WorkerSpec
from andi_edge.errors import UsageError
from andi_edge.photos import find_media, is_video_name
from andi_edge.pipeline import available_cpus
from andi_edge.settings import DetectionConfig
from andi_edge.sinks.atomic import prove_writable
from andi_edge.sinks.md_batch import batch_document, detection_categories, write_batch

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
DEFAULT_CHUNK_SIZE = 16


@dataclass(frozen=True)
class BatchRequest:
    roots: list[Path]
    output: Path
    #: the detector each worker runs, as `detect` would (``assemble``)
    detection: DetectionConfig
    engine: str = "local"
    workers: int = 0  # 0 = one per two cores (a decode thread and an inference thread each)
    ray_address: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    previous_results: Path | None = None
    sidecar_dir: Path | None = None


@dataclass(frozen=True)
class BatchSummary:
    photos: int
    reused_from_shards: int
    reused_from_previous: int
    processed: int
    failed: int
    seconds: float
    workers: int
    engine: str


def default_workers(cpus: int) -> int:
    return max(1, cpus // 2)


def run_batch(request: BatchRequest, progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Run (or resume) a batch. ``progress(done, total)`` is called as chunks finish."""
    if request.engine not in ENGINES:
        raise UsageError(f"unknown engine {request.engine!r}", hint=f"engines: {', '.join(ENGINES)}")
    if request.chunk_size < 1 or request.workers < 0:
        raise UsageError("--chunk-size must be >= 1 and --workers >= 0")
    if request.output.is_dir():
        raise UsageError(f"-o {request.output} is a folder; give a file name such as {request.output / 'results.json'}")
    prove_writable(request.output.parent, "results", "-o")
    start = time.perf_counter()
    found = find_media(request.roots, request.detection.media)
    root, sources = found.root, found.everything
    detection = with_absolute_paths(request.detection)  # workers may run elsewhere (Ray)
    # validates the models (and the backend) before any worker starts
    probe = assemble(detection, plan_for(detection, cpus=1)).detector
    provenance = probe.provenance()
    categories = detection_categories(probe.class_names)
    identity = run_identity(
        request.roots, {**provenance, "media": request.detection.media, "video": repr(request.detection.video)}
    )
    # each file's identity when the run starts: a shard's entry is reused only for the same file
    store = ShardStore(request.output, identity, {s.relative: file_identity(s.path) for s in sources})
    done = store.load()
    previous: dict[str, dict[str, Any]] = {}
    if request.previous_results is not None:
        previous, previous_detector = load_previous_results(request.previous_results, categories)
        if previous_detector and previous_detector != provenance["model_file"]:
            log.warning(
                "--previous-results came from %s, not %s: its entries are reused as they are",
                previous_detector,
                provenance["model_file"],
            )
    wanted = {s.relative for s in sources}
    reused_shards = len(wanted & done.keys())
    reused_previous = len((wanted - done.keys()) & previous.keys())
    todo = [s for s in sources if s.relative not in done and s.relative not in previous]
    cpus = available_cpus()
    workers = request.workers or default_workers(cpus)
    spec = WorkerSpec(
        detection=config_to_data(detection),
        sidecar_dir=str(request.sidecar_dir.resolve()) if request.sidecar_dir else None,
        cpus=max(1, cpus // workers),
    )
    todo_photos = [s for s in todo if not is_video_name(s.path.name)]
    # photos in chunks; each clip a chunk of its own (its frames are the work), so the workers share them out
    chunks = [todo_photos[i : i + request.chunk_size] for i in range(0, len(todo_photos), request.chunk_size)]
    chunks += [[s] for s in todo if is_video_name(s.path.name)]
    finished = reused_shards + reused_previous
    if progress:
        progress(finished, len(sources))

    def on_chunk(entries: list[tuple[str, dict[str, Any]]]) -> None:
        nonlocal finished
        store.save(entries)
        done.update(entries)
        finished += len(entries)
        if progress:
            progress(finished, len(sources))

    if chunks:
        if request.engine == "local":
            from andi_edge.batch.local import run_local

            run_local(spec, chunks, workers, on_chunk)
        else:
            from andi_edge.batch.ray_engine import run_ray

            run_ray(spec, chunks, workers, request.ray_address, cpus, on_chunk)
    entries = []
    for source in sources:
        entry = done.get(source.relative) or previous.get(source.relative)
        if entry is None:
            raise UsageError(f"internal: no result for {source.relative}")
        entries.append(entry)
    document = batch_document(
        entries,
        probe.class_names,
        {**provenance, "image_root": str(root), "engine": request.engine, "workers": workers},
        typical_threshold=probe.card.thresholds.typical,
        conservative_threshold=probe.card.thresholds.conservative,
        classification_names=probe.classification_names,
    )
    write_batch(request.output, document)
    store.remove()
    failed = sum(1 for e in entries if e.get("failure"))
    return BatchSummary(
        photos=len(sources),
        reused_from_shards=reused_shards,
        reused_from_previous=reused_previous,
        processed=len(todo),
        failed=failed,
        seconds=time.perf_counter() - start,
        workers=workers,
        engine=request.engine,
    )
