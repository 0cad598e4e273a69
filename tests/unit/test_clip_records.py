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
