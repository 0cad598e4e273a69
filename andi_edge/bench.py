"""Honest numbers: warm-up, N runs, per-stage percentiles, throughput single-stream and pipelined, memory.

Everything measured here goes through the same code as ``detect`` and ``watch``: the same ``Detector``, the same
stages (read, decode, letterbox, inference, postprocess) plus writing a sidecar the way the daemon does.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge import __version__
from andi_edge.accuracy import evaluate
from andi_edge.config import PipelineSettings
from andi_edge.detections import STAGES, Detections
from andi_edge.photos import PhotoSource
from andi_edge.pipeline import available_cpus, detect_many
from andi_edge.runtime.backends import BackendOptions
from andi_edge.runtime.detector import Detector
from andi_edge.sinks.md_batch import image_entry
from andi_edge.sinks.sidecar import write_sidecar

PERCENTILES = (50, 90, 99, 99.9)
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


def latency_stats(values_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values_ms, dtype=np.float64)
    if values.size == 0:
        return {}
    stats = {"n": float(values.size), "mean": float(values.mean()), "min": float(values.min())}
    for p in PERCENTILES:
        stats[f"p{p:g}"] = float(np.percentile(values, p))
    stats["max"] = float(values.max())
    return {k: round(v, 3) for k, v in stats.items()}


def machine_info() -> dict[str, Any]:
    model = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    import onnxruntime

    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": sorted(flags.intersection(SIMD_FLAGS)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "andi_edge": __version__,
    }


def process_age_ms() -> float | None:
    """Milliseconds since this process started (Linux), for an honest 'start to first result'."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def model_info(detector: Detector) -> dict[str, Any]:
    return {
        **detector.provenance(),
        "model_path": str(detector.model_path),
        "model_size_bytes": detector.model_path.stat().st_size,
        "precision": detector.card.precision,
        "threads": detector.backend_options.intra_op_threads,
    }


def bench_model_only(detector: Detector, runs: int, warmup: int) -> dict[str, Any]:
    """Network latency alone, on a fixed random input of the model's shape."""
    card = detector.card
    tensor = np.random.default_rng(0).random((1, 3, card.input_height, card.input_width), dtype=np.float32)
    for _ in range(warmup):
        detector.backend.run(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.backend.run(tensor)
        times.append((time.perf_counter() - start) * 1000)
    return {"inference_ms": latency_stats(times), "throughput_photos_per_s": round(1000 / float(np.mean(times)), 2)}


def bench_photos(
    detector: Detector, photos: Sequence[Path], runs: int, warmup: int, pipeline: PipelineSettings
) -> dict[str, Any]:
    """The real pipeline on real photos: per-stage and end-to-end latency, and throughput three ways."""
    if not photos:
        raise ValueError("no photos to benchmark")
    sources = [PhotoSource(root=p.parent, path=p) for p in photos]
    with tempfile.TemporaryDirectory(prefix="andi-bench-") as tmp:
        out = Path(tmp)
        for source in sources[: max(warmup, 1)]:
            detector.detect(source.path)
        run_stages = [s for s in STAGES if s not in SECOND_STAGE or detector.classifier is not None]
        stages: dict[str, list[float]] = {s: [] for s in (*run_stages, "write")}
        end_to_end: list[float] = []
        crops_per_photo: list[int] = []
        classify_ms: list[float] = []
        crop_decode_ms: list[float] = []
        failures = 0
        start_all = time.perf_counter()
        for _ in range(runs):
            for i, source in enumerate(sources):
                result = detector.detect(source.path)
                if not result.ok:
                    failures += 1
                    continue
                crops_per_photo.append(_classified(result.detections))
                classify_ms.append(result.timings_ms.get("classify", 0.0))
                crop_decode_ms.append(result.timings_ms.get("crop_decode", 0.0))
                start = time.perf_counter()
                write_sidecar(out / f"{i}.json", image_entry(result, source.path.name), {"bench": True})
                write_ms = (time.perf_counter() - start) * 1000
                for stage, ms in result.timings_ms.items():
                    stages[stage].append(ms)
                stages["write"].append(write_ms)
                end_to_end.append(result.total_ms + write_ms)
        single_wall = time.perf_counter() - start_all
    processed = runs * len(sources)
    start = time.perf_counter()
    repeated = [s for _ in range(runs) for s in sources]
    for _ in detect_many(detector, repeated, pipeline):
        pass
    pipelined_wall = time.perf_counter() - start
    decode_only = _decode_only_throughput(detector, sources, runs)
    # The pipeline's limit, as the speed target defines it: the slower of decode alone and inference alone,
    # each given all the cores. Both share the cores in the real pipeline, so the combined bound is lower.
    all_cores = Detector(
        detector.model_path,
        settings=detector.settings,
        backend=detector.loaded.backend,
        backend_options=BackendOptions(intra_op_threads=available_cpus(), providers=detector.backend_options.providers),
    )
    tensors = [p.tensor for p in (_prepare_or_none(detector, s.path) for s in sources[:16]) if p is not None]  # type: ignore[attr-defined]
    inference_only = _inference_only_throughput(all_cores, tensors, runs)
    if pipeline.parallel:
        # the parallel pipeline's inference: its workers' concurrent calls, one thread each
        concurrent = _inference_only_throughput(detector, tensors, runs, pipeline.decode_workers)
        inference_only = max(inference_only, concurrent)
    limit = min(decode_only, inference_only)
    shared_bound = 1.0 / (1.0 / decode_only + 1.0 / inference_only)
    pipelined = processed / pipelined_wall
    report: dict[str, Any] = {}
    if detector.classifier is not None:
        report["classifier"] = _classifier_cost(detector, classify_ms, crop_decode_ms, crops_per_photo)
    return report | {
        "photos": len(sources),
        "runs": runs,
        "failures": failures // max(runs, 1),
        "stage_ms": {s: latency_stats(v) for s, v in stages.items()},
        "end_to_end_ms": latency_stats(end_to_end),
        "throughput_photos_per_s": {
            "single_stream": round(processed / single_wall, 2),
            "pipelined": round(pipelined, 2),
            "decode_only_all_cores": round(decode_only, 2),
            "inference_only": round(inference_only, 2),
            "pipeline_limit": round(limit, 2),
            "pipelined_vs_limit": round(pipelined / limit, 3),
            "shared_core_bound": round(shared_bound, 2),
        },
        "pipeline": asdict(pipeline),
    }


#: the stages a classifier adds (andi_edge.detections.STAGES)
SECOND_STAGE = frozenset({"crop_decode", "classify"})


def _classified(detections: Detections | None) -> int:
    if detections is None or detections.classification_id is None or not len(detections):
        return 0
    return int(np.sum(detections.classification_id[:, 0] >= 0))


def _classifier_cost(
    detector: Detector, classify_ms: list[float], crop_decode_ms: list[float], crops: list[int]
) -> dict[str, Any]:
    """What the second stage costs: per photo (over all photos, and over those with boxes to classify), per crop,
    and how often and how long the photo had to be decoded again, larger, for its crops."""
    assert detector.classifier is not None
    classify = np.asarray(classify_ms, dtype=np.float64)
    decode = np.asarray(crop_decode_ms, dtype=np.float64)
    total = classify + decode
    counts = np.asarray(crops, dtype=np.int64)
    with_crops = counts > 0
    card = detector.classifier.card
    return {
        "model_file": detector.classifier.model_path.name,
        "architecture": card.architecture,
        "input_size": [card.input_height_px, card.input_width_px],
        "photos_with_crops": int(with_crops.sum()),
        "crops_per_photo_with_crops": round(float(counts[with_crops].mean()), 2) if with_crops.any() else 0.0,
        "ms_per_photo_all": latency_stats(total.tolist()),
        "ms_per_photo_with_crops": latency_stats(total[with_crops].tolist()),
        "ms_per_crop": round(float(total.sum() / counts.sum()), 3) if counts.sum() else None,
        "classify_ms_per_crop": round(float(classify.sum() / counts.sum()), 3) if counts.sum() else None,
        "photos_decoded_again": int((decode > 0).sum()),
        "crop_decode_ms": latency_stats(decode[decode > 0].tolist()),
    }


def _decode_only_throughput(detector: Detector, sources: Sequence[PhotoSource], runs: int) -> float:
    workers = available_cpus()
    paths = [s.path for _ in range(runs) for s in sources]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(_prepare_or_none, [detector] * len(paths), paths):
            pass
    return len(paths) / (time.perf_counter() - start)


def _prepare_or_none(detector: Detector, path: Path) -> object:
    try:
        return detector.prepare(path)
    except Exception:  # noqa: BLE001 - a bad photo costs what it costs; the throughput counts it
        return None


def _inference_only_throughput(
    detector: Detector, tensors: Sequence[npt.NDArray[np.float32]], runs: int, concurrent: int = 1
) -> float:
    """Inferences per second on ready tensors, ``concurrent`` calls at a time."""
    work = [t for _ in range(runs) for t in tensors]
    start = time.perf_counter()
    if concurrent <= 1:
        for tensor in work:
            detector.backend.run(tensor)
    else:
        with ThreadPoolExecutor(concurrent) as pool:
            for _ in pool.map(detector.backend.run, work):
                pass
    return len(work) / (time.perf_counter() - start)


def detections_on(detector: Detector, photos: Sequence[Path]) -> list[Detections]:
    results = []
    for path in photos:
        result = detector.detect(path)
        results.append(result.detections if result.detections is not None else Detections.empty())
    return results


def accuracy_delta(reference: Detector, candidate: Detector, photos: Sequence[Path]) -> dict[str, Any]:
    """The candidate scored against the reference's own boxes (at the reference's typical threshold) as truth."""
    typical = reference.card.thresholds.typical
    truth = [d.above(typical) for d in detections_on(reference, photos)]
    predicted = detections_on(candidate, photos)
    acc = evaluate(truth, predicted, iou_threshold=0.5, recall_conf_threshold=candidate.card.thresholds.typical)
    return {
        "reference": reference.model_path.name,
        "candidate": candidate.model_path.name,
        "reference_boxes": acc.reference_boxes,
        "truth_threshold": typical,
        "map50": round(acc.map50, 4),
        "recall_at_typical": round(acc.recall, 4),
        "small_object_recall": None if acc.small_recall is None else round(acc.small_recall, 4),
    }
