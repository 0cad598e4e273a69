"""``andi-edge classifier quantize``: ONNX Runtime static INT8 (QDQ, per-channel weights) of a crop classifier,
calibrated on the crops dataset's training crops through the runtime's own preprocessing, gated on F1-macro
against the fp32 classifier. The card gains ``precision: int8``, the source's sha256 and the gate's outcome."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from andi_edge.errors import UsageError
from andi_edge.runtime.classifier import Classifier, crop_tensor
from andi_edge.runtime.model_meta import file_sha256
from andi_edge.toolchain import require_toolchain
from andi_edge.toolchain.classifier.crops import CropsDataset
from andi_edge.toolchain.classifier.evaluate import classifier_gate
from andi_edge.toolchain.classifier.export import write_classifier_card

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_CROPS = 128


@dataclass(frozen=True)
class ClassifierQuantizeRequest:
    model: Path
    crops: CropsDataset
    output: Path
    max_crops: int = DEFAULT_CALIBRATION_CROPS
    gate_split: str = "val"
    max_loss: float = 0.02


def is_classifier(model: Path) -> bool:
    """Whether an ONNX file carries a classifier card (so ``andi-edge quantize`` calibrates it on crops)."""
    import onnx

    from andi_edge.runtime.classifier_card import CLASSIFIER_CARD_KEY

    try:
        loaded = onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 - not an ONNX file: the detector path gives the user its own clear error
        return False
    return any(p.key == CLASSIFIER_CARD_KEY for p in loaded.metadata_props)


class _CropReader:
    """ONNX Runtime's CalibrationDataReader over training crops, one at a time."""

    def __init__(self, tensors: list[npt.NDArray[np.float32]], input_name: str) -> None:
        self._tensors = iter(tensors)
        self._input = input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self._input: tensor[None]}


def quantize_classifier(request: ClassifierQuantizeRequest) -> dict[str, float]:
    require_toolchain()
    from andi_edge.sinks.atomic import write_bytes_atomic
    from andi_edge.toolchain.quantize import static_int8

    source = Classifier(request.model)
    if source.card.extra.get("precision") == "int8":
        raise UsageError(f"{request.model} is already INT8; quantize the fp32 classifier")
    items = request.crops.split("train")
    if not items:
        raise UsageError(f"{request.crops.folder}: no training crops to calibrate with")
    step = max(1, len(items) // request.max_crops)
    chosen = items[::step][: request.max_crops]
    tensors = [crop_tensor(request.crops.pixels(i), source.card) for i in chosen]
    with tempfile.TemporaryDirectory(prefix="andi-cls-quant-") as tmp:
        staged = Path(tmp) / "int8.onnx"
        static_int8(request.model, staged, _CropReader(tensors, source.loaded.input_name))
        card = replace(
            source.card,
            name=f"{source.card.name}-int8",
            extra={**source.card.extra, "precision": "int8", "source_model_sha256": file_sha256(request.model),
                   "calibration_crops": len(chosen)},
        )  # fmt: skip
        write_classifier_card(staged, card)
        outcome = classifier_gate(request.model, staged, request.crops, request.gate_split, request.max_loss)
        gate = {"metric": "f1_macro", "split": request.gate_split, "max_loss": request.max_loss,
                "before": round(outcome["before"], 4), "after": round(outcome["after"], 4),
                "crops_manifest_sha256": request.crops.manifest_sha256, "passed": True}  # fmt: skip
        write_classifier_card(staged, replace(card, extra={**card.extra, "quantize_gate": gate}))
        request.output.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(request.output, staged.read_bytes())
    return outcome
