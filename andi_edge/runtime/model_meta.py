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
#: 2 added ``categories`` (output categories mapped from the native classes): a runtime that does not know them
#: would report a COCO model's native classes, so it must refuse the card.
CARD_SCHEMA_VERSION = 2

#: ``yolov5``: classic anchor-based YOLOv5 / MegaDetector v5 (also P6), output (1, N, 5 + C) with objectness.
#: ``ultralytics``: anchor-free YOLOv5u / YOLOv8 / YOLOv9 / YOLO11 / MegaDetector v6, output (1, 4 + C, N).
#: ``end2end``: NMS-free YOLOv10 / YOLO26 (MDv6-yolov10), output (1, K, 6): x1, y1, x2, y2 (input px), score, class.
#: ``rtdetr``: RT-DETR (MDv6-rtdetr), output (1, K, 6): cx, cy, w, h (normalised to the input), score, class.
#: ``rtdetr_scores``: RT-DETR from older exporters, output (1, K, 4 + C): cx, cy, w, h (normalised), class scores.
HeadType = Literal["yolov5", "ultralytics", "end2end", "rtdetr", "rtdetr_scores"]
HEAD_TYPES: tuple[HeadType, ...] = ("yolov5", "ultralytics", "end2end", "rtdetr", "rtdetr_scores")
CombineRule = Literal["noisy_or", "clipped_sum"]
COMBINE_RULES: tuple[CombineRule, ...] = ("noisy_or", "clipped_sum")

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
class CategorySpec:
    """Output categories built from a model's native classes (see ``andi_edge.runtime.categories``)."""

    names: tuple[str, ...]
    #: per category, the native class names whose probabilities it combines
    members: tuple[tuple[str, ...], ...]
    combine: CombineRule = "noisy_or"
    #: the built-in mapping this came from, if any (``coco-to-megadetector``)
    preset: str | None = None

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.members):
            raise ModelError("model card: categories need one member list per category name")
        if len(set(self.names)) != len(self.names):
            raise ModelError(f"model card: category names repeat: {list(self.names)}")
        if self.combine not in COMBINE_RULES:
            raise ModelError(f"model card: unknown combine rule {self.combine!r}", hint=f"one of {COMBINE_RULES}")

    @classmethod
    def from_raw(cls, raw: Any) -> CategorySpec:
        if not isinstance(raw, dict):
            raise ModelError("model card: 'categories' must be an object")
        try:
            return cls(
                names=tuple(str(n) for n in raw["names"]),
                members=tuple(tuple(str(m) for m in ms) for ms in raw["members"]),
                combine=raw.get("combine", "noisy_or"),
                preset=raw.get("preset"),
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"model card: 'categories' is missing or has a bad field: {exc}") from exc


#: the largest input side a detector card may claim: MegaDetector runs at 1280, and one 4096 x 4096 input tensor
#: alone is 200 MB (a card claiming 100000 made every photo fail with MemoryError)
MAX_INPUT_SIDE_PX = 4096


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
    #: what the runtime reports instead of the native classes (None: the native classes themselves)
    categories: CategorySpec | None = None
    #: a compressed model: the sha256 of the ONNX file it was made from
    source_model_sha256: str | None = None
    #: the accuracy gate it passed against that model (dataset, mAP@0.5 before and after, the loss allowed)
    quantize_gate: dict[str, Any] | None = None
    #: rectangular inference: the graph takes any height and width that are multiples of ``stride``, and each
    #: photo is letterboxed to its own input (long side input_width/height, short side padded only up to the
    #: stride) instead of to the square: a 4:3 photo at 640 px runs 640x480, a 16:9 one 640x384
    rect: bool = False
    #: how the publisher's own pipeline decodes photos: "full" (MegaDetector v5: every pixel, then the letterbox's
    #: resize), followed by the runtime unless a run asks otherwise (``detector.reduced_decode``); None: the
    #: runtime's choice (a reduced DCT decode for a photo much larger than the input)
    decode: str | None = None
    schema_version: int = CARD_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.head not in HEAD_TYPES:
            raise ModelError(f"model card: unknown head type {self.head!r}", hint=f"expected one of {HEAD_TYPES}")
        if not self.class_names:
            raise ModelError("model card: no class names")
        if not (0 < self.input_height <= MAX_INPUT_SIDE_PX and 0 < self.input_width <= MAX_INPUT_SIDE_PX):
            raise ModelError(
                f"model card: input size {self.input_height}x{self.input_width} is out of range "
                f"(1..{MAX_INPUT_SIDE_PX} px a side)",
                hint="a card is data from the model file: re-export the model with `andi-edge export`",
            )
        if not isinstance(self.stride, int) or self.stride <= 0:
            raise ModelError(f"model card: bad stride {self.stride!r}")
        if self.decode not in (None, "full", "reduced"):
            raise ModelError(f"model card: decode must be full or reduced, found {self.decode!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stretched(self) -> bool:
        """Whether photos are stretched to the input instead of letterboxed: RT-DETR, as Ultralytics' RT-DETR
        predictor and validator feed it (``LetterBox(scale_fill=True)``)."""
        return self.head in ("rtdetr", "rtdetr_scores")

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
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ModelError(f"model card: schema_version must be a positive whole number, found {version!r}")
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
            values["thresholds"] = _thresholds(values.get("thresholds", {}))
            if values.get("categories") is not None:
                values["categories"] = CategorySpec.from_raw(values["categories"])
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"model card is missing or has a bad field: {exc}") from exc

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)


def _thresholds(raw: Any) -> Thresholds:
    if not isinstance(raw, dict):
        raise ModelError("model card: 'thresholds' must be an object")
    thresholds = Thresholds(**raw)
    for name, value in asdict(thresholds).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ModelError(f"model card: threshold {name} must be a number between 0 and 1, found {value!r}")
    return thresholds


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
    head = infer_head(output_shape, len(names) if names else None, ultralytics_head_hint(metadata))
    if names is None:
        num_classes = _num_classes_from_shape(head, output_shape)
        if num_classes is None:
            raise ModelError(
                f"{model_name}: an end-to-end output {output_shape} does not say how many classes the model has, "
                "and the model carries no class names",
                hint="export it with `andi-edge export`, which writes a model card",
            )
        log.warning("%s carries no class names; using class_0..class_%d", model_name, num_classes - 1)
        names = [f"class_{i}" for i in range(num_classes)]
    try:
        stride = int(metadata.get("stride", 32))
    except ValueError:
        raise ModelError(f"{model_name}: metadata 'stride' is not a number: {metadata['stride']!r}") from None
    card = ModelCard(
        name=model_name, class_names=tuple(names), input_height=input_h, input_width=input_w, head=head, stride=stride
    )
    _check_against_shapes(card, input_shape, output_shape)
    return card


def ultralytics_head_hint(metadata: dict[str, str]) -> HeadType | None:
    """What Ultralytics' exporter says about an end-to-end head (its ``head`` and ``end2end`` keys)."""
    if metadata.get("head") == "RTDETRDecoder":
        return "rtdetr"
    if str(metadata.get("end2end", "")).lower() == "true":
        return "end2end"
    return None


def head_fits(head: HeadType, output_shape: tuple[int | str | None, ...], num_classes: int) -> bool:
    """Whether an output of this shape is what ``head`` produces for ``num_classes`` classes. The candidates'
    axis may be free (rectangular inference); the axis of the values per candidate must be fixed."""
    if len(output_shape) != 3:
        return False
    a, b = output_shape[1], output_shape[2]
    if head == "ultralytics":
        return isinstance(a, int) and a == 4 + num_classes
    if not isinstance(b, int):
        return False
    if head == "yolov5":
        return b == 5 + num_classes
    if head in ("end2end", "rtdetr"):
        return b == 6
    return b == 4 + num_classes  # rtdetr_scores


def infer_head(
    output_shape: tuple[int | str | None, ...], num_classes: int | None, hint: HeadType | None = None
) -> HeadType:
    """Tell the head layout from the output shape, the class count when known, and the exporter's hint."""
    if len(output_shape) != 3:
        raise ModelError(f"unsupported detector output shape {output_shape}: expected 3 dimensions")
    a, b = output_shape[1], output_shape[2]
    if not isinstance(a, int) or not isinstance(b, int):
        raise ModelError(f"detector output shape {output_shape} is not static; export with a fixed input size")
    if hint == "rtdetr" and num_classes is not None and b == 4 + num_classes and b != 6:
        return "rtdetr_scores"
    if hint is not None:
        if num_classes is None or head_fits(hint, output_shape, num_classes):
            return hint
        raise ModelError(f"output shape {output_shape} does not fit the {hint} head the model's metadata names")
    if num_classes is not None:
        for head in ("yolov5", "ultralytics"):
            if head_fits(head, output_shape, num_classes):
                return head
        raise ModelError(
            f"output shape {output_shape} fits no known head layout for {num_classes} classes",
            hint="an end-to-end model (YOLOv10, RT-DETR) needs a card: export it with `andi-edge export`",
        )
    return "yolov5" if a > b else "ultralytics"


def _num_classes_from_shape(head: HeadType, output_shape: tuple[int | str | None, ...]) -> int | None:
    a, b = output_shape[1], output_shape[2]
    assert isinstance(a, int) and isinstance(b, int)  # checked by infer_head
    if head == "yolov5":
        return b - 5
    if head == "ultralytics":
        return a - 4
    if head == "rtdetr_scores":
        return b - 4
    return None  # (1, K, 6): the class count is not in the shape


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
    if card.rect and static_hw:
        raise ModelError(
            f"model card says rectangular inference but the graph takes a fixed {input_shape[2]}x{input_shape[3]}",
            hint="re-export with `andi-edge export --rect`, or drop rect from the card",
        )
    if static_hw and (input_shape[2], input_shape[3]) != (card.input_height, card.input_width):
        raise ModelError(
            f"model card says input {card.input_height}x{card.input_width} but the graph takes "
            f"{input_shape[2]}x{input_shape[3]}"
        )
    if not head_fits(card.head, output_shape, card.num_classes):
        raise ModelError(
            f"model card says head {card.head!r} with {card.num_classes} classes, "
            f"but the output shape {output_shape} does not fit it"
        )
