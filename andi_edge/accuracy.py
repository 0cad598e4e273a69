"""Detection accuracy against reference boxes: AP@IoU per class, mAP, recall. NumPy only.

Used by ``bench --compare`` (a compressed model against its fp32 reference) and by the toolchain's evaluation.
AP is the area under the precision envelope with COCO's 101-point interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from andi_edge.boxes import pairwise_iou
from andi_edge.detections import Detections

RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: COCO's "small": under 32 x 32 pixels
SMALL_AREA_PX = 32 * 32


@dataclass(frozen=True)
class Accuracy:
    map50: float
    recall: float
    small_recall: float | None
    ap50_per_class: dict[int, float] = field(default_factory=dict)
    reference_boxes: int = 0


def _match(
    truth: Detections, predicted: Detections, iou_threshold: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Greedy matching by confidence within each class; returns (prediction is TP, truth box matched)."""
    tp = np.zeros(len(predicted), dtype=bool)
    matched = np.zeros(len(truth), dtype=bool)
    if len(truth) == 0 or len(predicted) == 0:
        return tp, matched
    iou = pairwise_iou(predicted.xyxy_px, truth.xyxy_px)
    same_class = predicted.class_id[:, None] == truth.class_id[None, :]
    iou = np.where(same_class, iou, 0.0)
    for p in np.argsort(-predicted.confidence, kind="stable"):
        candidates = np.where(~matched & (iou[p] >= iou_threshold))[0]
        if candidates.size:
            best = candidates[np.argmax(iou[p, candidates])]
            matched[best] = True
            tp[p] = True
    return tp, matched


def average_precision(tp: npt.NDArray[np.bool_], confidence: npt.NDArray[np.float32], n_truth: int) -> float:
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-confidence, kind="stable")
    hits = tp[order].astype(np.float64)
    cum_tp = np.cumsum(hits)
    cum_fp = np.cumsum(1.0 - hits)
    recall = cum_tp / n_truth
    precision = cum_tp / np.maximum(cum_tp + cum_fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = index < len(recall)
    sampled = np.zeros_like(RECALL_POINTS)
    sampled[reached] = envelope[index[reached]]
    return float(np.mean(sampled))


def evaluate(
    truths: Sequence[Detections],
    predictions: Sequence[Detections],
    iou_threshold: float = 0.5,
    recall_conf_threshold: float = 0.0,
) -> Accuracy:
    """Per-photo reference boxes vs predictions (same photos, same order, same pixel space)."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} reference photos but {len(predictions)} predicted")
    per_class_tp: dict[int, list[npt.NDArray[np.bool_]]] = {}
    per_class_conf: dict[int, list[npt.NDArray[np.float32]]] = {}
    per_class_truth: dict[int, int] = {}
    recalled = total = small_recalled = small_total = 0
    for truth, predicted in zip(truths, predictions, strict=True):
        tp, _ = _match(truth, predicted, iou_threshold)
        for cls in np.unique(np.concatenate([truth.class_id, predicted.class_id])):
            mask = predicted.class_id == cls
            per_class_tp.setdefault(int(cls), []).append(tp[mask])
            per_class_conf.setdefault(int(cls), []).append(predicted.confidence[mask])
            per_class_truth[int(cls)] = per_class_truth.get(int(cls), 0) + int(np.sum(truth.class_id == cls))
        _, matched = _match(truth, predicted.above(recall_conf_threshold), iou_threshold)
        areas = (truth.xyxy_px[:, 2] - truth.xyxy_px[:, 0]) * (truth.xyxy_px[:, 3] - truth.xyxy_px[:, 1])
        small = areas < SMALL_AREA_PX
        recalled += int(matched.sum())
        total += len(truth)
        small_recalled += int(matched[small].sum())
        small_total += int(small.sum())
    ap = {
        cls: average_precision(np.concatenate(per_class_tp[cls]), np.concatenate(per_class_conf[cls]), n)
        for cls, n in per_class_truth.items()
        if n > 0
    }
    return Accuracy(
        map50=float(np.mean(list(ap.values()))) if ap else float("nan"),
        recall=recalled / total if total else float("nan"),
        small_recall=small_recalled / small_total if small_total else None,
        ap50_per_class=ap,
        reference_boxes=total,
    )
