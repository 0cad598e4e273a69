"""Greedy non-maximum suppression in numpy: class-aware by default, vectorised per kept box."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from andi_edge.boxes import pairwise_iou


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
    classes = None if class_ids is None else np.asarray(class_ids, dtype=np.int64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    limit = len(order) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if rest.size == 0:
            break
        # the one IoU of the package (boxes.pairwise_iou), on the boxes as given: boxes of other classes are told
        # apart by their class, not by moving them apart (which rounds their corners, and ties at the threshold)
        suppressed = pairwise_iou(boxes[best : best + 1], boxes[rest])[0] > iou_threshold
        if classes is not None:
            suppressed &= classes[rest] == classes[best]
        order = rest[~suppressed]
    return np.asarray(keep, dtype=np.intp)
