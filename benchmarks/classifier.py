"""The species classifier's second stage: what it scores and what it costs, for the study's three architectures
(ResNeXt50, AlexNet, VGG19) and device-sized ones (MobileNetV3-Small, EfficientNet-B0).

1. Crops of the sample photos (tests/classifier_factory.py): burrowing owls (the detector's boxes on the owl
   project's frames, labelled by folder, four sites) and squirrels (the YOLO boxes of one sequence). Honestly
   small data: two labels, about 70 crops, one of them from a single sequence. Split stratified by label (a split
   by location cannot put the one squirrel sequence in both training and test); the eval still reports crops
   from training locations (seen) and the others (unseen).
2. Each architecture trained with the same recipe (`andi-edge classifier train`, --imgsz, --epochs; no ImageNet
   weights on this machine, so from scratch: the figures say what the pipeline does, not what a fine-tuned
   ImageNet model would score), exported, scored on the test crops (`classifier eval`), and MobileNetV3-Small
   also quantized to INT8 (`classifier quantize`).
3. Cost: `detect --classifier` on all 185 sample photos with the 320 and 640 px YOLOv5n, one stream (per-stage
   ms from each photo's timings: ms per photo, per crop) and pipelined (photos/s with and without the stage).

Run: .venv/bin/python benchmarks/classifier.py [--imgsz 224 --epochs 12] -> results/classifier.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from andi_edge.config import CLASSIFIER_ARCHITECTURES as ARCHS
from benchmarks.common import PHOTOS, RESULTS, WEIGHTS, cli


def log(message: str) -> None:
    print(f"[classifier] {message}", flush=True)


def cost(detector_path: Path, classifier: Path | None) -> dict[str, Any]:
    """One stream over every sample photo (stage ms from each result), then pipelined photos/s."""
    import numpy as np

    from andi_edge.config import ClassifierSettings, PipelineSettings
    from andi_edge.photos import find_photos
    from andi_edge.pipeline import detect_many, plan_pipeline
    from andi_edge.runtime.classifier import load_classifier
    from andi_edge.runtime.detector import Detector

    plan = plan_pipeline(PipelineSettings(), 0, ())
    settings = ClassifierSettings(model=str(classifier)) if classifier else ClassifierSettings()
    detector = Detector(detector_path, backend_options=plan.backend, classifier=load_classifier(settings, plan.backend))
    _, sources = find_photos([PHOTOS])
    for source in sources[:5]:
        detector.detect(source.path)
    classify, decode, crops = [], [], []
    for source in sources:
        result = detector.detect(source.path)
        if result.detections is None:
            continue
        ids = result.detections.classification_id
        crops.append(0 if ids is None or not len(ids) else int(np.sum(ids[:, 0] >= 0)))
        classify.append(result.timings_ms.get("classify", 0.0))
        decode.append(result.timings_ms.get("crop_decode", 0.0))
    start = time.perf_counter()
    for _ in detect_many(detector, sources, plan.settings):
        pass
    rate = len(sources) / (time.perf_counter() - start)
    redecode = np.asarray(decode)
    per_photo = np.asarray(classify) + redecode
    counts = np.asarray(crops)
    return {
        "photos": len(sources),
        "photos_with_crops": int(np.sum(counts > 0)),
        "crops": int(counts.sum()),
        # the second stage's whole cost: the larger decode for crops where needed, cutting, the classifier
        "classify_ms_per_photo_mean": round(float(per_photo.mean()), 2),
        "classify_ms_per_photo_with_crops_mean": round(float(per_photo[counts > 0].mean()), 2) if counts.any() else 0,
        "classify_ms_per_crop": round(float(per_photo.sum() / counts.sum()), 2) if counts.sum() else None,
        "classifier_only_ms_per_crop": round(float(np.sum(classify) / counts.sum()), 2) if counts.sum() else None,
        "photos_decoded_again": int(np.sum(redecode > 0)),
        "crop_decode_ms_mean": round(float(redecode[redecode > 0].mean()), 2) if np.any(redecode > 0) else 0,
        "pipelined_photos_per_s": round(rate, 1),
    }


def onnx_size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--work", type=Path, default=None, help="keep the crops, runs and models here")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite classifier.md from classifier.json")
    args = parser.parse_args()
    if args.markdown_only:
        (RESULTS / "classifier.md").write_text(markdown(json.loads((RESULTS / "classifier.json").read_text())))
        return
    from tests.classifier_factory import dataset_args, write_owl_labels

    work = args.work or Path(tempfile.mkdtemp(prefix="andi-cls-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    detectors = {size: work / f"yolov5n-{size}.onnx" for size in ("320", "640")}
    for size, path in detectors.items():
        if not path.is_file():
            cli("export", WEIGHTS, "--imgsz", size, "-o", path)
    crops = work / "crops"
    if not (crops / "crops.json").is_file():
        labels = write_owl_labels(PHOTOS, work / "owls.csv")
        cli(*dataset_args(PHOTOS, labels, detectors["640"], crops))
    manifest = json.loads((crops / "crops.json").read_text())
    rows: list[dict[str, Any]] = []
    baseline = {size: cost(path, None) for size, path in detectors.items()}
    log(f"baseline: {baseline}")
    for arch in args.archs.split(","):
        run = work / f"run-{arch}"
        model = work / f"{arch}.onnx"
        start = time.perf_counter()
        cli("classifier", "train", "--crops", crops, "--arch", arch, "--imgsz", str(args.imgsz), "--epochs",
            str(args.epochs), "--batch", "16", "--seed", "0", "-o", run)  # fmt: skip
        train_s = time.perf_counter() - start
        cli("classifier", "export", run / "best.pt", "-o", model)
        variants = [(arch, model)]
        if arch == "mobilenet_v3_small":
            int8 = work / f"{arch}-int8.onnx"
            cli("classifier", "quantize", model, "--crops", crops, "-o", int8, "--gate-split", "val",
                "--max-loss", "0.1")  # fmt: skip
            variants.append((f"{arch} INT8", int8))
        training = json.loads((run / "run.json").read_text())
        for name, path in variants:
            report_path = work / f"eval-{path.stem}.json"
            cli("classifier", "eval", path, "--crops", crops, "--split", "test", "-o", report_path)
            report = json.loads(report_path.read_text())
            row = {
                "classifier": name,
                "onnx_mb": onnx_size_mb(path),
                "train_s": round(train_s, 1),
                "epochs_run": training["epochs_run"],
                "best_epoch": training["best_epoch"],
                "test": {k: report["overall"][k] for k in ("crops", "top1", "f1_macro")},
                "test_seen": {k: report["seen_locations"][k] for k in ("crops", "top1", "f1_macro")},
                "test_unseen": {k: report["unseen_locations"][k] for k in ("crops", "top1", "f1_macro")},
                "cost": {size: cost(det, path) for size, det in detectors.items()},
            }
            log(json.dumps(row))
            rows.append(row)
    result = {
        "created_utc": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0))},
        "imgsz": args.imgsz,
        "epochs": args.epochs,
        "crops": {"counts": manifest["counts"], "labels": manifest["labels"], "split": manifest["split_method"]},
        "pretrained": "none (no ImageNet weights on this machine: every classifier trained from scratch)",
        "detector_alone": baseline,
        "classifiers": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classifier.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "classifier.md").write_text(markdown(result))
    log(f"written {RESULTS / 'classifier.md'}")


def markdown(result: dict[str, Any]) -> str:
    counts = result["crops"]["counts"]
    lines = [
        "# Species classifier: what it scores, what it costs",
        "",
        f"Generated by `benchmarks/classifier.py` on {result['created_utc']}, {result['machine']['cpus']} cores "
        f"({result['machine']['cpu']}). Crops of the sample photos (tests/classifier_factory.py): "
        + "; ".join(f"{split} " + ", ".join(f"{k} {v}" for k, v in c.items()) for split, c in counts.items())
        + f". Split by {result['crops']['split']} (stratified). Every classifier trained {result['epochs']} epochs "
        f"at most at {result['imgsz']} px with the same recipe, **{result['pretrained']}**. Test crops are few (single "
        "digits per label): a score moves by 0.1 or more for one crop, and these crops share sequences with "
        'training ones. Read the scores as "the pipeline learns and runs", not as species accuracy.',
        "",
        "## Scores (test crops) and cost per photo",
        "",
        "Cost: `detect --classifier` with YOLOv5n on all 185 sample photos, one stream: the second stage's ms "
        "per photo (every photo / photos with a box to classify) and per crop, with one inference thread for the "
        "classifier as in the parallel pipeline; then pipelined photos/s (2 cores, parallel pipeline: two photos "
        "in the works at once) against the detector alone in the same run.",
        "",
        "| classifier | ONNX MB | train s (epochs) | test top-1 | test F1-macro | 320 px: ms/photo (with crops) "
        "| ms/crop (net only) | photos/s | 640 px: ms/photo (with crops) | ms/crop (net only) | photos/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = result["detector_alone"]
    lines.append(
        f"| detector alone | | | | | 0 | | {base['320']['pipelined_photos_per_s']} | 0 | | "
        f"{base['640']['pipelined_photos_per_s']} |"
    )
    for row in result["classifiers"]:
        c320, c640 = row["cost"]["320"], row["cost"]["640"]
        lines.append(
            f"| {row['classifier']} | {row['onnx_mb']} | {row['train_s']} ({row['epochs_run']}) | "
            f"{row['test']['top1']} | {row['test']['f1_macro']} | "
            f"{c320['classify_ms_per_photo_mean']} ({c320['classify_ms_per_photo_with_crops_mean']}) | "
            f"{c320['classify_ms_per_crop']} ({c320['classifier_only_ms_per_crop']}) | "
            f"{c320['pipelined_photos_per_s']} | "
            f"{c640['classify_ms_per_photo_mean']} ({c640['classify_ms_per_photo_with_crops_mean']}) | "
            f"{c640['classify_ms_per_crop']} ({c640['classifier_only_ms_per_crop']}) | "
            f"{c640['pipelined_photos_per_s']} |"
        )
    if result["classifiers"]:
        c320 = result["classifiers"][0]["cost"]["320"]
        lines += [
            "",
            f"At 320 px the detector gives {c320['crops']} crops on {c320['photos_with_crops']} of "
            f"{c320['photos']} photos. A photo's crops are cut from the detector's own (DCT-reduced) decode when "
            "that gives each crop the classifier's input size, else from one larger decode: "
            f"{c320['photos_decoded_again']} photos at 320 px ({c320['crop_decode_ms_mean']} ms each), "
            f"{result['classifiers'][0]['cost']['640']['photos_decoded_again']} at 640 px. ms/photo and ms/crop "
            'include that decode; "net only" is cutting, resizing and the classifier.',
        ]
    lines += [
        "",
        "## Seen and unseen locations (test crops)",
        "",
        "| classifier | seen: crops, top-1, F1-macro | unseen: crops, top-1, F1-macro |",
        "|---|---|---|",
    ]
    for row in result["classifiers"]:
        seen, unseen = row["test_seen"], row["test_unseen"]
        lines.append(
            f"| {row['classifier']} | {seen['crops']}, {seen['top1']}, {seen['f1_macro']} | "
            f"{unseen['crops']}, {unseen['top1']}, {unseen['f1_macro']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
