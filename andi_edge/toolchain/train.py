"""``andi-edge train``: fine-tune YOLOv5 n/m on a camera-trap split, offline, from the real pretrained weights.

How the classic checkpoint is used (the issue left the choice open): Ultralytics' ``yolov5n.yaml`` builds
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
from dataclasses import asdict, dataclass
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
RUN_CONFIG = "run_config.json"


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


def _check(request: TrainRequest) -> Path:
    if request.model not in MODELS:
        raise UsageError(f"--model {request.model}: expected one of {', '.join(MODELS)}")
    data_yaml = request.data / "data.yaml"
    if not data_yaml.is_file():
        raise UsageError(f"{request.data} holds no data.yaml", hint="make one with `andi-edge dataset split`")
    if request.epochs < 1 or request.imgsz < 32 or request.imgsz % 32:
        raise UsageError("--epochs must be >= 1 and --imgsz a multiple of 32")
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
    configure_ultralytics_offline()
    ultralytics = require("ultralytics")
    weights = _starting_weights(request)
    request.output.mkdir(parents=True, exist_ok=True)
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names", {})
    yolo = ultralytics.YOLO(f"{request.model}.yaml")
    copied, total = transfer_classic(yolo.model, weights.path) if weights is not None else (0, 0)
    if weights is not None:
        log.info("carried %d of %d tensors of %s into %s (YOLOv5u)", copied, total, weights.path.name, request.model)
    init = request.output / "init-from-classic.pt"
    yolo.save(str(init))
    config: dict[str, Any] = {
        "request": {k: str(v) for k, v in asdict(request).items()},
        "pretrained": weights is not None,
        "source_weights": str(weights.path) if weights else None,
        "source_weights_sha256": weights.sha256 if weights else None,
        "tensors_carried": copied,
        "tensors_in_source": total,
        "classes": names,
        "data_yaml_sha256": file_sha256(data_yaml),
        "versions": {
            "andi_edge": __version__,
            "ultralytics": ultralytics.__version__,
            "python": platform.python_version(),
        },
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (request.output / RUN_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    trainer_args = {
        "data": str(data_yaml),
        "epochs": request.epochs,
        "imgsz": request.imgsz,
        "patience": request.patience,
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
    try:
        model = ultralytics.YOLO(str(init))
        metrics = model.train(**trainer_args)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise UsageError(f"training failed: {exc}") from exc
    run = request.output / "train" / "weights"
    best, last = run / "best.pt", run / "last.pt"
    if not best.is_file():
        raise ModelError(f"training ended without {best}")
    summary = {k: float(v) for k, v in (getattr(metrics, "results_dict", None) or {}).items()}
    config["trainer_args"] = trainer_args
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
    )


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
