"""Repeat detections: a box that recurs at the same place in many photos of one camera is probably a rock, a
branch or a fence post, not an animal (the idea behind MegaDetector's repeat-detection elimination).

Boxes of one camera are clustered in time order: a box joins the first pattern whose seed box overlaps it by
at least ``iou_threshold``, otherwise it seeds a new pattern. A pattern seen in ``min_photos`` or more photos is
flagged. Nothing is deleted: a flag is a mark on the result, and a pattern a person has confirmed as real
(``kept``) is not flagged again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from andi_edge.results.events import BoxRef, PhotoKey
from andi_edge.results.records import PhotoRecord


@dataclass(frozen=True)
class RepeatCriteria:
    iou_threshold: float
    min_photos: int
    min_conf: float
    #: boxes larger than this fraction of the photo are never flagged (an animal close up fills the frame)
    max_area: float


@dataclass(frozen=True)
class RepeatPattern:
    pattern_id: str
    card_id: str
    camera_key: str
    #: the seed box, ``[x, y, w, h]`` normalised
    xywh_norm: tuple[float, float, float, float]
    photos: tuple[PhotoKey, ...]
    detections: tuple[BoxRef, ...]
    #: a person confirmed it is real: reported, never flagged
    kept: bool


def _iou_xywh(box: npt.NDArray[np.float64], seeds: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    x1 = np.maximum(box[0], seeds[:, 0])
    y1 = np.maximum(box[1], seeds[:, 1])
    x2 = np.minimum(box[0] + box[2], seeds[:, 0] + seeds[:, 2])
    y2 = np.minimum(box[1] + box[3], seeds[:, 1] + seeds[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + seeds[:, 2] * seeds[:, 3] - inter
    return np.asarray(np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0), dtype=np.float64)


def _pattern_id(card_id: str, camera: str, first: BoxRef, box: tuple[float, ...]) -> str:
    seed = f"{card_id}\0{camera}\0{first[0][1]}\0{first[1]}\0" + ",".join(f"{v:.4f}" for v in box)
    return "rp-" + hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()[:10]


def find_repeats(
    records: Iterable[PhotoRecord], criteria: RepeatCriteria, kept_ids: frozenset[str] = frozenset()
) -> list[RepeatPattern]:
    """Patterns seen in at least ``criteria.min_photos`` photos of one camera, most frequent first."""
    by_camera: dict[tuple[str, str], list[PhotoRecord]] = defaultdict(list)
    for record in records:
        if record.failure is None and record.boxes:
            by_camera[(record.card_id, record.camera_key)].append(record)
    patterns: list[RepeatPattern] = []
    for (card_id, camera), photos in sorted(by_camera.items()):
        photos.sort(key=lambda p: (p.capture_time or p.file_mtime.replace(tzinfo=None), p.rel_path))
        seeds: list[tuple[float, float, float, float]] = []
        members: list[list[BoxRef]] = []
        seed_array = np.zeros((0, 4), dtype=np.float64)
        for photo in photos:
            for i, box in enumerate(photo.boxes):
                if box.conf < criteria.min_conf or box.area_norm > criteria.max_area:
                    continue
                vector = np.asarray(box.xywh_norm, dtype=np.float64)
                best = -1
                if seeds:
                    overlaps = _iou_xywh(vector, seed_array)
                    candidate = int(np.argmax(overlaps))
                    if overlaps[candidate] >= criteria.iou_threshold:
                        best = candidate
                if best < 0:
                    seeds.append(box.xywh_norm)
                    members.append([])
                    seed_array = np.vstack([seed_array, vector])
                    best = len(seeds) - 1
                members[best].append((photo.key, i))
        for seed, refs in zip(seeds, members, strict=True):
            distinct = tuple(dict.fromkeys(ref[0] for ref in refs))
            if len(distinct) < criteria.min_photos:
                continue
            pattern_id = _pattern_id(card_id, camera, refs[0], seed)
            patterns.append(
                RepeatPattern(
                    pattern_id=pattern_id,
                    card_id=card_id,
                    camera_key=camera,
                    xywh_norm=seed,
                    photos=distinct,
                    detections=tuple(refs),
                    kept=pattern_id in kept_ids,
                )
            )
    patterns.sort(key=lambda p: (-len(p.photos), p.pattern_id))
    return patterns
