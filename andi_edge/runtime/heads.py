"""Decode raw detector outputs into candidate boxes in model-input pixels (before NMS).

- ``yolov5`` (classic YOLOv5 incl. P6, MegaDetector v5): ``(1, N, 5 + C)`` rows of ``cx, cy, w, h, objectness,
  class probabilities``. Score = objectness x class probability, as YOLOv5's own NMS does.
- ``ultralytics`` (YOLOv5u, YOLOv8, YOLOv9, YOLO11, MegaDetector v6): ``(1, 4 + C, N)`` columns of
  ``cx, cy, w, h, class probabilities``. Score = class probability.
- ``end2end`` (YOLOv10, YOLO26): ``(1, K, 6)`` rows of ``x1, y1, x2, y2, score, class``, already one box per object.
- ``rtdetr``: ``(1, K, 6)`` rows of ``cx, cy, w, h`` normalised to the input, ``score, class``; ``rtdetr_scores``
  (older exporters): ``(1, K, 4 + C)`` rows of normalised ``cx, cy, w, h`` and class scores.

With a ``CategoryMap`` the scores are those of the output categories: where the head gives every class's
probability, the member classes' probabilities are combined before anything is thresholded; where it gives only
each box's best class (``end2end``, ``rtdetr``), that class is relabelled and its box may then repeat under one
category (``Candidates.one_per_object`` is then False, so NMS runs). The native class that contributed most rides
along in ``native_class_ids`` / ``native_scores``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from andi_edge.boxes import cxcywh_to_xyxy
from andi_edge.errors import ModelError
from andi_edge.runtime.categories import CategoryMap
from andi_edge.runtime.model_meta import HeadType


@dataclass(frozen=True)
class Candidates:
    """Boxes above the confidence threshold, in model-input pixels, not yet suppressed."""

    xyxy_input_px: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    #: with a category map: per box, the native class that scored highest inside its category, and its score
    native_class_ids: npt.NDArray[np.int64] | None = None
    native_scores: npt.NDArray[np.float32] | None = None
    #: True when the head already gives one box per object (no NMS needed)
    one_per_object: bool = False

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Candidates:
        return Candidates(
            self.xyxy_input_px[index],
            self.scores[index],
            self.class_ids[index],
            None if self.native_class_ids is None else self.native_class_ids[index],
            None if self.native_scores is None else self.native_scores[index],
            self.one_per_object,
        )

    def top(self, k: int) -> Candidates:
        if len(self) <= k:
            return self
        return self.select(np.argpartition(-self.scores, k - 1)[:k])


def decode_head(
    output: npt.NDArray[np.float32],
    head: HeadType,
    num_classes: int,
    conf_threshold: float,
    categories: CategoryMap | None = None,
    input_hw: tuple[int, int] | None = None,
) -> Candidates:
    """Candidates from one image's raw output (batch dimension of 1 expected).

    ``input_hw`` (the network input's height and width) is needed by the RT-DETR heads, whose boxes are normalised.
    """
    if output.ndim != 3 or output.shape[0] != 1:
        raise ModelError(f"expected a (1, ., .) detector output, got {output.shape}")
    if head == "yolov5":
        return _decode_yolov5(output[0], num_classes, conf_threshold, categories)
    if head == "ultralytics":
        return _decode_ultralytics(output[0], num_classes, conf_threshold, categories)
    if head in ("end2end", "rtdetr", "rtdetr_scores"):
        return _decode_end_to_end(output[0], head, num_classes, conf_threshold, categories, input_hw)
    raise ModelError(f"unknown head type {head!r}")


def _scored(
    boxes_cxcywh: npt.NDArray[np.float32],
    class_probs: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32] | None,
    conf_threshold: float,
    categories: CategoryMap | None,
) -> Candidates:
    """Rows of per-class probabilities (times ``weight``, YOLOv5's objectness, when given) -> candidates."""
    if categories is None:
        class_ids = class_probs.argmax(axis=1).astype(np.int64)
        scores = class_probs[np.arange(len(class_probs)), class_ids]
        if weight is not None:
            scores = scores * weight
        keep = scores > conf_threshold
        return Candidates(cxcywh_to_xyxy(boxes_cxcywh[keep]), scores[keep].astype(np.float32), class_ids[keep])
    # The plain sum bounds every combination from above: rows it rules out need no further work.
    bound = categories.upper_bound(class_probs).max(axis=1)
    if weight is not None:
        bound = bound * weight
    rows = np.flatnonzero(bound > conf_threshold)
    probs = class_probs[rows]
    combined = categories.combine(probs)
    class_ids = combined.argmax(axis=1).astype(np.int64)
    scores = combined[np.arange(len(rows)), class_ids]
    native_ids, native_scores = categories.best_member(probs, class_ids)
    if weight is not None:
        scores = scores * weight[rows]
        native_scores = native_scores * weight[rows]
    keep = scores > conf_threshold
    return Candidates(
        cxcywh_to_xyxy(boxes_cxcywh[rows[keep]]),
        scores[keep].astype(np.float32),
        class_ids[keep],
        native_ids[keep],
        native_scores[keep].astype(np.float32),
    )


def _decode_yolov5(
    rows: npt.NDArray[np.float32], num_classes: int, conf_threshold: float, categories: CategoryMap | None
) -> Candidates:
    if rows.shape[1] != 5 + num_classes:
        raise ModelError(f"yolov5 head: rows of {rows.shape[1]} values, expected {5 + num_classes}")
    rows = rows[rows[:, 4] > conf_threshold]
    return _scored(rows[:, :4], rows[:, 5:], rows[:, 4], conf_threshold, categories)


def _decode_ultralytics(
    columns: npt.NDArray[np.float32], num_classes: int, conf_threshold: float, categories: CategoryMap | None
) -> Candidates:
    if columns.shape[0] != 4 + num_classes:
        raise ModelError(f"ultralytics head: {columns.shape[0]} channels, expected {4 + num_classes}")
    return _scored(columns[:4].T, columns[4:].T, None, conf_threshold, categories)


def _decode_end_to_end(
    rows: npt.NDArray[np.float32],
    head: HeadType,
    num_classes: int,
    conf_threshold: float,
    categories: CategoryMap | None,
    input_hw: tuple[int, int] | None,
) -> Candidates:
    expected = 4 + num_classes if head == "rtdetr_scores" else 6
    if rows.shape[1] != expected:
        raise ModelError(f"{head} head: rows of {rows.shape[1]} values, expected {expected}")
    if head != "end2end":
        if input_hw is None:
            raise ModelError("an RT-DETR head needs the input size to scale its normalised boxes")
        height, width = input_hw
        rows = rows.copy()
        rows[:, :4] *= np.array([width, height, width, height], dtype=np.float32)
    if head == "rtdetr_scores":
        found = _scored(rows[:, :4], rows[:, 4:], None, conf_threshold, categories)
        return replace(found, one_per_object=True)  # one query, one box: combining classes keeps that
    rows = rows[(rows[:, 4] > conf_threshold) & (rows[:, 5] >= 0) & (rows[:, 5] < num_classes)]
    xyxy = rows[:, :4] if head == "end2end" else cxcywh_to_xyxy(rows[:, :4])
    xyxy = np.ascontiguousarray(xyxy, dtype=np.float32)
    scores = rows[:, 4].astype(np.float32)
    native = rows[:, 5].astype(np.int64)
    if categories is None:
        return Candidates(xyxy, scores, native, one_per_object=True)
    category = categories.category_of_native[native]
    mapped = category >= 0
    return Candidates(
        xyxy[mapped],
        scores[mapped],
        category[mapped],
        native[mapped],
        scores[mapped],
        one_per_object=False,  # two classes of one box may now be one category: NMS merges them
    )
