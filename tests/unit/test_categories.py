"""Camera-trap categories: native class probabilities combined before NMS, end-to-end layouts, the card."""

from __future__ import annotations

import json

import numpy as np
import pytest

from andi_edge.errors import ModelError
from andi_edge.runtime.categories import (
    COCO_CLASS_NAMES,
    CategoryMap,
    coco_to_megadetector,
    preset_for,
)
from andi_edge.runtime.heads import decode_head
from andi_edge.runtime.model_meta import CARD_KEY, CategorySpec, ModelCard, card_from_metadata

COCO = CategoryMap.resolve(coco_to_megadetector(), COCO_CLASS_NAMES)
BIRD, SHEEP, COW, PERSON, CAR, TEDDY = (
    COCO_CLASS_NAMES.index(n) for n in ("bird", "sheep", "cow", "person", "car", "teddy bear")
)


def _classic_row(box: list[float], objectness: float, probs: dict[int, float]) -> list[float]:
    row = [*box, objectness] + [0.0] * 80
    for index, p in probs.items():
        row[5 + index] = p
    return row


def test_an_owl_split_between_coco_classes_scores_as_one_animal() -> None:
    """bird 0.3, sheep 0.3, cow 0.2: the best single class says 0.3; the noisy-or says 1 - 0.7*0.7*0.8 = 0.608."""
    out = np.array([[_classic_row([100, 100, 20, 40], 0.8, {BIRD: 0.3, SHEEP: 0.3, COW: 0.2})]], np.float32)
    c = decode_head(out, "yolov5", 80, 0.005, COCO)
    assert c.class_ids.tolist() == [0]  # animal
    np.testing.assert_allclose(c.scores, [0.8 * (1 - 0.7 * 0.7 * 0.8)], rtol=1e-5)
    assert c.native_class_ids is not None and c.native_scores is not None
    assert c.native_class_ids.tolist() == [BIRD]  # ties go to the first member
    np.testing.assert_allclose(c.native_scores, [0.8 * 0.3], rtol=1e-5)
    native = decode_head(out, "yolov5", 80, 0.005)
    assert native.scores[0] < c.scores[0]


def test_clipped_sum_and_dropped_classes() -> None:
    spec = CategorySpec(("animal", "person", "vehicle"), coco_to_megadetector().members, combine="clipped_sum")
    cmap = CategoryMap.resolve(spec, COCO_CLASS_NAMES)
    rows = [
        _classic_row([50, 50, 10, 10], 1.0, {BIRD: 0.7, COW: 0.6}),  # clipped at 1.0
        _classic_row([150, 50, 10, 10], 0.9, {TEDDY: 0.95}),  # a household object only: no category
        _classic_row([250, 50, 10, 10], 0.5, {PERSON: 0.4, CAR: 0.5}),  # vehicle 0.25 beats person 0.2
    ]
    c = decode_head(np.array([rows], np.float32), "yolov5", 80, 0.005, cmap)
    assert c.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(c.scores, [1.0, 0.25], rtol=1e-6)


def test_the_same_mapping_in_the_anchor_free_layout() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 0.4, (200, 80)).astype(np.float32)
    boxes = rng.uniform(10, 300, (200, 4)).astype(np.float32)
    classic = np.concatenate([boxes, np.ones((200, 1), np.float32), probs], axis=1)[None]
    anchor_free = np.concatenate([boxes, probs], axis=1).T[None]
    a = decode_head(classic, "yolov5", 80, 0.3, COCO)
    b = decode_head(anchor_free, "ultralytics", 80, 0.3, COCO)
    assert len(a) > 0
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    # every combined score is at least the best member's and at most the sum of the members'
    members = COCO.membership[:, a.class_ids].T
    kept = probs[(COCO.upper_bound(probs).max(axis=1) > 0.3)]
    assert len(kept) >= len(a)
    combined = COCO.combine(probs)
    best_member = (probs[:, :, None] * COCO.membership[None]).max(axis=1)
    assert np.all(combined >= best_member - 1e-6) and np.all(combined <= COCO.upper_bound(probs) + 1e-6)
    assert members.shape == (len(a), 80)


def test_end_to_end_layouts() -> None:
    # YOLOv10: x1, y1, x2, y2 (input px), score, class
    e2e = np.array([[[10, 20, 50, 60, 0.9, BIRD], [12, 21, 50, 61, 0.5, COW], [0, 0, 5, 5, 0.001, PERSON]]], np.float32)
    native = decode_head(e2e, "end2end", 80, 0.005)
    assert native.one_per_object and native.class_ids.tolist() == [BIRD, COW]
    np.testing.assert_allclose(native.xyxy_input_px[0], [10, 20, 50, 60])
    mapped = decode_head(e2e, "end2end", 80, 0.005, COCO)
    assert not mapped.one_per_object, "bird and cow of one box are now both animal: NMS must merge them"
    assert mapped.class_ids.tolist() == [0, 0] and mapped.native_class_ids is not None
    assert mapped.native_class_ids.tolist() == [BIRD, COW]
    # RT-DETR: cx, cy, w, h normalised to the input (here 320 x 640: h, w), score, class
    rt = np.array([[[0.5, 0.5, 0.25, 0.5, 0.7, 1]]], np.float32)
    c = decode_head(rt, "rtdetr", 3, 0.005, input_hw=(320, 640))
    np.testing.assert_allclose(c.xyxy_input_px, [[240, 80, 400, 240]])
    assert c.one_per_object
    # RT-DETR from older exporters: per-class scores
    rt_scores = np.array([[[0.5, 0.5, 0.25, 0.5, 0.1, 0.6, 0.2]]], np.float32)
    c = decode_head(rt_scores, "rtdetr_scores", 3, 0.005, input_hw=(320, 640))
    assert c.class_ids.tolist() == [1] and c.one_per_object
    np.testing.assert_allclose(c.scores, [0.6])
    with pytest.raises(ModelError, match="input size"):
        decode_head(rt, "rtdetr", 3, 0.005)
    with pytest.raises(ModelError, match="expected 6"):
        decode_head(np.zeros((1, 300, 7), np.float32), "end2end", 3, 0.1)


def test_category_specs_are_checked_against_the_model() -> None:
    with pytest.raises(ModelError, match="not one of the model's"):
        CategoryMap.resolve(CategorySpec(("animal",), (("unicorn",),)), ("cat", "dog"))
    with pytest.raises(ModelError, match="two categories"):
        CategoryMap.resolve(CategorySpec(("a", "b"), (("cat",), ("cat", "dog"))), ("cat", "dog"))
    with pytest.raises(ModelError, match="one member list"):
        CategorySpec(("a", "b"), (("cat",),))
    with pytest.raises(ModelError, match="combine rule"):
        CategorySpec(("a",), (("cat",),), combine="max")  # type: ignore[arg-type]
    assert preset_for(COCO_CLASS_NAMES) == coco_to_megadetector()
    assert preset_for(("animal", "person", "vehicle")) is None


def _card(**changes: object) -> ModelCard:
    card = ModelCard(name="m", class_names=COCO_CLASS_NAMES, input_height=320, input_width=320, head="yolov5")
    return card.with_updates(**changes)


def test_card_round_trip_with_categories_and_bad_cards() -> None:
    card = _card(categories=coco_to_megadetector(), stride=64)
    again = ModelCard.from_json(card.to_json())
    assert again == card and again.categories is not None and again.categories.names[0] == "animal"
    raw = json.loads(card.to_json())
    raw["thresholds"]["typical"] = "0.25"
    with pytest.raises(ModelError, match="threshold typical"):
        ModelCard.from_json(json.dumps(raw))
    raw = json.loads(card.to_json())
    raw["categories"] = {"names": ["animal"]}
    with pytest.raises(ModelError, match="categories"):
        ModelCard.from_json(json.dumps(raw))
    raw = json.loads(card.to_json())
    raw.pop("categories")
    raw["schema_version"] = 1  # a card written before categories existed still reads
    assert ModelCard.from_json(json.dumps(raw)).categories is None


def test_end_to_end_shapes_need_a_card_or_the_exporters_hint() -> None:
    names = "{0: 'animal', 1: 'person', 2: 'vehicle'}"
    card = card_from_metadata({"names": names, "end2end": "True"}, (1, 3, 640, 640), (1, 300, 6), "v10")
    assert card.head == "end2end"
    card = card_from_metadata({"names": names, "head": "RTDETRDecoder"}, (1, 3, 640, 640), (1, 300, 6), "rt")
    assert card.head == "rtdetr"
    card = card_from_metadata({"names": names, "head": "RTDETRDecoder"}, (1, 3, 640, 640), (1, 300, 7), "rt")
    assert card.head == "rtdetr_scores"
    with pytest.raises(ModelError, match="fits no known head"):
        card_from_metadata({"names": names}, (1, 3, 640, 640), (1, 300, 6), "v10")
    own = _card(head="end2end", class_names=("animal", "person", "vehicle"))
    assert card_from_metadata({CARD_KEY: own.to_json()}, (1, 3, 320, 320), (1, 300, 6), "x").head == "end2end"
    with pytest.raises(ModelError, match="does not fit"):
        card_from_metadata({CARD_KEY: own.to_json()}, (1, 3, 320, 320), (1, 8, 2100), "x")
