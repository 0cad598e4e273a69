"""Events (time-gap grouping, labels) and repeat-detection patterns on hand-built records.

These are the rules in isolation; tests/integration/test_review.py runs them on real photos through the daemon.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andi_edge.results.events import group_events
from andi_edge.results.records import Box, PhotoRecord, camera_key, record_from_entry
from andi_edge.results.repeats import RepeatCriteria, find_repeats
from andi_edge.results.review import build_review
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.sinks.md_batch import annotate_entry

T0 = datetime(2024, 5, 1, 6, 0, 0)
ROCK = (0.10, 0.70, 0.05, 0.04)


def photo(name: str, seconds: float | None, boxes: tuple[Box, ...] = (), camera: str = "folder:cam1") -> PhotoRecord:
    return PhotoRecord(
        card_id="card",
        rel_path=name,
        output_key=name,
        camera_key=camera,
        capture_time=None if seconds is None else T0 + timedelta(seconds=seconds),
        file_mtime=datetime(2024, 6, 1, tzinfo=UTC),
        width_px=100,
        height_px=100,
        boxes=boxes,
        failure=None,
    )


def test_camera_key_merges_dcim_rollover_folders_and_prefers_the_serial() -> None:
    assert camera_key("DCIM/100RECNX/IMG_0001.JPG", None) == camera_key("DCIM/101RECNX/IMG_0001.JPG", None)
    assert camera_key("DCIM/100RECNX/IMG_0001.JPG", None) == "folder:DCIM"
    assert camera_key("site4/IMG_0001.JPG", None) != camera_key("site5/IMG_0001.JPG", None)
    assert camera_key("site4/IMG_0001.JPG", "H500-1234") == "serial:H500-1234"
    assert camera_key("IMG_0001.JPG", None) == "folder:."


def test_events_split_at_the_gap_per_camera_and_are_labelled_by_the_best_box() -> None:
    zebra, lion = Box(1, 0.9, (0.1, 0.1, 0.3, 0.3)), Box(2, 0.6, (0.5, 0.5, 0.2, 0.2))
    records = [
        photo("a1.jpg", 0, (lion,)),
        photo("a2.jpg", 30, (zebra, lion)),
        photo("a3.jpg", 90),  # 60 s after a2: still the same event at gap 60
        photo("b1.jpg", 151),  # 61 s after a3: a new, empty event
        photo("c1.jpg", 10, camera="folder:cam2"),  # another camera, same time: its own event
        photo("x.jpg", None, (zebra,)),  # no capture time: alone
    ]
    events = group_events(records, gap_s=60, label_threshold=0.25)
    by_first = {e.photos[0][1]: e for e in events}
    assert sorted(by_first) == ["a1.jpg", "b1.jpg", "c1.jpg", "x.jpg"]
    first = by_first["a1.jpg"]
    assert [k[1] for k in first.photos] == ["a1.jpg", "a2.jpg", "a3.jpg"]
    assert (first.label_index, first.label_conf, first.label_count) == (1, 0.9, 1)
    assert by_first["b1.jpg"].label_index is None
    assert by_first["x.jpg"].start is None and by_first["x.jpg"].label_index == 1
    # below the label threshold nothing labels the event
    assert group_events(records[:3], gap_s=60, label_threshold=0.95)[0].label_index is None


def test_event_ids_are_stable_as_photos_arrive() -> None:
    records = [photo(f"p{i}.jpg", i * 5) for i in range(6)]
    ids = {group_events(records[:n], 60, 0.25)[0].event_id for n in range(1, 7)}
    assert len(ids) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40), st.integers(1, 600))
def test_every_photo_is_in_exactly_one_event_and_events_respect_the_gap(seconds: list[int], gap: int) -> None:
    records = [photo(f"p{i:03d}.jpg", s) for i, s in enumerate(seconds)]
    events = group_events(records, gap, 0.25)
    members = [k for e in events for k in e.photos]
    assert sorted(members) == sorted(r.key for r in records)
    record_of = {r.key: r for r in records}
    for event in events:
        times = [record_of[k].capture_time for k in event.photos]
        assert times == sorted(times)  # type: ignore[type-var]
        for a, b in itertools.pairwise(times):
            assert (b - a).total_seconds() <= gap  # type: ignore[operator]
    starts = sorted((e.start, e.end) for e in events)
    for (_, end), (start, _) in itertools.pairwise(starts):
        assert (start - end).total_seconds() > gap  # type: ignore[operator]


def test_a_box_recurring_at_one_place_is_a_pattern_and_a_moving_animal_is_not() -> None:
    records = []
    for i in range(12):
        jitter = 0.002 * (i % 3)
        rock = Box(0, 0.4, (ROCK[0] + jitter, ROCK[1], ROCK[2], ROCK[3]))
        deer = Box(0, 0.9, (0.05 * i, 0.2, 0.1, 0.1))  # moves across the frame
        records.append(photo(f"p{i:02d}.jpg", i * 600, (deer, rock)))
    criteria = RepeatCriteria(iou_threshold=0.85, min_photos=10, min_conf=0.1, max_area=0.2)
    patterns = find_repeats(records, criteria)
    assert len(patterns) == 1
    assert len(patterns[0].photos) == 12
    assert all(index == 1 for _, index in patterns[0].detections)
    # fewer photos than min_photos: nothing; a big box (an animal close up): never
    assert find_repeats(records[:9], criteria) == []
    big = [photo(f"b{i}.jpg", i, (Box(0, 0.9, (0.1, 0.1, 0.6, 0.6)),)) for i in range(12)]
    assert find_repeats(big, criteria) == []
    # other cameras do not add up
    split = [photo(r.rel_path, i, r.boxes, camera=f"folder:cam{i % 2}") for i, r in enumerate(records)]
    assert find_repeats(split, criteria) == []


def _rock_records() -> list[PhotoRecord]:
    rock = Box(0, 0.4, ROCK)
    return [photo(f"p{i:02d}.jpg", i * 600, (rock,)) for i in range(10)]


@pytest.mark.parametrize("action", ["flag", "suppress"])
def test_flags_are_reversible_marks_and_suppress_negates_conf_like_megadetector(action: str) -> None:
    records = _rock_records()
    repeats = RepeatSettings(action=action, min_photos=10)
    review = build_review(records, ["animal"], EventSettings(), repeats, 0.25)
    [pattern] = review.patterns
    entry: dict[str, Any] = {"file": "p00.jpg", "detections": [{"category": "1", "conf": 0.4, "bbox": list(ROCK)}]}
    out = annotate_entry(entry, review.annotation(records[0]))
    detection = out["detections"][0]
    assert detection["repeat"]["pattern"] == pattern.pattern_id
    assert detection["conf"] == (-0.4 if action == "suppress" else 0.4)
    assert entry["detections"][0]["conf"] == 0.4, "the stored result is never changed"
    # an event of a lone rock is empty only when the rock is suppressed
    assert (review.event_of(records[0].key).label_index is None) == (action == "suppress")  # type: ignore[union-attr]
    # a person's verdict (kept) lifts the flag; re-annotating restores the positive confidence
    kept = build_review(records, ["animal"], EventSettings(), repeats, 0.25, frozenset({pattern.pattern_id}))
    again = annotate_entry(out, kept.annotation(records[0]))
    assert again["detections"][0] == {"category": "1", "conf": 0.4, "bbox": list(ROCK)}
    assert kept.patterns[0].kept


def test_record_from_entry_reads_what_image_entry_writes() -> None:
    entry = {
        "file": "DCIM/100RECNX/IMG_0001.JPG",
        "detections": [{"category": "2", "conf": -0.5, "bbox": [0.1, 0.2, 0.3, 0.4]}],
        "width": 4000,
        "height": 3000,
        "datetime": "2024-05-01T06:00:00",
        "exif_metadata": {"Make": "RECONYX", "Model": "HF2", "SerialNumber": "X1"},
    }
    record = record_from_entry("card", entry["file"], None, 1_700_000_000_000_000_000, entry)  # type: ignore[arg-type]
    assert record.boxes == (Box(1, 0.5, (0.1, 0.2, 0.3, 0.4)),)
    assert record.capture_time == T0
    assert record.camera_key == "serial:X1"
    assert record.output_key == entry["file"]
    failed = record_from_entry("card", "bad.jpg", "bad.jpg", 0, {"file": "bad.jpg", "failure": "corrupt: x"})
    assert failed.failure == "corrupt: x" and failed.boxes == ()


def _brute_force_clusters(boxes: list[tuple[float, float, float, float]], iou: float) -> list[list[int]]:
    """The rule the index must reproduce, written the slow obvious way: each box joins the seed it overlaps
    most (at least ``iou``; the earliest seed on a tie), else seeds a new cluster."""

    def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        inter = max(w, 0) * max(h, 0)
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    seeds: list[tuple[float, float, float, float]] = []
    clusters: list[list[int]] = []
    for i, box in enumerate(boxes):
        scores = [overlap(box, s) for s in seeds]
        best = max(range(len(seeds)), key=lambda k: (scores[k], -k), default=-1)
        if best >= 0 and scores[best] >= iou:
            clusters[best].append(i)
        else:
            seeds.append(box)
            clusters.append([i])
    return clusters


_side = st.floats(min_value=0.01, max_value=0.4)
_corner = st.floats(min_value=0.0, max_value=0.6)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(_corner, _corner, _side, _side), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.7, 0.85, 0.95]),
    st.integers(min_value=0, max_value=3),
)
def test_the_spatial_index_finds_exactly_the_brute_force_clusters(
    raw: list[tuple[float, float, float, float]], iou: float, repeats: int
) -> None:
    # near-duplicates of the first few boxes make real clusters; the rest are random
    boxes = list(raw)
    for k in range(repeats):
        for b in raw[:5]:
            boxes.append((b[0] + 0.001 * k, b[1], b[2], b[3] * (1 + 0.01 * k)))
    records = [photo(f"p{i:03d}.jpg", i, (Box(0, 0.5, b),)) for i, b in enumerate(boxes)]
    criteria = RepeatCriteria(iou_threshold=iou, min_photos=2, min_conf=0.1, max_area=1.0)
    found = sorted(sorted(int(ref[0][1][1:4]) for ref in p.detections) for p in find_repeats(records, criteria))
    expected = sorted(c for c in _brute_force_clusters(boxes, iou) if len(c) >= 2)
    assert found == expected
