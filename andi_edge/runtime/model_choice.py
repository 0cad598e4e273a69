"""Which model file a device runs: the one configured, or the INT8 model made from it where it is safe.

With ``backend.prefer_int8`` (the Pi and x86 profiles), ``MODEL-int8.onnx`` beside ``MODEL.onnx`` is run instead
when its card says that it is INT8, that it was quantized from exactly this file (sha256), and that it passed
the accuracy gate (`andi-edge quantize --eval DATASET --max-loss L` records the outcome). Anything less keeps the
configured model, and the reason is logged: an INT8 model no gate has checked is not trusted with a season's
photos. The choice and its reason go into every output's provenance through the detector's model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from andi_edge.errors import ModelError
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard, file_sha256


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    reason: str


def int8_sibling(model: Path) -> Path:
    return model.with_name(f"{model.stem}-int8{model.suffix}")


def _card(path: Path) -> ModelCard | None:
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - ORT's own exception types; an unreadable candidate is simply not chosen
        return None
    text = session.get_modelmeta().custom_metadata_map.get(CARD_KEY)
    try:
        return ModelCard.from_json(text) if text else None
    except ModelError:
        return None


def choose_model(model: Path, prefer_int8: bool) -> ModelChoice:
    if not prefer_int8:
        return ModelChoice(model, "as configured")
    candidate = int8_sibling(model)
    if not candidate.is_file():
        return ModelChoice(model, f"as configured: no {candidate.name} beside it")
    card = _card(candidate)
    if card is None or card.precision != "int8":
        return ModelChoice(model, f"as configured: {candidate.name} carries no INT8 model card")
    if card.source_model_sha256 is None or card.source_model_sha256 != file_sha256(model):
        return ModelChoice(model, f"as configured: {candidate.name} was not quantized from {model.name}")
    gate = card.quantize_gate or {}
    if gate.get("passed") is not True:
        return ModelChoice(
            model,
            f"as configured: {candidate.name} passed no accuracy gate (quantize it with --eval DATASET --max-loss)",
        )
    return ModelChoice(
        candidate,
        f"INT8: {candidate.name} passed its gate (mAP@0.5 {gate.get('before')} -> {gate.get('after')}, "
        f"loss allowed {gate.get('max_loss')})",
    )
