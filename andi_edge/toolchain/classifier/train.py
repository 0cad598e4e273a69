"""``andi-edge classifier train``: a torchvision classifier fine-tuned (or trained from scratch) on a crops dataset.

- Architectures: the study's ResNeXt50 (32x4d), AlexNet and VGG19, and two sized for a device, MobileNetV3-Small
  and EfficientNet-B0. Their ImageNet weights come from a local file when there is one (the registry:
  the official URL and the sha256 prefix torchvision publishes in the file name; the error says where to put the
  file offline); without it training starts from scratch, with a loud warning: on a few hundred crops that gives
  a far weaker classifier.
- Class-balanced sampling (each label drawn equally often, the study's upsampling), horizontal flips and small
  zooms; early stopping on the validation F1-macro (its loss breaking ties); a seed; the run's config, scores and
  the best weights saved.
- Every crop goes through ``runtime.classifier.crop_tensor``: the preprocessing the device runs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from andi_edge.config import CLASSIFIER_ARCHITECTURES
from andi_edge.errors import ModelError, UsageError
from andi_edge.runtime.classifier import crop_tensor
from andi_edge.runtime.classifier_card import IMAGENET_MEAN, IMAGENET_STD, ClassifierCard
from andi_edge.toolchain import require_toolchain
from andi_edge.toolchain.checkpoints import load_plain
from andi_edge.toolchain.classifier.crops import CropItem, CropsDataset
from andi_edge.toolchain.classifier.evaluate import confusion_matrix, f1_macro
from andi_edge.toolchain.weights import load_registry, models_dirs

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


CHECKPOINT_KIND = "andi-edge classifier checkpoint"


@dataclass(frozen=True)
class ClassifierTrainRequest:
    crops: CropsDataset
    arch: str
    out: Path
    imgsz: int = 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 5
    seed: int = 0
    pretrained: str = "auto"
    #: a weights file given by hand (ImageNet or any state dict of the same architecture)
    weights: Path | None = None
    threads: int = 0
    licence: str = "unknown"


@dataclass(frozen=True)
class ClassifierTrainResult:
    checkpoint: Path
    best_epoch: int
    val_f1_macro: float | None
    epochs_run: int
    pretrained: str | None
    seconds: float


def imagenet_weights(arch: str) -> Path | None:
    """The registry's ImageNet file for ``arch`` when it is on this machine (and its sha256 prefix matches)."""
    from andi_edge.toolchain.weights import resolve_weights

    registry = load_registry()
    name = f"{arch}-imagenet"
    if name not in registry:
        return None
    known = registry[name]
    if not any((d / known.file).is_file() for d in models_dirs()):
        return None
    return resolve_weights(name).path


def _missing_weights_message(arch: str) -> tuple[str, str]:
    registry = load_registry()
    known = registry.get(f"{arch}-imagenet")
    where = ", ".join(str(d) for d in models_dirs())
    url = known.url if known else "(no registry entry)"
    file = known.file if known else f"{arch}.pth"
    return (
        f"no ImageNet weights for {arch} on this machine ({file} not in {where})",
        f"download {url} on a connected machine and put it in one of those folders (or pass --weights FILE)",
    )


def build_model(arch: str, num_labels: int) -> torch.nn.Module:
    """The torchvision architecture with a fresh last layer for ``num_labels``."""
    from torchvision import models

    if arch not in CLASSIFIER_ARCHITECTURES:
        raise UsageError(f"unknown architecture {arch!r}", hint=f"choose one of {', '.join(CLASSIFIER_ARCHITECTURES)}")
    model: torch.nn.Module = getattr(models, arch)(weights=None)
    _replace_head(model, arch, num_labels)
    return model


def _replace_head(model: torch.nn.Module, arch: str, num_labels: int) -> None:
    import torch

    if arch == "resnext50_32x4d":
        fc = model.get_submodule("fc")
        assert isinstance(fc, torch.nn.Linear)
        model.fc = torch.nn.Linear(fc.in_features, num_labels)
    else:  # alexnet, vgg19, mobilenet_v3_small, efficientnet_b0: a Sequential ending in the last Linear
        head = model.get_submodule("classifier")
        assert isinstance(head, torch.nn.Sequential)
        last = head[-1]
        assert isinstance(last, torch.nn.Linear)
        head[-1] = torch.nn.Linear(last.in_features, num_labels)


def _load_pretrained(model: torch.nn.Module, arch: str, path: Path) -> None:
    """ImageNet (or other) weights into every layer but the new last one."""
    state = load_plain(path, "torch state dict")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise ModelError(f"{path}: only {len(usable)} of {len(own)} tensors fit {arch}; is it this architecture?")
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d of %d tensors from %s (the last layer is new)", len(usable), len(own), path.name)


class _Crops:
    """Crops decoded once and kept in memory (a crops dataset is small: a few MB of JPEG)."""

    def __init__(self, crops: CropsDataset, items: list[CropItem], labels: tuple[str, ...]) -> None:
        self.rgb = [crops.pixels(i) for i in items]
        self.targets = np.asarray([labels.index(i.label) for i in items], dtype=np.int64)

    def tensors(
        self, indices: npt.NDArray[np.int64], card: ClassifierCard, rng: np.random.Generator | None
    ) -> npt.NDArray[np.float32]:
        batch = []
        for i in indices:
            rgb = self.rgb[int(i)]
            if rng is not None:  # augment: a zoom to 85-100% of the crop, and a horizontal flip half the time
                h, w = rgb.shape[:2]
                scale = rng.uniform(0.85, 1.0)
                ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
                y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                rgb = rgb[y0 : y0 + ch, x0 : x0 + cw]
                if rng.random() < 0.5:
                    rgb = rgb[:, ::-1]
            batch.append(crop_tensor(rgb, card))
        return np.stack(batch)


def train_classifier(request: ClassifierTrainRequest) -> ClassifierTrainResult:
    require_toolchain()
    import torch

    crops = request.crops
    train_items = crops.split("train")
    if not train_items:
        raise UsageError(f"{crops.folder}: no training crops")
    labels = tuple(sorted({i.label for i in train_items}))
    if len(labels) < 2:
        raise UsageError(f"{crops.folder}: the training crops have one label ({labels[0]}); a classifier needs two")
    dropped = sorted(set(crops.labels) - set(labels))
    if dropped:
        log.warning("label(s) without training crops are left out: %s", ", ".join(dropped))
    val_items = [i for i in crops.split("val") if i.label in labels]
    random.seed(request.seed)
    np.random.seed(request.seed)
    torch.manual_seed(request.seed)
    if request.threads:
        torch.set_num_threads(request.threads)
    weights = request.weights
    if weights is None and request.pretrained != "none":
        weights = imagenet_weights(request.arch)
        if weights is None:
            message, hint = _missing_weights_message(request.arch)
            if request.pretrained == "required":
                raise ModelError(message, hint=hint)
            log.warning("!" * 72)
            log.warning("%s: TRAINING FROM SCRATCH, which needs far more crops than fine-tuning", message)
            log.warning("%s", hint)
            log.warning("!" * 72)
    model = build_model(request.arch, len(labels))
    if weights is not None:
        _load_pretrained(model, request.arch, weights)
    card = ClassifierCard(
        name=f"{request.arch}-{len(labels)}",
        labels=labels,
        input_height_px=request.imgsz,
        input_width_px=request.imgsz,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=crops.policy,
        architecture=request.arch,
        licence=request.licence,
        training_data=f"crops dataset {crops.folder.name} (manifest sha256 {crops.manifest_sha256[:12]})",
        training_locations=tuple(sorted({i.location for i in train_items})),
        source="training",
    )
    train = _Crops(crops, train_items, labels)
    val = _Crops(crops, val_items, labels) if val_items else None
    counts = np.bincount(train.targets, minlength=len(labels))
    # class-balanced sampling: each crop drawn with probability 1 / (its label's count), every label equally often
    sample_p = (1.0 / counts[train.targets]) / np.sum(1.0 / counts[train.targets])
    rng = np.random.default_rng(request.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=request.lr, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    request.out.mkdir(parents=True, exist_ok=True)
    checkpoint = request.out / "best.pt"
    best_f1: float | None = None
    best_score: tuple[float, float] | None = None
    best_epoch = -1
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    epoch = 0
    for epoch in range(request.epochs):
        model.train()
        order = rng.choice(len(train.targets), size=len(train.targets), replace=True, p=sample_p)
        losses = []
        for b in range(0, len(order), request.batch_size):
            idx = order[b : b + request.batch_size]
            if len(idx) < 2 and b:  # a batch of one breaks batch norm; drop the remainder
                continue
            x = torch.from_numpy(train.tensors(idx, card, rng))
            y = torch.from_numpy(train.targets[idx])
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        score: tuple[float, float] | None = None
        _recalibrate(model, train, card, request.batch_size)
        if val is not None:
            logits = predict_logits(model, val, card)
            predicted = logits.argmax(axis=1)
            val_loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(val.targets)))
            row["val_f1_macro"] = f1_macro(confusion_matrix(val.targets, predicted, len(labels))) or 0.0
            row["val_top1"] = float(np.mean(predicted == val.targets))
            row["val_loss"] = val_loss
            # F1-macro decides; at equal F1 (a small val split moves in steps) a lower loss is still progress
            score = (row["val_f1_macro"], -val_loss)
        history.append(row)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
        if score is None or best_score is None or score > best_score:
            best_score, best_epoch = score, epoch
            best_f1 = None if score is None else score[0]
            _save(checkpoint, model, card, request, history, weights)
        elif epoch - best_epoch >= request.patience:
            log.info("no improvement for %d epochs: stopping", request.patience)
            break
    seconds = time.perf_counter() - start
    run = {
        "request": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request).items() if k != "crops"},
        "crops": str(crops.folder),
        "crops_manifest_sha256": crops.manifest_sha256,
        "labels": list(labels),
        "train_counts": dict(zip(labels, counts.tolist(), strict=True)),
        "pretrained": str(weights) if weights else None,
        "best_epoch": best_epoch,
        "best_val_f1_macro": best_f1,
        "epochs_run": epoch + 1,
        "seconds": round(seconds, 1),
        "history": history,
    }
    (request.out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    return ClassifierTrainResult(checkpoint, best_epoch, best_f1, epoch + 1, str(weights) if weights else None, seconds)


def _recalibrate(model: torch.nn.Module, crops: _Crops, card: ClassifierCard, batch_size: int) -> None:
    """Batch-norm statistics measured again on the training crops (``toolchain.batch_norm``), each epoch."""
    import torch

    from andi_edge.toolchain.batch_norm import recalibrate_batch_norm

    def feed() -> None:
        for b in range(0, len(crops.targets), batch_size):
            idx = np.arange(b, min(b + batch_size, len(crops.targets)))
            if len(idx) > 1:
                model(torch.from_numpy(crops.tensors(idx, card, None)))

    recalibrate_batch_norm(model, feed)


def predict_logits(
    model: torch.nn.Module, crops: _Crops, card: ClassifierCard, batch_size: int = 64
) -> npt.NDArray[np.float32]:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for b in range(0, len(crops.targets), batch_size):
            idx = np.arange(b, min(b + batch_size, len(crops.targets)))
            out.append(model(torch.from_numpy(crops.tensors(idx, card, None))).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(card.labels)), np.float32)


def _save(
    path: Path,
    model: torch.nn.Module,
    card: ClassifierCard,
    request: ClassifierTrainRequest,
    history: list[dict[str, float]],
    weights: Path | None,
) -> None:
    import torch

    card_fields = asdict(card)
    card_fields.pop("source")
    payload: dict[str, Any] = {
        "kind": CHECKPOINT_KIND,
        "arch": request.arch,
        "card": card_fields,
        "state_dict": model.state_dict(),
        "history": list(history),
        "pretrained": str(weights) if weights else None,
    }
    torch.save(payload, path)


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, ClassifierCard, dict[str, Any]]:
    """The trained model (eval mode), its card and the checkpoint's other facts."""
    require_toolchain()
    from andi_edge.runtime.classifier_card import card_from_mapping

    payload = load_plain(path)
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise ModelError(
            f"{path}: not a classifier checkpoint from `andi-edge classifier train`",
            hint="train one with `andi-edge classifier train --crops DATASET --arch ARCH`",
        )
    card = card_from_mapping(payload["card"], str(path))
    model = build_model(payload["arch"], len(card.labels))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, card, payload
