"""The one result type: ``Detections`` for one photo, ``ImageResult`` for one processed file.

Adapters to output formats (MegaDetector JSON, sidecars, Camtrap DP) live in ``andi_edge.sinks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Stage names used by every timing dict, in pipeline order. ``bench`` and the daemon report the same.
STAGES: tuple[str, ...] = ("read", "decode", "letterbox", "inference", "postprocess")


@dataclass(frozen=True)
class Detections:
    """Boxes found in one photo, in the original (EXIF-oriented) photo's pixels."""

    xyxy_px: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]

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
        return Detections(self.xyxy_px[mask_or_index], self.confidence[mask_or_index], self.class_id[mask_or_index])

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


@dataclass
class ImageResult:
    """The outcome for one file: detections and photo info, or a failure reason. Never both."""

    path: Path
    detections: Detections | None = None
    photo: PhotoInfo | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    failure: str | None = None

    def __post_init__(self) -> None:
        if (self.detections is None) == (self.failure is None):
            raise ValueError("ImageResult needs exactly one of detections or failure")

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def total_ms(self) -> float:
        return float(sum(self.timings_ms.values()))
