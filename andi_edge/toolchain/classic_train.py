"""Fine-tune a classic YOLOv5 checkpoint and keep what it knew: the head is warm-started, not learnt anew.

Training through YOLOv5u (``train.py``'s other path) keeps the backbone and neck but starts an anchor-free head
from nothing; on camera-trap-sized data that head never catches up with the pretrained one (measured on the
sample photos: mAP@0.5 0.59 -> 0.17 on the very locations it trained on). Here the classic architecture is kept
whole and its head re-sized to the dataset's classes, each new row initialised from the pretrained rows:

- box regression and objectness rows of every anchor: copied unchanged;
- a class the COCO model has (``person``, ``car``): its row copied;
- a camera-trap category (``animal``, ``vehicle``: the runtime's ``coco-to-megadetector`` members): the mean of its
  member rows' weights, and the bias whose sigmoid is the noisy-or of the members' prior probabilities;
- a species (any name ``observation_type`` calls an animal, "opossum" or "mountain_lion"): like ``animal``, since
  every species is one; the fine-tuning then tells the species apart;
- anything else (a class that is neither): a fresh row with YOLOv5's prior bias (as from scratch).

The loss is YOLOv5's, written here from its published description: anchors matched to targets by width/height
ratio (< 4), each target also assigned to the two nearest neighbouring cells, CIoU box loss, objectness towards
the IoU, binary cross-entropy for classes, level weights 4 / 1 / 0.4 (P6: 4 / 1 / 0.25 / 0.06). SGD with
Nesterov momentum, one warm-up epoch, cosine decay; early stopping on the validation split's mAP@0.5 (the
runtime's own decoding and NMS, in NumPy). The result is a classic checkpoint, pickled as the original
repository pickles one, so ``andi-edge export`` (and YOLOv5's own tools) read it.
"""

# nn.Module.__call__ is typed as returning Any
# mypy: disable-error-code="no-any-return"
from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from andi_edge.accuracy import evaluate
from andi_edge.config import DEFAULT_MAX_IMAGE_PIXELS
from andi_edge.detections import Detections
from andi_edge.errors import PhotoError, UsageError
from andi_edge.results.observation_types import observation_type
from andi_edge.runtime.categories import COCO_CLASS_NAMES, coco_to_megadetector
from andi_edge.runtime.decode import decode_photo
from andi_edge.runtime.heads import decode_head
from andi_edge.runtime.letterbox import LetterboxGeometry, letterbox_tensor
from andi_edge.runtime.nms import nms_xyxy
from andi_edge.toolchain.batch_norm import recalibrate_batch_norm
from andi_edge.toolchain.dataset import read_yolo_labels
from andi_edge.toolchain.sparsity import MagnitudePruner
from andi_edge.toolchain.yolov5_classic import Detect, Model, save_classic

log = logging.getLogger(__name__)

ANCHOR_RATIO_MAX = 4.0
LEVEL_BALANCE = {3: (4.0, 1.0, 0.4), 4: (4.0, 1.0, 0.25, 0.06)}
BOX_GAIN, OBJ_GAIN, CLS_GAIN = 0.05, 1.0, 0.5
#: YOLOv5's prior for a fresh class row: about 0.6 / (classes - 0.99)
FRESH_CLASS_PRIOR = 0.6
VAL_CONF, VAL_IOU = 0.001, 0.6


@dataclass(frozen=True)
class HeadInit:
    """How each new class row was initialised: copied, combined (from members) or fresh."""

    rows: dict[str, str]


def warm_start_head(model: Model, new_names: list[str]) -> HeadInit:
    """Re-size the Detect head to ``new_names``, initialising each row from the pretrained ones (module doc)."""
    detect = model.detect
    old_names = [str(n) for n in (model.names.values() if isinstance(model.names, dict) else model.names)]
    old_no, nc = detect.no, len(new_names)
    coco = coco_to_megadetector()
    members = dict(zip(coco.names, coco.members, strict=True)) if tuple(old_names) == COCO_CLASS_NAMES else {}
    index = {n: i for i, n in enumerate(old_names)}
    how: dict[str, str] = {}
    new_convs = []
    for conv in detect.m:
        assert isinstance(conv, nn.Conv2d)
        fresh = nn.Conv2d(conv.in_channels, detect.na * (5 + nc), 1)
        with torch.no_grad():
            w_old = conv.weight.view(detect.na, old_no, -1)
            b_old = conv.bias.view(detect.na, old_no) if conv.bias is not None else torch.zeros(detect.na, old_no)
            w_new = torch.zeros(detect.na, 5 + nc, w_old.shape[-1])
            b_new = torch.zeros(detect.na, 5 + nc)
            w_new[:, :5], b_new[:, :5] = w_old[:, :5], b_old[:, :5]
            for k, name in enumerate(new_names):
                row = 5 + k
                group = name if name in members else ("animal" if observation_type(name) == "animal" else "")
                sources = [index[name]] if name in index else [index[m] for m in members.get(group, ()) if m in index]
                if sources:
                    rows = [5 + s for s in sources]
                    w_new[:, row] = w_old[:, rows].mean(dim=1)
                    miss = torch.prod(1 - torch.sigmoid(b_old[:, rows]), dim=1).clamp(1e-6, 1 - 1e-6)
                    b_new[:, row] = torch.log((1 - miss) / miss)  # logit of the noisy-or of the priors
                    how[name] = "copied" if name in index else f"combined from {len(rows)}"
                else:
                    w_new[:, row] = 0.0
                    b_new[:, row] = math.log(FRESH_CLASS_PRIOR / max(nc - 0.99, 0.01))
                    how[name] = "fresh"
            fresh.weight.copy_(w_new.view_as(fresh.weight))
            fresh.bias.copy_(b_new.view(-1))  # type: ignore[union-attr]
        new_convs.append(fresh)
    detect.m = nn.ModuleList(new_convs)
    detect.nc, detect.no = nc, 5 + nc
    model.names = list(new_names)
    return HeadInit(how)


# -- data -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    tensor: np.ndarray  # (3, S, S) float32 in [0, 1], letterboxed
    #: (n, 5): class, cx, cy, w, h normalised to the letterboxed input
    labels: np.ndarray


def _load_split(split_dir: Path, split: str, imgsz: int) -> list[_Sample]:
    images = split_dir / "images" / split
    samples = []
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        try:
            decoded = decode_photo(path.read_bytes(), max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, name=str(path))
        except (OSError, PhotoError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        w, h = decoded.info.width_px, decoded.info.height_px
        geometry = LetterboxGeometry.fit(w, h, imgsz, imgsz)
        label = (split_dir / "labels" / split / path.relative_to(images)).with_suffix(".txt")
        labels = np.array(read_yolo_labels(label), dtype=np.float32).reshape(-1, 5)
        if len(labels):
            cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
            labels[:, 1] = (cx * geometry.gain + geometry.pad_left) / imgsz
            labels[:, 2] = (cy * geometry.gain + geometry.pad_top) / imgsz
            labels[:, 3] = bw * geometry.gain / imgsz
            labels[:, 4] = bh * geometry.gain / imgsz
        samples.append(_Sample(letterbox_tensor(decoded.rgb, geometry)[0], labels))
    return samples


def _batch(samples: list[_Sample], flip: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = [], []
    for i, (sample, mirrored) in enumerate(zip(samples, flip, strict=True)):
        image = sample.tensor[:, :, ::-1] if mirrored else sample.tensor
        images.append(np.ascontiguousarray(image))
        labels = sample.labels.copy()
        if mirrored and len(labels):
            labels[:, 1] = 1.0 - labels[:, 1]
        targets.append(np.c_[np.full(len(labels), i, np.float32), labels])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.concatenate(targets).reshape(-1, 6))


# -- loss -------------------------------------------------------------------------------------------------------


def _ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching rows of two (n, 4) cx, cy, w, h tensors."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.T, box2.T
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    diagonal = cw**2 + ch**2 + eps
    centre = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre / diagonal + v * alpha)


class YoloV5Loss:
    """YOLOv5's training loss for a classic ``Detect`` head (module doc)."""

    def __init__(self, detect: Detect, imgsz: int) -> None:
        nl = detect.nl
        self.detect = detect
        self.balance = LEVEL_BALANCE.get(nl, (4.0, 1.0, 0.4))
        self.box_gain = BOX_GAIN * 3 / nl
        self.cls_gain = CLS_GAIN * detect.nc / 80 * 3 / nl
        self.obj_gain = OBJ_GAIN * (imgsz / 640) ** 2 * 3 / nl
        self.bce = nn.BCEWithLogitsLoss()

    def __call__(self, levels: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        lbox, lobj, lcls = torch.zeros(1), torch.zeros(1), torch.zeros(1)
        for level, pred in enumerate(levels):
            b, a, gj, gi, tbox, anchors, tcls = self._match(level, pred, targets)
            tobj = torch.zeros(pred.shape[:4])
            if len(b):
                ps = pred[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
                iou = _ciou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.detect.nc > 1:
                    wanted = torch.zeros_like(ps[:, 5:])
                    wanted[torch.arange(len(b)), tcls] = 1.0
                    lcls = lcls + self.bce(ps[:, 5:], wanted)
            lobj = lobj + self.bce(pred[..., 4], tobj) * self.balance[level]
        batch = levels[0].shape[0]
        return (lbox * self.box_gain + lobj * self.obj_gain + lcls * self.cls_gain) * batch

    def _match(self, level: int, pred: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detect = self.detect
        anchors = detect.anchors[level]  # grid units
        ny, nx = pred.shape[2], pred.shape[3]
        gain = torch.tensor([1, 1, nx, ny, nx, ny], dtype=torch.float32)
        t = targets * gain  # (n, 6): image, class, cx, cy, w, h in grid units
        na, n = detect.na, len(t)
        if n == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty, empty, torch.zeros(0, 4), torch.zeros(0, 2), empty
        t = t.repeat(na, 1, 1)  # (na, n, 6)
        anchor_ids = torch.arange(na).view(na, 1).repeat(1, n)
        ratio = t[..., 4:6] / anchors[:, None]
        keep = torch.max(ratio, 1 / ratio).max(2)[0] < ANCHOR_RATIO_MAX
        t, anchor_ids = t[keep], anchor_ids[keep]
        # each target also goes to the two neighbouring cells nearest its centre
        gxy = t[:, 2:4]
        gxi = torch.tensor([nx, ny]) - gxy
        j, k = ((gxy % 1 < 0.5) & (gxy > 1)).T
        left, up = ((gxi % 1 < 0.5) & (gxi > 1)).T
        picks = torch.stack((torch.ones_like(j), j, k, left, up))
        offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5
        t = t.repeat((5, 1, 1))[picks]
        anchor_ids = anchor_ids.repeat((5, 1))[picks]
        shift = (torch.zeros_like(gxy)[None] + offsets[:, None])[picks]
        gxy = t[:, 2:4]
        gij = (gxy - shift).long()
        gi = gij[:, 0].clamp(0, nx - 1)
        gj = gij[:, 1].clamp(0, ny - 1)
        tbox = torch.cat((gxy - torch.stack((gi, gj), 1), t[:, 4:6]), 1)
        return t[:, 0].long(), anchor_ids, gj, gi, tbox, anchors[anchor_ids], t[:, 1].long()


# -- training ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicTrainResult:
    best: Path
    epochs_run: int
    best_epoch: int
    best_val_map50: float
    head: HeadInit
    history: list[dict[str, float]]


def _feed(model: Model, samples: list[_Sample], batch: int) -> None:
    """The samples through the model, plain (no flips), in batches of more than one."""
    for start in range(0, len(samples), batch):
        chosen = samples[start : start + batch]
        if len(chosen) > 1:
            model.forward_raw(_batch(chosen, [False] * len(chosen))[0])


def _val_map50(model: Model, samples: list[_Sample], imgsz: int) -> float:
    if not samples:
        return float("nan")
    model.eval()
    truths, predictions = [], []
    with torch.no_grad():
        for sample in samples:
            raw = model(torch.from_numpy(sample.tensor[None])).numpy()
            candidates = decode_head(raw, "yolov5", model.detect.nc, VAL_CONF)
            keep = nms_xyxy(candidates.xyxy_input_px, candidates.scores, VAL_IOU, candidates.class_ids, 300)
            predictions.append(
                Detections(candidates.xyxy_input_px[keep], candidates.scores[keep], candidates.class_ids[keep])
            )
            labels = sample.labels
            cxcywh = labels[:, 1:] * imgsz
            xyxy = np.c_[cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2]
            truths.append(Detections(xyxy, np.ones(len(labels), np.float32), labels[:, 0].astype(np.int64)))
    score = evaluate(truths, predictions, 0.5).map50
    return float(score) if not math.isnan(score) else 0.0


def train_classic(
    model: Model,
    split_dir: Path,
    class_names: list[str],
    output: Path,
    epochs: int,
    imgsz: int,
    batch: int,
    patience: int,
    seed: int,
    freeze: int,
    lr0: float = 0.01,
    sparsify: Callable[[int], MagnitudePruner] | None = None,
) -> ClassicTrainResult:
    """Fine-tune ``model`` (a loaded classic checkpoint) on a split; writes OUTPUT/weights/{best,last}.pt.

    ``sparsify(steps_per_epoch)``: gradual magnitude pruning during the fine-tuning (``sparsity``). Then "best" is
    chosen among the epochs at the final sparsity only, and patience counts from there, and the batch-norm
    statistics are measured again on the training photos after every epoch (``toolchain.batch_norm``): the masks
    move the weights too far for the running averages to follow."""
    stride = int(model.detect.stride.max())
    if imgsz % stride:
        raise UsageError(f"--imgsz {imgsz} must be a multiple of this model's stride {stride}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    head = warm_start_head(model, class_names)
    train_set = _load_split(split_dir, "train", imgsz)
    val_set = _load_split(split_dir, "val", imgsz)
    if not train_set:
        raise UsageError(f"{split_dir}: no training image could be read")
    for position, layer in enumerate(model.model):
        layer.requires_grad_(position >= freeze)
    weights: list[nn.Parameter] = []
    others: list[nn.Parameter] = []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if parameter.requires_grad:
                (weights if name == "weight" and not isinstance(module, nn.BatchNorm2d) else others).append(parameter)
    optimizer = torch.optim.SGD(others, lr=lr0, momentum=0.937, nesterov=True)
    optimizer.add_param_group({"params": weights, "weight_decay": 5e-4 * batch / 64})
    loss_fn = YoloV5Loss(model.detect, imgsz)
    steps_per_epoch = math.ceil(len(train_set) / batch)
    warmup_steps = steps_per_epoch
    total_steps = steps_per_epoch * epochs
    weights_dir = output / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    pruner = sparsify(steps_per_epoch) if sparsify is not None else None
    # epoch 0 is the warm-started model itself: if training only hurts, that is what "best" keeps (not when
    # pruning: a dense model is no candidate)
    start_map = _val_map50(model, val_set, imgsz)
    best_map, best_epoch, best_state = start_map, 0, copy.deepcopy(model.state_dict())
    if pruner is not None:
        best_map = -1.0
    history: list[dict[str, float]] = [{"epoch": 0, "loss": float("nan"), "val_map50": round(start_map, 4)}]
    step = 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        for position, layer in enumerate(model.model):
            if position < freeze:
                layer.eval()  # a frozen layer keeps its BatchNorm statistics too
        order = list(range(len(train_set)))
        random.shuffle(order)
        losses = []
        for start in range(0, len(order), batch):
            chosen = [train_set[i] for i in order[start : start + batch]]
            images, targets = _batch(chosen, [random.random() < 0.5 for _ in chosen])
            factor = min(1.0, (step + 1) / warmup_steps) * (0.5 * (1 + math.cos(math.pi * step / total_steps)))
            for group in optimizer.param_groups:
                group["lr"] = lr0 * max(factor, 0.01)
            if pruner is not None:
                pruner.update(step)
            loss = loss_fn(model.forward_raw(images), targets)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            if pruner is not None:
                pruner.apply()
            losses.append(float(loss.detach()) / len(chosen))
            step += 1
        if pruner is not None:
            recalibrate_batch_norm(model, lambda: _feed(model, train_set, batch))
        val_map = _val_map50(model, val_set, imgsz)
        record = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5), "val_map50": round(val_map, 4)}
        if pruner is not None:
            record["sparsity"] = round(pruner.current, 4)
        history.append(record)
        log.info("epoch %d/%d: loss %.4f, val mAP@0.5 %.4f", epoch, epochs, np.mean(losses), val_map)
        candidate = pruner is None or pruner.done(step)
        if candidate and val_map > best_map:
            best_map, best_epoch, best_state = val_map, epoch, copy.deepcopy(model.state_dict())
        elif candidate and epoch - best_epoch >= patience:
            log.info("no improvement for %d epochs: stopping", patience)
            break
    last = weights_dir / "last.pt"
    save_classic({"model": copy.deepcopy(model).eval(), "ema": None, "epoch": epoch}, last)
    model.load_state_dict(best_state)
    best = weights_dir / "best.pt"
    save_classic({"model": model.eval(), "ema": None, "epoch": best_epoch, "best_fitness": best_map}, best)
    return ClassicTrainResult(best, epoch, best_epoch, best_map, head, history)
