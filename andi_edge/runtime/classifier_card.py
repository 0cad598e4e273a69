"""The classifier card: what a crop classifier is and how its input is made, carried inside its ONNX file.

Read, in order: a YAML card given by the user (a classifier someone else trained: ``--classifier-card``); our
card in the ONNX file's ``metadata_props`` (key ``andi_edge.classifier_card``, written by ``andi-edge classifier
export``); a YAML card beside the model (``CLS.yaml`` next to ``CLS.onnx``). A classifier without any is refused:
its labels cannot be guessed.

A card says: the labels in output order; the input size; the normalisation (``(rgb / 255 - mean) / std``);
whether the network ends in logits or probabilities; and the crop policy (padding around the box, square or not)
the classifier was trained with, so that the runtime cuts crops the way training did.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from andi_edge.errors import ModelError

CLASSIFIER_CARD_KEY = "andi_edge.classifier_card"
CLASSIFIER_CARD_SCHEMA_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: named normalisations a YAML card may give instead of numbers
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # rgb / 255
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [-1, 1], as TensorFlow/Keras models often expect
}
OutputKind = Literal["logits", "probabilities"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("logits", "probabilities")
#: the classifier card's default crop policy: MegaDetector's classifiers' (square crops, a little context)
DEFAULT_CROP_PADDING = 0.1
DEFAULT_INPUT_SIZE_PX = 224
#: the largest crop side a classifier card may claim (classifiers run at 224-600 px; a card claiming 100000 took
#: the daemon to MemoryError at every photo with a box)
MAX_INPUT_SIDE_PX = 1024


@dataclass(frozen=True)
class CropPolicy:
    """How a box becomes the classifier's input: grown by ``padding`` x its larger side on each side, made square
    (``square``, moved inside the photo where it fits), clipped to the photo, then resized to the input size."""

    padding: float = DEFAULT_CROP_PADDING
    square: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.padding) and 0.0 <= self.padding <= 2.0):
            raise ModelError(f"crop padding must lie in [0, 2], got {self.padding}")


@dataclass(frozen=True)
class ClassifierCard:
    name: str
    labels: tuple[str, ...]
    input_height_px: int = DEFAULT_INPUT_SIZE_PX
    input_width_px: int = DEFAULT_INPUT_SIZE_PX
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output: OutputKind = "logits"
    crop: CropPolicy = field(default_factory=CropPolicy)
    architecture: str = "unknown"
    licence: str = "unknown"
    #: what it was trained on, and the locations (cameras, sites) its training photos came from
    training_data: str = "unknown"
    training_locations: tuple[str, ...] = ()
    #: where the card came from: ``model`` (inside the ONNX file) or the YAML file's path
    source: str = "model"
    schema_version: int = CLASSIFIER_CARD_SCHEMA_VERSION
    #: extra facts recorded by whoever made it (run config, scores); kept, never interpreted
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"classifier card ({self.source})"
        if not self.labels:
            raise ModelError(f"{where}: no labels", hint="list the labels in the classifier's output order")
        if len(set(self.labels)) != len(self.labels):
            raise ModelError(f"{where}: labels repeat ({', '.join(self.labels)})")
        if any(not isinstance(label, str) or not label.strip() for label in self.labels):
            raise ModelError(f"{where}: every label must be a non-empty text")
        if not (8 <= self.input_height_px <= MAX_INPUT_SIDE_PX and 8 <= self.input_width_px <= MAX_INPUT_SIDE_PX):
            raise ModelError(
                f"{where}: input size {self.input_height_px}x{self.input_width_px} is out of range "
                f"(8..{MAX_INPUT_SIDE_PX} px a side)"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ModelError(f"{where}: mean and std need 3 values each")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or any(s <= 0 for s in self.std):
            raise ModelError(
                f"{where}: mean and std must be finite numbers and std positive, got mean {list(self.mean)}, "
                f"std {list(self.std)}",
                hint="on the 0-1 scale; ImageNet's are mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]",
            )
        if self.output not in OUTPUT_KINDS:
            raise ModelError(f"{where}: output must be one of {', '.join(OUTPUT_KINDS)}, not {self.output!r}")

    def to_metadata(self) -> dict[str, str]:
        fields_ = asdict(self)
        fields_.pop("source")
        return {CLASSIFIER_CARD_KEY: json.dumps(fields_, sort_keys=True)}

    def summary(self) -> dict[str, Any]:
        """What outputs record about the classifier (beside its file's name and sha256)."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "labels": len(self.labels),
            "input_size": [self.input_height_px, self.input_width_px],
            "crop": asdict(self.crop),
            "card": self.source,
            "licence": self.licence,
        }


def card_from_mapping(raw: Any, source: str) -> ClassifierCard:
    """A card from its JSON (model) or YAML (BYO) form. ModelError naming ``source`` for anything wrong."""
    if not isinstance(raw, dict):
        raise ModelError(f"classifier card ({source}) must be a mapping, got {type(raw).__name__}")
    known = {
        "name", "labels", "input_size", "input_height_px", "input_width_px", "normalisation", "mean", "std", "output",
        "crop", "architecture", "licence", "training_data", "training_locations", "schema_version", "extra",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelError(
            f"classifier card ({source}): unknown key(s) {', '.join(unknown)}", hint=f"known keys: {', '.join(known)}"
        )
    try:
        version = int(raw.get("schema_version", CLASSIFIER_CARD_SCHEMA_VERSION))
        if version > CLASSIFIER_CARD_SCHEMA_VERSION:
            raise ModelError(
                f"classifier card ({source}) is schema {version}; this andi-edge reads up to "
                f"{CLASSIFIER_CARD_SCHEMA_VERSION}",
                hint="upgrade andi-edge on this device",
            )
        labels = raw.get("labels")
        if not isinstance(labels, (list, tuple)):
            raise ModelError(f"classifier card ({source}): 'labels' must be a list of names in output order")
        height, width = _input_size(raw, source)
        mean, std = _normalisation(raw, source)
        crop_raw = raw.get("crop") or {}
        if not isinstance(crop_raw, dict) or set(crop_raw) - {"padding", "square"}:
            raise ModelError(f"classifier card ({source}): 'crop' takes padding (fraction) and square (true/false)")
        try:
            crop = CropPolicy(
                padding=float(crop_raw.get("padding", DEFAULT_CROP_PADDING)), square=bool(crop_raw.get("square", True))
            )
        except ModelError as exc:
            raise ModelError(f"classifier card ({source}): {exc.message}") from exc
        extra = raw.get("extra") or {}
        return ClassifierCard(
            name=str(raw.get("name") or Path(source).stem),
            labels=tuple(str(label) for label in labels),
            input_height_px=height,
            input_width_px=width,
            mean=mean,
            std=std,
            output=raw.get("output", "logits"),
            crop=crop,
            architecture=str(raw.get("architecture", "unknown")),
            licence=str(raw.get("licence", "unknown")),
            training_data=str(raw.get("training_data", "unknown")),
            training_locations=tuple(str(x) for x in raw.get("training_locations") or ()),
            source=source,
            schema_version=version,
            extra=dict(extra) if isinstance(extra, dict) else {},
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"classifier card ({source}) is malformed: {exc}") from exc


def _input_size(raw: dict[str, Any], source: str) -> tuple[int, int]:
    size = raw.get("input_size")
    if size is None:
        default = DEFAULT_INPUT_SIZE_PX
        return int(raw.get("input_height_px", default)), int(raw.get("input_width_px", default))
    if isinstance(size, int):
        return size, size
    if isinstance(size, list) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ModelError(f"classifier card ({source}): input_size is a number or [height, width], got {size!r}")


def _normalisation(raw: dict[str, Any], source: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    named = raw.get("normalisation")
    if named is not None:
        if named not in NORMALISATIONS:
            raise ModelError(
                f"classifier card ({source}): normalisation {named!r} is unknown",
                hint=f"use one of {', '.join(NORMALISATIONS)} or give mean and std (on the 0-1 scale)",
            )
        return NORMALISATIONS[named]
    mean = tuple(float(v) for v in raw.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in raw.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"classifier card ({source}): mean and std need three values (R, G, B) each")
    return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


def read_card_yaml(path: Path) -> ClassifierCard:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read the classifier card {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"the classifier card {path} is not valid YAML: {exc}") from exc
    return card_from_mapping(raw, str(path))


def find_card(model_path: Path, metadata: dict[str, str], card_path: Path | None) -> ClassifierCard:
    """The card for a classifier: the YAML given, else the ONNX file's own, else ``MODEL.yaml`` beside it."""
    if card_path is not None:
        return read_card_yaml(card_path)
    text = metadata.get(CLASSIFIER_CARD_KEY)
    if text is not None:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{model_path}: its classifier card is not valid JSON ({exc})") from exc
        return card_from_mapping(raw, "model")
    beside = model_path.with_suffix(".yaml")
    if beside.is_file():
        return read_card_yaml(beside)
    raise ModelError(
        f"{model_path}: no classifier card (its labels, input size and normalisation)",
        hint=f"export it with `andi-edge classifier export`, or write {beside.name} beside it "
        "(labels: [...], input_size: 224, normalisation: imagenet) and pass --classifier-card",
    )
