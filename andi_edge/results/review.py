"""One pass over a run's records: events, repeat patterns, and what each photo's outputs should say about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from andi_edge.results.events import BoxRef, Event, PhotoKey, group_events
from andi_edge.results.labels import EMPTY_LABEL, LabelSpace
from andi_edge.results.records import Box, PhotoRecord
from andi_edge.results.repeats import RepeatCriteria, RepeatPattern, find_repeats
from andi_edge.settings import EventSettings, RepeatSettings


@dataclass(frozen=True)
class PhotoAnnotation:
    """What a photo's sidecar and batch entry add to its detections: its event and its flagged boxes."""

    event: Event | None
    event_label: str
    #: 0-based place of the photo in its event
    event_position: int
    #: index of the detection in the photo's entry -> its pattern
    repeats: dict[int, RepeatPattern]
    suppress: bool

    def event_json(self) -> dict[str, Any] | None:
        event = self.event
        if event is None:
            return None
        return {
            "id": event.event_id,
            "label": self.event_label,
            "conf": None if event.label_conf is None else round(event.label_conf, 3),
            "count": event.label_count,
            "photos": len(event.photos),
            "position": self.event_position + 1,
            "start": None if event.start is None else event.start.isoformat(),
            "end": None if event.end is None else event.end.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        """All of it, as stored in the journal to tell when a photo's outputs must be rewritten."""
        out: dict[str, Any] = {}
        event = self.event_json()
        if event is not None:
            out["event"] = event
        if self.repeats:
            out["repeats"] = {
                str(i): {"pattern": p.pattern_id, "photos": len(p.photos), "suppressed": self.suppress}
                for i, p in self.repeats.items()
            }
        return out


@dataclass
class Review:
    events: list[Event]
    patterns: list[RepeatPattern]
    suppress: bool
    labels: LabelSpace
    _flagged: dict[BoxRef, RepeatPattern] = field(default_factory=dict)
    #: each photo's event and its place in it
    _event_of: dict[PhotoKey, tuple[Event, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._event_of = {key: (event, i) for event in self.events for i, key in enumerate(event.photos)}

    def event_of(self, key: PhotoKey) -> Event | None:
        found = self._event_of.get(key)
        return None if found is None else found[0]

    def flagged(self, ref: BoxRef) -> RepeatPattern | None:
        return self._flagged.get(ref)

    def suppressed(self, ref: BoxRef) -> bool:
        return self.suppress and ref in self._flagged

    @property
    def label_names(self) -> tuple[str, ...]:
        """Every label an event or a box can have: the detector's categories, then the classifier's labels."""
        return self.labels.names

    def label_name(self, label_index: int | None) -> str:
        return self.labels.name(label_index)

    def box_label(self, box: Box) -> int:
        """A box's label index: its species when the classifier named it confidently, else its category."""
        return self.labels.index(box.class_index, box.classifications)

    def box_label_conf(self, box: Box) -> float:
        """How sure a box's label is: the classifier's confidence in its species, else the detector's."""
        return self.labels.labelled(box.class_index, box.conf, box.classifications)[1]

    def annotation(self, record: PhotoRecord) -> PhotoAnnotation:
        event, position = self._event_of.get(record.key, (None, 0))
        repeats = {
            i: pattern for i in range(len(record.boxes)) if (pattern := self.flagged((record.key, i))) is not None
        }
        label = self.label_name(event.label_index) if event is not None else EMPTY_LABEL
        return PhotoAnnotation(event, label, position, repeats, self.suppress)


def find_patterns(records: Sequence[PhotoRecord], repeats: RepeatSettings) -> list[RepeatPattern]:
    if not repeats.enabled:
        return []
    criteria = RepeatCriteria(repeats.iou_threshold, repeats.min_photos, repeats.min_conf, repeats.max_area)
    return find_repeats(records, criteria)


def build_review(
    records: Sequence[PhotoRecord],
    labels: LabelSpace | Sequence[str],
    events: EventSettings,
    repeats: RepeatSettings,
    default_label_threshold: float,
    kept_patterns: frozenset[str] = frozenset(),
    patterns: list[RepeatPattern] | None = None,
) -> Review:
    """``labels``: what boxes are called (a plain list of class names: their detector categories only).
    ``patterns``: reuse an earlier ``find_patterns`` (the daemon re-runs it only every repeats.interval_s)."""
    space = labels if isinstance(labels, LabelSpace) else LabelSpace(tuple(labels))
    if patterns is None:
        patterns = find_patterns(records, repeats)
    patterns = [replace(p, kept=p.pattern_id in kept_patterns) for p in patterns]
    flagged = {ref: p for p in patterns if not p.kept for ref in p.detections}
    suppress = repeats.action == "suppress"
    threshold = events.label_threshold if events.label_threshold is not None else default_label_threshold
    event_list = group_events(
        records,
        events.gap_s,
        threshold,
        ignored=lambda ref: suppress and ref in flagged,
        label_of=lambda box: space.labelled(box.class_index, box.conf, box.classifications),
    )
    return Review(event_list, patterns, suppress, space, _flagged=flagged)
