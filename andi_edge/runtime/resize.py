"""Bilinear resize with OpenCV's INTER_LINEAR geometry, in NumPy.

Half-pixel centres, edge clamping, no antialiasing: the resize the YOLOv5/Ultralytics loaders use (cv2), so
the network sees what it was trained on. Results match cv2 within 1 grey level (cv2 rounds in fixed point).
Keeping OpenCV off the device saves its resident memory and a large wheel on a Raspberry Pi (benchmarks).
Only the source rows and columns the output needs are touched, so a big photo costs little.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt


def _taps(src: int, dst: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    position = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    position = np.clip(position, 0.0, src - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, src - 1)
    return lower, upper, (position - lower).astype(np.float32)


def resize_bilinear(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """Resize an HxWxC uint8 image to ``height x width``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if image.shape[:2] == (height, width):
        return image
    return resize_bilinear_levels(image, width, height).astype(np.uint8)


#: output rows resized at a time: each band's temporaries (a few hundred KiB) stay in cache, and the whole
#: resize never holds more than one band's temporaries at once
BAND_ROWS = 32


def resize_bilinear_levels(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.float32]:
    """The same resize, as float32 grey levels (whole numbers 0..255): what the network's input is made of, one
    uint8 round trip sooner."""
    out = np.empty((height, width, image.shape[2]) if image.ndim == 3 else (height, width), np.float32)
    for first, last, levels in resize_bilinear_bands(image, width, height):
        out[first:last] = levels.reshape(out[first:last].shape)
    return out


def resize_bilinear_bands(
    image: npt.NDArray[np.uint8], width: int, height: int, band_rows: int = BAND_ROWS
) -> Iterator[tuple[int, int, npt.NDArray[np.float32]]]:
    """The resize's grey levels ``band_rows`` output rows at a time: ``(first_row, end_row, levels)`` with
    ``levels`` of shape (rows, width * channels), valid until the next band is asked for."""
    if width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    src_h, src_w = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    y0, y1, fy = _taps(src_h, height)
    x0, x1, fx = _taps(src_w, width)
    fy = fy[:, None]
    flat = image.reshape(src_h, src_w * channels)
    # columns: each output pixel's channels gathered as one run of a row (far faster than indexing axis 1 of
    # an HxWxC array, which gathers C values per index)
    step = np.arange(channels)
    left = (x0[:, None] * channels + step).reshape(-1)
    right = (x1[:, None] * channels + step).reshape(-1)
    wx = np.repeat(fx, channels)[None, :]
    for first in range(0, height, band_rows):
        last = min(height, first + band_rows)
        weight = fy[first:last]
        # in place where the arithmetic allows: each product and sum is the same float32 operation as
        # a * (1 - f) + b * f written out, with fewer temporary arrays
        rows = np.take(flat, y0[first:last], axis=0).astype(np.float32)
        rows *= 1.0 - weight
        lower = np.take(flat, y1[first:last], axis=0).astype(np.float32)
        lower *= weight
        rows += lower
        out = np.take(rows, left, axis=1)
        out *= 1.0 - wx
        across = np.take(rows, right, axis=1)
        across *= wx
        out += across
        np.rint(out, out=out)
        np.clip(out, 0, 255, out=out)
        yield first, last, out
