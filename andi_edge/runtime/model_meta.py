"""The model card: what a model is, carried inside the ONNX file's ``metadata_props`` as JSON.

Never guess a model's identity from its file name. Read, in order:
1. our card (key ``andi_edge.model_card``), written by ``andi-edge export``;
2. the plain keys Ultralytics' own exporter writes (``names``, ``imgsz``, ``stride``);
3. the input/output shapes alone (class names then become ``class_0``, ``class_1``...), with a warning.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from andi_edge.config import DEFAULT_CONF_THRESHOLD, DEFAULT_IOU_THRESHOLD
from andi_edge.errors import ModelError

log = logging.getLogger(__name__)

CARD_KEY = "andi_edge.model_card"
CARD_SCHEMA_VERSION = 1

#: ``yolov5``: classic anchor-based YOLOv5 / MegaDetector v5, output (1, N, 5 + C) with objectness.
#: ``ultralytics``: anchor-free YOLOv5u / YOLOv8 / YOLO11 / MegaDetector v6, output (1, 4 + C, N).
HeadType = Literal["yolov5", "ultralytics"]
HEAD_TYPES: tuple[HeadType, ...] = ("yolov5", "ultralytics")

#: Detections at or above this are what a person should look at (YOLOv5's own predict default).
DEFAULT_TYPICAL_THRESHOLD = 0.25
#: Detections at or above this are worth a second look (recall-oriented review).
DEFAULT_CONSERVATIVE_THRESHOLD = 0.1


@dataclass(frozen=True)
class Thresholds:
    conf: float = DEFAULT_CONF_THRESHOLD
    iou: float = DEFAULT_IOU_THRESHOLD
    typical: float = DEFAULT_TYPICAL_THRESHOLD
    conservative: float = DEFAULT_CONSERVATIVE_THRESHOLD


@dataclass(frozen=True)
class ModelCard:
    name: str
    class_names: tuple[str, ...]
    input_height: int
    input_width: int
    head: HeadType
    stride: int = 32
    thresholds: Thresholds = field(default_factory=Thresholds)
    source_weights: str | None = None
    source_weights_sha256: str | None = None
    licence: str | None = None
    export_tools: dict[str, str] = field(default_factory=dict)
    training_data: str | None = None
    locations: tuple[str, ...] = ()
    calibration_sha256: str | None = None
    precision: str = "fp32"
    created_utc: str | None = None
    notes: str | None = None
    schema_version: int = CARD_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.head not in HEAD_TYPES:
            raise ModelError(f"model card: unknown head type {self.head!r}", hint=f"expected one of {HEAD_TYPES}")
        if not self.class_names:
            raise ModelError("model card: no class names")
        if self.input_height <= 0 or self.input_width <= 0:
            raise ModelError(f"model card: bad input size {self.input_height}x{self.input_width}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model card is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelError("model card must be a JSON object")
        version = raw.get("schema_version", CARD_SCHEMA_VERSION)
        if version > CARD_SCHEMA_VERSION:
            raise ModelError(
                f"model card schema {version} is newer than this andi-edge understands ({CARD_SCHEMA_VERSION})",
                hint="upgrade andi-edge",
            )
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in raw.items() if k in known}
        try:
            values["class_names"] = tuple(values["class_names"])
            values["locations"] = tuple(values.get("locations", ()))
            values["thresholds"] = Thresholds(**values.get("thresholds", {}))
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"model card is missing or has a bad field: {exc}") from exc

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)


def file_sha256(path: Path) -> str:
    """A model or weights file's identity, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_from_metadata(
    metadata: dict[str, str],
    input_shape: tuple[int | str | None, ...],
    output_shape: tuple[int | str | None, ...],
    model_name: str,
) -> ModelCard:
    """Find the model card for a loaded model, falling back as described in the module doc."""
    if CARD_KEY in metadata:
        card = ModelCard.from_json(metadata[CARD_KEY])
        _check_against_shapes(card, input_shape, output_shape)
        return card
    input_h, input_w = _static_hw(input_shape, model_name)
    names = _ultralytics_names(metadata)
    head = infer_head(output_shape, len(names) if names else None)
    if names is None:
        num_classes = _num_classes_from_shape(head, output_shape)
        log.warning("%s carries no class names; using class_0..class_%d", model_name, num_classes - 1)
        names = [f"class_{i}" for i in range(num_classes)]
    stride = int(metadata.get("stride", 32))
    card = ModelCard(
        name=model_name, class_names=tuple(names), input_height=input_h, input_width=input_w, head=head, stride=stride
    )
    _check_against_shapes(card, input_shape, output_shape)
    return card


def infer_head(output_shape: tuple[int | str | None, ...], num_classes: int | None) -> HeadType:
    """Tell the head layout from the output shape (and the class count when known)."""
    if len(output_shape) != 3:
        raise ModelError(f"unsupported detector output shape {output_shape}: expected 3 dimensions")
    a, b = output_shape[1], output_shape[2]
    if not isinstance(a, int) or not isinstance(b, int):
        raise ModelError(f"detector output shape {output_shape} is not static; export with a fixed input size")
    if num_classes is not None:
        if b == 5 + num_classes:
            return "yolov5"
        if a == 4 + num_classes:
            return "ultralytics"
        raise ModelError(f"output shape {output_shape} fits neither head layout for {num_classes} classes")
    return "yolov5" if a > b else "ultralytics"


def _num_classes_from_shape(head: HeadType, output_shape: tuple[int | str | None, ...]) -> int:
    dim = output_shape[2] if head == "yolov5" else output_shape[1]
    assert isinstance(dim, int)  # checked by infer_head
    return dim - (5 if head == "yolov5" else 4)


def _static_hw(input_shape: tuple[int | str | None, ...], model_name: str) -> tuple[int, int]:
    if len(input_shape) != 4:
        raise ModelError(f"{model_name}: expected an NCHW image input, found shape {input_shape}")
    h, w = input_shape[2], input_shape[3]
    if not isinstance(h, int) or not isinstance(w, int):
        raise ModelError(
            f"{model_name}: input size is dynamic {input_shape} and the model has no card saying which to use",
            hint="export with a fixed --imgsz (andi-edge export does this)",
        )
    return h, w


def _ultralytics_names(metadata: dict[str, str]) -> list[str] | None:
    text = metadata.get("names")
    if not text:
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        log.warning("ignoring unparsable 'names' metadata")
        return None
    if isinstance(parsed, dict):
        return [str(parsed[k]) for k in sorted(parsed)]
    if isinstance(parsed, list | tuple):
        return [str(n) for n in parsed]
    return None


def _check_against_shapes(
    card: ModelCard, input_shape: tuple[int | str | None, ...], output_shape: tuple[int | str | None, ...]
) -> None:
    static_hw = len(input_shape) == 4 and isinstance(input_shape[2], int) and isinstance(input_shape[3], int)
    if static_hw and (input_shape[2], input_shape[3]) != (card.input_height, card.input_width):
        raise ModelError(
            f"model card says input {card.input_height}x{card.input_width} but the graph takes "
            f"{input_shape[2]}x{input_shape[3]}"
        )
    if infer_head(output_shape, card.num_classes) != card.head:
        raise ModelError(f"model card says head {card.head!r} but the output shape {output_shape} disagrees")
