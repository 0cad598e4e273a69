"""Rows of journals up to schema 4, which stored a MegaDetector ``images[]`` entry as a photo's result: read back
into a record once, when such a journal is migrated (or read as it stands by a read-only command).

What the entry lost cannot come back: boxes were normalised to 4 decimals and confidences rounded to 3, so a
migrated box lies within half a unit of the fourth decimal of the photo's size of the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from andi_edge.detections import Detections, ImageResult, PhotoInfo
from andi_edge.record import RecordError, ResultRecord


def record_from_entry(entry: dict[str, Any], path: Path) -> ResultRecord:
    """The record of a schema-4 row's stored entry. RecordError when it cannot be read."""
    try:
        return _record(entry, path)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise RecordError(f"damaged result of an older journal: {exc}") from exc


def _record(entry: dict[str, Any], path: Path) -> ResultRecord:
    failure = entry.get("failure")
    if failure is not None or entry.get("detections") is None:
        return ResultRecord(result=ImageResult(path=path, failure=str(failure or "internal_error: no result")))
    width, height = int(entry["width"]), int(entry["height"])
    exif = entry.get("exif_metadata") or {}
    capture = entry.get("datetime")
    photo = PhotoInfo(
        width_px=width,
        height_px=height,
        capture_time=capture if isinstance(capture, str) else None,
        camera_make=exif.get("Make"),
        camera_model=exif.get("Model"),
        camera_serial=exif.get("SerialNumber"),
    )
    found = entry["detections"]
    xyxy = np.zeros((len(found), 4), np.float32)
    conf = np.zeros(len(found), np.float32)
    cls = np.zeros(len(found), np.int64)
    labels = [d.get("classifications") or [] for d in found]
    k = max((len(c) for c in labels), default=0)
    label_id = np.full((len(found), k), -1, np.int64)
    label_conf = np.zeros((len(found), k), np.float32)
    for i, d in enumerate(found):
        x, y, w, h = (float(v) for v in d["bbox"])
        xyxy[i] = (x * width, y * height, (x + w) * width, (y + h) * height)
        conf[i] = abs(float(d["conf"]))  # a suppressed repeat's negative confidence, should one have been stored
        cls[i] = int(d["category"]) - 1
        for j, (label, label_confidence) in enumerate(labels[i]):
            label_id[i, j] = int(label) - 1
            label_conf[i, j] = float(label_confidence)
    detections = Detections(xyxy, conf, cls, label_id if k else None, label_conf if k else None)
    return ResultRecord(result=ImageResult(path=path, detections=detections, photo=photo))
