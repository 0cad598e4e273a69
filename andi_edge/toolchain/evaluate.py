"""``andi-edge eval``: the study's tables. F1-macro at image level (every class, empty included) and mAP@0.5,
overall and for seen vs unseen locations, per-image inference time; with ``--reference``, the loss against a
reference model's own boxes.

A model's classes are matched to the dataset's by name. ``--class-map`` maps other names onto the dataset's
(``coco-to-megadetector`` is built in: COCO animals -> animal, person -> person, car/truck/bus/motorcycle/
bicycle -> vehicle), so a general detector can be scored against MegaDetector-style labels.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from andi_edge.accuracy import evaluate
from andi_edge.bench import accuracy_delta
from andi_edge.boxes import xywh_px_to_xyxy_px
from andi_edge.detections import Detections
from andi_edge.errors import UsageError
from andi_edge.runtime.categories import COCO_TO_MEGADETECTOR, coco_to_megadetector
from andi_edge.runtime.detector import Detector
from andi_edge.toolchain.dataset import Dataset, ImageRecord, read_manifest

EMPTY = "empty"
#: label maps applied after NMS, for models whose card keeps native classes (the runtime's own categories, applied
#: before NMS, are the default for COCO models: see andi_edge.runtime.categories)
BUILTIN_MAPS: dict[str, dict[str, str]] = {
    COCO_TO_MEGADETECTOR: {
        member: name
        for name, members in zip(coco_to_megadetector().names, coco_to_megadetector().members, strict=True)
        for member in members
    }
}


def load_class_map(spec: str | None) -> dict[str, str]:
    if spec is None:
        return {}
    if spec in BUILTIN_MAPS:
        return BUILTIN_MAPS[spec]
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--class-map {spec}: neither a file nor one of {', '.join(BUILTIN_MAPS)}")
    mapping = yaml.safe_load(path.read_text())
    if not isinstance(mapping, dict):
        raise UsageError(f"--class-map {spec}: expected a mapping of model class -> dataset class")
    return {str(k): str(v) for k, v in mapping.items()}


@dataclass(frozen=True)
class Scores:
    images: int
    f1_macro: float
    f1_per_class: dict[str, float]
    map50: float
    box_images: int


def f1_macro(truth: list[frozenset[str]], predicted: list[frozenset[str]]) -> tuple[float, dict[str, float]]:
    """Image-level, multi-label: each image's set of classes ({'empty'} when none), F1 per class, then the mean."""
    classes = sorted(set().union(*truth, *predicted)) if truth else []
    per_class = {}
    for cls in classes:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if cls in t and cls in p)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if cls not in t and cls in p)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if cls in t and cls not in p)
        per_class[cls] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
    return (float(np.mean(list(per_class.values()))) if per_class else float("nan")), per_class


class _Scorer:
    def __init__(self, detector: Detector, dataset: Dataset, class_map: dict[str, str], conf: float) -> None:
        self.dataset = dataset
        self.conf = conf
        names = detector.class_names
        wanted = set(dataset.class_names)
        self.model_to_dataset = {i: class_map.get(n, n) for i, n in enumerate(names) if class_map.get(n, n) in wanted}
        missing = sorted(wanted - set(self.model_to_dataset.values()))
        if missing:
            raise UsageError(
                f"the model has no class for dataset class(es): {', '.join(missing)}",
                hint="pass --class-map (a YAML of model class -> dataset class, or coco-to-megadetector)",
            )
        self.index = {name: i for i, name in enumerate(dataset.class_names)}

    def to_dataset(self, detections: Detections) -> Detections:
        keep = np.array([int(c) in self.model_to_dataset for c in detections.class_id], dtype=bool)
        kept = detections.select(keep) if len(detections) else detections
        mapped = np.array([self.index[self.model_to_dataset[int(c)]] for c in kept.class_id], dtype=np.int64)
        return Detections(kept.xyxy_px, kept.confidence, mapped)

    def truth(self, img: ImageRecord) -> Detections | None:
        """Ground-truth boxes in dataset class indices; None when some label has no box (image-level only)."""
        if any(b.xywh_px is None for b in img.boxes):
            return None
        if not img.boxes:
            return Detections.empty()
        xyxy = xywh_px_to_xyxy_px([b.xywh_px for b in img.boxes if b.xywh_px is not None])
        return Detections(
            xyxy, np.ones(len(img.boxes), np.float32), np.array([self.index[b.category] for b in img.boxes])
        )

    def label_set(self, detections: Detections) -> frozenset[str]:
        names = {self.dataset.class_names[int(c)] for c in detections.above(self.conf).class_id}
        return frozenset(names) if names else frozenset({EMPTY})


def _scores(scorer: _Scorer, rows: list[tuple[ImageRecord, Detections]]) -> Scores:
    truth_sets = [img.classes or frozenset({EMPTY}) for img, _ in rows]
    predicted_sets = [scorer.label_set(d) for _, d in rows]
    f1, per_class = f1_macro(truth_sets, predicted_sets)
    boxed = [(t, d) for (img, d) in rows if (t := scorer.truth(img)) is not None]
    acc = evaluate([t for t, _ in boxed], [d for _, d in boxed]) if boxed else None
    return Scores(
        images=len(rows),
        f1_macro=round(f1, 4),
        f1_per_class={k: round(v, 4) for k, v in per_class.items()},
        map50=round(acc.map50, 4) if acc is not None else float("nan"),
        box_images=len(boxed),
    )


def run_eval(
    model: Path,
    dataset: Dataset,
    split_dir: Path | None = None,
    reference: Path | None = None,
    class_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    detector = Detector(model)
    conf = detector.card.thresholds.typical
    scorer = _Scorer(detector, dataset, class_map or {}, conf)
    images = dataset.images
    seen_locations: set[str] = set()
    if split_dir is not None:
        manifest = read_manifest(split_dir)
        split_of = {e["file"]: e["split"] for e in manifest["images"]}
        seen_locations = set(manifest["locations"]["train"])
        images = [img for img in images if split_of.get(img.file_name) in ("val", "test")]
        if not images:
            raise UsageError(f"{split_dir}: no val or test images of this dataset in the manifest")
    rows: list[tuple[ImageRecord, Detections]] = []
    inference_ms: list[float] = []
    failures: list[str] = []
    for img in images:
        result = detector.detect(dataset.images_root / img.file_name)
        if result.detections is None:
            failures.append(f"{img.file_name}: {result.failure}")
            continue
        inference_ms.append(result.timings_ms["inference"])
        rows.append((img, scorer.to_dataset(result.detections)))
    if not rows:
        raise UsageError("no image of the dataset could be evaluated", hint="; ".join(failures[:3]))
    report: dict[str, Any] = {
        "model": detector.provenance(),
        "dataset_sha256": dataset.source_sha256,
        "class_names": dataset.class_names,
        "f1_threshold": conf,
        "overall": _scores(scorer, rows).__dict__,
        "inference_ms_per_image": {
            "mean": round(statistics.fmean(inference_ms), 3),
            "p50": round(statistics.median(inference_ms), 3),
        },
        "failures": failures,
    }
    if split_dir is not None:
        groups: dict[str, list[tuple[ImageRecord, Detections]]] = defaultdict(list)
        for img, det in rows:
            groups["seen" if img.location in seen_locations else "unseen"].append((img, det))
        report["seen_locations"] = _scores(scorer, groups["seen"]).__dict__ if groups["seen"] else None
        report["unseen_locations"] = _scores(scorer, groups["unseen"]).__dict__ if groups["unseen"] else None
    if reference is not None:
        photos = [dataset.images_root / img.file_name for img, _ in rows]
        report["against_reference"] = accuracy_delta(Detector(reference), detector, photos)
    return report
