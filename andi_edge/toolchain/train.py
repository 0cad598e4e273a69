"""``andi-edge train``: fine-tune YOLOv5 n-x on a camera-trap split, offline, from the real pretrained weights.

Two ways, ``--head``:

``warm`` (default): the classic architecture is kept whole and its head re-sized to the dataset's classes with
every row initialised from the pretrained head (box and objectness copied, ``animal`` from COCO's animal rows...),
then fine-tuned with YOLOv5's loss by ``classic_train``. It starts where the pretrained model is.

``new``: Ultralytics' ``yolov5n.yaml`` builds
YOLOv5u, whose backbone and neck (layers 0-23: Conv, C3, SPPF, upsampling, concatenations) are the classic
YOLOv5 v6 layers under the same names and shapes; only the head differs (anchor-free, DFL). So we carry every
backbone/neck tensor of the official classic checkpoint into a YOLOv5u model (342 of its 349 tensors for
yolov5n), leave the head to be learnt, and train with Ultralytics' own trainer. That keeps the pretrained
features, needs no second YOLOv5 code base, and gives an ultralytics checkpoint that ``andi-edge export``
understands (anchor-free head). Early stopping uses patience 5, as the original study did.

Without a checkpoint (none given, and the registry's file is not on this machine) a model is trained from its
architecture alone, with a loud warning: on camera-trap-sized data that is rarely better than a pretrained one.
At the end the fine-tuned model is compared with the model it started from on seen and unseen locations
(``toolchain.compare``) and refused when it is worse on unseen ones, unless ``allow_worse``.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from andi_edge import __version__
from andi_edge.errors import ModelError, ModelNotFoundError, UsageError
from andi_edge.runtime.model_meta import file_sha256
from andi_edge.toolchain import require, require_toolchain
from andi_edge.toolchain.compare import Comparison, compare_with_start, enforce
from andi_edge.toolchain.offline import configure_ultralytics_offline
from andi_edge.toolchain.weights import ResolvedWeights, resolve_weights

log = logging.getLogger(__name__)

MODELS = ("yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x")
HEADS = ("warm", "new")
RUN_CONFIG = "run_config.json"
#: YOLOv5's backbone is layers 0-9, the neck 10-23, the head 24
BACKBONE_LAYERS = 10
BACKBONE_AND_NECK_LAYERS = 24


@dataclass(frozen=True)
class TrainRequest:
    data: Path  # SPLIT_DIR from `andi-edge dataset split` (holds data.yaml)
    model: str
    weights: str | None  # classic checkpoint path or registry name; None = the model's own name
    epochs: int
    imgsz: int
    output: Path  # RUN_DIR
    patience: int = 5
    batch: int = 16
    seed: int = 0
    #: compare with the starting model on seen/unseen locations at the end (needs pretrained weights)
    compare: bool = True
    #: largest mAP@0.5 loss on unseen locations the gate allows
    max_loss: float = 0.01
    allow_worse: bool = False
    #: freeze the first N layers (YOLOv5's backbone is layers 0-9): the small-data recipe keeps what COCO taught
    freeze: int = 0
    #: "warm": the classic architecture, its head initialised from the pretrained one (``classic_train``);
    #: "new": Ultralytics' YOLOv5u, the head learnt from scratch
    head: str = "warm"
    #: initial learning rate of the warm path (fine-tuning a pretrained head wants a small one)
    lr0: float = 0.001
    #: train from the architecture alone (random weights) when no pretrained weights are found: asked for, never
    #: a silent fallback (it gave models of mAP 0 that exited 0)
    from_scratch: bool = False


@dataclass(frozen=True)
class TrainResult:
    best: Path
    last: Path
    transferred: int
    total_source: int
    metrics: dict[str, float]
    comparison: Comparison | None = None
    #: why the comparison with the starting model was not made, when it was not
    comparison_skipped: str | None = None
    head: str = "new"
    #: warm head: how each class row was initialised
    head_rows: dict[str, str] = field(default_factory=dict)


def _check(request: TrainRequest) -> Path:
    if request.model not in MODELS:
        raise UsageError(f"--model {request.model}: expected one of {', '.join(MODELS)}")
    if request.head not in HEADS:
        raise UsageError(f"--head {request.head}: expected one of {', '.join(HEADS)}")
    if not request.lr0 > 0:
        raise UsageError(f"--lr0 {request.lr0}: must be positive")
    data_yaml = request.data / "data.yaml"
    if not data_yaml.is_file():
        raise UsageError(f"{request.data} holds no data.yaml", hint="make one with `andi-edge dataset split`")
    if request.epochs < 1 or request.imgsz < 32 or request.imgsz % 32:
        raise UsageError("--epochs must be >= 1 and --imgsz a multiple of 32")
    if not 0 <= request.freeze <= BACKBONE_AND_NECK_LAYERS:
        raise UsageError(
            f"--freeze {request.freeze}: expected 0..{BACKBONE_AND_NECK_LAYERS}",
            hint=f"{BACKBONE_LAYERS} freezes the backbone",
        )
    return data_yaml


def transfer_classic(model: Any, classic_weights: Path) -> tuple[int, int]:
    """Copy every same-named, same-shaped tensor of the classic checkpoint into ``model``; (copied, source)."""
    from andi_edge.toolchain.yolov5_classic import load_classic

    classic, _ = load_classic(classic_weights)
    source = classic.state_dict()
    target = model.state_dict()
    carried = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not carried:
        raise ModelError(f"{classic_weights}: no tensor matches the {type(model).__name__} layers")
    model.load_state_dict(carried, strict=False)
    return len(carried), len(source)


def _starting_weights(request: TrainRequest) -> ResolvedWeights | None:
    """The pretrained checkpoint, or None (architecture alone) when none was given and the model's is missing."""
    if request.weights is not None:
        return resolve_weights(request.weights)
    try:
        return resolve_weights(request.model)
    except ModelNotFoundError as exc:
        if not request.from_scratch:
            raise UsageError(
                f"no pretrained weights to start from: {exc.message}",
                hint=f"{exc.hint}; or give --weights CHECKPOINT; or pass --from-scratch to train {request.model} from "
                "its architecture alone (random weights: a much weaker model on camera-trap-sized data)",
            ) from exc
        log.warning(
            "NO PRETRAINED WEIGHTS: %s. Training %s from its architecture alone (random weights): expect a much "
            "weaker model on camera-trap-sized data. Give --weights CHECKPOINT to start from one. (%s)",
            exc.message,
            request.model,
            exc.hint,
        )
        return None


def train(request: TrainRequest) -> TrainResult:
    require_toolchain()
    data_yaml = _check(request)
    weights = _starting_weights(request)
    request.output.mkdir(parents=True, exist_ok=True)
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names", {})
    class_names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    head = request.head if weights is not None else "new"
    if request.head == "warm" and weights is None:
        log.warning("no pretrained head to warm-start from: the %s head is learnt from scratch", request.model)
    config: dict[str, Any] = {
        "request": {k: str(v) for k, v in asdict(request).items()},
        "pretrained": weights is not None,
        "head": head,
        "source_weights": str(weights.path) if weights else None,
        "source_weights_sha256": weights.sha256 if weights else None,
        "classes": names,
        "data_yaml_sha256": file_sha256(data_yaml),
        "versions": {"andi_edge": __version__, "python": platform.python_version()},
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (request.output / RUN_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    run = request.output / "train"
    if head == "warm" and weights is not None:
        best, copied, total, summary = _train_warm(request, weights.path, class_names, run, config)
    else:
        best, copied, total, summary = _train_yolov5u(request, weights, data_yaml, config)
    last = run / "weights" / "last.pt"
    if not best.is_file():
        raise ModelError(f"training ended without {best}")
    config["tensors_carried"] = copied
    config["tensors_in_source"] = total
    config["final_metrics"] = summary
    config["best"] = str(best)
    config["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    comparison, skipped = _compare(request, weights, best)
    config["against_start"] = comparison.to_json() if comparison else {"skipped": skipped}
    refused = comparison is not None and comparison.worse_on_unseen
    config["verdict"] = ("accepted (--allow-worse)" if request.allow_worse else "refused") if refused else "accepted"
    (request.output / RUN_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    if comparison is not None and refused:
        log.warning("THE FINE-TUNED MODEL IS WORSE THAN ITS STARTING MODEL ON UNSEEN LOCATIONS")
        if not request.allow_worse:
            enforce(comparison)
    return TrainResult(
        best=best,
        last=last,
        transferred=copied,
        total_source=total,
        metrics=summary,
        comparison=comparison,
        comparison_skipped=skipped,
        head=head,
        head_rows=config.get("head_rows", {}),
    )


def _train_warm(
    request: TrainRequest, weights: Path, class_names: list[str], run: Path, config: dict[str, Any]
) -> tuple[Path, int, int, dict[str, float]]:
    """The classic architecture, whole, its head warm-started (``classic_train``)."""
    from andi_edge.toolchain.classic_train import train_classic
    from andi_edge.toolchain.yolov5_classic import load_classic

    model, _ = load_classic(weights)
    total = len(model.state_dict())
    result = train_classic(
        model,
        request.data,
        class_names,
        run,
        epochs=request.epochs,
        imgsz=request.imgsz,
        batch=request.batch,
        patience=request.patience,
        seed=request.seed,
        freeze=request.freeze,
        lr0=request.lr0,
    )
    head_tensors = 2 * model.detect.nl
    config["head_rows"] = result.head.rows
    config["history"] = result.history
    config["trainer"] = {"name": "andi-edge classic (YOLOv5 loss)", "lr0": request.lr0, "freeze": request.freeze}
    log.info("warm-started head rows: %s", ", ".join(f"{k}: {v}" for k, v in result.head.rows.items()))
    return (
        result.best,
        total - head_tensors,
        total,
        {"val_map50": result.best_val_map50, "best_epoch": result.best_epoch},
    )


def _train_yolov5u(
    request: TrainRequest, weights: ResolvedWeights | None, data_yaml: Path, config: dict[str, Any]
) -> tuple[Path, int, int, dict[str, float]]:
    """Ultralytics' YOLOv5u: backbone and neck carried from the classic checkpoint, the head learnt anew."""
    configure_ultralytics_offline()
    ultralytics = require("ultralytics")
    yolo = ultralytics.YOLO(f"{request.model}.yaml")
    copied, total = transfer_classic(yolo.model, weights.path) if weights is not None else (0, 0)
    if weights is not None:
        log.info("carried %d of %d tensors of %s into %s (YOLOv5u)", copied, total, weights.path.name, request.model)
    init = request.output / "init-from-classic.pt"
    yolo.save(str(init))
    trainer_args = {
        "data": str(data_yaml),
        "epochs": request.epochs,
        "imgsz": request.imgsz,
        "patience": request.patience,
        "freeze": request.freeze or None,
        "batch": request.batch,
        "seed": request.seed,
        "deterministic": True,
        "device": "cpu",
        "workers": 0,
        "amp": False,
        "plots": False,
        "verbose": False,
        "project": str(request.output.resolve()),
        "name": "train",
        "exist_ok": True,
    }
    config["trainer_args"] = trainer_args
    config["versions"]["ultralytics"] = ultralytics.__version__
    try:
        model = ultralytics.YOLO(str(init))
        metrics = model.train(**trainer_args)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise UsageError(f"training failed: {exc}") from exc
    summary = {k: float(v) for k, v in (getattr(metrics, "results_dict", None) or {}).items()}
    return request.output / "train" / "weights" / "best.pt", copied, total, summary


def _compare(
    request: TrainRequest, weights: ResolvedWeights | None, best: Path
) -> tuple[Comparison | None, str | None]:
    if not request.compare:
        return None, "not asked for (--no-compare)"
    if weights is None:
        return None, "no pretrained starting model"
    try:
        return compare_with_start(request.data, weights, best, request.imgsz, request.max_loss), None
    except UsageError as exc:  # e.g. the starting model has no class for the dataset's species
        log.warning("could not compare with the starting model: %s", exc.message)
        return None, exc.message
