from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from andi_edge import boxes

sizes = st.integers(min_value=1, max_value=10_000)


@st.composite
def xyxy_boxes(draw: st.DrawFn, width: int = 4000, height: int = 3000) -> np.ndarray:
    n = draw(st.integers(0, 20))
    corners = draw(arrays(np.float32, (n, 4), elements=st.floats(0, 1, width=32)))
    x = np.sort(corners[:, 0::2], axis=1) * width
    y = np.sort(corners[:, 1::2], axis=1) * height
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)


@given(xyxy_boxes())
def test_xywh_norm_round_trip(b: np.ndarray) -> None:
    norm = boxes.xyxy_px_to_xywh_norm(b, 4000, 3000)
    assert np.all(norm >= -1e-6) and np.all(norm <= 1 + 1e-6)
    np.testing.assert_allclose(boxes.xywh_norm_to_xyxy_px(norm, 4000, 3000), b, atol=0.01)


@given(xyxy_boxes())
def test_cxcywh_round_trips(b: np.ndarray) -> None:
    np.testing.assert_allclose(boxes.cxcywh_to_xyxy(boxes.xyxy_to_cxcywh(b)), b, atol=0.01)
    yolo = boxes.xyxy_px_to_cxcywh_norm(b, 4000, 3000)
    np.testing.assert_allclose(boxes.cxcywh_norm_to_xyxy_px(yolo, 4000, 3000), b, atol=0.01)
    np.testing.assert_allclose(boxes.xywh_px_to_xyxy_px(boxes.xyxy_px_to_xywh_px(b)), b, atol=0.01)


def test_megadetector_convention_by_hand() -> None:
    # a 100x50 box whose top-left corner is at (200, 300) in a 1000x600 photo
    norm = boxes.xyxy_px_to_xywh_norm([[200, 300, 300, 350]], 1000, 600)
    np.testing.assert_allclose(norm, [[0.2, 0.5, 0.1, 50 / 600]], rtol=1e-6)


@given(xyxy_boxes(), xyxy_boxes())
def test_iou_properties(a: np.ndarray, b: np.ndarray) -> None:
    iou = boxes.pairwise_iou(a, b)
    assert iou.shape == (len(a), len(b))
    assert np.all(iou >= 0) and np.all(iou <= 1 + 1e-6)
    np.testing.assert_allclose(iou, boxes.pairwise_iou(b, a).T, atol=1e-6)


def test_iou_by_hand() -> None:
    iou = boxes.pairwise_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 0.0]], rtol=1e-6)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        boxes.cxcywh_to_xyxy(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="positive"):
        boxes.xyxy_px_to_xywh_norm(np.zeros((1, 4)), 0, 10)


@given(xyxy_boxes(width=8000, height=8000), sizes, sizes)
def test_clip_stays_inside(b: np.ndarray, w: int, h: int) -> None:
    clipped = boxes.clip_xyxy_px(b, w, h)
    assert np.all(clipped[:, 0::2] <= w) and np.all(clipped[:, 1::2] <= h) and np.all(clipped >= 0)
