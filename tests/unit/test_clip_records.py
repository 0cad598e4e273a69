"""A clip in the review's terms: known by its poster frame's boxes, named by the vote of all its frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from andi_edge.detections import ClipInfo, Detections, FrameResult, ImageResult, PhotoInfo
from andi_edge.record import ResultRecord
from andi_edge.results.records import record_from_entry, record_from_row
from andi_edge.state.journal import PhotoRow

OWL, SQUIRREL = 0, 1


def _frame(number: int, conf: float, labels: list[tuple[int, float]]) -> FrameResult:
    detections = Detections(
        np.array([[10, 10, 110, 110]], np.float32),
        np.array([conf], np.float32),
        np.array([0], np.int64),
        np.array([[label for label, _ in labels]], np.int64),
        np.array([[c for _, c in labels]], np.float32),
    )
    return FrameResult(number, number / 10.0, detections)


def _row(result: ImageResult) -> PhotoRow:
    return PhotoRow(1, "card", "CLIP.MP4", 1, 0, "ab", "done", None, ResultRecord(result=result), None, 1, 0.0)


def test_a_clip_is_named_by_its_frames_vote_not_by_one_odd_frame() -> None:
    frames = (
        _frame(0, 0.6, [(OWL, 0.9), (SQUIRREL, 0.1)]),
        _frame(10, 0.95, [(SQUIRREL, 0.8), (OWL, 0.2)]),  # the most confident box: the poster, an odd label
        _frame(20, 0.7, [(OWL, 0.85), (SQUIRREL, 0.15)]),
        _frame(30, 0.5, [(OWL, 0.9), (SQUIRREL, 0.1)]),
    )
    result = ImageResult(
        path=Path("CLIP.MP4"),
        detections=frames[1].detections,
        photo=PhotoInfo(640, 480),
        clip=ClipInfo(640, 480, 10.0, 4.0),
        frames=frames,
    )
    record = record_from_row(_row(result))
    assert record.is_clip and record.poster_frame == 10 and record.poster_time_s == 1.0
    assert record.clip_duration_s == 4.0
    [box] = record.boxes
    assert box.conf == np.float32(0.95), "the poster frame's box"
    assert box.classifications[0][0] == OWL and abs(box.classifications[0][1] - (0.9 + 0.2 + 0.85 + 0.9) / 4) < 1e-6


def test_a_megadetector_video_entry_is_known_by_its_most_confident_boxs_frame() -> None:
    entry = {
        "file": "CLIP.MP4",
        "frame_rate": 30.0,
        "frames_processed": [0, 30, 60],
        "detections": [
            {"category": "1", "conf": 0.8, "bbox": [0.1, 0.1, 0.2, 0.2], "frame_number": 30},
            {"category": "2", "conf": 0.3, "bbox": [0.5, 0.5, 0.1, 0.1], "frame_number": 60},
        ],
    }
    record = record_from_entry("card", "CLIP.MP4", None, 0, entry)
    assert record.is_clip and record.poster_frame == 30 and record.poster_time_s == 1.0
    assert [b.class_index for b in record.boxes] == [0], "only the poster frame's boxes"
    assert record.clip_duration_s == 2.0
    photo = record_from_entry("card", "IMG.JPG", None, 0, {"file": "IMG.JPG", "detections": []})
    assert not photo.is_clip


def test_a_clip_is_one_capture_that_lasts_in_its_cameras_events() -> None:
    """A photo, then a 100 s clip starting 10 s later, then a photo 40 s after the clip ends: one event (the gap is
    counted from the clip's end), ending with the last photo; a photo 61 s after that starts another."""
    from datetime import datetime, timedelta

    from andi_edge.results.events import group_events
    from andi_edge.results.records import PhotoRecord

    t0 = datetime(2024, 5, 1, 3, 0, 0)

    def record(name: str, at: datetime, duration_s: float = 0.0) -> PhotoRecord:
        return PhotoRecord(
            card_id="card", rel_path=f"DCIM/100MEDIA/{name}", output_key=name, camera_key="folder:DCIM",
            capture_time=at, file_mtime=at, width_px=640, height_px=480, boxes=(), failure=None,
            poster_frame=0 if duration_s else None, clip_duration_s=duration_s,
        )  # fmt: skip

    records = [
        record("IMG_0001.JPG", t0),
        record("CLIP0002.MP4", t0 + timedelta(seconds=10), duration_s=100),
        record("IMG_0003.JPG", t0 + timedelta(seconds=150)),
        record("IMG_0004.JPG", t0 + timedelta(seconds=211)),
    ]
    first, second = group_events(records, gap_s=60, label_threshold=0.2)
    assert [key[1].rsplit("/", 1)[1] for key in first.photos] == ["IMG_0001.JPG", "CLIP0002.MP4", "IMG_0003.JPG"]
    assert (first.start, first.end) == (t0, t0 + timedelta(seconds=150))
    assert [key[1].rsplit("/", 1)[1] for key in second.photos] == ["IMG_0004.JPG"]
    lone = group_events([record("CLIP0009.MP4", t0, duration_s=30)], gap_s=60, label_threshold=0.2)
    assert lone[0].end == t0 + timedelta(seconds=30), "a clip's event lasts as long as the clip"


def test_a_containers_creation_time_is_the_cameras_clock() -> None:
    from andi_edge.runtime.clips import camera_time

    assert camera_time("2024-05-01T03:12:00.000000Z") == "2024-05-01T03:12:00"
    assert camera_time("2024-05-01 03:12:00+02:00") == "2024-05-01T03:12:00"
    assert camera_time("1970-01-01T00:00:00Z") is None and camera_time("1904-01-01T00:00:00Z") is None
    assert camera_time("soon") is None and camera_time(None) is None


def test_a_clips_crops_are_its_poster_frames_boxes_and_each_categorys_best() -> None:
    from andi_edge.daemon.processing import _clip_crop_boxes

    def frame(number: int, boxes: list[tuple[int, float]]) -> FrameResult:
        return FrameResult(
            number,
            number / 10,
            Detections(
                np.array([[0, 0, 10, 10]] * len(boxes), np.float32).reshape(-1, 4),
                np.array([c for _, c in boxes], np.float32),
                np.array([k for k, _ in boxes], np.int64),
            ),
        )

    frames = (
        frame(0, [(0, 0.5), (2, 0.25)]),
        frame(10, [(0, 0.9), (0, 0.3), (1, 0.1)]),  # the poster: the clip's most confident box
        frame(20, [(2, 0.6), (1, 0.15)]),  # the vehicle's best box; the person's never reaches the threshold
    )
    result = ImageResult(
        path=Path("c.mp4"), detections=frames[1].detections, photo=PhotoInfo(640, 480),
        clip=ClipInfo(640, 480, 10.0, 3.0), frames=frames,
    )  # fmt: skip
    assert _clip_crop_boxes(result, threshold=0.2) == {10: [0, 1], 20: [0]}
