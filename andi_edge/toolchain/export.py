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
from typing import Any

from andi_edge import __version__
from andi_edge.errors import ModelError, UsageError
from andi_edge.runtime.categories import preset_for
from andi_edge.runtime.model_meta import (
    CARD_KEY,
    CategorySpec,
    HeadType,
    ModelCard,
    Thresholds,
    infer_head,
    ultralytics_head_hint,
)
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.toolchain import require, require_toolchain
from andi_edge.toolchain.offline import configure_ultralytics_offline
from andi_edge.toolchain.weights import ResolvedWeights

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
#: the smallest stride of any YOLO (P5 models: 32; P6 models such as MegaDetector v5: 64, checked per model)
MIN_STRIDE = 32
DEFAULT_IMGSZ = 320


@dataclass(frozen=True)
class ExportRequest:
    weights: ResolvedWeights
    output: Path
    #: None: the registry's recommended size for a known model (MegaDetector v5: 1280), else 320
    imgsz: int | None = None
    name: str | None = None
    licence: str | None = None
    #: write the native classes as the card's categories (no camera-trap mapping)
    native_classes: bool = False
    #: rectangular inference (``ModelCard.rect``): height and width left free in the graph, classic YOLOv5 only
    rect: bool = False

    @property
    def size(self) -> int:
        return export_size(self.weights, self.imgsz)


def export_name(weights: ResolvedWeights, imgsz: int | None, rect: bool) -> str:
    """What an export is called unless told otherwise, in its card and its file name: STEM-IMGSZ[-rect]."""
    return f"{weights.path.stem}-{export_size(weights, imgsz)}{'-rect' if rect else ''}"


def export_size(weights: ResolvedWeights, imgsz: int | None) -> int:
    """The input size an export uses: the one asked for, else the registry's for a known model, else 320."""
    known = weights.known
    return imgsz or (known.imgsz if known and known.imgsz else DEFAULT_IMGSZ)


@dataclass(frozen=True)
class _Exported:
    names: list[str]
    head: HeadType
    stride: int
    tools: dict[str, str]


def _check_imgsz(imgsz: int, stride: int, source: str = "") -> None:
    if imgsz <= 0 or imgsz % stride:
        suggestion = max(stride, round(imgsz / stride) * stride)
        raise UsageError(
            f"--imgsz {imgsz} must be a positive multiple of {stride}{source}", hint=f"try --imgsz {suggestion}"
        )


def categories_for(names: tuple[str, ...], native: bool) -> CategorySpec | None:
    """The card's categories: camera-trap ones for a COCO model, or the native classes when asked."""
    if native:
        return CategorySpec(names=names, members=tuple((n,) for n in names), preset="native")
    return preset_for(names)


def export_onnx(request: ExportRequest) -> ModelCard:
    """Export and write ``request.output`` atomically. Returns the card written into the file."""
    imgsz = request.size
    _check_imgsz(imgsz, MIN_STRIDE)
    require_toolchain()
    from andi_edge.toolchain import yolov5_classic

    request.output.parent.mkdir(parents=True, exist_ok=True)
    known = request.weights.known
    with tempfile.TemporaryDirectory(prefix="andi-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        if yolov5_classic.is_ultralytics_checkpoint(request.weights.path):
            if request.rect:
                raise UsageError(
                    f"--rect: {request.weights.path} is an ultralytics checkpoint; rectangular inference is "
                    "exported for classic YOLOv5 checkpoints (yolov5n.pt, MegaDetector v5, `train --head warm`)",
                    hint="export it without --rect",
                )
            exported = _export_ultralytics(request, imgsz, Path(tmp), staged)
        else:
            exported = _export_classic(request, imgsz, staged)
        names = tuple(exported.names)
        thresholds = Thresholds()
        if known is not None and known.typical is not None:
            thresholds = Thresholds(typical=known.typical, conservative=known.conservative or thresholds.conservative)
        card = ModelCard(
            name=request.name or export_name(request.weights, imgsz, request.rect),
            class_names=names,
            input_height=imgsz,
            input_width=imgsz,
            head=exported.head,
            stride=exported.stride,
            thresholds=thresholds,
            source_weights=request.weights.path.name,
            source_weights_sha256=request.weights.sha256,
            licence=request.licence or (known.licence if known else None),
            training_data=known.training_data if known else None,
            export_tools=exported.tools,
            created_utc=datetime.now(UTC).replace(microsecond=0).isoformat(),
            categories=categories_for(names, request.native_classes),
            rect=request.rect,
            decode=known.decode if known else None,
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


def torch_to_onnx(
    model: Any,
    dummy: Any,
    target: Path,
    input_name: str,
    output_name: str,
    dynamic_batch: bool = False,
    dynamic_hw: bool = False,
) -> None:
    """torch's TorchScript exporter at our opset with constant folding: how every andi-edge ONNX file is made
    from a torch module (``dynamic_batch``: the first axis left free, for a classifier's crops; ``dynamic_hw``:
    the image's height and width, and so the detector's candidate count, for rectangular inference)."""
    import torch

    axes: dict[str, dict[int, str]] | None = None
    if dynamic_batch:
        axes = {input_name: {0: "batch"}, output_name: {0: "batch"}}
    elif dynamic_hw:
        axes = {input_name: {2: "height", 3: "width"}, output_name: {1: "candidates"}}
    torch.onnx.export(
        model,
        (dummy,),
        str(target),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes=axes,
        opset_version=ONNX_OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    if dynamic_hw:
        _pin_output_dims(model, dummy, target, free=1)


def _pin_output_dims(model: Any, dummy: Any, target: Path, free: int) -> None:
    """The exporter leaves every output dimension it could not prove constant unnamed; all but ``free`` are
    (the batch and the per-candidate values: 5 + classes), and the runtime reads the head from them."""
    import onnx
    import torch

    with torch.no_grad():
        produced = model(dummy)
    shape = (produced[0] if isinstance(produced, tuple | list) else produced).shape
    exported = onnx.load(str(target))
    dims = exported.graph.output[0].type.tensor_type.shape.dim
    for axis, size in enumerate(shape):
        if axis != free:
            dims[axis].Clear()
            dims[axis].dim_value = int(size)
    onnx.save(exported, str(target))


def _export_classic(request: ExportRequest, imgsz: int, staged: Path) -> _Exported:
    import onnx
    import torch

    from andi_edge.toolchain.yolov5_classic import class_names, fuse_conv_bn, load_classic

    model, _ = load_classic(request.weights.path)
    stride = model_stride(model.stride)
    _check_imgsz(imgsz, stride, f" for this model (stride {stride})")
    model = fuse_conv_bn(model)
    dummy = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        model(dummy)  # a dry run catches shape problems with a readable torch error before export
        torch_to_onnx(model, dummy, staged, INPUT_NAME, OUTPUT_NAME, dynamic_hw=request.rect)
    tools = {
        "andi_edge": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "exporter": "torch.onnx (TorchScript)",
        "opset": str(ONNX_OPSET),
    }
    return _Exported(class_names(model), "yolov5", stride, tools)


def model_stride(strides: object) -> int:
    """The largest stride of a model's detection levels (32 for P5 models, 64 for P6)."""
    try:
        values = [int(v) for v in strides]  # type: ignore[attr-defined]
    except TypeError:
        values = [int(strides)]  # type: ignore[call-overload]
    if not values or min(values) <= 0:
        raise ModelError(f"the checkpoint's strides {strides!r} are not positive")
    return max(values)


def _ultralytics_head(onnx_path: Path, num_classes: int, imgsz: int) -> HeadType:
    """Which layout Ultralytics' exporter produced, from the file's own metadata and output shape.

    Some exports (RT-DETR) declare a dynamic output shape although the input is fixed: the real shape is measured
    by one run on a blank input and written into the graph, so the runtime can check it at load."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        blank = np.zeros((1, 3, imgsz, imgsz), dtype=np.float32)
        measured = session.run(None, {session.get_inputs()[0].name: blank})[0].shape
        for dim, value in zip(dims, measured, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
        onnx.save(model, str(onnx_path))
    shape = tuple(int(d.dim_value) for d in dims)
    hint = ultralytics_head_hint({p.key: p.value for p in model.metadata_props})
    return infer_head(shape, num_classes, hint)


def _export_ultralytics(request: ExportRequest, imgsz: int, workdir: Path, staged: Path) -> _Exported:
    configure_ultralytics_offline()
    ultralytics = require("ultralytics")
    import onnx
    import torch

    # Ultralytics writes the .onnx beside the weights: work on a copy so a read-only models folder is fine.
    local_weights = workdir / request.weights.path.name
    shutil.copyfile(request.weights.path, local_weights)
    try:
        yolo = ultralytics.YOLO(str(local_weights))
    except Exception as exc:  # ultralytics raises bare exceptions of many kinds
        raise ModelError(f"{request.weights.path}: Ultralytics could not load this checkpoint ({exc})") from exc
    if getattr(yolo, "task", "detect") != "detect":
        raise ModelError(f"{request.weights.path}: a '{yolo.task}' model; andi-edge runs detection models only")
    stride = model_stride(yolo.model.stride)
    _check_imgsz(imgsz, stride, f" for this model (stride {stride})")
    try:
        produced = yolo.export(format="onnx", imgsz=imgsz, opset=ONNX_OPSET, dynamic=False, simplify=False, nms=False)
    except Exception as exc:  # ultralytics raises bare exceptions of many kinds
        raise ModelError(f"{request.weights.path}: Ultralytics could not export this checkpoint ({exc})") from exc
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
    return _Exported(names, _ultralytics_head(staged, len(names), imgsz), stride, tools)
