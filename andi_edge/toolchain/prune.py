"""``andi-edge prune``: make a fine-tuned model smaller, two ways.

- ``--method channels`` (ultralytics checkpoints): structured channel pruning (torch-pruning), then recovery
  training. Whole filters go, so every runtime gets faster. Filters are ranked by their L2 magnitude, layer by
  layer; the detection head is left whole. The pruned network no longer matches its YAML, so recovery
  fine-tuning hands Ultralytics' trainer the pruned model itself instead of letting it rebuild one from the YAML.
- ``--method gmp`` (classic YOLOv5 checkpoints): Neural Magic's gradual magnitude pruning, unstructured, during
  fine-tuning with YOLOv5's loss (``sparsity``, ``classic_train``), to ``--sparsity`` (e.g. 0.8) with recovery
  epochs at the end, then (``--qat-epochs``) quantization-aware training with the zeros held (``qat``). The
  architecture is unchanged; the zeros can pay off only on an engine that runs sparse models (DeepSparse;
  measured in benchmarks/results/sparse.md); ``andi-edge quantize`` then makes it sparse INT8.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.errors import ModelError, UsageError
from andi_edge.runtime.model_meta import file_sha256
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.toolchain import require, require_toolchain
from andi_edge.toolchain.gate import Gate, check_gate
from andi_edge.toolchain.offline import configure_ultralytics_offline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneRequest:
    weights: Path  # an ultralytics checkpoint, e.g. RUN_DIR/train/weights/best.pt from `andi-edge train`
    ratio: float
    data: Path  # SPLIT_DIR for recovery fine-tuning
    epochs: int
    output: Path  # PRUNED.pt
    imgsz: int = 320
    batch: int = 16
    gate: Gate | None = None
    #: "channels" (structured, ultralytics checkpoints) or "gmp" (unstructured, classic checkpoints)
    method: str = "channels"
    #: gmp: the fraction of each pruned convolution's weights that ends up zero
    sparsity: float = 0.8
    #: gmp: quantization-aware training epochs after pruning and recovery (``toolchain.qat``); 0: none
    qat_epochs: int = 0


METHODS = ("channels", "gmp")
#: gmp: the last quarter of the epochs (at least one) train at the final sparsity
GMP_RECOVERY_SHARE = 0.25
#: gmp: masks recomputed four times an epoch
GMP_UPDATES_PER_EPOCH = 4
#: gmp: fine-tuning's learning rate (the warm path's default)
GMP_LR0 = 0.001
#: gmp: quantization-aware training's, lower: the weights only move towards the int8 grid
GMP_QAT_LR0 = 0.0005


@dataclass(frozen=True)
class PruneResult:
    output: Path
    #: channels: parameters; gmp: non-zero weights
    params_before: int
    params_after: int
    macs_before: float
    macs_after: float
    method: str = "channels"
    sparsity: float | None = None


def _load(weights: Path) -> Any:
    from andi_edge.toolchain.yolov5_classic import is_ultralytics_checkpoint

    if not weights.is_file():
        raise UsageError(f"weights not found: {weights}")
    if not is_ultralytics_checkpoint(weights):
        raise UsageError(
            f"{weights} is not an ultralytics checkpoint",
            hint="prune a fine-tuned model: `andi-edge train` first, then prune RUN_DIR/train/weights/best.pt",
        )
    return require("ultralytics").YOLO(str(weights))


def prune(request: PruneRequest) -> PruneResult:
    require_toolchain()
    if request.method not in METHODS:
        raise UsageError(f"--method {request.method}: expected one of {', '.join(METHODS)}")
    if request.method == "gmp":
        return prune_gmp(request)
    if not 0 < request.ratio < 1:
        raise UsageError(f"--ratio {request.ratio}: expected a fraction of channels between 0 and 1")
    if request.epochs < 0:
        raise UsageError("--epochs must be >= 0 (0: no recovery training)")
    data_yaml = request.data / "data.yaml"
    if request.epochs and not data_yaml.is_file():
        raise UsageError(f"{request.data} holds no data.yaml", hint="make one with `andi-edge dataset split`")
    configure_ultralytics_offline()
    torch = require("torch")
    tp = require("torch_pruning")
    yolo = _load(request.weights)
    model = yolo.model.float()
    for param in model.parameters():
        param.requires_grad_(True)
    example = torch.randn(1, 3, request.imgsz, request.imgsz)
    macs_before, params_before = tp.utils.count_ops_and_params(model, example)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=request.ratio,
        ignored_layers=[model.model[-1]],
    )
    pruner.step()
    macs_after, params_after = tp.utils.count_ops_and_params(model, example)
    log.info(
        "pruned: %d -> %d parameters, %.0f -> %.0f MMACs",
        params_before,
        params_after,
        macs_before / 1e6,
        macs_after / 1e6,
    )
    request.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="andi-prune-") as tmp:
        staged = Path(tmp) / request.output.name
        if request.epochs:
            best = _recover(yolo, model, request, data_yaml, Path(tmp))
            pruned = require("ultralytics").YOLO(str(best))
        else:
            pruned = yolo
        pruned.save(str(staged))
        if request.gate is not None:
            _gate(request, staged, Path(tmp))
        write_bytes_atomic(request.output, staged.read_bytes())
    if not request.output.is_file():
        raise ModelError(f"could not write {request.output}")
    record = {
        "source": str(request.weights),
        "source_sha256": file_sha256(request.weights),
        "ratio": request.ratio,
        "params": [params_before, params_after],
        "macs": [macs_before, macs_after],
        "recovery_epochs": request.epochs,
    }
    request.output.with_suffix(".prune.json").write_text(json.dumps(record, indent=1) + "\n")
    return PruneResult(request.output, params_before, params_after, macs_before, macs_after)


def _gate(request: PruneRequest, staged: Path, tmp: Path) -> None:
    """Export the source and the pruned model and compare them on the gate's dataset."""
    from andi_edge.toolchain.export import ExportRequest, export_onnx
    from andi_edge.toolchain.weights import ResolvedWeights

    assert request.gate is not None
    onnx_files = []
    for name, weights in (("source", request.weights), ("pruned", staged)):
        out = tmp / f"{name}.onnx"
        export_onnx(ExportRequest(ResolvedWeights(weights, file_sha256(weights), None), out, request.imgsz))
        onnx_files.append(out)
    outcome = check_gate(request.gate, onnx_files[0], onnx_files[1])
    log.info("gate passed: mAP@0.5 %.4f -> %.4f", outcome["before"], outcome["after"])


def _recover(yolo: Any, model: Any, request: PruneRequest, data_yaml: Path, tmp: Path) -> Path:
    """Fine-tune the pruned network as it is (the trainer must not rebuild it from the YAML)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class PrunedTrainer(DetectionTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            return model

    run = tmp / "recovery"
    yolo.train(
        trainer=PrunedTrainer,
        data=str(data_yaml),
        epochs=request.epochs,
        imgsz=request.imgsz,
        batch=request.batch,
        patience=5,
        device="cpu",
        workers=0,
        amp=False,
        plots=False,
        verbose=False,
        project=str(run.resolve()),
        name="train",
        exist_ok=True,
    )
    best = run / "train" / "weights" / "best.pt"
    if not best.is_file():
        raise ModelError(f"recovery training ended without {best}")
    return best


def prune_gmp(request: PruneRequest) -> PruneResult:
    """Gradual magnitude pruning of a classic checkpoint during fine-tuning on SPLIT_DIR (module doc)."""
    from andi_edge.toolchain.classic_train import train_classic
    from andi_edge.toolchain.dataset import split_class_names
    from andi_edge.toolchain.sparsity import GmpSchedule, MagnitudePruner, prunable_convolutions, sparsity_report
    from andi_edge.toolchain.yolov5_classic import is_ultralytics_checkpoint, load_classic

    if not 0 < request.sparsity < 1:
        raise UsageError(f"--sparsity {request.sparsity}: expected a fraction between 0 and 1 (e.g. 0.8)")
    if request.epochs < 1:
        raise UsageError("--method gmp prunes while it fine-tunes: give --epochs 1 or more (e.g. 10)")
    if request.qat_epochs < 0:
        raise UsageError(f"--qat-epochs {request.qat_epochs}: expected 0 (none) or more")
    data_yaml = request.data / "data.yaml"
    if not data_yaml.is_file():
        raise UsageError(f"{request.data} holds no data.yaml", hint="make one with `andi-edge dataset split`")
    if not request.weights.is_file():
        raise UsageError(f"weights not found: {request.weights}")
    if is_ultralytics_checkpoint(request.weights):
        raise UsageError(
            f"{request.weights} is an ultralytics checkpoint: --method gmp prunes classic YOLOv5 ones",
            hint="use --method channels for it, or prune the classic run (`andi-edge train --head warm`)",
        )
    model, _ = load_classic(request.weights)
    convs = prunable_convolutions(model, keep_dense=(model.detect,))
    dense = sum(c.weight.numel() for c in convs)
    recovery = max(1, round(request.epochs * GMP_RECOVERY_SHARE)) if request.epochs > 1 else 0

    def sparsify(steps_per_epoch: int) -> MagnitudePruner:
        total = steps_per_epoch * request.epochs
        end = min(total - 1, steps_per_epoch * (request.epochs - recovery))
        every = max(1, steps_per_epoch // GMP_UPDATES_PER_EPOCH)
        return MagnitudePruner(convs, GmpSchedule(request.sparsity, 0, end, every))

    request.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="andi-gmp-") as tmp:
        result = train_classic(
            model, request.data, split_class_names(data_yaml), Path(tmp), epochs=request.epochs, imgsz=request.imgsz,
            batch=request.batch, patience=request.epochs, seed=0, freeze=0, lr0=GMP_LR0, sparsify=sparsify,
        )  # fmt: skip
        best = result.best
        qat: dict[str, Any] | None = None
        if request.qat_epochs > 0:
            best, qat = _quantization_aware(model, request, Path(tmp))
            convs = prunable_convolutions(model, keep_dense=(model.detect,))
        report = sparsity_report(convs)  # of the best epoch's weights: train_classic leaves them in the model
        if request.gate is not None:
            _gate(request, best, Path(tmp))
        write_bytes_atomic(request.output, best.read_bytes())
    log.info("gmp: %d of %d pruned weights are zero (%.1f%%)", report["zeros"], report["weights"],
             100 * float(report["sparsity"]))  # fmt: skip
    record = {
        "method": "gmp",
        "source": str(request.weights),
        "source_sha256": file_sha256(request.weights),
        "sparsity_target": request.sparsity,
        "sparsity": report,
        "recovery_epochs": recovery,
        "best_epoch": result.best_epoch,
        "val_map50": round(result.best_val_map50, 4),
        "history": result.history,
        "qat": qat,
    }
    request.output.with_suffix(".prune.json").write_text(json.dumps(record, indent=1) + "\n")
    zeros = int(report["zeros"])
    return PruneResult(request.output, dense, dense - zeros, 0.0, 0.0, "gmp", float(report["sparsity"]))


def _quantization_aware(model: Any, request: PruneRequest, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """QAT of the pruned model (``toolchain.qat``), its zeros held; returns the fused checkpoint, rounded."""
    from andi_edge.toolchain.classic_train import train_classic
    from andi_edge.toolchain.dataset import split_class_names
    from andi_edge.toolchain.qat import finish_qat, prepare_qat
    from andi_edge.toolchain.sparsity import MagnitudePruner, prunable_convolutions
    from andi_edge.toolchain.yolov5_classic import save_classic

    prepare_qat(model)
    convs = prunable_convolutions(model, keep_dense=(model.detect,))
    result = train_classic(
        model, request.data, split_class_names(request.data / "data.yaml"), tmp / "qat", epochs=request.qat_epochs,
        imgsz=request.imgsz, batch=request.batch, patience=request.qat_epochs, seed=0, freeze=0, lr0=GMP_QAT_LR0,
        sparsify=lambda _: MagnitudePruner.holding(convs),
    )  # fmt: skip
    finish_qat(model)
    checkpoint = tmp / "qat.pt"
    save_classic({"model": model, "ema": None, "epoch": result.best_epoch, "best_fitness": result.best_val_map50},
                 checkpoint)  # fmt: skip
    record = {"epochs": request.qat_epochs, "best_epoch": result.best_epoch,
              "val_map50": round(result.best_val_map50, 4), "history": result.history}  # fmt: skip
    return checkpoint, record
