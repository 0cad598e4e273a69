"""Cards and configs are data from strangers: sizes, normalisations and counts are bounded where they are read,
and a busy photo's crops go to the classifier in chunks (issue: field faults, second round)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from andi_edge.config import ClassifierSettings, DetectorSettings
from andi_edge.detections import Detections
from andi_edge.errors import ConfigError, ModelError
from andi_edge.runtime.classifier import CROP_CHUNK, Classifier, PhotoPixels
from andi_edge.runtime.classifier_card import card_from_mapping
from andi_edge.runtime.decode import decode_photo, read_photo_bytes
from andi_edge.runtime.model_meta import ModelCard
from tests.classifier_factory import mean_colour_classifier

SERENGETI = "serengeti_S1_D04_R6_sequence"


def test_a_detector_card_claiming_a_huge_input_is_refused() -> None:
    with pytest.raises(ModelError, match=r"input size 100000x100000 is out of range \(1\.\.4096 px a side\)"):
        ModelCard(name="x", class_names=("animal",), input_height=100000, input_width=100000, head="yolov5")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", 100000, "out of range"),
        ("mean", [float("nan"), 0.5, 0.5], "finite"),
        ("std", [0.2, float("inf"), 0.2], "finite"),
        ("std", [0.2, 0.0, 0.2], "std positive"),
    ],
)
def test_a_classifier_card_out_of_bounds_is_refused(field: str, value: object, message: str) -> None:
    raw = {"labels": ["owl", "squirrel"], "input_size": 224, field: value}
    with pytest.raises(ModelError, match=message):
        card_from_mapping(raw, "test")


def test_counts_a_config_may_ask_for_are_bounded() -> None:
    with pytest.raises(ConfigError, match=r"detector\.max_detections must be between 1 and 1000"):
        DetectorSettings(max_detections=100000)
    with pytest.raises(ConfigError, match=r"classifier\.max_crops must be between 1 and 200"):
        ClassifierSettings(max_crops=100000)


def test_a_busy_photos_crops_are_classified_in_chunks(
    tmp_path: Path, photos_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = sorted((photos_dir / SERENGETI).glob("*.JPG"))[0]
    data = read_photo_bytes(photo)
    decoded = decode_photo(data, max_image_pixels=10**9)
    classifier = Classifier(mean_colour_classifier(tmp_path / "cls.onnx"), None, ClassifierSettings(max_crops=200))
    n = 3 * CROP_CHUNK + 5
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 1000, (n, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + 200], axis=1)
    detections = Detections(
        xyxy_px=boxes, confidence=np.linspace(0.9, 0.5, n, dtype=np.float32), class_id=np.zeros(n, np.int64)
    )
    batches: list[int] = []
    real_predict = classifier.predict

    def recording(batch: np.ndarray) -> np.ndarray:
        batches.append(len(batch))
        return real_predict(batch)

    monkeypatch.setattr(classifier, "predict", recording)
    pixels = PhotoPixels(decoded, data, photo.name, 10**9, 2**30)
    named = classifier.classify(pixels, detections, frozenset({0}))
    assert batches == [CROP_CHUNK] * 3 + [5]
    assert named.classification_id is not None and (named.classification_id[:, 0] >= 0).all()
