"""A fine-tuned model against the model it started from, on the training locations and on the others.

The original study's lesson: a camera-trap model memorises its backgrounds (F1 0.98 on seen locations, 0.76 on
unseen). So ``train`` ends by scoring both models, with the study's metrics (F1-macro, mAP@0.5), on the split's
training images (seen locations) and on its held-out images from locations training never saw (unseen), and the
fine-tuned model is refused by the same rule as a compressed one (``gate.refuse_loss``) when it loses more than
``max_loss`` mAP@0.5 on unseen locations.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from andi_edge.errors import UsageError
from andi_edge.toolchain.dataset import Dataset, ImageRecord, read_manifest, yolo_boxes
from andi_edge.toolchain.evaluate import run_eval
from andi_edge.toolchain.export import ExportRequest, export_onnx
from andi_edge.toolchain.gate import loses_too_much, refuse_loss
from andi_edge.toolchain.weights import ResolvedWeights, resolve_weights

GROUPS = ("seen", "unseen")


@dataclass(frozen=True)
class Comparison:
    #: group ("seen", "unseen") -> model ("start", "finetuned") -> {"f1_macro", "map50", "images"}
    scores: dict[str, dict[str, dict[str, float]]]
    worse_on_unseen: bool
    max_loss: float

    def to_json(self) -> dict[str, Any]:
        return {"scores": self.scores, "worse_on_unseen": self.worse_on_unseen, "max_loss": self.max_loss}


def split_groups(split_dir: Path) -> dict[str, Dataset]:
    """The split's training images (seen locations) and its val/test images from other locations (unseen), read
    from the split's own YOLO files and manifest."""
    manifest = read_manifest(split_dir)
    names = [str(n) for n in manifest["class_names"]]
    train_locations = set(manifest["locations"]["train"])
    groups: dict[str, list[ImageRecord]] = {g: [] for g in GROUPS}
    for entry in manifest["images"]:
        split, file_name = entry["split"], entry["file"]
        if split == "train":
            group = "seen"
        elif entry["location"] not in train_locations:
            group = "unseen"
        else:
            continue
        rel = f"{split}/{file_name}"
        image = split_dir / "images" / rel
        with Image.open(image) as im:
            width, height = im.size
        boxes = yolo_boxes((split_dir / "labels" / rel).with_suffix(".txt"), names, width, height)
        groups[group].append(ImageRecord(rel, width, height, entry["location"], boxes))
    return {g: Dataset(images, names, split_dir / "images", manifest["source_sha256"]) for g, images in groups.items()}


def compare_with_start(
    split_dir: Path,
    start: ResolvedWeights,
    finetuned: Path,
    imgsz: int,
    max_loss: float,
) -> Comparison:
    """Score both models on seen and unseen locations; ``enforce`` then applies the gate. Raises UsageError when
    the split has no unseen location, or the starting model has no class for the dataset's (species, say)."""
    groups = {g: d for g, d in split_groups(split_dir).items() if d.images}
    if "unseen" not in groups:
        raise UsageError(
            f"{split_dir}: no held-out image comes from a location training did not see",
            hint="split with `andi-edge dataset split --by location`",
        )
    scores: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="andi-compare-") as tmp:
        models = {}
        for name, weights in (("start", start), ("finetuned", resolve_weights(str(finetuned)))):
            models[name] = Path(tmp) / f"{name}.onnx"
            export_onnx(ExportRequest(weights=weights, output=models[name], imgsz=imgsz))
        for group, dataset in groups.items():
            scores[group] = {}
            for name, model in models.items():
                overall = run_eval(model, dataset)["overall"]
                scores[group][name] = {k: overall[k] for k in ("f1_macro", "map50", "images")}
    unseen = scores["unseen"]
    worse = loses_too_much(unseen["start"]["map50"], unseen["finetuned"]["map50"], max_loss)
    return Comparison(scores, worse_on_unseen=worse, max_loss=max_loss)


def enforce(comparison: Comparison) -> None:
    """The gate: a fine-tuned model worse than its start on unseen locations is refused (GateError)."""
    unseen = comparison.scores["unseen"]
    refuse_loss(
        unseen["start"]["map50"],
        unseen["finetuned"]["map50"],
        comparison.max_loss,
        what="on locations it never saw, the fine-tuned model",
        consequence="it is worse than the model it started from (the weights stay in RUN_DIR, marked refused)",
        hint="train longer or on more locations, freeze more of the backbone, or keep the starting model; "
        "--allow-worse accepts it anyway",
    )
