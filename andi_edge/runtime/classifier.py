"""The second stage: a crop classifier that names the species in the detector's boxes.

Crops are cut from the photo as the detector's decode left it (``PhotoPixels``): a DCT-reduced decode when that
still gives every crop at least the classifier's input size, else one more decode at the smallest JPEG scale that
does (full size at most, within the decode memory budget). A photo's crops run in batches of ``CROP_CHUNK``. The crop
policy (padding, square) and the preprocessing are the ones the classifier card records, and ``crop_tensor`` is
the one function that turns a crop into the classifier's input: training (``toolchain.classifier``) uses it too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from andi_edge.config import ClassifierSettings
from andi_edge.detections import Detections
from andi_edge.errors import ConfigError, ModelError, ModelNotFoundError, PhotoError
from andi_edge.runtime.backends import Backend, BackendOptions, create_backend
from andi_edge.runtime.classifier_card import ClassifierCard, CropPolicy, find_card
from andi_edge.runtime.decode import DecodedPhoto, decode_photo
from andi_edge.runtime.model_meta import file_sha256

log = logging.getLogger(__name__)

#: crops classified in one batch: a busy photo's boxes go through in several, so its memory stays bounded
CROP_CHUNK = 16


def crop_windows_xyxy_px(
    xyxy_px: npt.NDArray[np.float32], width_px: int, height_px: int, policy: CropPolicy
) -> npt.NDArray[np.float64]:
    """Each box as the classifier sees it, in the same pixels: grown by ``policy.padding`` x its larger side on
    every side; square ones moved inside the photo where they fit; clipped to the photo; at least 1 px."""
    boxes = np.asarray(xyxy_px, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    pad = np.maximum(w, h) * policy.padding
    if policy.square:
        side = np.maximum(w, h) + 2 * pad
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        x0 = _inside(cx - side / 2, side, width_px)
        y0 = _inside(cy - side / 2, side, height_px)
        grown = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
    else:
        grown = np.stack([boxes[:, 0] - pad, boxes[:, 1] - pad, boxes[:, 2] + pad, boxes[:, 3] + pad], axis=1)
    grown[:, 0::2] = np.clip(grown[:, 0::2], 0, width_px)
    grown[:, 1::2] = np.clip(grown[:, 1::2], 0, height_px)
    grown[:, 2] = np.maximum(grown[:, 2], np.minimum(grown[:, 0] + 1, width_px))
    grown[:, 3] = np.maximum(grown[:, 3], np.minimum(grown[:, 1] + 1, height_px))
    return grown


def _inside(start: npt.NDArray[np.float64], side: npt.NDArray[np.float64], limit: int) -> npt.NDArray[np.float64]:
    """Window starts moved so that a window that fits the photo lies wholly inside it."""
    fits = side <= limit
    return np.where(fits, np.clip(start, 0, np.maximum(limit - side, 0)), start)


def cut(rgb: npt.NDArray[np.uint8], window_px: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """The pixels of one window (float pixel edges, rounded outwards), never empty."""
    height, width = rgb.shape[:2]
    x0 = min(max(math.floor(window_px[0]), 0), width - 1)
    y0 = min(max(math.floor(window_px[1]), 0), height - 1)
    x1 = max(min(math.ceil(window_px[2]), width), x0 + 1)
    y1 = max(min(math.ceil(window_px[3]), height), y0 + 1)
    return rgb[y0:y1, x0:x1]


def crop_tensor(crop_rgb: npt.NDArray[np.uint8], card: ClassifierCard) -> npt.NDArray[np.float32]:
    """One crop as the classifier's input, (3, H, W) float32: bilinear resize (antialiased), then the card's
    ``(rgb / 255 - mean) / std``."""
    resized = Image.fromarray(np.ascontiguousarray(crop_rgb)).resize(
        (card.input_width_px, card.input_height_px), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(card.mean, dtype=np.float32)
    std = np.asarray(card.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def to_probabilities(raw: npt.NDArray[np.float32], output: str) -> npt.NDArray[np.float32]:
    """Per-label probabilities from the network's output. A NaN or infinite score (a classifier someone else
    trained, on a crop unlike its training data) counts as the lowest, so one odd crop never fails its photo."""
    raw = np.nan_to_num(raw.astype(np.float32), nan=-1e4, posinf=1e4, neginf=-1e4)
    if output == "probabilities":
        clipped: npt.NDArray[np.float32] = np.clip(raw, 0.0, 1.0).astype(np.float32)
        return clipped
    shifted = raw - raw.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    softmax: npt.NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return softmax


@dataclass
class PhotoPixels:
    """The photo as the detector decoded it, and its bytes, to decode it once more when crops need more pixels."""

    decoded: DecodedPhoto
    data: bytes
    name: str
    max_image_pixels: int
    max_decode_bytes: int
    redecoded: bool = False
    #: time spent decoding the photo again for its crops (the ``crop_decode`` stage)
    redecode_ms: float = 0.0

    def at_scale(self, wanted: float) -> tuple[npt.NDArray[np.uint8], float]:
        """Pixels at ``wanted`` decoded pixels per photo pixel or more (1.0 at most), and their scale."""
        decoded = self.decoded
        if decoded.scale >= min(wanted, 1.0) - 1e-6 or not self.data:  # (a video frame: no bytes to decode again)
            return decoded.rgb, decoded.scale
        long_side = max(decoded.info.width_px, decoded.info.height_px)
        target = min(long_side, math.ceil(long_side * wanted))
        start = time.perf_counter()
        try:
            better = decode_photo(
                self.data,
                target_long_side_px=None if target >= long_side else target,
                max_image_pixels=self.max_image_pixels,
                max_decode_bytes=self.max_decode_bytes,
                name=self.name,
            )
        except PhotoError as exc:  # a photo too big to decode larger: classify what the detector saw
            log.info("%s: crops classified at the detector's decode (%s)", self.name, exc.message)
            return decoded.rgb, decoded.scale
        finally:
            self.redecode_ms += (time.perf_counter() - start) * 1000.0
        self.redecoded = True  # not kept: the larger pixels are needed once, and a daemon holds photos in flight
        return better.rgb, better.scale


def class_ids(wanted: tuple[str, ...], class_names: tuple[str, ...], hint: str) -> frozenset[int]:
    """The ids of the ``wanted`` detector classes (every class when none is named); ConfigError naming the ones
    the detector does not have."""
    if not wanted:
        return frozenset(range(len(class_names)))
    missing = [c for c in wanted if c not in class_names]
    if missing:
        raise ConfigError(
            f"boxes of {', '.join(missing)} are asked for, but the detector has no such class "
            f"(it has {', '.join(class_names[:12])}{' ...' if len(class_names) > 12 else ''})",
            hint=hint,
        )
    return frozenset(class_names.index(c) for c in wanted)


class Classifier:
    """A crop classifier (ONNX, NCHW float input, one output of per-label scores) and its card."""

    def __init__(
        self,
        model_path: Path,
        card_path: Path | None = None,
        settings: ClassifierSettings | None = None,
        backend: str | Backend = "ort",
        backend_options: BackendOptions | None = None,
    ) -> None:
        if not model_path.is_file():
            raise ModelNotFoundError(
                f"classifier file not found: {model_path}",
                hint="train and export one with `andi-edge classifier train` and `andi-edge classifier export`",
            )
        self.model_path = model_path
        self.settings = settings or ClassifierSettings()
        self._backend = create_backend(backend) if isinstance(backend, str) else backend
        self.loaded = self._backend.load(model_path, backend_options or BackendOptions())
        self.card = find_card(model_path, self.loaded.metadata, card_path)
        self._check_shapes()
        shape = self.loaded.input_shape
        #: the model takes one crop at a time (its batch dimension is fixed to 1)
        self.one_at_a_time = isinstance(shape[0], int) and shape[0] == 1
        log.info(
            "loaded classifier %s (%s, %d labels, %dx%d, card: %s)",
            model_path.name,
            self.card.architecture,
            len(self.card.labels),
            self.card.input_width_px,
            self.card.input_height_px,
            self.card.source,
        )

    def _check_shapes(self) -> None:
        card, shape = self.card, self.loaded.input_shape
        if len(shape) != 4:
            raise ModelError(f"{self.model_path}: a classifier takes (N, 3, H, W) input, this one {shape}")
        channels, height, width = shape[1], shape[2], shape[3]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(f"{self.model_path}: a classifier takes RGB (3 channels) input, this one {channels}")
        for name, got, want in (("height", height, card.input_height_px), ("width", width, card.input_width_px)):
            if isinstance(got, int) and got != want:
                raise ModelError(
                    f"{self.model_path}: its input {name} is {got} px but its card says {want}",
                    hint="fix input_size in the classifier card",
                )
        outputs = self.loaded.output_shapes[0]
        if len(outputs) != 2:
            raise ModelError(f"{self.model_path}: a classifier has one (N, labels) output, this one {outputs}")
        if isinstance(outputs[1], int) and outputs[1] != len(card.labels):
            raise ModelError(
                f"{self.model_path}: it scores {outputs[1]} labels but its card lists {len(card.labels)}",
                hint="the card's labels must be the output's, in order",
            )

    @property
    def names(self) -> tuple[str, ...]:
        return self.card.labels

    @cached_property
    def model_sha256(self) -> str:
        return file_sha256(self.model_path)

    def provenance(self) -> dict[str, Any]:
        return {
            **self.card.summary(),
            "model_file": self.model_path.name,
            "model_sha256": self.model_sha256,
            "settings": dataclasses.asdict(self.settings),
        }

    def eligible_classes(self, class_names: tuple[str, ...]) -> frozenset[int]:
        """The detector's class ids whose boxes are classified. ConfigError when a configured class is not one."""
        return class_ids(
            self.settings.classes,
            class_names,
            hint="set classifier.classes (or --classify-classes) to classes of the detector",
        )

    @property
    def chunk_bytes(self) -> int:
        """What one chunk of crops holds as the classifier's input (float32)."""
        return CROP_CHUNK * 3 * 4 * self.card.input_height_px * self.card.input_width_px

    def predict(self, batch_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per-label probabilities, (N, labels)."""
        if self.one_at_a_time:
            raw = np.concatenate([self._backend.run(batch_nchw[i : i + 1]) for i in range(len(batch_nchw))])
        else:
            raw = self._backend.run(batch_nchw)
        raw = raw.reshape(len(batch_nchw), -1)
        if raw.shape[1] != len(self.card.labels):
            raise ModelError(f"{self.model_path}: it scored {raw.shape[1]} labels, its card lists {len(self.names)}")
        return to_probabilities(raw, self.card.output)

    def classify(self, pixels: PhotoPixels, detections: Detections, eligible: frozenset[int]) -> Detections:
        """``detections`` with the top-k labels of the boxes that qualify (``-1`` / 0 for the others)."""
        s = self.settings
        k = min(s.top_k, len(self.card.labels))
        ids = np.full((len(detections), k), -1, dtype=np.int64)
        confs = np.zeros((len(detections), k), dtype=np.float32)
        wanted = np.flatnonzero(
            (detections.confidence >= s.min_conf) & np.isin(detections.class_id, np.fromiter(eligible, np.int64))
        )
        if len(wanted):
            chosen = wanted[np.argsort(-detections.confidence[wanted], kind="stable")][: s.max_crops]
            info = pixels.decoded.info
            windows = crop_windows_xyxy_px(detections.xyxy_px[chosen], info.width_px, info.height_px, self.card.crop)
            long_px = np.maximum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1])
            input_px = max(self.card.input_width_px, self.card.input_height_px)
            rgb, scale = pixels.at_scale(float(np.max(input_px / np.maximum(long_px, 1.0))))
            # in chunks: memory for CROP_CHUNK crops at a time, however many boxes a busy photo holds
            probabilities = np.concatenate(
                [
                    self.predict(
                        np.stack([crop_tensor(cut(rgb, w * scale), self.card) for w in windows[i : i + CROP_CHUNK]])
                    )
                    for i in range(0, len(windows), CROP_CHUNK)
                ]
            )
            top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
            ids[chosen] = top
            confs[chosen] = np.take_along_axis(probabilities, top, axis=1)
        return dataclasses.replace(detections, classification_id=ids, classification_conf=confs)


def load_classifier(settings: ClassifierSettings, backend_options: BackendOptions | None = None) -> Classifier | None:
    """The classifier ``settings`` name, or None when they name none. It runs on ONNX Runtime with the pipeline's
    threading, in f32 whatever precision the detector's backend was given."""
    if not settings.model:
        return None
    card = Path(settings.card) if settings.card else None
    options = replace(backend_options, precision="f32") if backend_options is not None else None
    return Classifier(Path(settings.model), card, settings, backend_options=options)
