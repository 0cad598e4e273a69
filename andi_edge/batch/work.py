"""The unit of work both engines run: a chunk of photos through the same runtime code as ``detect``.

A worker builds its ``Detector`` once from a ``WorkerSpec`` (plain data, so it crosses process and machine
boundaries) and turns each chunk into MegaDetector image entries. Results are therefore the same whichever
engine or worker count runs them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from andi_edge.assemble import assemble, config_from_data, plan_for
from andi_edge.detections import ImageResult
from andi_edge.photos import PhotoSource, is_video_name
from andi_edge.pipeline import PipelinePlan, detect_many
from andi_edge.runtime.clips import detect_clip, disguised_clip
from andi_edge.runtime.detector import Detector
from andi_edge.sinks.md_batch import image_entry
from andi_edge.sinks.sidecar import sidecar_path, write_sidecar


@dataclass(frozen=True)
class WorkerSpec:
    #: the detector's settings, as ``assemble.config_to_data`` writes them (model paths absolute)
    detection: dict[str, Any]
    sidecar_dir: str | None = None
    #: cores this worker may use (auto thread policy); None = all the machine's
    cpus: int | None = None

    def plan(self) -> PipelinePlan:
        return plan_for(config_from_data(self.detection), self.cpus)

    def detector(self) -> Detector:
        config = config_from_data(self.detection)
        return assemble(config, plan_for(config, self.cpus)).detector

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_chunk(detector: Detector, spec: WorkerSpec, sources: list[PhotoSource]) -> list[tuple[str, dict[str, Any]]]:
    """(relative file, MegaDetector entry) for each photo or video clip; a bad one is a failure entry, never an
    exception. A clip (by name, or a file named like a photo whose content is a clip) is sampled and detected as
    ``detect`` does, its entry in MegaDetector's video convention."""
    config = config_from_data(spec.detection)
    clips = [s for s in sources if is_video_name(s.path.name)]
    photos = [s for s in sources if not is_video_name(s.path.name)]
    results: list[tuple[PhotoSource, ImageResult]] = []
    for source, result in detect_many(detector, photos, spec.plan().settings):
        if disguised_clip(result.failure, source.path, config.media):
            result = detect_clip(detector, source.path, config.video)  # noqa: PLW2901 - the same file, as a clip
        results.append((source, result))
    results += [(source, detect_clip(detector, source.path, config.video)) for source in clips]
    out = []
    provenance = None
    for source, result in results:
        entry = image_entry(result, source.relative, all_frames=config.video.all_frames)
        if spec.sidecar_dir is not None:
            provenance = provenance or detector.provenance()
            timings = {k: round(v, 3) for k, v in result.timings_ms.items()}
            sidecar_entry = image_entry(result, source.relative, all_frames=True)  # a clip's: every frame
            write_sidecar(
                sidecar_path(Path(spec.sidecar_dir), source.relative),
                sidecar_entry,
                {**provenance, "timings_ms": timings},
            )
        out.append((source.relative, entry))
    return out


# -- local engine worker process state ----------------------------------------------------------------------

#: this worker process's session, built once by ``init_local_worker``
_WORKER: dict[str, tuple[Detector, WorkerSpec]] = {}


def init_local_worker(spec_dict: dict[str, Any]) -> None:
    """Worker-process start-up: one inference session per worker, built once."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    spec = WorkerSpec(**spec_dict)
    _WORKER["session"] = (spec.detector(), spec)


def run_local_chunk(sources: list[PhotoSource]) -> list[tuple[str, dict[str, Any]]]:
    detector, spec = _WORKER["session"]
    return run_chunk(detector, spec, sources)
