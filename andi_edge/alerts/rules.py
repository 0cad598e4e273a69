"""What alerts: a finished photo or clip against the rules, with events, quiet hours, cooldowns and a daily cap.

Evaluation is a pure function of the finished rows, in the order the journal committed them, and of the state it
carries from row to row (``RuleState``, stored with the queue in one transaction). Its clock is the time each row
was finished on the device, never the time it is evaluated: evaluating the same rows again (the alerts process
killed before it saved its position) gives the same alerts with the same ids.

Events, as the alerts see them: photos of one camera on one card, with the same label, taken (camera time) at most
the run's ``events.gap_s`` apart. A photo without a camera time is an event of its own. The first photo of an event
alerts; later ones send an update naming the same event (a rule ``per: photo`` alerts for each).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from andi_edge.alerts.config import AlertRule, AlertSettings
from andi_edge.detections import Detections, ImageResult
from andi_edge.results.labels import LabelSpace

#: events not touched for this long (device time) are forgotten: a later photo starts a new one
EVENT_MEMORY_S = 24 * 3600.0
#: and at most this many are remembered
EVENT_MEMORY_COUNT = 2000


@dataclass(frozen=True)
class Sighting:
    """One label seen in one photo (or clip): its best box, and how many boxes of it."""

    label: str
    category: str
    is_species: bool
    #: the detector's confidence in the label's best box
    conf: float
    #: the classifier's confidence in the species (the detector's, for a category)
    label_conf: float
    #: boxes of the label at or above the rule's confidence (the most in one frame, for a clip)
    count: int
    #: a clip: the frame of the best box
    frame_number: int | None = None
    #: the best box, in the photo's (or the clip frame's) pixels
    box_xyxy_px: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Finished:
    """A finished row as the alerts see it."""

    seq: int
    card_id: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    generation: int
    #: when the daemon finished it, device clock (epoch seconds)
    finished_at: float
    camera_key: str
    #: the camera's clock (EXIF, camera-local, no offset), None when the photo has none
    capture_time: datetime | None
    result: ImageResult
    crops: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.card_id}\0{self.rel_path}\0{self.size_bytes}\0{self.mtime_ns}\0{self.generation}"


@dataclass(frozen=True)
class Decision:
    """One message the rules decided on: an alert, or an update of an event already alerted."""

    kind: str  # "alert" or "update"
    id: str
    rule: str
    sighting: Sighting
    row: Finished
    event_id: str
    #: photos of the event so far, the most boxes in one of them, the best confidence
    event_photos: int
    event_count: int
    event_conf: float


@dataclass
class RuleState:
    """What evaluation carries from one row to the next; JSON in the delivery state."""

    #: (rule, label) -> device time of its last alert
    last_alert: dict[str, float] = field(default_factory=dict)
    #: local date -> alerts raised that day
    daily: dict[str, int] = field(default_factory=dict)
    #: why alerts were held back, by local date then reason (quiet_hours, cooldown, daily_cap)
    suppressed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: (rule, card, camera, label) -> the open event
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "last_alert": self.last_alert,
            "daily": self.daily,
            "suppressed": self.suppressed,
            "events": self.events,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RuleState:
        data = data or {}
        return cls(
            last_alert=dict(data.get("last_alert") or {}),
            daily=dict(data.get("daily") or {}),
            suppressed={k: dict(v) for k, v in (data.get("suppressed") or {}).items()},
            events={k: dict(v) for k, v in (data.get("events") or {}).items()},
        )


def sightings(result: ImageResult, labels: LabelSpace, min_conf: float) -> list[Sighting]:
    """Each label with a box at or above ``min_conf``: its species when the classifier named one, else its
    category. A clip's are taken over every analysed frame."""
    frames: list[tuple[int | None, Detections]] = (
        [(frame.frame_number, frame.detections) for frame in result.frames]
        if result.frames
        else ([(None, result.detections)] if result.detections is not None else [])
    )
    best: dict[str, Sighting] = {}
    for frame_number, detections in frames:
        counts: dict[str, int] = {}
        for i in range(len(detections)):
            conf = float(detections.confidence[i])
            if conf < min_conf:
                continue
            class_index = int(detections.class_id[i])
            index, label_conf, is_species = labels.labelled(class_index, conf, detections.classifications(i))
            name = labels.name(index)
            counts[name] = counts.get(name, 0) + 1
            seen = best.get(name)
            if seen is None or conf > seen.conf:
                x0, y0, x1, y1 = (float(v) for v in detections.xyxy_px[i])
                best[name] = Sighting(
                    name,
                    labels.name(class_index),
                    is_species,
                    conf,
                    label_conf,
                    seen.count if seen is not None else 0,
                    frame_number=frame_number,
                    box_xyxy_px=(x0, y0, x1, y1),
                )
        for name, count in counts.items():
            if count > best[name].count:
                best[name] = dataclasses.replace(best[name], count=count)
    return sorted(best.values(), key=lambda s: (-s.conf, s.label))


def unknown_labels(rule: AlertRule, known_labels: Iterable[str]) -> list[str]:
    """The labels of ``rule`` that none of ``known_labels`` (the model's and its classifier's) is: it never fires
    for them."""
    known = {label.lower() for label in known_labels}
    return [label for label in rule.labels if label.strip().lower() not in known]


def rule_matches(rule: AlertRule, sighting: Sighting) -> bool:
    wanted = {label.strip().lower() for label in rule.labels}
    return sighting.label.lower() in wanted or sighting.category.lower() in wanted


def in_quiet_hours(rule: AlertRule, when: float) -> bool:
    span = rule.quiet_span_min()
    if span is None:
        return False
    local = time.localtime(when)
    minute = local.tm_hour * 60 + local.tm_min
    start, end = span
    return start <= minute < end if start <= end else minute >= start or minute < end


def message_id(kind: str, rule: str, label: str, row: Finished) -> str:
    """Stable for the same file, rule and label, whenever and however often it is evaluated or delivered."""
    seed = f"{kind}\0{rule}\0{label.lower()}\0{row.key}"
    return "al-" + hashlib.sha256(seed.encode("utf-8", "surrogateescape")).hexdigest()[:24]


class Evaluator:
    """The rules applied to finished rows in commit order, carrying ``RuleState``."""

    def __init__(self, settings: AlertSettings, labels: LabelSpace, event_gap_s: float, state: RuleState) -> None:
        self.settings = settings
        self.labels = labels
        self.event_gap_s = event_gap_s
        self.state = state

    def evaluate(self, rows: Iterable[Finished]) -> list[Decision]:
        decisions: list[Decision] = []
        for row in rows:
            if row.result.failure is not None:
                continue
            for rule in self.settings.rules:
                for sighting in sightings(row.result, self.labels, rule.min_conf):
                    if rule_matches(rule, sighting):
                        decision = self._decide(rule, sighting, row)
                        if decision is not None:
                            decisions.append(decision)
            self._forget_old_events(row.finished_at)
        return decisions

    def _decide(self, rule: AlertRule, sighting: Sighting, row: Finished) -> Decision | None:
        title = rule.title
        event_key = "\0".join((title, row.card_id, row.camera_key, sighting.label.lower()))
        event = self.state.events.get(event_key)
        if event is not None and self._continues(event, row):
            event["photos"] += 1
            event["count"] = max(event["count"], sighting.count)
            event["conf"] = max(event["conf"], sighting.conf)
            event["capture"] = row.capture_time.isoformat() if row.capture_time else None
            event["touched"] = row.finished_at
            if rule.per == "event" and event["alerted"]:
                return self._decision("update", rule, sighting, row, event)
            # an event held back so far (quiet hours, cooldown, cap) alerts with its first photo that may
        else:
            event = {
                "id": "ev-" + message_id("event", title, sighting.label, row)[3:19],
                "photos": 1,
                "count": sighting.count,
                "conf": sighting.conf,
                "capture": row.capture_time.isoformat() if row.capture_time else None,
                "touched": row.finished_at,
                "alerted": False,
            }
            self.state.events[event_key] = event
        held = self._held_back(rule, sighting, row.finished_at)
        if held is not None:
            day = self._day(row.finished_at)
            by_reason = self.state.suppressed.setdefault(day, {})
            by_reason[held] = by_reason.get(held, 0) + 1
            return None
        event["alerted"] = True
        self.state.last_alert[f"{title}\0{sighting.label.lower()}"] = row.finished_at
        day = self._day(row.finished_at)
        self.state.daily[day] = self.state.daily.get(day, 0) + 1
        self._keep_recent_days()
        return self._decision("alert", rule, sighting, row, event)

    def _decision(
        self, kind: str, rule: AlertRule, sighting: Sighting, row: Finished, event: dict[str, Any]
    ) -> Decision:
        return Decision(
            kind=kind,
            id=message_id(kind, rule.title, sighting.label, row),
            rule=rule.title,
            sighting=sighting,
            row=row,
            event_id=str(event["id"]),
            event_photos=int(event["photos"]),
            event_count=int(event["count"]),
            event_conf=float(event["conf"]),
        )

    def _continues(self, event: dict[str, Any], row: Finished) -> bool:
        if row.capture_time is None or not event.get("capture"):
            return False
        last = datetime.fromisoformat(str(event["capture"]))
        return abs((row.capture_time - last).total_seconds()) <= self.event_gap_s

    def _held_back(self, rule: AlertRule, sighting: Sighting, now: float) -> str | None:
        if in_quiet_hours(rule, now):
            return "quiet_hours"
        last = self.state.last_alert.get(f"{rule.title}\0{sighting.label.lower()}")
        if rule.cooldown_s > 0 and last is not None and 0 <= now - last < rule.cooldown_s:
            return "cooldown"
        cap = self.settings.daily_cap
        if cap > 0 and self.state.daily.get(self._day(now), 0) >= cap:
            return "daily_cap"
        return None

    @staticmethod
    def _day(when: float) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(when))

    def _keep_recent_days(self) -> None:
        for counts in (self.state.daily, self.state.suppressed):
            for day in sorted(counts)[:-7]:
                del counts[day]

    def _forget_old_events(self, now: float) -> None:
        events = self.state.events
        stale = [k for k, e in events.items() if now - float(e["touched"]) > EVENT_MEMORY_S]
        for key in stale:
            del events[key]
        if len(events) > EVENT_MEMORY_COUNT:
            for key, _ in sorted(events.items(), key=lambda kv: float(kv[1]["touched"]))[
                : len(events) - EVENT_MEMORY_COUNT
            ]:
                del events[key]
