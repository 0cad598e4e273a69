"""Letterbox: resize keeping the aspect ratio, pad to the model input, and map boxes back.

Same geometry as the YOLOv5 / Ultralytics training and inference loaders (``letterbox`` with ``auto=False``):
gain ``r = min(H/h, W/w)``, unpadded size ``round(w*r) x round(h*r)``, bilinear resize (cv2 INTER_LINEAR
geometry, see ``resize``), grey (114) padding split
between both sides with the ``round(d -/+ 0.1)`` rule, RGB, scaled to 0..1, NCHW float32.

RT-DETR is the exception: Ultralytics' RT-DETR predictor and validator stretch the photo to the square input
(``LetterBox(scale_fill=True)``: each axis its own gain, no padding), so an RT-DETR model is fed the same way
(``LetterboxGeometry.stretch``, chosen by ``ModelCard.stretched``).

The geometry is always computed from the *original* photo size, so a DCT-reduced decode feeds the network an
image of exactly the same geometry as the full-quality path, and boxes map back to original pixels the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from andi_edge.runtime.resize import resize_bilinear, resize_bilinear_bands

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxGeometry:
    """How an original photo of ``photo_w x photo_h`` sits inside the ``input_w x input_h`` model input."""

    photo_w: int
    photo_h: int
    input_w: int
    input_h: int
    #: input pixels per photo pixel, horizontally (and vertically, unless stretched: ``gain_y``)
    gain: float
    resized_w: int
    resized_h: int
    pad_left: int
    pad_top: int
    #: input pixels per photo pixel, vertically (None: ``gain``, the aspect ratio kept)
    gain_y: float | None = None

    @property
    def vertical_gain(self) -> float:
        return self.gain if self.gain_y is None else self.gain_y

    @classmethod
    def fit(cls, photo_w: int, photo_h: int, input_w: int, input_h: int) -> LetterboxGeometry:
        if min(photo_w, photo_h, input_w, input_h) <= 0:
            raise ValueError(f"sizes must be positive: photo {photo_w}x{photo_h}, input {input_w}x{input_h}")
        gain, resized_w, resized_h = _scaled(photo_w, photo_h, input_w, input_h)
        half_dw = (input_w - resized_w) / 2
        half_dh = (input_h - resized_h) / 2
        return cls(
            photo_w=photo_w,
            photo_h=photo_h,
            input_w=input_w,
            input_h=input_h,
            gain=gain,
            resized_w=resized_w,
            resized_h=resized_h,
            pad_left=round(half_dw - 0.1),
            pad_top=round(half_dh - 0.1),
        )

    @classmethod
    def fit_rect(cls, photo_w: int, photo_h: int, long_side: int, stride: int) -> LetterboxGeometry:
        """Rectangular inference (YOLOv5's ``letterbox(auto=True)``): the same gain as ``fit`` into a
        ``long_side`` square, the input only as large as the resized photo rounded up to the stride."""
        if min(photo_w, photo_h, long_side, stride) <= 0:
            raise ValueError(f"sizes must be positive: photo {photo_w}x{photo_h}, {long_side} px, stride {stride}")
        _, resized_w, resized_h = _scaled(photo_w, photo_h, long_side, long_side)
        return cls.fit(photo_w, photo_h, -(-resized_w // stride) * stride, -(-resized_h // stride) * stride)

    @classmethod
    def stretch(cls, photo_w: int, photo_h: int, input_w: int, input_h: int) -> LetterboxGeometry:
        """The photo resized to the whole input, each axis by its own gain, no padding (Ultralytics'
        ``LetterBox(scale_fill=True)``, RT-DETR's preprocessing)."""
        if min(photo_w, photo_h, input_w, input_h) <= 0:
            raise ValueError(f"sizes must be positive: photo {photo_w}x{photo_h}, input {input_w}x{input_h}")
        return cls(
            photo_w=photo_w,
            photo_h=photo_h,
            input_w=input_w,
            input_h=input_h,
            gain=input_w / photo_w,
            resized_w=input_w,
            resized_h=input_h,
            pad_left=0,
            pad_top=0,
            gain_y=input_h / photo_h,
        )

    def to_photo_xyxy(self, xyxy_input_px: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Model-input pixels -> original photo pixels, clipped to the photo."""
        boxes = np.asarray(xyxy_input_px, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, 0::2] = (boxes[:, 0::2] - self.pad_left) / self.gain
        boxes[:, 1::2] = (boxes[:, 1::2] - self.pad_top) / self.vertical_gain
        np.clip(boxes[:, 0::2], 0, self.photo_w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, self.photo_h, out=boxes[:, 1::2])
        return boxes

    def to_input_xyxy(self, xyxy_photo_px: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Original photo pixels -> model-input pixels."""
        boxes = np.asarray(xyxy_photo_px, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, 0::2] = boxes[:, 0::2] * self.gain + self.pad_left
        boxes[:, 1::2] = boxes[:, 1::2] * self.vertical_gain + self.pad_top
        return boxes


def _scaled(photo_w: int, photo_h: int, input_w: int, input_h: int) -> tuple[float, int, int]:
    """The gain that fits the photo inside the input, and the photo's size at that gain."""
    gain = min(input_h / photo_h, input_w / photo_w)
    return gain, max(1, round(photo_w * gain)), max(1, round(photo_h * gain))


def letterbox_rgb(rgb: npt.NDArray[np.uint8], geometry: LetterboxGeometry) -> npt.NDArray[np.uint8]:
    """Resize (bilinear) and pad an upright RGB image (any decoded size of the photo) to the model input, HWC."""
    if rgb.shape[1] != geometry.resized_w or rgb.shape[0] != geometry.resized_h:
        rgb = resize_bilinear(rgb, geometry.resized_w, geometry.resized_h)
    canvas = np.full((geometry.input_h, geometry.input_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[
        geometry.pad_top : geometry.pad_top + geometry.resized_h,
        geometry.pad_left : geometry.pad_left + geometry.resized_w,
    ] = rgb
    return canvas


def letterbox_tensor(rgb: npt.NDArray[np.uint8], geometry: LetterboxGeometry) -> npt.NDArray[np.float32]:
    """``to_input_tensor(letterbox_rgb(rgb, geometry))``, equal to the last bit, in fewer passes: the resize's
    float grey levels are scaled to 0..1 straight into their place in the NCHW tensor (no uint8 canvas, no
    transposed copy of it), and only the padding is filled with grey."""
    tensor = np.empty((1, 3, geometry.input_h, geometry.input_w), dtype=np.float32)
    top, left = geometry.pad_top, geometry.pad_left
    bottom, right = top + geometry.resized_h, left + geometry.resized_w
    planes = tensor[0]
    grey = np.float32(PAD_VALUE) / np.float32(255.0)
    planes[:, :top] = grey
    planes[:, bottom:] = grey
    planes[:, top:bottom, :left] = grey
    planes[:, top:bottom, right:] = grey
    inside = planes[:, top:bottom, left:right]
    if rgb.shape[1] == geometry.resized_w and rgb.shape[0] == geometry.resized_h:
        np.divide(rgb.transpose(2, 0, 1), np.float32(255.0), out=inside)
        return tensor
    for first, last, levels in resize_bilinear_bands(rgb, geometry.resized_w, geometry.resized_h):
        band = levels.reshape(last - first, geometry.resized_w, 3).transpose(2, 0, 1)
        np.divide(band, np.float32(255.0), out=inside[:, first:last])
    return tensor


def to_input_tensor(letterboxed_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """HWC uint8 RGB -> NCHW float32 in 0..1, contiguous."""
    chw = np.ascontiguousarray(letterboxed_rgb.transpose(2, 0, 1))
    tensor = chw.astype(np.float32)
    tensor /= np.float32(255.0)
    return tensor[None]
