"""The detector's own arithmetic (head decoding, NMS, mapping back to the photo) with a backend that returns a
known output: no model involved, so a wrong offset or scale shows as a wrong box, not as a lower score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from andi_edge.errors import BackendError
from andi_edge.runtime.backends.fake import FakeBackend
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard

CARD = ModelCard(name="fake", class_names=("animal", "person"), input_height=320, input_width=320, head="yolov5")


def _detector(tmp_path: Path, rows: list[list[float]]) -> tuple[Detector, FakeBackend]:
    output = np.zeros((1, 6300, 7), np.float32)
    output[0, : len(rows)] = np.array(rows, np.float32)
    backend = FakeBackend(lambda x: output, (1, 3, 320, 320), (1, 6300, 7), {CARD_KEY: CARD.to_json()})
    model = tmp_path / "fake.onnx"
    model.write_bytes(b"not read by the fake backend")
    return Detector(model, backend=backend), backend


def test_boxes_map_back_to_photo_pixels(tmp_path: Path) -> None:
    # a 640x480 photo letterboxes to 320x240 with 40 px of padding on top: gain 0.5
    Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / "p.jpg")
    rows = [
        [160, 160, 80, 40, 0.9, 0.1, 0.8],  # person, score 0.72, centre of the input
        [162, 161, 80, 40, 0.8, 0.1, 0.7],  # same object, lower score: suppressed by NMS
        [40, 60, 20, 20, 0.6, 0.9, 0.05],  # animal, score 0.54, top-left
    ]
    detector, backend = _detector(tmp_path, rows)
    result = detector.detect(tmp_path / "p.jpg")
    assert result.detections is not None and backend.calls == 1
    d = result.detections
    assert d.class_id.tolist() == [1, 0]
    np.testing.assert_allclose(d.confidence, [0.72, 0.54], rtol=1e-5)
    # input (120, 140)-(200, 180) -> photo: x / 0.5, (y - 40) / 0.5
    np.testing.assert_allclose(d.xyxy_px[0], [240, 200, 400, 280], atol=1e-3)
    np.testing.assert_allclose(d.xyxy_px[1], [60, 20, 100, 60], atol=1e-3)  # input (30, 50)-(50, 70)


def test_a_failing_backend_is_a_backend_error_not_a_photo_failure(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")

    def broken(_: np.ndarray) -> np.ndarray:
        raise BackendError("device lost")

    model = tmp_path / "fake.onnx"
    model.write_bytes(b"x")
    backend = FakeBackend(broken, (1, 3, 320, 320), (1, 6300, 7), {CARD_KEY: CARD.to_json()})
    with pytest.raises(BackendError, match="device lost"):
        Detector(model, backend=backend).detect(tmp_path / "p.png")


def test_a_box_that_lies_in_the_letterbox_padding_is_no_detection(tmp_path: Path) -> None:
    """A 640x480 photo has 40 rows of padding above and below it at 320 px. A box wholly in the padding clips
    to a zero-height box on the photo (seen from a fine-tuned model: [0, 0, W, 0] at 0.27): nothing a reviewer
    could see, and no box a matcher can pair. It is dropped; a box reaching into the photo by a pixel is not."""
    Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / "p.jpg")
    rows = [
        [160, 20, 300, 30, 0.9, 0.1, 0.8],  # rows 5-35 of the input: all padding
        [160, 300, 300, 10, 0.8, 0.9, 0.1],  # rows 295-305: the bottom padding
        [160, 20, 300, 41, 0.7, 0.9, 0.1],  # rows -0.5..40.5: reaches one input row, two photo rows, into the photo
        [100, 160, 40, 40, 0.6, 0.9, 0.05],  # an ordinary box
    ]
    detector, _ = _detector(tmp_path, rows)
    result = detector.detect(tmp_path / "p.jpg")
    assert result.detections is not None
    d = result.detections
    assert len(d) == 2 and d.confidence.tolist() == pytest.approx([0.63, 0.54], rel=1e-5)
    heights = d.xyxy_px[:, 3] - d.xyxy_px[:, 1]
    assert heights.min() >= 1.0
