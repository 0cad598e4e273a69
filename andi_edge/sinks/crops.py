"""Crops of detections, cut from the full-resolution upright photo, in per-label folders, named deterministically.

The folder is the box's label (``results.labels``): its species when a classifier named it, else its category.
Name: ``crops/<label>/<end of the path on card, / as __, extension dropped>__<hash of the photo's output key>__det<NN>
.jpg``, NN the detection's rank by confidence (``sinks.names.derived_stem``: bounded, and two photos never share
one however their names clean up). Re-running on the same photo rewrites the same files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from andi_edge.detections import Detections
from andi_edge.results.labels import LabelSpace
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.sinks.names import CROPS_DIR, bounded_name, derived_stem, safe_name


def crop_boxes_xyxy_px(detections: Detections, width_px: int, height_px: int, padding: float) -> npt.NDArray[np.int64]:
    """Integer crop windows: each box grown by ``padding`` x its larger side on every side, clipped."""
    boxes = detections.xyxy_px
    pad = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * padding
    grown = np.stack([boxes[:, 0] - pad, boxes[:, 1] - pad, boxes[:, 2] + pad, boxes[:, 3] + pad], axis=1)
    grown[:, 0::2] = np.clip(grown[:, 0::2], 0, width_px)
    grown[:, 1::2] = np.clip(grown[:, 1::2], 0, height_px)
    windows = np.stack(
        [np.floor(grown[:, 0]), np.floor(grown[:, 1]), np.ceil(grown[:, 2]), np.ceil(grown[:, 3])], axis=1
    ).astype(np.int64)
    windows[:, 2] = np.maximum(windows[:, 2], windows[:, 0] + 1)
    windows[:, 3] = np.maximum(windows[:, 3], windows[:, 1] + 1)
    return windows


def write_crops(
    card_out: Path,
    output_key: str,
    upright_rgb: npt.NDArray[np.uint8],
    detections: Detections,
    labels: LabelSpace,
    padding: float,
    jpeg_quality: int,
) -> list[str]:
    """Write one JPEG per detection (already filtered by the caller); returns paths relative to ``card_out``."""
    ranked = detections.sorted_by_confidence()
    height, width = upright_rgb.shape[:2]
    windows = crop_boxes_xyxy_px(ranked, width, height, padding)
    stem = derived_stem(output_key)
    written = []
    for rank, (window, class_id) in enumerate(zip(windows, ranked.class_id, strict=True)):
        x0, y0, x1, y1 = (int(v) for v in window)
        label = labels.name(labels.index(int(class_id), ranked.classifications(rank)))
        folder = bounded_name(safe_name(label))
        relative = f"{CROPS_DIR}/{folder}/{stem}__det{rank:02d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(upright_rgb[y0:y1, x0:x1]).save(buffer, format="JPEG", quality=jpeg_quality)
        write_bytes_atomic(card_out / relative, buffer.getvalue())
        written.append(relative)
    return written
