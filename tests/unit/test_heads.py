from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from andi_edge.errors import ModelError
from andi_edge.runtime.categories import CategoryMap
from andi_edge.runtime.heads import Candidates, decode_head
from andi_edge.runtime.model_meta import CategorySpec


def _classic(rows: list[list[float]]) -> np.ndarray:
    return np.array([rows], dtype=np.float32)


def test_yolov5_head_scores_are_objectness_times_class() -> None:
    # cx, cy, w, h, obj, p(class0), p(class1)
    out = _classic(
        [
            [100, 100, 20, 40, 0.9, 0.1, 0.8],  # class 1, score 0.72
            [50, 50, 10, 10, 0.004, 1.0, 0.0],  # objectness below threshold: dropped
            [10, 10, 4, 4, 0.5, 0.009, 0.001],  # score 0.0045 below threshold: dropped
        ]
    )
    c = decode_head(out, "yolov5", num_classes=2, conf_threshold=0.005)
    assert len(c) == 1
    np.testing.assert_allclose(c.xyxy_input_px, [[90, 80, 110, 120]])
    np.testing.assert_allclose(c.scores, [0.72], rtol=1e-6)
    assert c.class_ids.tolist() == [1]


def test_ultralytics_head_is_channels_first_without_objectness() -> None:
    # columns: two candidates; rows: cx, cy, w, h, p(class0), p(class1), p(class2)
    out = np.array([[[100, 5], [100, 5], [20, 2], [40, 2], [0.1, 0.001], [0.2, 0.002], [0.7, 0.003]]], dtype=np.float32)
    c = decode_head(out, "ultralytics", num_classes=3, conf_threshold=0.005)
    assert len(c) == 1
    np.testing.assert_allclose(c.xyxy_input_px, [[90, 80, 110, 120]])
    np.testing.assert_allclose(c.scores, [0.7], rtol=1e-6)
    assert c.class_ids.tolist() == [2]


def test_same_detection_in_both_layouts_decodes_the_same() -> None:
    rng = np.random.default_rng(0)
    boxes = rng.uniform(10, 300, (50, 4)).astype(np.float32)
    probs = rng.uniform(0, 1, (50, 5)).astype(np.float32)
    classic = np.concatenate([boxes, np.ones((50, 1), np.float32), probs], axis=1)[None]
    anchor_free = np.concatenate([boxes, probs], axis=1).T[None]
    a = decode_head(classic, "yolov5", 5, 0.3)
    b = decode_head(anchor_free, "ultralytics", 5, 0.3)
    np.testing.assert_allclose(a.xyxy_input_px, b.xyxy_input_px)
    np.testing.assert_allclose(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_wrong_width_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="expected 85"):
        decode_head(np.zeros((1, 10, 84), np.float32), "yolov5", 80, 0.1)
    with pytest.raises(ModelError, match=r"\(1, \., \.\)"):
        decode_head(np.zeros((2, 10, 85), np.float32), "yolov5", 80, 0.1)


def test_top_k_keeps_the_best() -> None:
    out = _classic([[10, 10, 2, 2, s, 1.0] for s in (0.2, 0.9, 0.5, 0.7)])
    c = decode_head(out, "yolov5", 1, 0.1).top(2)
    assert sorted(c.scores.tolist()) == pytest.approx([0.7, 0.9])


@pytest.mark.parametrize("num_classes", [1, 3])
def test_score_is_objectness_times_class_probability_when_both_are_below_one(num_classes: int) -> None:
    """obj 0.6 x p(class) 0.5 = 0.3: kept at a threshold of 0.25, dropped at 0.35 (objectness alone would pass)."""
    probs = [0.5] + [0.1] * (num_classes - 1)
    out = _classic([[100, 100, 20, 20, 0.6, *probs]])
    kept = decode_head(out, "yolov5", num_classes=num_classes, conf_threshold=0.25)
    np.testing.assert_allclose(kept.scores, [0.3], rtol=1e-6)
    assert kept.class_ids.tolist() == [0]
    assert len(decode_head(out, "yolov5", num_classes=num_classes, conf_threshold=0.35)) == 0


# Two categories over four native classes: "animal" = {cat, dog}, "person" = {person}; "chair" is dropped.
NATIVE = ("person", "cat", "dog", "chair")
SPEC = CategorySpec(names=("animal", "person"), members=(("cat", "dog"), ("person",)), combine="clipped_sum")
CATEGORIES = CategoryMap.resolve(SPEC, NATIVE)


def _assert_candidates(c: Candidates, xyxy: list[list[float]], scores: list[float], classes: list[int]) -> None:
    assert c.xyxy_input_px.dtype == np.float32 and c.scores.dtype == np.float32 and c.class_ids.dtype == np.int64
    np.testing.assert_allclose(c.xyxy_input_px, np.array(xyxy, np.float32).reshape(-1, 4), rtol=1e-6)
    np.testing.assert_allclose(c.scores, scores, rtol=1e-6)
    assert c.class_ids.tolist() == classes


def test_a_score_exactly_at_the_threshold_is_dropped_in_every_head() -> None:
    """Candidates are strictly above conf_threshold (YOLOv5's `conf > thres`); 0.25 = 0.5 x 0.5 exactly."""
    yolo = _classic([[100, 100, 20, 20, 0.5, 0.5], [10, 10, 2, 2, 0.5, 0.5078125]])
    _assert_candidates(decode_head(yolo, "yolov5", 1, 0.25), [[9, 9, 11, 11]], [0.25390625], [0])
    ultra = np.array([[[100, 10], [100, 10], [20, 2], [20, 2], [0.25, 0.2578125]]], np.float32)
    _assert_candidates(decode_head(ultra, "ultralytics", 1, 0.25), [[9, 9, 11, 11]], [0.2578125], [0])
    e2e = np.array([[[0, 0, 10, 10, 0.25, 0], [1, 1, 5, 5, 0.2578125, 0]]], np.float32)
    _assert_candidates(decode_head(e2e, "end2end", 1, 0.25), [[1, 1, 5, 5]], [0.2578125], [0])
    # with categories: the combined score is compared the same way (0.125 + 0.125 = 0.25 exactly: dropped)
    yolo4 = _classic([[100, 100, 20, 20, 1.0, 0.0, 0.125, 0.125, 0.0], [50, 50, 4, 4, 1.0, 0.0, 0.25, 0.0078125, 0]])
    _assert_candidates(decode_head(yolo4, "yolov5", 4, 0.25, CATEGORIES), [[48, 48, 52, 52]], [0.2578125], [0])


def test_category_scores_boxes_and_native_classes_with_objectness() -> None:
    """YOLOv5 with a category map: categories combine the member classes' probabilities (clipped sum here), then
    x objectness; the box is kept, and the native class that contributed most rides along with its own score."""
    out = _classic(
        [
            [100, 100, 20, 40, 0.5, 0.1, 0.3, 0.4, 0.9],  # animal 0.7 x 0.5 = 0.35 (dog 0.4 x 0.5 = 0.2)
            [50, 60, 10, 20, 0.8, 0.6, 0.05, 0.05, 0.0],  # person 0.6 x 0.8 = 0.48
            [30, 30, 4, 4, 0.9, 0.0, 0.0, 0.0, 0.95],  # chair only: no category scores
        ]
    )
    c = decode_head(out, "yolov5", 4, 0.3, CATEGORIES)
    _assert_candidates(c, [[90, 80, 110, 120], [45, 50, 55, 70]], [0.35, 0.48], [0, 1])
    assert c.native_class_ids is not None and c.native_scores is not None
    assert c.native_class_ids.tolist() == [2, 0] and c.native_scores.dtype == np.float32
    np.testing.assert_allclose(c.native_scores, [0.2, 0.48], rtol=1e-6)
    assert not c.one_per_object


def test_selecting_candidates_keeps_native_classes_and_the_one_per_object_flag() -> None:
    out = np.array([[[0, 0, 10, 10, 0.9, 1], [0, 0, 10, 10, 0.8, 2], [5, 5, 9, 9, 0.7, 0]]], np.float32)
    c = decode_head(out, "end2end", 4, 0.1, CATEGORIES)
    picked = c.select(np.array([2, 0]))
    assert picked.native_class_ids is not None and picked.native_scores is not None
    assert picked.native_class_ids.tolist() == [0, 1] and picked.class_ids.tolist() == [1, 0]
    np.testing.assert_allclose(picked.native_scores, [0.7, 0.9], rtol=1e-6)
    plain = decode_head(out, "end2end", 4, 0.1)
    assert plain.one_per_object and plain.select(np.array([True, False, True])).one_per_object
    assert plain.select(np.array([0])).native_class_ids is None


@pytest.mark.parametrize("seed", range(5))
def test_top_k_is_exactly_the_k_best(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(200).astype(np.float32) / 200 + 0.001
    out = _classic([[10, 10, 2, 2, s, 1.0] for s in scores])
    c = decode_head(out, "yolov5", 1, 0.0)
    for k in (1, 7, 199, 200, 500):
        best = np.sort(scores)[::-1][:k]
        np.testing.assert_array_equal(np.sort(c.top(k).scores)[::-1], best)


def test_end_to_end_rows_score_class_range_and_categories() -> None:
    """YOLOv10-style rows: x1, y1, x2, y2, score, class. The score is column 4; a class outside 0..C-1 (padding
    rows use -1) is dropped; with categories, each box takes its class's category (dropped classes vanish) and
    NMS must then run, since two classes of one box may now be one category."""
    out = np.array(
        [[
            [0, 0, 10, 20, 0.9, 1],  # cat -> animal
            [1, 1, 11, 21, 0.8, 2],  # dog -> animal (same box: NMS will merge)
            [5, 5, 9, 9, 0.7, 0],  # person, class 0 is a class
            [2, 2, 4, 4, 0.6, 3],  # chair: no category
            [3, 3, 6, 6, 0.95, -1],  # padding row
            [3, 3, 6, 6, 0.95, 4],  # beyond the classes
            [3, 3, 6, 6, 0.05, 1],  # below the threshold
        ]],
        np.float32,
    )  # fmt: skip
    native = decode_head(out, "end2end", 4, 0.1)
    _assert_candidates(native, [[0, 0, 10, 20], [1, 1, 11, 21], [5, 5, 9, 9], [2, 2, 4, 4]], [0.9, 0.8, 0.7, 0.6],
                       [1, 2, 0, 3])  # fmt: skip
    assert native.one_per_object and native.xyxy_input_px.flags.c_contiguous
    mapped = decode_head(out, "end2end", 4, 0.1, CATEGORIES)
    _assert_candidates(mapped, [[0, 0, 10, 20], [1, 1, 11, 21], [5, 5, 9, 9]], [0.9, 0.8, 0.7], [0, 0, 1])
    assert mapped.native_class_ids is not None and mapped.native_class_ids.tolist() == [1, 2, 0]
    assert mapped.native_scores is not None
    np.testing.assert_allclose(mapped.native_scores, [0.9, 0.8, 0.7], rtol=1e-6)
    assert mapped.one_per_object is False


def test_rtdetr_heads_scale_normalised_boxes_and_combine_categories() -> None:
    """RT-DETR: cx, cy, w, h normalised to the input (here 320 high, 640 wide)."""
    rows = np.array([[[0.5, 0.5, 0.25, 0.5, 0.9, 1]]], np.float32)
    c = decode_head(rows, "rtdetr", 4, 0.1, input_hw=(320, 640))
    _assert_candidates(c, [[240, 80, 400, 240]], [0.9], [1])
    scores = np.array([[[0.5, 0.5, 0.25, 0.5, 0.1, 0.3, 0.4, 0.0]]], np.float32)
    c = decode_head(scores, "rtdetr_scores", 4, 0.2, CATEGORIES, input_hw=(320, 640))
    _assert_candidates(c, [[240, 80, 400, 240]], [0.7], [0])
    assert c.one_per_object and c.native_class_ids is not None and c.native_class_ids.tolist() == [2]
    with pytest.raises(ModelError, match=r"^an RT-DETR head needs the input size to scale its normalised boxes$"):
        decode_head(rows, "rtdetr", 4, 0.1)


def test_every_shape_error_names_what_was_expected() -> None:
    with pytest.raises(ModelError, match=r"^ultralytics head: 9 channels, expected 8$"):
        decode_head(np.zeros((1, 9, 100), np.float32), "ultralytics", 4, 0.1)
    with pytest.raises(ModelError, match=r"^rtdetr_scores head: rows of 6 values, expected 8$"):
        decode_head(np.zeros((1, 10, 6), np.float32), "rtdetr_scores", 4, 0.1, input_hw=(320, 320))
    with pytest.raises(ModelError, match=r"^end2end head: rows of 7 values, expected 6$"):
        decode_head(np.zeros((1, 10, 7), np.float32), "end2end", 4, 0.1)
    with pytest.raises(ModelError, match=r"^unknown head type 'yolo-nas'$"):
        decode_head(np.zeros((1, 10, 6), np.float32), "yolo-nas", 4, 0.1)  # type: ignore[arg-type]


def test_a_combined_category_score_exactly_at_the_threshold_is_dropped() -> None:
    """Noisy-or of cat 0.1 and dog 0.2 is below their sum (the pre-filter's bound), so the bound passes and the
    combined score itself meets the threshold: strictly above it is kept, exactly at it is not."""
    noisy = CategoryMap.resolve(replace(SPEC, combine="noisy_or"), NATIVE)
    probs = np.array([[0.0, 0.1, 0.2, 0.0]], np.float32)
    score = float(noisy.combine(probs)[0, 0])
    assert score < 0.3
    out = _classic([[100, 100, 20, 20, 1.0, *probs[0]]])
    assert len(decode_head(out, "yolov5", 4, score, noisy)) == 0
    below = float(np.nextafter(np.float32(score), np.float32(0)))
    _assert_candidates(decode_head(out, "yolov5", 4, below, noisy), [[90, 90, 110, 110]], [score], [0])
