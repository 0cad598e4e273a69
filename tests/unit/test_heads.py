from __future__ import annotations

import numpy as np
import pytest

from andi_edge.errors import ModelError
from andi_edge.runtime.heads import decode_head


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
