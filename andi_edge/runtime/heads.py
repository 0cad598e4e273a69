"""Decode raw detector outputs into candidate boxes in model-input pixels (before NMS).

- ``yolov5`` (classic YOLOv5, MegaDetector v5): ``(1, N, 5 + C)`` rows of ``cx, cy, w, h, objectness,
  class probabilities``. Score = objectness x best class probability, as YOLOv5's own NMS does.
- ``ultralytics`` (YOLOv5u, YOLOv8, YOLO11, MegaDetector v6): ``(1, 4 + C, N)`` columns of
  ``cx, cy, w, h, class probabilities``. Score = best class probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from andi_edge.boxes import cxcywh_to_xyxy
from andi_edge.errors import ModelError
from andi_edge.runtime.model_meta import HeadType


@dataclass(frozen=True)
class Candidates:
    """Boxes above the confidence threshold, in model-input pixels, not yet suppressed."""

    xyxy_input_px: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.scores)

    def top(self, k: int) -> Candidates:
        if len(self) <= k:
            return self
        idx = np.argpartition(-self.scores, k - 1)[:k]
        return Candidates(self.xyxy_input_px[idx], self.scores[idx], self.class_ids[idx])


def decode_head(output: npt.NDArray[np.float32], head: HeadType, num_classes: int, conf_threshold: float) -> Candidates:
    """Candidates from one image's raw output (batch dimension of 1 expected)."""
    if output.ndim != 3 or output.shape[0] != 1:
        raise ModelError(f"expected a (1, ., .) detector output, got {output.shape}")
    if head == "yolov5":
        return _decode_yolov5(output[0], num_classes, conf_threshold)
    if head == "ultralytics":
        return _decode_ultralytics(output[0], num_classes, conf_threshold)
    raise ModelError(f"unknown head type {head!r}")


def _decode_yolov5(rows: npt.NDArray[np.float32], num_classes: int, conf_threshold: float) -> Candidates:
    if rows.shape[1] != 5 + num_classes:
        raise ModelError(f"yolov5 head: rows of {rows.shape[1]} values, expected {5 + num_classes}")
    objectness = rows[:, 4]
    rows = rows[objectness > conf_threshold]
    if num_classes == 1:
        class_ids = np.zeros(len(rows), dtype=np.int64)
        scores = rows[:, 4] * rows[:, 5]
    else:
        class_probs = rows[:, 5:]
        class_ids = class_probs.argmax(axis=1).astype(np.int64)
        scores = rows[:, 4] * class_probs[np.arange(len(rows)), class_ids]
    keep = scores > conf_threshold
    return Candidates(cxcywh_to_xyxy(rows[keep, :4]), scores[keep].astype(np.float32), class_ids[keep])


def _decode_ultralytics(columns: npt.NDArray[np.float32], num_classes: int, conf_threshold: float) -> Candidates:
    if columns.shape[0] != 4 + num_classes:
        raise ModelError(f"ultralytics head: {columns.shape[0]} channels, expected {4 + num_classes}")
    class_probs = columns[4:]
    class_ids = class_probs.argmax(axis=0).astype(np.int64)
    scores = class_probs[class_ids, np.arange(columns.shape[1])]
    keep = scores > conf_threshold
    return Candidates(cxcywh_to_xyxy(columns[:4, keep].T), scores[keep].astype(np.float32), class_ids[keep])
