"""MegaDetector batch-output format 1.6: what Timelapse, AddaxAI and MegaDetector's own tools read.

- ``detection_categories`` ids start at "1" ("0" means empty to Timelapse): class index i -> str(i + 1)
- ``bbox`` is ``[x_min, y_min, width, height]`` normalised to the photo, 4 decimals; ``conf`` 3 decimals
- an empty photo has ``"detections": []``; a failed one has ``"failure"`` and no detections
- files are relative to the root folder, with forward slashes
- a detection's finer labels (a classifier's species, or a COCO model's native class under camera-trap categories)
  are ``classifications: [[id, conf], ...]``, best first, with the names in ``classification_categories``
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge import __version__
from andi_edge.boxes import clip_xyxy_px, xyxy_px_to_xywh_norm
from andi_edge.detections import Detections, ImageResult
from andi_edge.results.review import PhotoAnnotation
from andi_edge.sinks.atomic import json_text, write_text_atomic

FORMAT_VERSION = "1.6"
CONF_DECIMALS = 3
BBOX_DECIMALS = 4


def category_id(class_index: int) -> str:
    return str(class_index + 1)


def detection_categories(class_names: Iterable[str]) -> dict[str, str]:
    return {category_id(i): name for i, name in enumerate(class_names)}


def _detection_json(
    detections: Detections, i: int, box: npt.NDArray[np.float32] | list[float], frame_number: int | None = None
) -> dict[str, Any]:
    detection: dict[str, Any] = {
        "category": category_id(int(detections.class_id[i])),
        "conf": round(float(detections.confidence[i]), CONF_DECIMALS),
        "bbox": [round(float(v), BBOX_DECIMALS) for v in box],
    }
    if frame_number is not None:
        detection["frame_number"] = frame_number
    classifications = detections.classifications(i)
    if classifications:
        detection["classifications"] = [
            [category_id(label), round(label_conf, CONF_DECIMALS)] for label, label_conf in classifications
        ]
    return detection


def _normalised(detections: Detections, width_px: int, height_px: int) -> npt.NDArray[np.float32]:
    # corners clipped to the photo first: clipping x and w apart would leave a box that starts left of the photo
    # too wide by the part that was outside
    inside = clip_xyxy_px(detections.xyxy_px, width_px, height_px)
    return xyxy_px_to_xywh_norm(inside, width_px, height_px)


def clip_entry(result: ImageResult, relative_file: str, all_frames: bool = False) -> dict[str, Any]:
    """A video clip's ``images[]`` entry, in MegaDetector's video convention (what Timelapse reads): the clip's
    ``frame_rate``, the ``frames_processed`` (the frame numbers analysed) and a ``frame_number`` on each detection;
    by default the most confident detection of each category over the clip (as MegaDetector's
    ``frame_results_to_video_results`` keeps), with ``all_frames`` every analysed frame's boxes. A failed clip has
    ``frame_rate`` -1, no frames and null detections, as MegaDetector writes one."""
    entry: dict[str, Any] = {"file": relative_file}
    clip = result.clip
    if result.failure is not None or clip is None:
        entry.update(failure=result.failure, frame_rate=-1.0, frames_processed=[], detections=None)
        return entry
    entry["frame_rate"] = round(clip.frame_rate, 3)
    entry["frames_processed"] = sorted(f.frame_number for f in result.frames)
    found: list[tuple[float, int, dict[str, Any]]] = []
    for frame in result.frames:
        detections = frame.detections
        boxes = _normalised(detections, clip.width_px, clip.height_px)
        for i in range(len(detections)):
            found.append(
                (
                    float(detections.confidence[i]),
                    int(detections.class_id[i]),
                    _detection_json(detections, i, boxes[i], frame.frame_number),
                )
            )
    if not all_frames:
        best: dict[int, tuple[float, int, dict[str, Any]]] = {}
        for item in found:
            if item[1] not in best or item[0] > best[item[1]][0]:
                best[item[1]] = item
        found = list(best.values())
    found.sort(key=lambda item: (-item[0], item[2]["frame_number"]))
    entry["detections"] = [item[2] for item in found]
    entry["width"] = clip.width_px
    entry["height"] = clip.height_px
    if clip.partial is not None:
        entry["partial"] = clip.partial  # an extra field: readers ignore it
    return entry


def image_entry(
    result: ImageResult, relative_file: str, include_photo_info: bool = True, all_frames: bool = False
) -> dict[str, Any]:
    """One ``images[]`` entry (a clip's in the video convention: ``clip_entry``, with ``all_frames``)."""
    if result.clip is not None:
        return clip_entry(result, relative_file, all_frames)
    entry: dict[str, Any] = {"file": relative_file}
    if result.failure is not None or result.detections is None:
        entry["failure"] = result.failure
        return entry
    photo = result.photo
    detections = result.detections.sorted_by_confidence()
    if photo is not None and len(detections):
        bboxes = _normalised(detections, photo.width_px, photo.height_px)
    else:
        bboxes = detections.xyxy_px
    entry["detections"] = [_detection_json(detections, i, bboxes[i]) for i in range(len(detections))]
    if include_photo_info and photo is not None:
        entry["width"] = photo.width_px
        entry["height"] = photo.height_px
        if photo.capture_time is not None:
            entry["datetime"] = photo.capture_time
        exif = {
            k: v
            for k, v in (
                ("Make", photo.camera_make),
                ("Model", photo.camera_model),
                ("SerialNumber", photo.camera_serial),
            )
            if v is not None
        }
        if exif:
            entry["exif_metadata"] = exif
    return entry


def batch_document(
    entries: list[dict[str, Any]],
    class_names: Iterable[str],
    provenance: dict[str, Any],
    typical_threshold: float,
    conservative_threshold: float,
    classification_names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The whole file. ``provenance`` (model, sha256, backend, thresholds) goes under ``info``; a classifier in it
    (``provenance["classifier"]``) is named in ``info.classifier``."""
    completed = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    document: dict[str, Any] = {
        "info": {
            "format_version": FORMAT_VERSION,
            "detector": provenance.get("model_file"),
            "detection_completion_time": completed,
            "detector_metadata": {
                "typical_detection_threshold": typical_threshold,
                "conservative_detection_threshold": conservative_threshold,
                "image_size": max(provenance.get("input_size", [0])),
            },
            "andi_edge": {"version": __version__, **provenance},
        },
        "detection_categories": detection_categories(class_names),
    }
    classifier = provenance.get("classifier")
    if classifier:
        document["info"]["classifier"] = classifier.get("model_file")
        document["info"]["classification_completion_time"] = completed
    if classification_names is not None:
        document["classification_categories"] = detection_categories(classification_names)
    document["images"] = entries
    return document


def batch_text(document: dict[str, Any]) -> str:
    """The batch file's text: indented like MegaDetector's own files, with each image on one line. One line per
    image lets the C encoder do the work: a card of 100,000 photos is rendered in seconds, not in a minute."""
    head = json_text({k: v for k, v in document.items() if k != "images"}, indent=1)
    images = document.get("images", [])
    if not images:
        return head[:-2] + ',\n "images": []\n}'
    lines = ",\n  ".join(json_text(entry, indent=None) for entry in images)
    return head[:-2] + ',\n "images": [\n  ' + lines + "\n ]\n}"


def write_batch(path: Path, document: dict[str, Any]) -> None:
    """The batch file, atomically (OutputError when it cannot be written)."""
    write_text_atomic(path, batch_text(document))


def annotate_entry(entry: dict[str, Any], annotation: PhotoAnnotation) -> dict[str, Any]:
    """The entry plus its event (``event``) and repeat flags (``repeat`` on a detection): extra fields, which
    MegaDetector readers ignore. A suppressed repeat gets a negative ``conf``, MegaDetector's own convention for
    repeat detections: every viewer hides it at any threshold, and ``abs(conf)`` restores it."""
    out = {k: v for k, v in entry.items() if k != "event"}
    event = annotation.event_json()
    if event is not None:
        out["event"] = event
    detections = out.get("detections")
    if detections and "frames_processed" not in out:  # a clip's boxes are its frames': no repeat patterns yet
        annotated = []
        for i, detection in enumerate(detections):
            d = {k: v for k, v in detection.items() if k != "repeat"}
            d["conf"] = abs(d["conf"])
            pattern = annotation.repeats.get(i)
            if pattern is not None:
                d["repeat"] = {"pattern": pattern.pattern_id, "photos": len(pattern.photos)}
                if annotation.suppress:
                    d["conf"] = -d["conf"]
            annotated.append(d)
        out["detections"] = annotated
    return out
