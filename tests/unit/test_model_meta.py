from __future__ import annotations

import pytest

from andi_edge.errors import ModelError
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard, Thresholds, card_from_metadata, infer_head


def _card(**kw: object) -> ModelCard:
    values: dict[str, object] = {
        "name": "m",
        "class_names": ("animal", "person", "vehicle"),
        "input_height": 640,
        "input_width": 640,
        "head": "yolov5",
    }
    values.update(kw)
    return ModelCard(**values)  # type: ignore[arg-type]


def test_card_json_round_trip() -> None:
    card = _card(thresholds=Thresholds(conf=0.01, iou=0.5), locations=("loc1",), source_weights_sha256="ab")
    assert ModelCard.from_json(card.to_json()) == card


def test_card_from_metadata_checks_shapes() -> None:
    meta = {CARD_KEY: _card().to_json()}
    assert card_from_metadata(meta, (1, 3, 640, 640), (1, 25200, 8), "x").class_names[1] == "person"
    with pytest.raises(ModelError, match="input 640x640"):
        card_from_metadata(meta, (1, 3, 320, 320), (1, 6300, 8), "x")
    with pytest.raises(ModelError, match="does not fit"):
        card_from_metadata(meta, (1, 3, 640, 640), (1, 25200, 85), "x")


def test_ultralytics_plain_metadata_is_understood() -> None:
    meta = {"names": "{0: 'animal', 1: 'person', 2: 'vehicle'}", "stride": "32", "imgsz": "[640, 640]"}
    card = card_from_metadata(meta, (1, 3, 640, 640), (1, 7, 8400), "mdv6")
    assert card.head == "ultralytics" and card.class_names == ("animal", "person", "vehicle")


def test_no_metadata_falls_back_to_shapes() -> None:
    card = card_from_metadata({}, (1, 3, 320, 320), (1, 6300, 85), "anon")
    assert card.head == "yolov5" and card.num_classes == 80 and card.class_names[0] == "class_0"
    with pytest.raises(ModelError, match="dynamic"):
        card_from_metadata({}, (1, 3, "height", "width"), (1, 6300, 85), "anon")


def test_head_inference() -> None:
    assert infer_head((1, 6300, 85), 80) == "yolov5"
    assert infer_head((1, 84, 2100), 80) == "ultralytics"
    assert infer_head((1, 84, 2100), None) == "ultralytics"
    with pytest.raises(ModelError):
        infer_head((1, 6300), None)


def test_bad_cards_are_refused() -> None:
    with pytest.raises(ModelError, match="head"):
        _card(head="ssd")
    with pytest.raises(ModelError, match="newer"):
        ModelCard.from_json('{"schema_version": 99}')
    with pytest.raises(ModelError, match="JSON"):
        ModelCard.from_json("{not json")
    with pytest.raises(ModelError, match="missing"):
        ModelCard.from_json('{"name": "x"}')


@pytest.mark.parametrize("version", ['"2"', "1.5", "0", "true", "null"])
def test_card_schema_version_must_be_a_whole_number(version: str) -> None:
    with pytest.raises(ModelError, match="schema_version"):
        ModelCard.from_json(f'{{"schema_version": {version}}}')


def test_a_card_may_say_how_its_publisher_decodes_and_the_run_follows_unless_told(tmp_path, model_320) -> None:  # type: ignore[no-untyped-def]
    """MegaDetector v5 exported by name decodes every pixel, as MegaDetector does; a run may still ask otherwise."""
    from andi_edge.config import DetectorSettings
    from andi_edge.runtime.detector import Detector
    from andi_edge.toolchain.export import write_card

    assert ModelCard.from_json(_card(decode="full").to_json()).decode == "full"
    with pytest.raises(ModelError, match="decode must be full or reduced"):
        _card(decode="half")
    plain = Detector(model_320)
    assert plain.reduced_decode is True and plain.provenance()["reduced_decode"] is True
    full = tmp_path / "md.onnx"
    full.write_bytes(model_320.read_bytes())
    write_card(full, plain.card.with_updates(decode="full"))
    assert Detector(full).reduced_decode is False
    assert Detector(full, settings=DetectorSettings(reduced_decode=True)).reduced_decode is True
    assert Detector(model_320, settings=DetectorSettings(reduced_decode=False)).reduced_decode is False
