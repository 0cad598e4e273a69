"""Box format conversions. Every array is (N, 4) float; names carry the format and the unit.

- ``xyxy_px``: corners in pixels ``[x_min, y_min, x_max, y_max]``
- ``xywh_px``: COCO / COCO Camera Traps, top-left corner and size in pixels
- ``xywh_norm``: MegaDetector and Camtrap DP, top-left corner and size as fractions of the image
- ``cxcywh``: YOLO centre and size (model outputs in input pixels, YOLO labels normalised)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _as_boxes(boxes: npt.ArrayLike) -> FloatArray:
    array = np.asarray(boxes, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {array.shape}")
    return array


def cxcywh_to_xyxy(boxes: npt.ArrayLike) -> FloatArray:
    """Centre/size to corners, in whatever unit the input has."""
    b = _as_boxes(boxes)
    half_w = b[:, 2] / 2
    half_h = b[:, 3] / 2
    return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], axis=1)


def xyxy_to_cxcywh(boxes: npt.ArrayLike) -> FloatArray:
    """Corners to centre/size, in whatever unit the input has."""
    b = _as_boxes(boxes)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return np.stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w, h], axis=1)


def xyxy_px_to_xywh_px(boxes: npt.ArrayLike) -> FloatArray:
    b = _as_boxes(boxes)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def xywh_px_to_xyxy_px(boxes: npt.ArrayLike) -> FloatArray:
    b = _as_boxes(boxes)
    return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)


def _check_size(width_px: int, height_px: int) -> None:
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"image size must be positive, got {width_px}x{height_px}")


def xyxy_px_to_xywh_norm(boxes: npt.ArrayLike, width_px: int, height_px: int) -> FloatArray:
    """Pixel corners to MegaDetector's normalised ``[x_min, y_min, w, h]``."""
    _check_size(width_px, height_px)
    scale = np.array([width_px, height_px, width_px, height_px], dtype=np.float32)
    return xyxy_px_to_xywh_px(boxes) / scale


def xywh_norm_to_xyxy_px(boxes: npt.ArrayLike, width_px: int, height_px: int) -> FloatArray:
    """MegaDetector's normalised ``[x_min, y_min, w, h]`` to pixel corners."""
    _check_size(width_px, height_px)
    scale = np.array([width_px, height_px, width_px, height_px], dtype=np.float32)
    return xywh_px_to_xyxy_px(_as_boxes(boxes) * scale)


def xyxy_px_to_cxcywh_norm(boxes: npt.ArrayLike, width_px: int, height_px: int) -> FloatArray:
    """Pixel corners to YOLO label format."""
    _check_size(width_px, height_px)
    scale = np.array([width_px, height_px, width_px, height_px], dtype=np.float32)
    return xyxy_to_cxcywh(boxes) / scale


def cxcywh_norm_to_xyxy_px(boxes: npt.ArrayLike, width_px: int, height_px: int) -> FloatArray:
    """YOLO label format to pixel corners."""
    _check_size(width_px, height_px)
    scale = np.array([width_px, height_px, width_px, height_px], dtype=np.float32)
    return cxcywh_to_xyxy(_as_boxes(boxes) * scale)


def clip_xyxy_px(boxes: npt.ArrayLike, width_px: int, height_px: int) -> FloatArray:
    """Clip corners to the image ``[0, width] x [0, height]``."""
    b = _as_boxes(boxes).copy()
    np.clip(b[:, 0::2], 0, width_px, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, height_px, out=b[:, 1::2])
    return b


def box_area(boxes_xyxy: npt.ArrayLike) -> FloatArray:
    b = _as_boxes(boxes_xyxy)
    area: FloatArray = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return area


def pairwise_iou(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> FloatArray:
    """IoU matrix (len(a), len(b)) of two sets of corner boxes in the same unit."""
    a = _as_boxes(a_xyxy)
    b = _as_boxes(b_xyxy)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, np.finfo(np.float32).tiny), 0.0).astype(np.float32)
