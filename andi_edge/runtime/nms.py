"""Greedy non-maximum suppression in numpy: class-aware by default, vectorised per kept box."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from andi_edge.boxes import box_area


def nms_xyxy(
    boxes_xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    class_ids: npt.NDArray[np.int64] | None = None,
    max_keep: int | None = None,
) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept, highest score first.

    A box is dropped when it overlaps a higher-scoring kept box of the same class (any class when
    ``class_ids`` is None) by IoU strictly greater than ``iou_threshold``. Ties in score keep input order.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.intp)
    if class_ids is not None:
        # Shift each class into its own region of the plane so boxes of different classes never overlap.
        span = float(np.abs(boxes).max()) + 1.0
        boxes = boxes + (np.asarray(class_ids, dtype=np.float32).reshape(-1, 1) * span)
    order = np.argsort(-scores, kind="stable")
    areas = box_area(boxes)
    keep: list[int] = []
    limit = len(order) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if rest.size == 0:
            break
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        wh = np.clip(bottom_right - top_left, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[best] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, np.finfo(np.float32).tiny), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
