"""The classifier's runtime pieces on their own: crop windows, the card, probabilities, the pixels crops are cut
from, and what a box is called once a classifier has named it (crop folders, events, the batch file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from andi_edge.detections import Detections
from andi_edge.errors import ModelError
from andi_edge.results.events import group_events
from andi_edge.results.labels import LabelSpace
from andi_edge.results.records import Box, PhotoRecord, record_from_entry
from andi_edge.results.review import build_review
from andi_edge.runtime.classifier import PhotoPixels, crop_tensor, crop_windows_xyxy_px, cut, to_probabilities
from andi_edge.runtime.classifier_card import IMAGENET_MEAN, ClassifierCard, CropPolicy, card_from_mapping, find_card
from andi_edge.runtime.decode import decode_photo
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.sinks.md_batch import batch_document

SQUARE = CropPolicy(padding=0.1, square=True)


def _windows(boxes: list[list[float]], width: int, height: int, policy: CropPolicy = SQUARE) -> np.ndarray:
    return crop_windows_xyxy_px(np.asarray(boxes, np.float32), width, height, policy)


# -- crop windows -----------------------------------------------------------------------------------------------


def test_square_crop_is_padded_around_the_box_centre() -> None:
    (window,) = _windows([[100, 100, 140, 120]], 1000, 800)
    # larger side 40, padding 4 each side: a 48 px square centred on (120, 110)
    np.testing.assert_allclose(window, [96, 86, 144, 134])


def test_square_crop_is_moved_inside_the_photo_not_squashed() -> None:
    (left, bottom) = _windows([[0, 300, 50, 350], [900, 760, 1000, 800]], 1000, 800)
    np.testing.assert_allclose(left, [0, 295, 60, 355])
    assert bottom[2] - bottom[0] == pytest.approx(bottom[3] - bottom[1]) == pytest.approx(120)
    assert bottom[2] == 1000 and bottom[3] == 800


def test_a_box_larger_than_the_photo_is_clipped_and_an_unsquare_policy_keeps_the_shape() -> None:
    (huge,) = _windows([[0, 0, 1000, 800]], 1000, 800)
    np.testing.assert_allclose(huge, [0, 0, 1000, 800])
    (plain,) = _windows([[100, 100, 140, 120]], 1000, 800, CropPolicy(padding=0.5, square=False))
    np.testing.assert_allclose(plain, [80, 80, 160, 140])


@given(
    x=st.floats(0, 999),
    y=st.floats(0, 799),
    w=st.floats(0, 1000),
    h=st.floats(0, 800),
    padding=st.floats(0, 1),
    square=st.booleans(),
)
def test_crop_windows_always_lie_in_the_photo_and_hold_the_box(
    x: float, y: float, w: float, h: float, padding: float, square: bool
) -> None:
    box = [x, y, min(x + w, 1000), min(y + h, 800)]
    (window,) = _windows([box], 1000, 800, CropPolicy(padding, square))
    assert 0 <= window[0] < window[2] <= 1000 and 0 <= window[1] < window[3] <= 800
    assert window[0] <= box[0] + 1e-3 and window[1] <= box[1] + 1e-3
    assert window[2] >= box[2] - 1e-3 and window[3] >= box[3] - 1e-3
    rgb = np.zeros((800, 1000, 3), np.uint8)
    assert cut(rgb, window).size > 0


def test_crop_tensor_normalises_as_the_card_says() -> None:
    card = ClassifierCard(name="t", labels=("a", "b"), input_height_px=8, input_width_px=16)
    tensor = crop_tensor(np.full((40, 40, 3), 255, np.uint8), card)
    assert tensor.shape == (3, 8, 16) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], (1 - np.asarray(IMAGENET_MEAN)) / np.asarray(card.std), rtol=1e-5)


def test_probabilities_from_logits_or_as_given() -> None:
    logits = np.asarray([[0.0, np.log(3.0)], [1000.0, 0.0]], np.float32)
    np.testing.assert_allclose(to_probabilities(logits, "logits"), [[0.25, 0.75], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(to_probabilities(np.asarray([[1.2, -0.1]], np.float32), "probabilities"), [[1.0, 0.0]])
    odd = np.asarray([[np.nan, 0.0], [np.inf, 0.0]], np.float32)
    np.testing.assert_allclose(to_probabilities(odd, "logits"), [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(to_probabilities(odd, "probabilities"), [[0.0, 0.0], [1.0, 0.0]])


# -- the card ---------------------------------------------------------------------------------------------------


def test_yaml_card_forms_and_defaults() -> None:
    card = card_from_mapping(
        {"labels": ["deer", "fox"], "input_size": [96, 128], "normalisation": "symmetric", "output": "probabilities"},
        "my.yaml",
    )
    assert card.labels == ("deer", "fox") and (card.input_height_px, card.input_width_px) == (96, 128)
    assert card.mean == (0.5, 0.5, 0.5) and card.output == "probabilities" and card.crop == CropPolicy()
    assert card.name == "my" and card.source == "my.yaml"
    assert card_from_mapping({"labels": ["a", "b"], "input_size": 64}, "x").input_width_px == 64


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"labels": ["a", "a"]}, "labels repeat"),
        ({"labels": []}, "no labels"),
        ({"labels": "a,b"}, "must be a list"),
        ({"labels": ["a"], "normalisation": "zscore"}, "normalisation 'zscore' is unknown"),
        ({"labels": ["a"], "colour": "rgb"}, "unknown key(s) colour"),
        ({"labels": ["a"], "input_size": [1, 2, 3]}, "input_size is a number or [height, width]"),
        ({"labels": ["a"], "schema_version": 99}, "schema 99"),
        ({"labels": ["a"], "crop": {"padding": 5}}, "crop padding must lie in [0, 2]"),
        ({"labels": ["a"], "output": "scores"}, "output must be one of"),
        ({"labels": ["a"], "std": [0, 1, 1]}, "std positive"),
    ],
)
def test_bad_cards_are_refused_with_the_reason(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=None) as caught:
        card_from_mapping(raw, "card.yaml")
    assert message in str(caught.value) and "card.yaml" in str(caught.value)


def test_card_lookup_order(tmp_path: Path) -> None:
    model = tmp_path / "cls.onnx"
    inside = ClassifierCard(name="inside", labels=("a", "b")).to_metadata()
    (tmp_path / "cls.yaml").write_text("name: beside\nlabels: [x, y]\n")
    (tmp_path / "given.yaml").write_text("name: given\nlabels: [p, q]\n")
    assert find_card(model, inside, tmp_path / "given.yaml").name == "given"
    assert find_card(model, inside, None).name == "inside"
    assert find_card(model, {}, None).name == "beside"
    (tmp_path / "cls.yaml").unlink()
    with pytest.raises(ModelError, match="no classifier card") as caught:
        find_card(model, {}, None)
    assert "cls.yaml" in str(caught.value)


# -- the pixels crops are cut from ------------------------------------------------------------------------------


def test_crops_get_a_larger_decode_only_when_the_detectors_is_too_small(photos_dir: Path) -> None:
    name = "caltech_camera_traps_58a022a4-23d2-11e8-a6a3-ec086b02610b.jpg"
    data = (photos_dir / "lila_md_testset" / name).read_bytes()
    reduced = decode_photo(data, target_long_side_px=320, max_image_pixels=10**9)
    assert reduced.scale < 0.5
    pixels = PhotoPixels(reduced, data, "photo", 10**9, 2**30)
    rgb, scale = pixels.at_scale(reduced.scale * 0.9)
    assert rgb is reduced.rgb and not pixels.redecoded
    assert pixels.redecode_ms == 0
    rgb, scale = pixels.at_scale(0.4)
    assert 0.4 <= scale < 1.0 and pixels.redecoded, "a DCT scale that is enough, not the full photo"
    assert pixels.redecode_ms > 0
    rgb, scale = pixels.at_scale(3.0)
    assert scale == 1.0 and rgb.shape[1] == reduced.info.width_px
    starved = PhotoPixels(reduced, data, "photo", 10**9, 2**20)  # a 1 MiB budget: no larger decode fits
    rgb, scale = starved.at_scale(1.0)
    assert rgb is reduced.rgb and scale == reduced.scale and not starved.redecoded


# -- what a box is called --------------------------------------------------------------------------------------

SPACE = LabelSpace(("animal", "person", "vehicle"), ("deer", "fox", "empty"), species_threshold=0.6)


def test_a_species_names_a_box_only_when_sure_and_never_as_empty() -> None:
    assert SPACE.name(SPACE.index(0, [(1, 0.6), (0, 0.4)])) == "fox"
    assert SPACE.name(SPACE.index(0, [(1, 0.59)])) == "animal"
    assert SPACE.name(SPACE.index(0, [(2, 0.99)])) == "animal", "the background label never names a box"
    assert SPACE.name(SPACE.index(1, [])) == "person"
    assert SPACE.name(SPACE.index(0, [(7, 0.9)])) == "animal", "an id the classifier does not have"
    assert LabelSpace(("animal",)).index(0, [(0, 1.0)]) == 0, "no classifier ran: classifications are not species"
    assert SPACE.is_species(3) and not SPACE.is_species(2)
    assert SPACE.name(None) == "empty" and SPACE.name(42) == "class_42"


def _photo(name: str, seconds: float, boxes: tuple[Box, ...]) -> PhotoRecord:
    return PhotoRecord("card", name, name, "folder:cam", datetime(2024, 5, 1, 6) + timedelta(seconds=seconds),
                       datetime(2024, 6, 1, tzinfo=UTC), 100, 100, boxes, None)  # fmt: skip


def test_events_are_labelled_with_the_species() -> None:
    deer = Box(0, 0.9, (0.1, 0.1, 0.2, 0.2), ((0, 0.8), (1, 0.2)))
    unsure = Box(0, 0.95, (0.5, 0.5, 0.2, 0.2), ((1, 0.55), (0, 0.45)))
    records = [_photo("a.jpg", 0, (deer,)), _photo("b.jpg", 5, (deer, deer)), _photo("c.jpg", 600, (unsure,))]
    review = build_review(records, SPACE, EventSettings(gap_s=60), RepeatSettings(enabled=False), 0.25)
    first, second = review.events
    assert review.label_name(first.label_index) == "deer" and first.label_count == 2
    assert first.label_conf == pytest.approx(0.8), "a species' event is as sure as the classifier was"
    assert review.label_name(second.label_index) == "animal", "0.55 is below the species threshold"
    assert second.label_conf == 0.95
    plain = group_events(records, 60, 0.25)
    assert [e.label_index for e in plain] == [0, 0], "without a label space: the detector's categories"


def test_an_event_takes_the_species_its_frames_vote_for() -> None:
    """A burst: the detector's clearest box is the one frame the classifier calls a fox; two frames say deer."""
    fox = Box(0, 0.99, (0.1, 0.1, 0.2, 0.2), ((1, 0.9), (0, 0.1)))
    deer_a = Box(0, 0.7, (0.2, 0.1, 0.2, 0.2), ((0, 0.8), (1, 0.2)))
    deer_b = Box(0, 0.6, (0.3, 0.1, 0.2, 0.2), ((0, 0.7), (1, 0.3)))
    unsure = Box(0, 0.98, (0.4, 0.1, 0.2, 0.2), ((1, 0.51), (0, 0.49)))
    records = [_photo("a.jpg", 0, (fox,)), _photo("b.jpg", 2, (deer_a, unsure)), _photo("c.jpg", 4, (deer_b,))]
    review = build_review(records, SPACE, EventSettings(gap_s=60), RepeatSettings(enabled=False), 0.25)
    (event,) = review.events
    assert review.label_name(event.label_index) == "deer", "0.8 + 0.7 outvote one 0.9"
    assert event.label_conf == pytest.approx(0.75) and event.label_count == 1
    lone = build_review(records[:1], SPACE, EventSettings(gap_s=60), RepeatSettings(enabled=False), 0.25)
    assert lone.label_name(lone.events[0].label_index) == "fox"
    below = [_photo("d.jpg", 0, (unsure,)), _photo("e.jpg", 1, (deer_b,))]
    review = build_review(below, SPACE, EventSettings(gap_s=60), RepeatSettings(enabled=False), 0.65)
    assert review.label_name(review.events[0].label_index) == "animal", "no species among boxes >= 0.65"
    assert review.events[0].label_conf == 0.98


def test_records_read_classifications_back_from_the_batch_entry() -> None:
    entry = {"file": "a.jpg", "detections": [
        {"category": "1", "conf": -0.9, "bbox": [0.1, 0.1, 0.2, 0.2], "classifications": [["2", 0.7], ["1", 0.3]]},
        {"category": "2", "conf": 0.5, "bbox": [0.5, 0.5, 0.1, 0.1]},
    ]}  # fmt: skip
    record = record_from_entry("card", "a.jpg", None, 0, entry)
    assert record.boxes[0].classifications == ((1, 0.7), (0, 0.3)) and record.boxes[0].conf == 0.9
    assert record.boxes[1].classifications == ()


def test_batch_file_names_the_classifier() -> None:
    provenance = {"model_file": "det.onnx", "input_size": [640, 640], "classifier": {"model_file": "cls.onnx"}}
    document = batch_document([], ("animal",), provenance, 0.2, 0.05, classification_names=("deer", "fox"))
    assert document["info"]["classifier"] == "cls.onnx"
    assert document["info"]["classification_completion_time"] == document["info"]["detection_completion_time"]
    assert document["classification_categories"] == {"1": "deer", "2": "fox"}
    bare = batch_document([], ("animal",), {"model_file": "det.onnx"}, 0.2, 0.05)
    assert "classifier" not in bare["info"] and "classification_categories" not in bare


def test_detections_carry_top_k_for_the_boxes_classified_only() -> None:
    detections = Detections(
        np.asarray([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
        np.asarray([0.9, 0.1], np.float32),
        np.asarray([0, 0]),
        classification_id=np.asarray([[1, 0], [-1, -1]]),
        classification_conf=np.asarray([[0.7, 0.3], [0.0, 0.0]], np.float32),
    )
    (first, second) = detections.classifications(0)
    assert first[0] == 1 and second[0] == 0
    assert first[1] == pytest.approx(0.7) and second[1] == pytest.approx(0.3)
    assert detections.classifications(1) == []
