from __future__ import annotations

import math

import numpy as np

from andi_edge.accuracy import average_precision, evaluate
from andi_edge.detections import Detections


def _d(boxes: list[list[float]], conf: list[float], cls: list[int]) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(conf, np.float32), np.array(cls, np.int64))


def test_identical_predictions_score_one() -> None:
    truth = [_d([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1]), _d([[5, 5, 50, 50]], [0.7], [0])]
    acc = evaluate(truth, truth)
    assert acc.map50 == 1.0 and acc.recall == 1.0 and acc.small_recall == 1.0 and acc.reference_boxes == 3


def test_hand_checked_case() -> None:
    truth = [_d([[0, 0, 100, 100], [200, 200, 300, 300]], [1, 1], [0, 0])]
    # one hit at 0.9, one false positive at 0.8, the second truth box missed
    predicted = [_d([[0, 0, 100, 100], [500, 500, 600, 600]], [0.9, 0.8], [0, 0])]
    acc = evaluate(truth, predicted)
    # precision envelope is 1.0 up to recall 0.5, then nothing: 51 of 101 recall points score 1
    assert math.isclose(acc.map50, 51 / 101, rel_tol=1e-9)
    assert acc.recall == 0.5
    assert acc.small_recall is None  # no box under 32x32


def test_wrong_class_or_low_iou_is_a_miss() -> None:
    truth = [_d([[0, 0, 100, 100]], [1], [0])]
    assert evaluate(truth, [_d([[0, 0, 100, 100]], [0.9], [1])]).recall == 0.0
    assert evaluate(truth, [_d([[60, 0, 160, 100]], [0.9], [0])]).recall == 0.0  # IoU 0.25
    assert evaluate(truth, [_d([[10, 0, 110, 100]], [0.9], [0])]).recall == 1.0  # IoU 0.82


def test_recall_threshold_and_duplicates() -> None:
    truth = [_d([[0, 0, 100, 100]], [1], [0])]
    predicted = [_d([[0, 0, 100, 100], [1, 1, 101, 101]], [0.1, 0.05], [0, 0])]
    assert evaluate(truth, predicted, recall_conf_threshold=0.25).recall == 0.0
    acc = evaluate(truth, predicted)
    assert acc.recall == 1.0 and acc.map50 == 1.0  # the duplicate is a FP ranked below the hit
    assert math.isnan(average_precision(np.zeros(0, bool), np.zeros(0, np.float32), 0))
