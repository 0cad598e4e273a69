from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from andi_edge.boxes import pairwise_iou
from andi_edge.runtime.nms import nms_xyxy


@st.composite
def scored_boxes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 40))
    xy = draw(arrays(np.float32, (n, 2), elements=st.floats(0, 200, width=32)))
    wh = draw(arrays(np.float32, (n, 2), elements=st.floats(1, 80, width=32)))
    scores = draw(arrays(np.float32, (n,), elements=st.floats(0.015625, 1, width=32), unique=True))
    classes = draw(arrays(np.int64, (n,), elements=st.integers(0, 2)))
    return np.concatenate([xy, xy + wh], axis=1), scores, classes


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float) -> list[int]:
    """Plain greedy NMS, one pair at a time: the definition the vectorised version must equal."""
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
        if all(classes[i] != classes[j] or pairwise_iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= thr for j in keep):
            keep.append(i)
    return keep


@settings(max_examples=200)
@given(scored_boxes(), st.floats(0.1, 0.9))
def test_matches_reference_and_invariants(data: tuple[np.ndarray, np.ndarray, np.ndarray], thr: float) -> None:
    boxes, scores, classes = data
    keep = nms_xyxy(boxes, scores, thr, class_ids=classes)
    assert keep.tolist() == _reference_nms(boxes, scores, classes, thr)
    # kept boxes come out highest score first
    assert np.all(np.diff(scores[keep]) <= 0)
    # no two kept boxes of one class overlap more than the threshold
    iou = pairwise_iou(boxes[keep], boxes[keep])
    same = classes[keep][:, None] == classes[keep][None, :]
    np.fill_diagonal(same, False)
    assert np.all(iou[same] <= thr + 1e-6)


@given(scored_boxes())
def test_class_agnostic_is_class_aware_nms_of_one_class(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    boxes, scores, _ = data
    agnostic = nms_xyxy(boxes, scores, 0.45)
    assert agnostic.tolist() == nms_xyxy(boxes, scores, 0.45, class_ids=np.zeros(len(scores), np.int64)).tolist()
    iou = pairwise_iou(boxes[agnostic], boxes[agnostic])
    np.fill_diagonal(iou, 0.0)
    assert np.all(iou <= 0.45 + 1e-6), "no two kept boxes overlap more than the threshold, whatever their class"


def test_class_agnostic_can_keep_more_than_class_aware() -> None:
    """Greedy suppression chains: agnostic, the person box A removes B, so C and D (which B would have removed,
    and which overlap A and each other too little) survive. So "agnostic keeps no more" is no invariant."""
    boxes = np.array([[0, 3, 10, 13], [0, 0, 10, 10], [-3, 0, 7, 10], [3, 0, 13, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 1, 1, 1])
    assert nms_xyxy(boxes, scores, 0.45).tolist() == [0, 2, 3]
    assert nms_xyxy(boxes, scores, 0.45, class_ids=classes).tolist() == [0, 1]


def test_by_hand_and_max_keep() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms_xyxy(boxes, scores, 0.5, class_ids=classes).tolist() == [0, 2, 3]
    assert nms_xyxy(boxes, scores, 0.5).tolist() == [0, 3]
    assert nms_xyxy(boxes, scores, 0.5, class_ids=classes, max_keep=2).tolist() == [0, 2]
    assert nms_xyxy(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_a_box_exactly_at_the_iou_threshold_is_kept_and_just_above_it_is_not() -> None:
    """IoU of these two is exactly 0.5 (in float32 too): suppression is for IoU > threshold, as in YOLOv5."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert pairwise_iou(boxes[:1], boxes[1:])[0, 0] == 0.5
    for threshold, kept in ((0.49, [0]), (0.5, [0, 1]), (0.51, [0, 1])):
        assert nms_xyxy(boxes, scores, threshold).tolist() == kept, threshold
        assert nms_xyxy(boxes, scores, threshold, class_ids=np.array([0, 0])).tolist() == kept, threshold


def test_ties_keep_input_order_beyond_small_arrays() -> None:
    """Forty boxes of one score that do not overlap: kept in input order (a stable sort; numpy's default sort is
    stable only for tiny arrays)."""
    boxes = np.array([[20 * i, 0, 20 * i + 10, 10] for i in range(40)], np.float32)
    scores = np.full(40, 0.5, np.float32)
    scores[[3, 17]] = 0.9
    assert nms_xyxy(boxes, scores, 0.45).tolist() == [3, 17] + [i for i in range(40) if i not in (3, 17)]


def test_points_and_zero_area_boxes_never_suppress_each_other() -> None:
    """Two identical zero-area boxes have no union: their overlap counts as none, so both are kept."""
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms_xyxy(boxes, scores, 0.45).tolist() == [0, 1, 2]


def test_inputs_of_any_layout_and_the_result_type() -> None:
    """Boxes as (N, 4) of any number type, scores as a column or a row; the result is always an intp index
    array, empty too, so it can index the candidates."""
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]
    for scores in ([0.9, 0.8, 0.7], [[0.9], [0.8], [0.7]]):
        keep = nms_xyxy(np.array(boxes), np.array(scores), 0.5)
        assert keep.dtype == np.intp and keep.tolist() == [0, 2]
    none = nms_xyxy(np.array(boxes, np.float32), np.array([0.9, 0.8, 0.7], np.float32), 0.5, max_keep=0)
    assert none.dtype == np.intp and none.shape == (0,)
    with pytest.raises(ValueError, match=r"^3 boxes but 2 scores$"):
        nms_xyxy(np.array(boxes, np.float32), np.array([0.9, 0.8], np.float32), 0.5)


def test_classes_stay_apart_for_normalised_boxes_too() -> None:
    """Boxes in 0..1 (a backend that reports normalised boxes): the same box under two classes is two objects."""
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.9, 1.0]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms_xyxy(boxes, scores, 0.45, class_ids=np.array([0, 1, 0])).tolist() == [0, 1]
