"""Bursts and events: photos of one camera taken less than a gap apart, by EXIF capture time.

An event's label is the class of its highest-confidence detection (at or above a threshold, ignoring boxes
flagged as repeat detections); no such detection makes it an empty event. Photos without a capture time
cannot be placed in time, so each is an event of its own rather than guessed into a neighbour's.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from andi_edge.results.records import PhotoRecord

PhotoKey = tuple[str, str]
BoxRef = tuple[PhotoKey, int]


@dataclass(frozen=True)
class Event:
    event_id: str
    card_id: str
    camera_key: str
    #: camera-local capture times of the first and last photo (None when the photo had no capture time)
    start: datetime | None
    end: datetime | None
    #: photo keys in time order
    photos: tuple[PhotoKey, ...]
    #: class index of the label, or None for an empty event
    label_index: int | None
    label_conf: float | None
    #: the most boxes of the label's class seen in one photo of the event
    label_count: int


def _event_id(card_id: str, camera: str, first: PhotoRecord) -> str:
    """Stable while photos arrive in order: it depends only on the event's first photo."""
    seed = f"{card_id}\0{camera}\0{first.rel_path}\0{first.capture_time}"
    return "ev-" + hashlib.sha1(seed.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()[:12]


def _label(
    members: list[PhotoRecord], threshold: float, ignored: Callable[[BoxRef], bool]
) -> tuple[int | None, float | None, int]:
    best_index: int | None = None
    best_conf: float | None = None
    for record in members:
        for i, box in enumerate(record.boxes):
            if box.conf >= threshold and not ignored((record.key, i)) and (best_conf is None or box.conf > best_conf):
                best_index, best_conf = box.class_index, box.conf
    if best_index is None:
        return None, None, 0
    count = max(
        sum(
            1
            for i, b in enumerate(r.boxes)
            if b.class_index == best_index and b.conf >= threshold and not ignored((r.key, i))
        )
        for r in members
    )
    return best_index, best_conf, count


def group_events(
    records: Iterable[PhotoRecord],
    gap_s: float,
    label_threshold: float,
    ignored: Callable[[BoxRef], bool] = lambda _ref: False,
) -> list[Event]:
    """Events of every (card, camera), in time order; failed photos belong to none."""
    by_camera: dict[tuple[str, str], list[PhotoRecord]] = defaultdict(list)
    for record in records:
        if record.failure is None:
            by_camera[(record.card_id, record.camera_key)].append(record)
    events: list[Event] = []
    for (card_id, camera), photos in sorted(by_camera.items()):
        timed = sorted(
            ((p.capture_time, p) for p in photos if p.capture_time is not None), key=lambda tp: (tp[0], tp[1].rel_path)
        )
        groups: list[list[PhotoRecord]] = []
        last_time: datetime | None = None
        for taken, photo in timed:
            if last_time is not None and (taken - last_time).total_seconds() <= gap_s:
                groups[-1].append(photo)
            else:
                groups.append([photo])
            last_time = taken
        groups.extend([p] for p in sorted(photos, key=lambda p: p.rel_path) if p.capture_time is None)
        for members in groups:
            label_index, label_conf, count = _label(members, label_threshold, ignored)
            events.append(
                Event(
                    event_id=_event_id(card_id, camera, members[0]),
                    card_id=card_id,
                    camera_key=camera,
                    start=members[0].capture_time,
                    end=members[-1].capture_time,
                    photos=tuple(m.key for m in members),
                    label_index=label_index,
                    label_conf=label_conf,
                    label_count=count,
                )
            )
    return events
