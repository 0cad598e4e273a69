"""Bursts and events: photos of one camera taken less than a gap apart, by EXIF capture time.

An event's label comes from its detections at or above a threshold (ignoring boxes flagged as repeat
detections): the species its boxes vote for (``results.labels``: summed classifier confidence), else the category
of its most confident box; no such detection makes it an empty event.
Photos without a capture time cannot be placed in time, so each is an event of its own rather than guessed into a
neighbour's.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from andi_edge.results.records import Box, PhotoRecord

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
    #: label index (``results.labels.LabelSpace``: a category or a species), or None for an empty event
    label_index: int | None
    #: how sure the label is: the classifier's confidence in a species, the detector's in a category
    label_conf: float | None
    #: the most boxes of the label seen in one photo of the event
    label_count: int


def _end(members: list[PhotoRecord]) -> datetime | None:
    """When an event ends: its last photo's time, or the end of a clip that lasts beyond it."""
    ends = [m.capture_time + timedelta(seconds=m.clip_duration_s) for m in members if m.capture_time is not None]
    return max(ends) if ends else None


def _event_id(card_id: str, camera: str, first: PhotoRecord) -> str:
    """Stable while photos arrive in order: it depends only on the event's first photo."""
    seed = f"{card_id}\0{camera}\0{first.rel_path}\0{first.capture_time}"
    return "ev-" + hashlib.sha1(seed.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()[:12]


#: a box's label, how sure that label is, and whether it is a species (a classifier named it)
LabelOf = Callable[[Box], tuple[int, float, bool]]


def _category(box: Box) -> tuple[int, float, bool]:
    return box.class_index, box.conf, False


def _label(
    members: list[PhotoRecord], threshold: float, ignored: Callable[[BoxRef], bool], label_of: LabelOf
) -> tuple[int | None, float | None, int]:
    """The event's label, its confidence and the most boxes of it in one photo.

    Species vote: the one with the highest summed classifier confidence over the event's boxes names the event,
    with its mean confidence, so one odd frame of a burst (a partial view the classifier got wrong, seen by the
    detector at its clearest) does not outvote the others. Without a species, the category of the most
    confident box does."""
    kept = [
        (record, box, label_of(box))
        for record in members
        for i, box in enumerate(record.boxes)
        if box.conf >= threshold and not ignored((record.key, i))
    ]
    if not kept:
        return None, None, 0
    votes: dict[int, list[float]] = defaultdict(list)
    for _, _, (index, conf, species) in kept:
        if species:
            votes[index].append(conf)
    if votes:
        label = max(votes, key=lambda index: (sum(votes[index]), max(votes[index]), -index))
        label_conf = sum(votes[label]) / len(votes[label])
    else:
        _, _, (label, label_conf, _) = max(kept, key=lambda k: k[1].conf)
    per_photo: dict[tuple[str, str], int] = defaultdict(int)
    for record, _, (index, _, _) in kept:
        if index == label:
            per_photo[record.key] += 1
    return label, label_conf, max(per_photo.values())


def group_events(
    records: Iterable[PhotoRecord],
    gap_s: float,
    label_threshold: float,
    ignored: Callable[[BoxRef], bool] = lambda _ref: False,
    label_of: LabelOf = _category,
) -> list[Event]:
    """Events of every (card, camera), in time order; failed photos belong to none. ``label_of``: a box's label
    index, its confidence and whether it is a species (default: its detector category and confidence)."""
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
            # a clip is one capture that lasts: the gap to the next is counted from its end
            ends = taken + timedelta(seconds=photo.clip_duration_s)
            if last_time is not None and (taken - last_time).total_seconds() <= gap_s:
                groups[-1].append(photo)
                last_time = max(last_time, ends)
            else:
                groups.append([photo])
                last_time = ends
        groups.extend([p] for p in sorted(photos, key=lambda p: p.rel_path) if p.capture_time is None)
        for members in groups:
            label_index, label_conf, count = _label(members, label_threshold, ignored, label_of)
            events.append(
                Event(
                    event_id=_event_id(card_id, camera, members[0]),
                    card_id=card_id,
                    camera_key=camera,
                    start=members[0].capture_time,
                    end=_end(members),
                    photos=tuple(m.key for m in members),
                    label_index=label_index,
                    label_conf=label_conf,
                    label_count=count,
                )
            )
    return events
