"""``andi-edge classifier eval``: an exported classifier (ONNX, through the runtime) on a crops dataset's split.

Top-1, F1-macro, per-label precision / recall / support and a confusion matrix, overall and for crops from
locations the classifier was trained on (seen) versus the others (unseen): a classifier, like a detector,
learns backgrounds. Against a reference classifier (its fp32 source, say) it reports the agreement of their top-1
labels and the change in F1-macro. ``classifier_gate`` is the accuracy floor INT8 must pass.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge.errors import UsageError
from andi_edge.runtime.classifier import Classifier, crop_tensor
from andi_edge.toolchain.classifier.crops import CropItem, CropsDataset
from andi_edge.toolchain.gate import refuse_loss

log = logging.getLogger(__name__)

_BATCH = 32


def predict_items(classifier: Classifier, crops: CropsDataset, items: list[CropItem]) -> npt.NDArray[np.float32]:
    """Per-label probabilities for each crop, as the runtime computes them."""
    out = []
    for b in range(0, len(items), _BATCH):
        batch = np.stack([crop_tensor(crops.pixels(i), classifier.card) for i in items[b : b + _BATCH]])
        out.append(classifier.predict(batch))
    return np.concatenate(out) if out else np.zeros((0, len(classifier.names)), np.float32)


def label_counts(matrix: npt.NDArray[np.int64]) -> dict[int, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) of each label in the truth or the predictions, from a
    confusion matrix (rows: truth, columns: prediction)."""
    counts = {}
    for i in range(len(matrix)):
        tp = int(matrix[i, i])
        fp, fn = int(matrix[:, i].sum()) - tp, int(matrix[i, :].sum()) - tp
        if tp + fp + fn:
            counts[i] = (tp, fp, fn)
    return counts


def f1_macro(matrix: npt.NDArray[np.int64]) -> float | None:
    """F1 averaged over the labels in the truth or the predictions; None when there are none."""
    f1s = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in label_counts(matrix).values()]
    return float(np.mean(f1s)) if f1s else None


def confusion_matrix(
    truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], size: int
) -> npt.NDArray[np.int64]:
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def scores(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> dict[str, Any]:
    """Top-1, F1-macro (over the labels in the truth or the predictions), per-label P/R/F1, confusion matrix."""
    names = sorted(set(labels) | set(truth) | set(predicted))
    index = {n: i for i, n in enumerate(names)}
    matrix = confusion_matrix(
        np.asarray([index[t] for t in truth], np.int64), np.asarray([index[p] for p in predicted], np.int64), len(names)
    )
    per_label = {
        names[i]: {
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "f1": round(2 * tp / (2 * tp + fp + fn), 4),
            "support": tp + fn,
        }
        for i, (tp, fp, fn) in label_counts(matrix).items()
    }
    macro = f1_macro(matrix)
    return {
        "crops": len(truth),
        "top1": round(float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])), 4) if truth else None,
        "f1_macro": None if macro is None else round(macro, 4),
        "per_label": per_label,
        "confusion": {"labels": names, "matrix": matrix.tolist()},
    }


def evaluate_classifier(
    model: Path,
    crops: CropsDataset,
    split: str = "test",
    card: Path | None = None,
    reference: Path | None = None,
) -> dict[str, Any]:
    """The report; ``split`` is train, val, test or all."""
    classifier = Classifier(model, card)
    items = crops.items if split == "all" else tuple(crops.split(split))
    if not items:
        raise UsageError(f"{crops.folder}: no crops in split {split!r}", hint="choose --split val, test or all")
    probabilities = predict_items(classifier, crops, list(items))
    predicted = [classifier.names[int(i)] for i in probabilities.argmax(axis=1)]
    truth = [i.label for i in items]
    seen_locations = crops.train_locations
    seen = [n for n, i in enumerate(items) if i.location in seen_locations]
    unseen = [n for n, i in enumerate(items) if i.location not in seen_locations]
    unknown = sorted({t for t in truth if t not in classifier.names})
    report: dict[str, Any] = {
        "model": model.name,
        "model_sha256": classifier.model_sha256,
        "classifier": classifier.card.summary(),
        "crops": str(crops.folder),
        "crops_manifest_sha256": crops.manifest_sha256,
        "split": split,
        "labels_not_in_classifier": unknown,
        "overall": scores(truth, predicted, classifier.names),
        "seen_locations": scores([truth[n] for n in seen], [predicted[n] for n in seen], classifier.names),
        "unseen_locations": scores([truth[n] for n in unseen], [predicted[n] for n in unseen], classifier.names),
    }
    if reference is not None:
        other = Classifier(reference)
        ref_predicted = [other.names[int(i)] for i in predict_items(other, crops, list(items)).argmax(axis=1)]
        ref_scores = scores(truth, ref_predicted, other.names)
        report["against_reference"] = {
            "reference": reference.name,
            "top1_agreement": round(float(np.mean([a == b for a, b in zip(predicted, ref_predicted, strict=True)])), 4),
            "reference_f1_macro": ref_scores["f1_macro"],
            "f1_macro_change": None
            if ref_scores["f1_macro"] is None or report["overall"]["f1_macro"] is None
            else round(report["overall"]["f1_macro"] - ref_scores["f1_macro"], 4),
        }
    return report


def confusion_png(report: dict[str, Any], path: Path) -> None:
    """The overall confusion matrix as a PNG (rows: truth, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = report["overall"]["confusion"]
    labels, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (r, c), n in np.ndenumerate(matrix):
        ax.text(c, r, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    overall = report["overall"]
    ax.set_title(f"{report['model']} on {report['split']}: top-1 {overall['top1']}, F1-macro {overall['f1_macro']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def classifier_gate(
    reference: Path, candidate: Path, crops: CropsDataset, split: str, max_loss: float
) -> dict[str, float]:
    """F1-macro of both on the split; GateError when the candidate loses more than ``max_loss``."""
    before = evaluate_classifier(reference, crops, split)["overall"]["f1_macro"] or 0.0
    after = evaluate_classifier(candidate, crops, split)["overall"]["f1_macro"] or 0.0
    return refuse_loss(
        before,
        after,
        max_loss,
        what="the INT8 classifier",
        consequence="nothing was written",
        hint="calibrate on more crops, or accept a larger loss with --max-loss",
        metric="F1-macro",
    )
