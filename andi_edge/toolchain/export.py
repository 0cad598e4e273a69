"""``andi-edge export``: a YOLO checkpoint -> an ONNX model with its model card inside.

Classic YOLOv5 checkpoints (also MegaDetector v5) go through our own loader (``yolov5_classic``) and
``torch.onnx``; ultralytics-package checkpoints (YOLOv5u, YOLOv8, YOLO11, MegaDetector v6) go through
Ultralytics' exporter. Both end with the same card written into ``metadata_props``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from andi_edge import __version__
from andi_edge.errors import ModelError, UsageError
from andi_edge.runtime.model_meta import CARD_KEY, HeadType, ModelCard
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.toolchain import require, require_toolchain
from andi_edge.toolchain.offline import configure_ultralytics_offline
from andi_edge.toolchain.weights import ResolvedWeights

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
MAX_STRIDE = 32


@dataclass(frozen=True)
class ExportRequest:
    weights: ResolvedWeights
    output: Path
    imgsz: int
    name: str | None = None
    licence: str | None = None


def export_onnx(request: ExportRequest) -> ModelCard:
    """Export and write ``request.output`` atomically. Returns the card written into the file."""
    if request.imgsz <= 0 or request.imgsz % MAX_STRIDE:
        suggestion = max(MAX_STRIDE, round(request.imgsz / MAX_STRIDE) * MAX_STRIDE)
        raise UsageError(
            f"--imgsz {request.imgsz} must be a positive multiple of {MAX_STRIDE}", hint=f"try --imgsz {suggestion}"
        )
    require_toolchain()
    from andi_edge.toolchain import yolov5_classic

    request.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="andi-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        if yolov5_classic.is_ultralytics_checkpoint(request.weights.path):
            names, head, tools = _export_ultralytics(request, Path(tmp), staged)
        else:
            names, head, tools = _export_classic(request, staged)
        card = ModelCard(
            name=request.name or f"{request.weights.path.stem}-{request.imgsz}",
            class_names=tuple(names),
            input_height=request.imgsz,
            input_width=request.imgsz,
            head=head,
            stride=MAX_STRIDE,
            source_weights=request.weights.path.name,
            source_weights_sha256=request.weights.sha256,
            licence=request.licence or (request.weights.known.licence if request.weights.known else None),
            training_data=request.weights.known.training_data if request.weights.known else None,
            export_tools=tools,
            created_utc=datetime.now(UTC).replace(microsecond=0).isoformat(),
        )
        write_card(staged, card)
        write_bytes_atomic(request.output, staged.read_bytes())
    log.info("exported %s -> %s", request.weights.path, request.output)
    return card


def write_card(onnx_path: Path, card: ModelCard) -> None:
    """Write (or replace) the card in an ONNX file's metadata_props, keeping other metadata entries."""
    onnx = require("onnx")
    model = onnx.load(str(onnx_path))
    kept = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = card.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def _export_classic(request: ExportRequest, staged: Path) -> tuple[list[str], HeadType, dict[str, str]]:
    import onnx
    import torch

    from andi_edge.toolchain.yolov5_classic import class_names, fuse_conv_bn, load_classic

    model, _ = load_classic(request.weights.path)
    model = fuse_conv_bn(model)
    dummy = torch.zeros(1, 3, request.imgsz, request.imgsz)
    with torch.no_grad():
        model(dummy)  # a dry run catches shape problems with a readable torch error before export
        torch.onnx.export(
            model,
            (dummy,),
            str(staged),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    tools = {
        "andi_edge": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "exporter": "torch.onnx (TorchScript)",
        "opset": str(ONNX_OPSET),
    }
    return class_names(model), "yolov5", tools


def _export_ultralytics(
    request: ExportRequest, workdir: Path, staged: Path
) -> tuple[list[str], HeadType, dict[str, str]]:
    configure_ultralytics_offline()
    ultralytics = require("ultralytics")
    import onnx
    import torch

    # Ultralytics writes the .onnx beside the weights: work on a copy so a read-only models folder is fine.
    local_weights = workdir / request.weights.path.name
    shutil.copyfile(request.weights.path, local_weights)
    try:
        yolo = ultralytics.YOLO(str(local_weights))
        produced = yolo.export(
            format="onnx", imgsz=request.imgsz, opset=ONNX_OPSET, dynamic=False, simplify=False, nms=False
        )
    except Exception as exc:  # ultralytics raises bare exceptions of many kinds
        raise ModelError(f"{request.weights.path}: Ultralytics could not export this checkpoint ({exc})") from exc
    if getattr(yolo, "task", "detect") != "detect":
        raise ModelError(f"{request.weights.path}: a '{yolo.task}' model; andi-edge runs detection models only")
    os.replace(produced, staged)
    names_map = yolo.names
    names = [str(names_map[k]) for k in sorted(names_map)]
    tools = {
        "andi_edge": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "ultralytics": ultralytics.__version__,
        "exporter": "ultralytics",
        "opset": str(ONNX_OPSET),
    }
    return names, "ultralytics", tools
