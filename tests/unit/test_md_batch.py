from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from andi_edge.detections import Detections, ImageResult, PhotoInfo
from andi_edge.sinks.md_batch import batch_document, detection_categories, image_entry


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
