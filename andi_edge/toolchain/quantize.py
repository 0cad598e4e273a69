"""``andi-edge quantize``: ONNX Runtime static INT8 (QDQ, per-channel weights), calibrated on real photos.

Calibration photos go through the runtime's own decode and letterbox (``Detector.prepare``), so the ranges
are those of the pixels the device will see. The detection head (the last layer: its 1x1 convolutions and the
grid decode) stays in float: box coordinates in pixels do not survive 8 bits, and it is a tiny part of the
compute. The result carries the source card with ``precision: int8`` and the calibration set's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from andi_edge.errors import ModelError, UsageError
from andi_edge.photos import find_photos
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.model_meta import file_sha256
from andi_edge.toolchain import require_toolchain
from andi_edge.toolchain.gate import Gate, check_gate

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_PHOTOS = 64
_LAYER = re.compile(r"^/model\.(\d+)/")


@dataclass(frozen=True)
class QuantizeRequest:
    model: Path
    calibration_dir: Path
    output: Path
    max_photos: int = DEFAULT_CALIBRATION_PHOTOS
    gate: Gate | None = None


def calibration_photos(folder: Path, limit: int) -> list[Path]:
    """An even spread over the folder's photos (sorted), so one burst does not fill the calibration set."""
    _, sources = find_photos([folder])
    paths = [s.path for s in sources]
    if not paths:
        raise UsageError(f"no photos (jpg, jpeg, png) under {folder} to calibrate with")
    if len(paths) <= limit:
        return paths
    step = len(paths) / limit
    return [paths[int(i * step)] for i in range(limit)]


def calibration_sha256(photos: list[Path]) -> str:
    """One hash for the set: the sorted per-photo sha256s, hashed."""
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in photos)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def head_nodes(model_path: Path) -> list[str]:
    """Names of the nodes of the last ``/model.N/`` layer: the detection head, kept in float."""
    import onnx

    names = [node.name for node in onnx.load(str(model_path)).graph.node]
    layers = [int(m.group(1)) for n in names if (m := _LAYER.match(n))]
    if not layers:
        raise ModelError(f"{model_path}: cannot find the detection head (no /model.N/ node names)")
    last = f"/model.{max(layers)}/"
    return [n for n in names if n.startswith(last)]


class _PhotoReader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared photos."""

    def __init__(self, detector: Detector, photos: list[Path]) -> None:
        self._tensors = iter(self._prepare(detector, photos))
        self._input = detector.loaded.input_name

    @staticmethod
    def _prepare(detector: Detector, photos: list[Path]) -> list[npt.NDArray[np.float32]]:
        tensors = []
        for photo in photos:
            try:
                tensors.append(detector.prepare(photo).tensor)
            except Exception as exc:  # noqa: BLE001 - a broken calibration photo is skipped, and said so
                log.warning("calibration: skipping %s (%s)", photo, exc)
        if not tensors:
            raise UsageError("none of the calibration photos could be read")
        return tensors

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self._input: tensor}


def static_int8(source: Path, target: Path, reader: Any, nodes_to_exclude: list[str] | None = None) -> None:
    """How every andi-edge INT8 model is made: ONNX Runtime's pre-processing, then static quantization in QDQ
    form with per-channel int8 weights, uint8 activations and MinMax ranges from ``reader`` (its
    CalibrationDataReader protocol). ``nodes_to_exclude`` stay in float, and so does a Resize's size arithmetic
    (``shape_arithmetic``); what the quantizer leaves behind is put right (``tidy_quantized``)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    source, target = source.resolve(), target.resolve()
    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [*(nodes_to_exclude or []), *shape_arithmetic(graph)]
    # ONNX Runtime's tools write external-data files and temporaries where they please (7 MB `<uuid>.data`
    # files once landed in the repository's root): they run in a folder of their own, removed afterwards
    with tempfile.TemporaryDirectory(prefix="andi-quantize-") as tmp, _working_directory(Path(tmp)):
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX Runtime's symbolic shape inference gives up on a rectangular model's free height and width; ONNX's
        # own inference, which it falls back to, is enough for the quantizer there
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=_free_image_size(graph))
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
    tidy_quantized(graph, target)


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def shape_arithmetic(graph: onnx.GraphProto) -> list[str]:
    """The nodes that compute a Resize's output size from a tensor's shape (a rectangular model's upsampling:
    Shape -> Gather -> Cast -> Mul by the scale -> ...). They are arithmetic on sizes, not activations: quantized,
    15 x 2 came out 29, and the model failed at every 4:3 photo."""
    producer = {output: node for node in graph.node for output in node.output}
    wanted = [name for node in graph.node if node.op_type == "Resize" for name in node.input[1:] if name]
    found: dict[str, onnx.NodeProto] = {}
    while wanted:
        node = producer.get(wanted.pop())
        if node is None or node.name in found:
            continue
        found[node.name] = node
        if node.op_type != "Shape":  # a Shape's input is the activation itself
            wanted.extend(name for name in node.input if name)
    return [name for name, node in found.items() if node.op_type != "Constant"]


def _free_image_size(graph: onnx.GraphProto) -> bool:
    dims = graph.input[0].type.tensor_type.shape.dim
    return any(not d.HasField("dim_value") for d in list(dims)[2:])


def tidy_quantized(source: onnx.GraphProto, target: Path) -> None:
    """What ONNX Runtime's quantizer leaves behind, put right in ``target``:

    - operator-set imports no node uses: it stamps its own domains on the file (ai.onnx.ml 5,
      com.microsoft.nchwc, ai.onnx.training, ...) although a QDQ model uses only the standard one, and stricter
      loaders refuse what they do not know (DeepSparse 1.8 refused every INT8 model for ai.onnx.ml opset 5);
    - the inputs' and outputs' shapes: its shape inference renames the free dimensions of a rectangular model
      and loses the fixed ones beside them (the class count of ``(1, candidates, 85)``), which is how the
      runtime knows the head; they are the ``source`` graph's again.
    """
    import onnx

    model = onnx.load(str(target))
    used = {node.domain for node in model.graph.node} | {node.domain for f in model.functions for node in f.node}
    kept = [opset for opset in model.opset_import if opset.domain in used or opset.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    for ours, theirs in ((model.graph.input, source.input), (model.graph.output, source.output)):
        types = {value.name: value.type for value in theirs}
        for value in ours:
            if value.name in types:
                value.type.CopyFrom(types[value.name])
    onnx.save(model, str(target))


def quantize(request: QuantizeRequest) -> Path:
    require_toolchain()
    from andi_edge.sinks.atomic import write_bytes_atomic
    from andi_edge.toolchain.export import write_card

    detector = Detector(request.model)
    if detector.card.precision != "fp32":
        raise UsageError(f"{request.model} is already {detector.card.precision}; quantize the fp32 model")
    photos = calibration_photos(request.calibration_dir, request.max_photos)
    reader = _PhotoReader(detector, photos)
    excluded = head_nodes(request.model)
    with tempfile.TemporaryDirectory(prefix="andi-quant-") as tmp:
        staged = Path(tmp) / "int8.onnx"
        static_int8(request.model, staged, reader, excluded)
        card = detector.card.with_updates(
            name=f"{detector.card.name}-int8",
            precision="int8",
            source_model_sha256=file_sha256(request.model),
            calibration_sha256=calibration_sha256(photos),
            notes=(
                f"ONNX Runtime static INT8 (QDQ, per-channel weights, MinMax) on {len(photos)} photos from "
                f"{request.calibration_dir.name}; detection head ({len(excluded)} nodes) kept in float"
            ),
        )
        write_card(staged, card)
        if request.gate is not None:
            outcome = check_gate(request.gate, request.model, staged)
            log.info("gate passed: mAP@0.5 %.4f -> %.4f", outcome["before"], outcome["after"])
            # recorded in the card: what lets a device choose this model over its fp32 source (model_choice)
            dataset = request.gate.dataset
            gate = {"dataset_sha256": dataset.source_sha256, "images": len(dataset.images), "metric": "map50",
                    "max_loss": request.gate.max_loss,
                    "before": round(outcome["before"], 4), "after": round(outcome["after"], 4),
                    "passed": True}  # fmt: skip
            write_card(staged, card.with_updates(quantize_gate=gate))
        request.output.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(request.output, staged.read_bytes())
    return request.output
