"""``andi-edge classifier export``: a trained classifier to ONNX (dynamic batch: one photo's crops in one run), with
its card in ``metadata_props`` (labels, input size, normalisation, crop policy, training data and locations,
licence), checked by loading it back through the runtime's own ``Classifier``."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from andi_edge import __version__
from andi_edge.runtime.classifier import Classifier
from andi_edge.runtime.classifier_card import ClassifierCard
from andi_edge.toolchain import require_toolchain
from andi_edge.toolchain.classifier.train import load_checkpoint
from andi_edge.toolchain.export import ONNX_OPSET, torch_to_onnx

log = logging.getLogger(__name__)

INPUT_NAME = "crops"
OUTPUT_NAME = "logits"


def write_classifier_card(onnx_path: Path, card: ClassifierCard) -> None:
    """Write (or replace) the classifier card in an ONNX file's metadata_props, keeping other entries."""
    import onnx

    model = onnx.load(str(onnx_path))
    entries = card.to_metadata()
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def export_classifier(checkpoint: Path, output: Path) -> ClassifierCard:
    require_toolchain()
    import onnx
    import torch

    from andi_edge.sinks.atomic import write_bytes_atomic

    model, card, payload = load_checkpoint(checkpoint)
    dummy = torch.zeros(2, 3, card.input_height_px, card.input_width_px)
    card = replace(
        card,
        extra={
            **card.extra,
            "export_tools": {"andi_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                             "opset": ONNX_OPSET},
            "pretrained": payload.get("pretrained"),
            "best_epoch_history": payload.get("history", [])[-1:] or None,
        },
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="andi-cls-export-") as tmp:
        staged = Path(tmp) / "classifier.onnx"
        with torch.no_grad():
            torch_to_onnx(model, dummy, staged, INPUT_NAME, OUTPUT_NAME, dynamic_batch=True)
        write_classifier_card(staged, card)
        Classifier(staged)  # the runtime must read what we wrote: card, shapes, labels
        output.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(output, staged.read_bytes())
    log.info("exported %s -> %s (%d labels)", checkpoint, output, len(card.labels))
    return card
