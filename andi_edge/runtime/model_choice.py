"""Which model file a device runs: the one configured, or the INT8 model made from it where it is safe.

With ``backend.prefer_int8`` (the Pi and x86 profiles), ``MODEL-int8.onnx`` beside ``MODEL.onnx`` is run instead
when its card says that it is INT8, that it was quantized from exactly this file (sha256), and that it passed
the accuracy gate (`andi-edge quantize --eval DATASET --max-loss L` records the outcome; for a species
classifier, `andi-edge classifier quantize`, whose gate is on F1-macro). The same rule chooses the detector's
file and the classifier's. Anything less keeps the
configured model, and the reason is logged: an INT8 model no gate has checked is not trusted with a season's
photos. The choice and its reason go into every output's provenance through the detector's model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from andi_edge.errors import ModelError
from andi_edge.runtime.classifier_card import CLASSIFIER_CARD_KEY
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard, file_sha256


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    reason: str


def int8_sibling(model: Path) -> Path:
    return model.with_name(f"{model.stem}-int8{model.suffix}")


@dataclass(frozen=True)
class _Int8Facts:
    """What a card says about a quantized model, whichever kind of card it is."""

    precision: str
    source_model_sha256: str | None
    gate: dict[str, Any]


def _int8_facts(path: Path) -> _Int8Facts | None:
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - ORT's own exception types; an unreadable candidate is simply not chosen
        return None
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        if CARD_KEY in metadata:
            card = ModelCard.from_json(metadata[CARD_KEY])
            return _Int8Facts(card.precision, card.source_model_sha256, dict(card.quantize_gate or {}))
        if CLASSIFIER_CARD_KEY in metadata:
            extra = json.loads(metadata[CLASSIFIER_CARD_KEY]).get("extra") or {}
            return _Int8Facts(
                str(extra.get("precision", "fp32")),
                extra.get("source_model_sha256"),
                dict(extra.get("quantize_gate") or {}),
            )
    except (ModelError, ValueError, AttributeError, TypeError):
        return None
    return None


def choose_model(model: Path, prefer_int8: bool) -> ModelChoice:
    if not prefer_int8:
        return ModelChoice(model, "as configured")
    candidate = int8_sibling(model)
    if not candidate.is_file():
        return ModelChoice(model, f"as configured: no {candidate.name} beside it")
    facts = _int8_facts(candidate)
    if facts is None or facts.precision != "int8":
        return ModelChoice(model, f"as configured: {candidate.name} carries no INT8 model card")
    if facts.source_model_sha256 is None or facts.source_model_sha256 != file_sha256(model):
        return ModelChoice(model, f"as configured: {candidate.name} was not quantized from {model.name}")
    gate = facts.gate
    if gate.get("passed") is not True:
        return ModelChoice(
            model,
            f"as configured: {candidate.name} passed no accuracy gate (quantize it with --eval DATASET --max-loss)",
        )
    metric = {"map50": "mAP@0.5", "f1_macro": "F1-macro"}.get(str(gate.get("metric", "map50")), str(gate.get("metric")))
    return ModelChoice(
        candidate,
        f"INT8: {candidate.name} passed its gate ({metric} {gate.get('before')} -> {gate.get('after')}, "
        f"loss allowed {gate.get('max_loss')})",
    )
