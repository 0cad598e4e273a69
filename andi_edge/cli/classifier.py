"""``andi-edge classifier``: the species classifier's workstation commands (dataset, train, export, eval, quantize)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from andi_edge.cli.options import EXIT_OK, add_renamed, class_list
from andi_edge.errors import UsageError

log = logging.getLogger("andi_edge")


def cmd_dataset(args: argparse.Namespace) -> int:
    from andi_edge.runtime.classifier_card import CropPolicy
    from andi_edge.toolchain.classifier.crops import (
        photos_from_boxes,
        photos_from_labels,
        read_photo_labels,
        split_photos,
        write_crops_dataset,
    )

    if args.boxes is None and args.labels is None:
        raise UsageError(
            "give --boxes DATASET (CCT JSON or YOLO folder), --labels CSV_OR_FOLDER with --detector, or both"
        )
    policy = CropPolicy(padding=args.padding, square=not args.no_square)
    sources: list[dict[str, Any]] = []
    photos = []
    if args.boxes is not None:
        from andi_edge.toolchain.dataset import load_dataset

        dataset = load_dataset(args.boxes, args.box_images)
        if args.by == "location" and dataset.notes:
            raise UsageError(f"{args.boxes}: {dataset.notes[0]}", hint="use --by class, or add locations")
        photos += photos_from_boxes(dataset, args.empty_class, args.seed, _renames(args.rename))
        sources.append({"source": str(args.boxes), "kind": "boxes", "sha256": dataset.source_sha256,
                        "renamed": _renames(args.rename)})  # fmt: skip
    if args.labels is not None:
        if args.detector is None:
            raise UsageError("--labels needs --detector MODEL.onnx: its boxes are the crops")
        from andi_edge.runtime.detector import Detector

        root, rows = read_photo_labels(args.labels, args.images)
        detector = Detector(args.detector)
        classes = class_list(args.classes)
        photos += photos_from_labels(rows, root, detector, args.conf, classes, args.empty_class, args.seed)
        sources.append({"source": str(args.labels), "kind": "image labels + detector crops",
                        "detector": detector.model_path.name, "detector_sha256": detector.model_sha256,
                        "detector_conf": args.conf, "detector_classes": list(classes)})  # fmt: skip
    if not photos:
        raise UsageError("no labelled box to crop (see the warnings above)")
    assignment = split_photos(photos, args.by, args.val, args.test, args.seed)
    provenance = {"split_method": args.by, "seed": args.seed, "sources": sources}
    crops = write_crops_dataset(photos, args.output, policy, assignment, provenance, args.max_side)
    splits = ("train", "val", "test")
    print(f"{'label':<28}" + "".join(f"{s:>8}" for s in splits))
    for label in crops.labels:
        print(f"{label:<28}" + "".join(f"{sum(1 for i in crops.split(s) if i.label == label):>8}" for s in splits))
    print("locations: " + "; ".join(f"{s} {len({i.location for i in crops.split(s)})}" for s in splits))
    print(f"{len(crops.items)} crops written to {args.output} (crops.json)")
    return EXIT_OK


def _renames(pairs: list[str]) -> dict[str, str]:
    renames = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UsageError(f"--rename {pair!r}: expected OLD=NEW, e.g. animal=squirrel")
        renames[old.strip()] = new.strip()
    return renames


def cmd_train(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.classifier.crops import read_crops_dataset
    from andi_edge.toolchain.classifier.train import ClassifierTrainRequest, train_classifier

    request = ClassifierTrainRequest(
        crops=read_crops_dataset(args.crops),
        arch=args.arch,
        out=args.output,
        imgsz=args.imgsz,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        pretrained=args.pretrained,
        weights=args.weights,
        threads=args.threads,
        licence=args.licence,
    )
    result = train_classifier(request)
    f1 = "n/a (no val split)" if result.val_f1_macro is None else f"{result.val_f1_macro:.4f}"
    print(
        f"trained {args.arch} for {result.epochs_run} epochs in {result.seconds:.0f} s "
        f"({'from ' + Path(result.pretrained).name if result.pretrained else 'from scratch'}); "
        f"best epoch {result.best_epoch}, val F1-macro {f1}"
    )
    print(f"checkpoint: {result.checkpoint} (run config: {args.output / 'run.json'})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.classifier.export import export_classifier

    card = export_classifier(args.checkpoint, args.output)
    print(
        f"exported {card.architecture} ({len(card.labels)} labels: {', '.join(card.labels[:8])}"
        f"{' ...' if len(card.labels) > 8 else ''}; {card.input_width_px}x{card.input_height_px}) -> {args.output}"
    )
    return EXIT_OK


def _print_scores(name: str, scores: dict[str, Any]) -> None:
    if not scores["crops"]:
        print(f"{name:<18}{0:>6}{'-':>8}{'-':>10}")
        return
    print(f"{name:<18}{scores['crops']:>6}{scores['top1']:>8.4f}{scores['f1_macro']:>10.4f}")


def cmd_eval(args: argparse.Namespace) -> int:
    from andi_edge.sinks.atomic import write_json_atomic
    from andi_edge.toolchain.classifier.crops import read_crops_dataset
    from andi_edge.toolchain.classifier.evaluate import confusion_png, evaluate_classifier

    crops = read_crops_dataset(args.crops)
    report = evaluate_classifier(args.model, crops, args.split, args.card, args.reference)
    print(f"{'crops':<18}{'n':>6}{'top-1':>8}{'F1-macro':>10}")
    for key in ("overall", "seen_locations", "unseen_locations"):
        _print_scores(key.replace("_", " "), report[key])
    print(f"{'label':<24}{'precision':>10}{'recall':>8}{'n':>6}")
    for label, row in report["overall"]["per_label"].items():
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        print(f"{label:<24}{precision:>10}{recall:>8}{row['support']:>6}")
    if "against_reference" in report:
        ref = report["against_reference"]
        print(f"against {ref['reference']}: top-1 agreement {ref['top1_agreement']}, F1-macro change "
              f"{ref['f1_macro_change']}")  # fmt: skip
    if args.confusion is not None:
        confusion_png(report, args.confusion)
        print(f"confusion matrix: {args.confusion}")
    if args.json is not None:
        write_json_atomic(args.json, report, indent=2)
        print(f"json: {args.json}")
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.classifier.crops import read_crops_dataset
    from andi_edge.toolchain.classifier.quantize import ClassifierQuantizeRequest, quantize_classifier

    outcome = quantize_classifier(
        ClassifierQuantizeRequest(
            model=args.model,
            crops=read_crops_dataset(args.crops),
            output=args.output,
            max_crops=args.max_crops,
            gate_split=args.gate_split,
            max_loss=args.max_loss,
        )
    )
    print(f"INT8 classifier: F1-macro {outcome['before']:.4f} -> {outcome['after']:.4f} on {args.gate_split} "
          f"(max loss {args.max_loss}) -> {args.output}")  # fmt: skip
    return EXIT_OK


def register(commands: Any) -> None:
    from andi_edge.config import CLASSIFIER_ARCHITECTURES, PRETRAINED_MODES

    group = commands.add_parser(
        "classifier", help="species classifier on crops: dataset, train, export, eval, quantize"
    )
    actions = group.add_subparsers(dest="classifier_command", metavar="ACTION", required=True)

    ds = actions.add_parser(
        "dataset",
        help="labelled crops from a boxes dataset, or from detector boxes on photos with image-level labels",
        description="Cut labelled crops (the runtime's crop policy) and split them by location.",
    )
    ds.add_argument("--boxes", type=Path, default=None, help="COCO Camera Traps JSON or YOLO folder with boxes")
    ds.add_argument("--box-images", type=Path, default=None, help="the CCT JSON's image root")
    ds.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="label a --boxes category otherwise (repeatable): a YOLO folder of squirrels labelled animal",
    )
    ds.add_argument("--images", type=Path, default=None, help="the root the --labels CSV's files start from")
    ds.add_argument(
        "--labels", type=Path, default=None, help="CSV file,label[,location] or a folder per label (needs --detector)"
    )
    ds.add_argument("--detector", type=Path, default=None, help="ONNX detector whose boxes are cut (with --labels)")
    ds.add_argument("--conf", type=float, default=0.3, help="detector boxes at or above this (default 0.3)")
    ds.add_argument("--classes", default="animal", help="detector classes cut (default animal; 'all')")
    ds.add_argument(
        "--empty-class",
        action="store_true",
        help="add an 'empty' label: windows of empty photos, and the detector's boxes on photos labelled empty",
    )
    ds.add_argument("--padding", type=float, default=0.1, help="context around a box, x its larger side (0.1)")
    ds.add_argument("--no-square", action="store_true", help="keep the box's shape (default: square crops)")
    ds.add_argument("--max-side", type=int, default=448, help="stored crops' long side at most (px, default 448)")
    ds.add_argument("--by", choices=("location", "class"), default="location", help="split by location (default)")
    ds.add_argument("--val", type=float, default=0.15, help="share of the locations (or crops) for validation")
    ds.add_argument("--test", type=float, default=0.15, help="share of the locations (or crops) for the test split")
    ds.add_argument("--seed", type=int, default=0, help="random seed of the split")
    ds.add_argument("-o", "--output", type=Path, required=True, help="the crops dataset folder")
    ds.set_defaults(handler=cmd_dataset)

    tr = actions.add_parser("train", help="train a torchvision classifier on a crops dataset")
    tr.add_argument("--crops", type=Path, required=True, help="a crops dataset (andi-edge classifier dataset)")
    tr.add_argument(
        "--arch", choices=CLASSIFIER_ARCHITECTURES, default="mobilenet_v3_small", help="the architecture to train"
    )
    tr.add_argument("--imgsz", type=int, default=224, help="input size (px, square; default 224)")
    tr.add_argument("--epochs", type=int, default=30, help="most epochs (early stopping on val F1-macro)")
    tr.add_argument("--batch", type=int, default=32, help="crops per training step")
    tr.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    tr.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val F1")
    tr.add_argument("--seed", type=int, default=0, help="random seed")
    tr.add_argument(
        "--pretrained",
        choices=PRETRAINED_MODES,
        default="auto",
        help="ImageNet weights from the models folders: auto (use them if present, else warn and train from "
        "scratch), required, none",
    )
    tr.add_argument("--weights", type=Path, default=None, help="start from this state dict instead")
    tr.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    tr.add_argument("--licence", default="unknown", help="the licence recorded in the classifier card")
    tr.add_argument("-o", "--output", type=Path, required=True, help="run folder (best.pt, run.json)")
    tr.set_defaults(handler=cmd_train)

    ex = actions.add_parser("export", help="a trained classifier to ONNX with its card")
    ex.add_argument("checkpoint", type=Path, help="best.pt from `andi-edge classifier train`")
    ex.add_argument("-o", "--output", type=Path, required=True, help="the ONNX file to write")
    ex.set_defaults(handler=cmd_export)

    ev = actions.add_parser("eval", help="top-1, F1-macro, per-label P/R, confusion; seen vs unseen locations")
    ev.add_argument("model", type=Path, help="the classifier (ONNX)")
    ev.add_argument("--crops", type=Path, required=True, help="a crops dataset (`classifier dataset`)")
    ev.add_argument(
        "--split", choices=("train", "val", "test", "all"), default="test", help="which of its crops to score"
    )
    ev.add_argument("--card", type=Path, default=None, help="YAML card of a classifier whose ONNX file has none")
    ev.add_argument("--reference", type=Path, default=None, help="compare with this classifier (e.g. the fp32)")
    ev.add_argument("--confusion", type=Path, default=None, help="write the confusion matrix as a PNG")
    ev.add_argument("--output", "-o", dest="json", type=Path, default=None, help="write the full report as JSON")
    add_renamed(ev, "--output", "--json")
    ev.set_defaults(handler=cmd_eval)

    qu = actions.add_parser("quantize", help="static INT8, calibrated on training crops, gated on F1-macro")
    qu.add_argument("model", type=Path, help="the classifier's ONNX file")
    qu.add_argument("--crops", type=Path, required=True, help="a crops dataset: calibration and gate")
    qu.add_argument("-o", "--output", type=Path, required=True, help="the INT8 ONNX file to write")
    qu.add_argument("--max-crops", type=int, default=128, help="calibration crops (default 128)")
    qu.add_argument(
        "--gate-split", choices=("train", "val", "test", "all"), default="val", help="crops the F1-macro gate scores"
    )
    qu.add_argument("--max-loss", type=float, default=0.02, help="largest F1-macro loss allowed (default 0.02)")
    qu.set_defaults(handler=cmd_quantize)
