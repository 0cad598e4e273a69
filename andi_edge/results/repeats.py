"""Repeat detections: a box that recurs at the same place in many photos of one camera is probably a rock, a
branch or a fence post, not an animal (the idea behind MegaDetector's repeat-detection elimination).

Boxes of one camera are clustered in time order: a box joins the first pattern whose seed box overlaps it by
at least ``iou_threshold``, otherwise it seeds a new pattern. A pattern seen in ``min_photos`` or more photos is
flagged. Nothing is deleted: a flag is a mark on the result, and a pattern a person has confirmed as real
(``kept``) is not flagged again.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

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


def _iou_xywh(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    inter_h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class _SeedIndex:
    """Finds the seed boxes that can overlap a box by ``iou`` or more without comparing it to every seed.

    IoU >= t needs each side within a factor t of the other's (so log-sizes in the same or a neighbouring bucket
    of width -ln t) and centres at most (1 - t) x the larger side apart (so within one cell, when cells are that
    large for the bucket): an exact pre-filter; the IoU itself is then computed on the few candidates.
    """

    def __init__(self, iou: float) -> None:
        self.iou = iou
        self.step = -math.log(iou) if iou < 1 else 1e-9
        self.seeds: list[tuple[float, float, float, float]] = []
        #: (width bucket, height bucket) -> (x cell, y cell) -> seed indices
        self._buckets: dict[tuple[int, int], dict[tuple[int, int], list[int]]] = {}
        self._cell_sizes: dict[int, float] = {}

    def _bucket(self, side: float) -> int:
        return math.floor(math.log(side) / self.step)

    def _cell(self, centre: float, bucket: int) -> int:
        size = self._cell_sizes.get(bucket)
        if size is None:
            size = self._cell_sizes[bucket] = max((1 - self.iou) * math.exp((bucket + 2) * self.step), 1e-9)
        return math.floor(centre / size)

    def best(self, box: tuple[float, float, float, float]) -> int:
        """Index of the best-overlapping seed at or above the IoU threshold (lowest index on ties), or -1."""
        bw, bh = self._bucket(box[2]), self._bucket(box[3])
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        best, best_iou = -1, self.iou
        for nw in (bw - 1, bw, bw + 1):
            kx = self._cell(cx, nw)
            for nh in (bh - 1, bh, bh + 1):
                cells = self._buckets.get((nw, nh))
                if cells is None:
                    continue
                ky = self._cell(cy, nh)
                for x in (kx - 1, kx, kx + 1):
                    for y in (ky - 1, ky, ky + 1):
                        for index in cells.get((x, y), ()):
                            overlap = _iou_xywh(box, self.seeds[index])
                            if overlap > best_iou or (overlap == best_iou and (best < 0 or index < best)):
                                best, best_iou = index, overlap
        return best

    def add(self, box: tuple[float, float, float, float]) -> int:
        self.seeds.append(box)
        index = len(self.seeds) - 1
        bw, bh = self._bucket(box[2]), self._bucket(box[3])
        cell = (self._cell(box[0] + box[2] / 2, bw), self._cell(box[1] + box[3] / 2, bh))
        self._buckets.setdefault((bw, bh), {}).setdefault(cell, []).append(index)
        return index


def _pattern_id(card_id: str, camera: str, first: BoxRef, box: tuple[float, ...]) -> str:
    seed = f"{card_id}\0{camera}\0{first[0][1]}\0{first[1]}\0" + ",".join(f"{v:.4f}" for v in box)
    return "rp-" + hashlib.sha1(seed.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()[:10]


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
        index = _SeedIndex(criteria.iou_threshold)
        members: list[list[BoxRef]] = []
        for photo in photos:
            for i, box in enumerate(photo.boxes):
                if box.conf < criteria.min_conf or box.area_norm > criteria.max_area or min(box.xywh_norm[2:]) <= 0:
                    continue
                best = index.best(box.xywh_norm)
                if best < 0:
                    best = index.add(box.xywh_norm)
                    members.append([])
                members[best].append((photo.key, i))
        for seed, refs in zip(index.seeds, members, strict=True):
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
