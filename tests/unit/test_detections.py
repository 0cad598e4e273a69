from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from andi_edge.config import DetectorSettings
from andi_edge.detections import Detections, ImageResult
from andi_edge.errors import ConfigError


def _det(boxes: object, conf: object, cls: object) -> Detections:
    return Detections(np.asarray(boxes, np.float32), np.asarray(conf, np.float32), np.asarray(cls, np.int64))


def test_detections_validate_shapes_and_values() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        _det(np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _det(np.zeros((1, 4)), [1.5], [0])
    with pytest.raises(ValueError, match="x_max >= x_min"):
        _det([[10, 0, 5, 5]], [0.5], [0])
    with pytest.raises(ValueError, match="NaN"):
        _det([[np.nan, 0, 5, 5]], [0.5], [0])


def test_selection_helpers() -> None:
    d = _det([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], [0.2, 0.9, 0.5], [0, 1, 2])
    assert len(d.above(0.5)) == 2
    assert d.sorted_by_confidence().class_id.tolist() == [1, 2, 0]
    assert len(Detections.empty()) == 0


def test_image_result_is_detections_xor_failure() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ImageResult(path=Path("a"))
    with pytest.raises(ValueError, match="exactly one"):
        ImageResult(path=Path("a"), detections=Detections.empty(), failure="x")
    assert not ImageResult(path=Path("a"), failure="corrupt").ok


def test_settings_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="conf_threshold"):
        DetectorSettings(conf_threshold=2)
    with pytest.raises(ConfigError, match="max_detections"):
        DetectorSettings(max_detections=0)


def test_classifications_ride_along_through_select_and_empty_photos() -> None:
    ids = np.array([[14, 18], [0, -1]], dtype=np.int64)
    confs = np.array([[0.5, 0.25], [0.75, 0.0]], dtype=np.float32)
    boxes = np.array([[0, 0, 5, 5], [1, 1, 4, 4]], np.float32)
    d = Detections(boxes, np.array([0.5, 0.9], np.float32), np.array([0, 1], np.int64), ids, confs)
    assert d.classifications(0) == [(14, 0.5), (18, 0.25)]
    assert d.classifications(1) == [(0, 0.75)], "-1 pads a box with fewer labels"
    assert d.sorted_by_confidence().classifications(0) == [(0, 0.75)]
    none_f = np.zeros((0, 1), np.float32)
    empty = Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), none_f.astype(np.int64), none_f
    )
    assert len(empty) == 0 and empty.above(0.1).classification_id is not None
    with pytest.raises(ValueError, match=r"\(2, k\)"):
        Detections(d.xyxy_px, d.confidence, d.class_id, ids[:1], confs[:1])
    with pytest.raises(ValueError, match="both"):
        Detections(d.xyxy_px, d.confidence, d.class_id, ids, None)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Detections(d.xyxy_px, d.confidence, d.class_id, ids, confs + 1)
