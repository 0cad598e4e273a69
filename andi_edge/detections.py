"""The one result type: ``Detections`` for one photo, ``ImageResult`` for one processed file.

Adapters to output formats (MegaDetector JSON, sidecars, Camtrap DP) live in ``andi_edge.sinks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Stage names used by every timing dict, in pipeline order. ``bench`` and the daemon report the same.
#: The second stage's only when a classifier runs: ``crop_decode`` (the photo decoded again, larger, when the
#: detector's decode is too small for the classifier's input) and ``classify`` (cutting, resizing, the classifier).
STAGES: tuple[str, ...] = ("read", "decode", "letterbox", "inference", "postprocess", "crop_decode", "classify")


@dataclass(frozen=True)
class Detections:
    """Boxes found in one photo, in the original (EXIF-oriented) photo's pixels.

    ``classification_id`` / ``classification_conf`` (optional, shape (N, k)): per box, up to k finer labels with
    their confidences, best first, ``-1`` where a box has fewer (MegaDetector's per-detection ``classifications``;
    the names live with whoever produced them, e.g. ``Detector.classification_names``).
    """

    xyxy_px: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    classification_id: npt.NDArray[np.int64] | None = None
    classification_conf: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy_px, dtype=np.float32).reshape(-1, 4)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if not (len(xyxy) == len(conf) == len(cls)):
            raise ValueError(
                f"Detections arrays differ in length: boxes {len(xyxy)}, confidence {len(conf)}, class_id {len(cls)}"
            )
        if not np.all(np.isfinite(xyxy)) or not np.all(np.isfinite(conf)):
            raise ValueError("Detections contain NaN or infinite values")
        if len(conf) and (conf.min() < 0 or conf.max() > 1):
            raise ValueError("Detections confidence must lie in [0, 1]")
        if len(xyxy) and (np.any(xyxy[:, 2] < xyxy[:, 0]) or np.any(xyxy[:, 3] < xyxy[:, 1])):
            raise ValueError("Detections boxes must have x_max >= x_min and y_max >= y_min")
        object.__setattr__(self, "xyxy_px", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        if (self.classification_id is None) != (self.classification_conf is None):
            raise ValueError("Detections need both classification_id and classification_conf, or neither")
        if self.classification_id is not None and self.classification_conf is not None:
            ids = np.asarray(self.classification_id, dtype=np.int64)
            confs = np.asarray(self.classification_conf, dtype=np.float32)
            if ids.ndim != 2 or ids.shape != confs.shape or ids.shape[0] != len(cls):
                raise ValueError(
                    f"classifications must be ({len(cls)}, k) arrays: ids {ids.shape}, confidences {confs.shape}"
                )
            if not np.all(np.isfinite(confs)) or (confs.size and (confs.min() < 0 or confs.max() > 1)):
                raise ValueError("Detections classification confidences must lie in [0, 1]")
            object.__setattr__(self, "classification_id", ids)
            object.__setattr__(self, "classification_conf", confs)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.int64),
        )

    def __len__(self) -> int:
        return len(self.confidence)

    def select(self, mask_or_index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        """A subset, by boolean mask or index array (order kept as given)."""
        return Detections(
            self.xyxy_px[mask_or_index],
            self.confidence[mask_or_index],
            self.class_id[mask_or_index],
            None if self.classification_id is None else self.classification_id[mask_or_index],
            None if self.classification_conf is None else self.classification_conf[mask_or_index],
        )

    def classifications(self, index: int) -> list[tuple[int, float]]:
        """Box ``index``'s finer labels as (id, confidence), best first; empty when there are none."""
        if self.classification_id is None or self.classification_conf is None:
            return []
        ids, confs = self.classification_id[index], self.classification_conf[index]
        return [(int(i), float(c)) for i, c in zip(ids, confs, strict=True) if i >= 0]

    def above(self, conf_threshold: float) -> Detections:
        return self.select(self.confidence >= conf_threshold)

    def sorted_by_confidence(self) -> Detections:
        order = np.argsort(-self.confidence, kind="stable")
        return self.select(order)


@dataclass(frozen=True)
class PhotoInfo:
    """What we know of the photo itself: its oriented size and what its EXIF says."""

    width_px: int
    height_px: int
    format: str | None = None
    #: EXIF DateTimeOriginal as written by the camera, ISO-8601 without a timezone (EXIF has none)
    capture_time: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    camera_serial: str | None = None
    exif_orientation: int = 1


@dataclass(frozen=True)
class ClipInfo:
    """What we know of a video clip: its upright frame size, its rate, and what was analysed of it."""

    width_px: int
    height_px: int
    #: frames per second as the container declares it (0.0 when it declares none that makes sense)
    frame_rate: float
    #: the clip's length, when known
    duration_s: float | None = None
    codec: str | None = None
    #: the container's creation time (ISO-8601, as written), else None
    creation_time: str | None = None
    #: the rotation applied to its frames (the clip's display matrix), degrees counterclockwise
    rotation: int = 0
    #: set when decoding stopped before the end (a truncated clip): why; the frames before it were analysed
    partial: str | None = None


@dataclass(frozen=True)
class FrameResult:
    """One analysed frame of a clip: its number (0-based, in decoding order), its time, and its boxes (in the
    upright frame's pixels, at the clip's full size)."""

    frame_number: int
    time_s: float
    detections: Detections
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageResult:
    """The outcome for one file: detections and photo info, or a failure reason. Never both.

    A video clip's result also has its ``clip`` facts and each analysed frame's boxes (``frames``); its
    ``detections`` are those of its poster frame (the frame of its most confident box), which the review counts."""

    path: Path
    detections: Detections | None = None
    photo: PhotoInfo | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    clip: ClipInfo | None = None
    frames: tuple[FrameResult, ...] = ()

    def __post_init__(self) -> None:
        if (self.detections is None) == (self.failure is None):
            raise ValueError("ImageResult needs exactly one of detections or failure")

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def poster_frame(self) -> FrameResult | None:
        return poster_frame(self.frames)

    @property
    def total_ms(self) -> float:
        return float(sum(self.timings_ms.values()))


def poster_frame(frames: tuple[FrameResult, ...]) -> FrameResult | None:
    """A clip's frame with its most confident box (its first frame when none has a box)."""
    if not frames:
        return None
    return max(frames, key=lambda f: float(f.detections.confidence.max()) if len(f.detections) else -1.0)
