from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from andi_edge import __version__
from andi_edge.detections import Detections, ImageResult, PhotoInfo
from andi_edge.results.events import Event
from andi_edge.results.repeats import RepeatPattern
from andi_edge.results.review import PhotoAnnotation
from andi_edge.sinks.md_batch import (
    annotate_entry,
    batch_document,
    batch_text,
    clip_entry,
    detection_categories,
    image_entry,
    write_batch,
)


def _result(boxes: list[list[float]], confs: list[float], classes: list[int]) -> ImageResult:
    return ImageResult(
        path=Path("x.jpg"),
        detections=Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(confs), np.array(classes)),
        photo=PhotoInfo(width_px=2000, height_px=1000, capture_time="2021-05-01T06:07:08", camera_make="RECONYX"),
    )


def test_categories_never_use_zero() -> None:
    assert detection_categories(["animal", "person", "vehicle"]) == {"1": "animal", "2": "person", "3": "vehicle"}


def test_entry_bbox_is_normalised_top_left_and_sorted() -> None:
    entry = image_entry(_result([[100, 100, 300, 600], [1000, 500, 1500, 1000]], [0.51234, 0.9], [0, 2]), "a/x.jpg")
    assert entry["file"] == "a/x.jpg"
    assert entry["detections"] == [
        {"category": "3", "conf": 0.9, "bbox": [0.5, 0.5, 0.25, 0.5]},
        {"category": "1", "conf": 0.512, "bbox": [0.05, 0.1, 0.1, 0.5]},
    ]
    assert entry["width"] == 2000 and entry["height"] == 1000
    assert entry["datetime"] == "2021-05-01T06:07:08"
    assert entry["exif_metadata"] == {"Make": "RECONYX"}


def test_empty_and_failed_entries() -> None:
    empty = image_entry(_result([], [], []), "e.jpg")
    assert empty["detections"] == []
    failed = image_entry(ImageResult(path=Path("f.jpg"), failure="corrupt: truncated"), "f.jpg")
    assert failed == {"file": "f.jpg", "failure": "corrupt: truncated"}


def test_document_header() -> None:
    doc = batch_document([], ["a", "b"], {"model_file": "m.onnx", "input_size": [320, 320]}, 0.25, 0.1)
    assert doc["info"]["format_version"] == "1.6"
    assert doc["info"]["detector"] == "m.onnx"
    assert doc["info"]["detector_metadata"]["typical_detection_threshold"] == 0.25
    assert doc["detection_categories"] == {"1": "a", "2": "b"}
    assert doc["images"] == []


def test_stale_temp_files_are_swept_and_nothing_else(tmp_path: Path) -> None:
    from andi_edge.sinks.atomic import remove_stale_temp_files, write_json_atomic

    write_json_atomic(tmp_path / "a" / "IMG_0001.JPG.json", {"ok": True})
    (tmp_path / "a" / ".IMG_0002.JPG.json.k3j_9xqz.tmp").write_text("{half")
    (tmp_path / ".megadetector_results.json.abcdefgh.tmp").write_text("{")
    (tmp_path / "a" / "notes.tmp").write_text("a user's file")
    (tmp_path / "a" / ".hidden.tmp").write_text("not ours either")
    assert remove_stale_temp_files(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".hidden.tmp", "IMG_0001.JPG.json", "a", "notes.tmp"]


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_files_get_the_mode_a_plain_open_would(tmp_path: Path, umask: int, expected: int) -> None:
    """mkstemp makes 0o600 files whatever the umask; outputs must follow the umask (the service sets 0027)."""
    import subprocess
    import sys

    target = tmp_path / "out.json"
    code = (
        f"import os; os.umask({umask}); from pathlib import Path; from andi_edge.sinks.atomic import write_json_atomic;"
        f" write_json_atomic(Path({str(target)!r}), {{'ok': True}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert target.stat().st_mode & 0o777 == expected


def test_an_output_that_cannot_be_created_is_an_output_error(tmp_path: Path) -> None:
    """Not a raw OSError: the CLI turns OutputError into a message, and the daemon reads ENOSPC from its cause."""
    from andi_edge.errors import OutputError
    from andi_edge.sinks.atomic import write_json_atomic

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        write_json_atomic(blocker / "sub" / "out.json", {"ok": True})  # mkdir fails
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode; /proc refuses even root
            folder = Path("/proc")
        with pytest.raises(OutputError, match="cannot write") as err:
            write_json_atomic(folder / "out.json", {"ok": True})  # mkstemp fails
        assert isinstance(err.value.__cause__, OSError)
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_entry_with_classifications_camera_fields_and_boxes_past_the_edge() -> None:
    """Every field a reader uses: boxes reaching past the photo are clipped to it (corners first, so a box from
    x=-50 to 400 is 400 px wide, not 450), never negative, never past 1;
    classifications are [id, conf] best first (ids as category ids, padding -1 left out), EXIF under its names."""
    detections = Detections(
        np.array([[-50, -20, 400, 300], [1900, 900, 2100, 1100]], np.float32),
        np.array([0.8, 0.6]),
        np.array([0, 1]),
        classification_id=np.array([[4, 0], [2, -1]]),
        classification_conf=np.array([[0.71234, 0.2], [0.55555, 0.0]]),
    )
    photo = PhotoInfo(2000, 1000, camera_make="RECONYX", camera_model="HC600", camera_serial="H6001234")
    entry = image_entry(ImageResult(path=Path("x.jpg"), detections=detections, photo=photo), "x.jpg")
    assert entry["detections"] == [
        {"category": "1", "conf": 0.8, "bbox": [0.0, 0.0, 0.2, 0.3], "classifications": [["5", 0.712], ["1", 0.2]]},
        {"category": "2", "conf": 0.6, "bbox": [0.95, 0.9, 0.05, 0.1], "classifications": [["3", 0.556]]},
    ]
    assert entry["exif_metadata"] == {"Make": "RECONYX", "Model": "HC600", "SerialNumber": "H6001234"}
    bare = image_entry(ImageResult(path=Path("x.jpg"), detections=detections, photo=photo), "x.jpg", False)
    assert set(bare) == {"file", "detections"}


def test_without_photo_info_boxes_stay_as_given() -> None:
    """A result without photo facts (a backend that reports normalised boxes) is written as it stands."""
    detections = Detections(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), np.array([0.5]), np.array([0]))
    entry = image_entry(ImageResult(path=Path("x.jpg"), detections=detections), "x.jpg")
    assert entry == {"file": "x.jpg", "detections": [{"category": "1", "conf": 0.5, "bbox": [0.1, 0.2, 0.3, 0.4]}]}


@pytest.fixture()
def far_east_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time at UTC+14, where a local clock taken for UTC is off by half a day."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east_clock")
def test_document_info_names_the_run_and_the_classifier() -> None:
    provenance = {"model_file": "md.onnx", "input_size": [640, 480], "backend": "onnxruntime"}
    doc = batch_document([], ["animal"], provenance, 0.2, 0.05, classification_names=["fox", "deer"])
    info = doc["info"]
    assert info["detector_metadata"] == {
        "typical_detection_threshold": 0.2,
        "conservative_detection_threshold": 0.05,
        "image_size": 640,
    }
    assert info["andi_edge"] == {"version": __version__, **provenance}
    stamp = datetime.strptime(info["detection_completion_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60, "completion time is UTC, now"
    assert doc["classification_categories"] == {"1": "fox", "2": "deer"}
    assert "classification_categories" not in batch_document([], ["animal"], provenance, 0.2, 0.05)
    assert batch_document([], ["a"], {}, 0.2, 0.05)["info"]["detector_metadata"]["image_size"] == 0


def test_batch_text_is_the_document_with_one_image_per_line(tmp_path: Path) -> None:
    entries = [image_entry(_result([[100, 100, 300, 600]], [0.9], [0]), f"a/{i}.jpg") for i in range(3)]
    for images in (entries, []):
        doc = batch_document(images, ["animal"], {"model_file": "m.onnx", "input_size": [320]}, 0.2, 0.05)
        text = batch_text(doc)
        assert json.loads(text) == doc
        lines = text.splitlines()
        assert lines[0] == "{" and lines[1].startswith(' "info": {') and lines[-1] == "}"
        assert text.count('"images"') == 1
        image_lines = [line for line in lines if line.lstrip().startswith('{"file"')]
        assert len(image_lines) == len(images)
        write_batch(tmp_path / "out" / "batch.json", doc)
        assert (tmp_path / "out" / "batch.json").read_text().rstrip("\n") == text


def test_annotations_add_the_event_and_repeat_flags_and_can_be_undone() -> None:
    entry = image_entry(_result([[100, 100, 300, 600], [0, 0, 10, 10]], [0.9, 0.5], [0, 0]), "x.jpg")
    event = Event("ev-1", "card", "folder:a", datetime(2024, 1, 1, 6), datetime(2024, 1, 1, 6, 0, 5),
                  (("card", "x.jpg"), ("card", "y.jpg")), 0, 0.9, 2)  # fmt: skip
    pattern = RepeatPattern("rp-1", "card", "folder:a", (0.0, 0.0, 0.005, 0.01), (("card", "x.jpg"),) * 12,
                            (), kept=False)  # fmt: skip
    flagged = annotate_entry(entry, PhotoAnnotation(event, "animal", 0, {1: pattern}, suppress=False))
    assert flagged["event"]["id"] == "ev-1" and flagged["event"]["photos"] == 2 and flagged["event"]["position"] == 1
    assert flagged["detections"][1]["repeat"] == {"pattern": "rp-1", "photos": 12}
    assert flagged["detections"][1]["conf"] == 0.5 and "repeat" not in flagged["detections"][0]
    suppressed = annotate_entry(flagged, PhotoAnnotation(event, "animal", 0, {1: pattern}, suppress=True))
    assert suppressed["detections"][1]["conf"] == -0.5
    undone = annotate_entry(suppressed, PhotoAnnotation(None, "empty", 0, {}, suppress=False))
    assert undone == {k: v for k, v in entry.items()}, "no event, no flag, the confidence restored"
    assert "event" not in undone


def _clip_result(frames_boxes: list[list[tuple[int, float, tuple[float, float, float, float]]]]) -> ImageResult:
    from andi_edge.detections import ClipInfo, FrameResult

    frames = []
    for n, boxes in enumerate(frames_boxes):
        detections = Detections(
            np.array([b for _, _, b in boxes], np.float32).reshape(-1, 4),
            np.array([c for _, c, _ in boxes], np.float32),
            np.array([k for k, _, _ in boxes], np.int64),
        )
        frames.append(FrameResult(n * 30, float(n), detections))
    clip = ClipInfo(width_px=200, height_px=100, frame_rate=29.97, duration_s=3.0)
    return ImageResult(
        path=Path("c.mp4"), detections=frames[0].detections, photo=PhotoInfo(200, 100), clip=clip, frames=tuple(frames)
    )


def test_a_clip_entry_in_megadetectors_video_convention() -> None:
    result = _clip_result(
        [
            [(0, 0.6, (0, 0, 100, 50)), (1, 0.3, (10, 10, 20, 20))],
            [(0, 0.9, (100, 50, 200, 100))],
            [(0, 0.2, (0, 0, 10, 10)), (1, 0.4, (150, 0, 250, 50))],  # the person box runs off the frame
        ]
    )
    entry = clip_entry(result, "DCIM/c.mp4")
    assert entry["file"] == "DCIM/c.mp4" and entry["frame_rate"] == 29.97
    assert entry["frames_processed"] == [0, 30, 60] and (entry["width"], entry["height"]) == (200, 100)
    assert entry["detections"] == [
        {"category": "1", "conf": 0.9, "bbox": [0.5, 0.5, 0.5, 0.5], "frame_number": 30},
        {"category": "2", "conf": 0.4, "bbox": [0.75, 0.0, 0.25, 0.5], "frame_number": 60},
    ], "the most confident of each category, clipped to the frame, best first"
    every = clip_entry(result, "DCIM/c.mp4", all_frames=True)["detections"]
    assert [(d["frame_number"], d["conf"]) for d in every] == [(30, 0.9), (0, 0.6), (60, 0.4), (0, 0.3), (60, 0.2)]
    assert "partial" not in entry
    assert image_entry(result, "DCIM/c.mp4") == entry, "image_entry renders a clip in the video convention"
    failed = clip_entry(ImageResult(path=Path("c.mp4"), failure="corrupt: x"), "c.mp4")
    assert failed == {"file": "c.mp4", "failure": "corrupt: x", "frame_rate": -1.0, "frames_processed": [],
                      "detections": None}  # fmt: skip


def test_a_partial_clip_says_so_and_a_clips_boxes_carry_no_repeat_flags() -> None:
    import dataclasses

    result = _clip_result([[(0, 0.8, (0, 0, 50, 50))]])
    assert result.clip is not None
    cut = dataclasses.replace(result, clip=dataclasses.replace(result.clip, partial="partial: cut short"))
    entry = clip_entry(cut, "c.mp4")
    assert entry["partial"] == "partial: cut short"
    pattern = RepeatPattern("rp-1", "card", "folder:a", (0.0, 0.0, 0.25, 0.5), (("card", "c.mp4"),) * 12,
                            (), kept=False)  # fmt: skip
    annotated = annotate_entry(entry, PhotoAnnotation(None, "animal", 0, {0: pattern}, suppress=True))
    assert annotated["detections"][0]["conf"] == 0.8 and "repeat" not in annotated["detections"][0]


def test_a_clip_entrys_rate_ties_and_failures_and_image_entrys_frames() -> None:
    import dataclasses

    tied = _clip_result([[(0, 0.5, (0, 0, 10, 10))], [(0, 0.5, (50, 50, 60, 60))]])
    assert tied.clip is not None
    odd_rate = dataclasses.replace(tied, clip=dataclasses.replace(tied.clip, frame_rate=10.12345))
    entry = clip_entry(odd_rate, "c.mp4")
    assert entry["frame_rate"] == 10.123, "3 decimals"
    assert [d["frame_number"] for d in entry["detections"]] == [0], "of equal confidences, the first frame's"
    assert len(image_entry(tied, "c.mp4", all_frames=True)["detections"]) == 2, "image_entry passes all_frames on"
    assert len(image_entry(tied, "c.mp4")["detections"]) == 1
    failed_with_facts = ImageResult(path=Path("c.mp4"), failure="timeout: stopped", clip=tied.clip)
    assert clip_entry(failed_with_facts, "c.mp4")["frame_rate"] == -1.0, "a failure is a failure, facts or not"
