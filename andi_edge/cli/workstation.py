"""Workstation commands (the [toolchain] extra): export, dataset, train, prune, quantize, eval."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from andi_edge.cli.options import EXIT_OK, add_gate_options, add_renamed, gate_from_args
from andi_edge.errors import UsageError

# -- export / info --------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.export import ExportRequest, export_name, export_onnx
    from andi_edge.toolchain.weights import resolve_weights

    weights = resolve_weights(args.weights)
    rect = args.rect if args.rect is not None else bool(weights.known is not None and weights.known.rect)
    output = args.output or Path(f"{export_name(weights, args.imgsz, rect)}.onnx")
    card = export_onnx(
        ExportRequest(
            weights=weights,
            output=output,
            imgsz=args.imgsz,
            name=args.name,
            licence=args.licence,
            native_classes=args.native_classes,
            rect=rect,
        )
    )
    reports = f" reported as {'/'.join(card.categories.names)}" if card.categories and not args.native_classes else ""
    print(
        f"exported {weights.path} ({card.head} head, {card.num_classes} classes{reports}, stride {card.stride}, "
        f"{card.input_height} px{', rectangular inference' if card.rect else ''}) -> {output}"
    )
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.quantize import QuantizeRequest, quantize

    if args.calib_count < 1:
        raise UsageError("--calib-count must be at least 1")
    from andi_edge.toolchain.classifier.quantize import is_classifier

    if is_classifier(args.model):
        return _quantize_classifier(args)
    if not args.calib.is_dir():
        raise UsageError(f"--calib {args.calib}: no such folder of calibration photos")
    gate = gate_from_args(args)
    output = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    quantize(
        QuantizeRequest(
            model=args.model, calibration_dir=args.calib, output=output, max_photos=args.calib_count, gate=gate
        )
    )
    print(f"quantized {args.model} -> {output} ({output.stat().st_size / 1e6:.1f} MB)")
    from andi_edge.runtime.detector import Detector

    outcome = Detector(output).card.quantize_gate
    if outcome:
        print(
            f"accuracy gate passed: mAP@0.5 {outcome['before']:.4f} -> {outcome['after']:.4f} on {outcome['images']} "
            f"photos (loss allowed {outcome['max_loss']}): a device with backend.prefer_int8 runs it"
        )
    else:
        print("no accuracy gate (--eval DATASET): a device keeps the fp32 model until one has passed")
    print(f"measure what it costs: andi-edge bench --model {args.model} --images {args.calib} --compare {output}")
    return EXIT_OK


def _quantize_classifier(args: argparse.Namespace) -> int:
    """A crop classifier: calibrated on a crops dataset's training crops, gated on its val crops' F1-macro."""
    from andi_edge.toolchain.classifier.crops import read_crops_dataset
    from andi_edge.toolchain.classifier.quantize import ClassifierQuantizeRequest, quantize_classifier

    crops = read_crops_dataset(args.calib)
    output = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    request = ClassifierQuantizeRequest(args.model, crops, output, max_crops=args.calib_count, max_loss=args.max_loss)
    outcome = quantize_classifier(request)
    print(f"quantized classifier {args.model} -> {output}: F1-macro on val crops {outcome['before']:.4f} -> "
          f"{outcome['after']:.4f} (max loss {args.max_loss})")  # fmt: skip
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    if getattr(args, "log_level", None) is None:  # each epoch's loss and val mAP@0.5, unless asked otherwise
        logging.getLogger("andi_edge.toolchain").setLevel(logging.INFO)
    from andi_edge.toolchain.train import TrainRequest, train

    result = train(
        TrainRequest(
            data=args.data,
            model=args.model,
            weights=args.weights,
            epochs=args.epochs,
            imgsz=args.imgsz,
            output=args.output,
            patience=args.patience,
            batch=args.batch,
            seed=args.seed,
            compare=not args.no_compare,
            max_loss=args.max_loss,
            allow_worse=args.allow_worse,
            freeze=args.freeze,
            head=args.head,
            lr0=args.lr0,
            from_scratch=args.from_scratch,
        )
    )
    if result.total_source and result.head == "warm":
        rows = ", ".join(f"{name} {how}" for name, how in result.head_rows.items())
        print(f"carried {result.transferred} of {result.total_source} pretrained tensors; head warm-started: {rows}")
    elif result.total_source:
        print(f"carried {result.transferred} of {result.total_source} pretrained tensors into {args.model} (YOLOv5u)")
    else:
        print(f"WARNING: {args.model} was trained from its architecture alone (no pretrained weights)")
    if result.metrics:
        print("final validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    if result.comparison is not None:
        print("against the starting model (F1-macro / mAP@0.5):")
        for group, models in result.comparison.scores.items():
            start, tuned = models["start"], models["finetuned"]
            print(
                f"  {group} locations ({tuned['images']} photos): start {start['f1_macro']:.3f} / {start['map50']:.3f}"
                f", fine-tuned {tuned['f1_macro']:.3f} / {tuned['map50']:.3f}"
            )
        if result.comparison.worse_on_unseen:
            print("WARNING: THE FINE-TUNED MODEL IS WORSE THAN ITS STARTING MODEL ON UNSEEN LOCATIONS (--allow-worse)")
    elif result.comparison_skipped:
        print(f"not compared with the starting model: {result.comparison_skipped}")
    print(f"best weights: {result.best}; run config: {args.output / 'run_config.json'}")
    print(f"next: andi-edge export {result.best} --imgsz {args.imgsz} -o {args.model}-finetuned-{args.imgsz}.onnx")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.prune import PruneRequest, prune

    gate = gate_from_args(args)
    result = prune(
        PruneRequest(
            weights=args.weights,
            ratio=args.ratio,
            data=args.data,
            epochs=args.epochs,
            output=args.output,
            imgsz=args.imgsz,
            batch=args.batch,
            gate=gate,
            method=args.method,
            sparsity=args.sparsity,
            qat_epochs=args.qat_epochs,
        )
    )
    if result.method == "gmp":
        print(
            f"pruned {args.weights} -> {result.output} (gradual magnitude pruning): non-zero weights of the pruned "
            f"convolutions {result.params_before:,} -> {result.params_after:,} (sparsity {result.sparsity:.1%})"
        )
        if args.qat_epochs:
            print(f"quantization-aware training: {args.qat_epochs} epochs, weights stored on their int8 grid")
        print(f"next: andi-edge export {result.output} --imgsz {args.imgsz}, then andi-edge quantize (sparse INT8)")
        return EXIT_OK
    print(
        f"pruned {args.weights} -> {result.output}: parameters {result.params_before:,} -> {result.params_after:,}, "
        f"MACs {result.macs_before / 1e6:.0f}M -> {result.macs_after / 1e6:.0f}M at {args.imgsz} px"
    )
    print(f"next: andi-edge export {result.output} --imgsz {args.imgsz}")
    return EXIT_OK


def cmd_dataset_split(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.dataset import load_dataset, split_by_class, split_by_location, write_split

    dataset = load_dataset(args.data, args.images)
    for note in dataset.notes:
        if args.by == "location":
            raise UsageError(f"{args.data}: {note}", hint="use --by class, or add locations to the dataset")
    splitter = split_by_location if args.by == "location" else split_by_class
    assignment = splitter(dataset, args.val, args.test, args.seed)
    report = write_split(dataset, assignment, args.output, args.by, args.seed)
    names = sorted({c for counts in report.class_counts.values() for c in counts})
    print(f"{'class':<24}" + "".join(f"{s:>8}" for s in report.class_counts))
    for name in names:
        print(f"{name:<24}" + "".join(f"{report.class_counts[s].get(name, 0):>8}" for s in report.class_counts))
    print("locations: " + "; ".join(f"{s} {len(locs)}" for s, locs in report.locations.items()))
    for missing in report.missing_from_train:
        print(f"WARNING: class '{missing}' has no image in the training split: the model cannot learn it")
    print(f"split written to {args.output} (data.yaml, manifest.json)")
    return EXIT_OK


def cmd_dataset_balance(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.balance import BalanceRequest, balance

    outcome = balance(
        BalanceRequest(
            split_dir=args.split_dir,
            upsample_below=args.upsample_below,
            max_factor=args.max_factor,
            copy_paste=args.copy_paste,
            jitter=args.jitter,
            seed=args.seed,
        )
    )
    print(f"added {outcome['added']} training images under {args.split_dir / 'images' / 'train' / '_balance'}")
    print("training images per class: " + ", ".join(f"{k} {v}" for k, v in outcome["train_counts"].items()))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from andi_edge.sinks.atomic import write_json_atomic
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map, run_eval

    dataset = load_dataset(args.data, args.images)
    report = run_eval(args.model, dataset, args.split_manifest, args.reference, load_class_map(args.class_map))
    print(f"{'images':<18}{'n':>6}{'F1-macro':>10}{'mAP@0.5':>10}")
    for key in ("overall", "seen_locations", "unseen_locations"):
        scores = report.get(key)
        if scores:
            print(
                f"{key.replace('_', ' '):<18}{scores['images']:>6}{scores['f1_macro']:>10.4f}{scores['map50']:>10.4f}"
            )
    timing = report["inference_ms_per_image"]
    print(f"inference per image: mean {timing['mean']:.1f} ms, p50 {timing['p50']:.1f} ms")
    if "against_reference" in report:
        ref = report["against_reference"]
        small = ref["small_object_recall"]
        print(
            f"against {ref['reference']}: mAP@0.5 {ref['map50']:.4f}, recall {ref['recall_at_typical']:.4f}, "
            f"small-object recall {'n/a (no small objects)' if small is None else f'{small:.4f}'}"
        )
    print("F1 per class (all images): " + ", ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} n/a"
        for name, value in report["overall"]["f1_per_class"].items()
    ))  # fmt: skip
    if args.json:
        write_json_atomic(args.json, report, indent=2)
        print(f"the whole report: {args.json}")
    return EXIT_OK


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a YOLO checkpoint to ONNX with its model card inside (needs the [toolchain] extra)",
        description=(
            "Export a classic YOLOv5 checkpoint (e.g. yolov5n.pt, MegaDetector v5) or an ultralytics checkpoint "
            "(YOLOv5u, YOLOv8, YOLO11) to ONNX at a fixed input size. The model card (class names, input size, head, "
            "thresholds, weights sha256, licence, tool versions) is stored in the file's metadata. Runs offline."
        ),
    )
    export.add_argument(
        "weights", help="a .pt file, or a known model name such as yolov5n (see andi_edge/assets/registry.yaml)"
    )
    export.add_argument(
        "--imgsz",
        type=int,
        default=None,
        help="square input size, a multiple of the model's stride (32; 64 for P6 models such as MegaDetector v5). "
        "Default: the registry's size for a known model (MegaDetector v5: 1280, v6: 640), else 320",
    )
    export.add_argument(
        "--native-classes",
        action="store_true",
        help="keep the network's own classes in the card; by default a COCO model reports MegaDetector's "
        "categories (animal, person, vehicle), combining the COCO classes' probabilities before NMS",
    )
    export.add_argument(
        "--rect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rectangular inference (classic YOLOv5): each photo runs at its own aspect, --imgsz its long side and "
        "the short side padded only to the stride (640x480 for a 4:3 photo at 640): ~25-40%% less inference. "
        "Default: on for a known model whose publisher infers so (MegaDetector v5), else off (--no-rect: square)",
    )
    export.add_argument(
        "--output", "-o", type=Path, default=None, help="ONNX file to write (default: STEM-IMGSZ[-rect].onnx)"
    )
    export.add_argument("--name", default=None, help="model name for the card (default: STEM-IMGSZ[-rect])")
    export.add_argument("--licence", default=None, help="licence of the weights, for the card")
    export.set_defaults(handler=cmd_export)

    dataset_cmd = commands.add_parser("dataset", help="camera-trap datasets: location-aware splits")
    dataset_actions = dataset_cmd.add_subparsers(dest="dataset_action", metavar="ACTION", required=True)
    split = dataset_actions.add_parser(
        "split",
        help="COCO Camera Traps JSON (or a YOLO folder) -> a YOLO split and a manifest",
        description=(
            "Split a camera-trap dataset for training. --by location (default) never puts one location in two "
            "splits and keeps each class's share close to the targets; --by class reproduces a stratified split. "
            "Writes images/ (symlinks), labels/, data.yaml and manifest.json; prints per-split class counts and "
            "warns when a class is absent from training. Empty images are kept as background."
        ),
    )
    split.add_argument("data", type=Path, help="COCO Camera Traps JSON, or a YOLO dataset folder")
    split.add_argument("--images", type=Path, default=None, help="image root for a CCT JSON's file_name paths")
    split.add_argument(
        "--by", choices=["location", "class"], default="location", help="split whole locations (unseen ones) or photos"
    )
    split.add_argument("--val", type=float, default=0.25, help="share of the locations for validation")
    split.add_argument("--test", type=float, default=0.10, help="share of the locations for the test split")
    split.add_argument("--seed", type=int, default=0, help="random seed of the split")
    split.add_argument("--output", "-o", type=Path, required=True, help="split folder to write")
    split.set_defaults(handler=cmd_dataset_split)
    bal = dataset_actions.add_parser(
        "balance",
        help="upsample rare classes and paste animals onto empty frames from other locations (train split only)",
        description=(
            "The original study's data fixes on a split's training images: --upsample-below N repeats the images of "
            "classes with fewer than N (at most --max-factor times); --copy-paste K pastes animal crops onto empty "
            "frames from other locations (object isolation); --jitter J adds colour jitter to what it makes. "
            "Validation and test images are never touched; a rerun replaces the earlier additions."
        ),
    )
    bal.add_argument("split_dir", type=Path, help="SPLIT_DIR from `andi-edge dataset split`")
    bal.add_argument("--upsample-below", type=int, default=0, help="repeat images of classes with fewer than N")
    bal.add_argument("--max-factor", type=int, default=2, help="at most this many times a class's images (2)")
    bal.add_argument("--copy-paste", type=int, default=0, help="make K object-isolation images")
    bal.add_argument("--jitter", type=float, default=0.0, help="colour jitter amount for new images, e.g. 0.2")
    bal.add_argument("--seed", type=int, default=0, help="random seed")
    bal.set_defaults(handler=cmd_dataset_balance)

    tr = commands.add_parser(
        "train",
        help="fine-tune YOLOv5 n/s/m/l/x on a split, offline, from the pretrained classic checkpoint",
        description=(
            "Fine-tune on a split from `andi-edge dataset split`. By default (--head warm) the classic YOLOv5 "
            "checkpoint is fine-tuned whole, its head re-sized to the dataset's classes and initialised from the "
            "pretrained rows; --head new carries backbone and neck into Ultralytics' YOLOv5u and learns the head. "
            "Both run offline on the CPU with early stopping (patience 5). The run config is saved in "
            "RUN_DIR/run_config.json; "
            "then `andi-edge export RUN_DIR/train/weights/best.pt` makes the ONNX model. At the end the fine-tuned "
            "model is scored against the model it started from on the training locations and on unseen ones "
            "(F1-macro, mAP@0.5) and refused (exit 7) when it is worse on unseen locations. "
            "Needs the [toolchain] extra."
        ),
    )
    tr.add_argument("--data", type=Path, required=True, help="SPLIT_DIR (holds data.yaml)")
    tr.add_argument(
        "--arch",
        dest="model",
        choices=["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"],
        default="yolov5n",
        help="the architecture to train",
    )
    add_renamed(tr, "--arch", "--model")
    tr.add_argument(
        "--weights",
        default=None,
        help="classic checkpoint (default: the --model name, found as `export` finds it: $ANDI_EDGE_MODELS_DIR, "
        "./models, ~/.local/share/andi-edge/models, the checkout's models/)",
    )
    tr.add_argument(
        "--from-scratch",
        action="store_true",
        help="no pretrained weights on this machine: train from the architecture alone (random weights)",
    )
    tr.add_argument("--epochs", type=int, default=50, help="most epochs (early stopping: --patience)")
    tr.add_argument("--imgsz", type=int, default=320, help="input size in pixels, a multiple of 32")
    tr.add_argument("--batch", type=int, default=16, help="photos per training step")
    tr.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (the study used 5)")
    tr.add_argument("--seed", type=int, default=0, help="random seed")
    tr.add_argument(
        "--freeze",
        type=int,
        default=0,
        help="freeze the first N layers (10 = the backbone: the small-data recipe, keeps what COCO taught; default 0)",
    )
    tr.add_argument(
        "--head",
        choices=["warm", "new"],
        default="warm",
        help="warm (default): keep the classic architecture and initialise the new head from the pretrained one "
        "(animal from COCO's animal classes, box and objectness kept); new: Ultralytics' YOLOv5u, head from scratch",
    )
    tr.add_argument(
        "--lr",
        dest="lr0",
        type=float,
        default=0.001,
        help="initial learning rate of the warm head path (default 0.001)",
    )
    add_renamed(tr, "--lr", "--lr0")
    tr.add_argument("--output", "-o", type=Path, required=True, help="RUN_DIR")
    gate = tr.add_argument_group("against the starting model (seen vs unseen locations)")
    gate.add_argument(
        "--max-loss", type=float, default=0.01, help="largest mAP@0.5 loss on unseen locations allowed (default 0.01)"
    )
    gate.add_argument(
        "--allow-worse", action="store_true", help="keep a model worse than its start on unseen locations (exit 0)"
    )
    gate.add_argument("--no-compare", action="store_true", help="skip the comparison (and the gate)")
    tr.set_defaults(handler=cmd_train)

    pr = commands.add_parser(
        "prune",
        help="channel pruning (structured) or gradual magnitude pruning (unstructured), with recovery fine-tuning",
        description=(
            "--method channels (ultralytics checkpoints): remove a fraction of each layer's channels (L2-magnitude "
            "ranking, the head left whole), then fine-tune to recover, keeping the pruned structure. --method gmp "
            "(classic YOLOv5 checkpoints): Neural Magic's gradual magnitude pruning, in plain torch: the smallest "
            "weights of each convolution (the first and the head kept dense) are zeroed on a cubic schedule while "
            "the model fine-tunes, up to --sparsity, then recovery epochs, then --qat-epochs of quantization-aware "
            "training (the forward pass rounds to INT8 as `andi-edge quantize` will). With --eval DATASET "
            "--max-loss, the "
            "pruned model is refused (nothing written) when it loses more mAP@0.5 than allowed. Needs the "
            "[toolchain] extra."
        ),
    )
    pr.add_argument("weights", type=Path, help="a checkpoint, e.g. RUN_DIR/train/weights/best.pt")
    pr.add_argument("--method", choices=("channels", "gmp"), default="channels", help="default: channels")
    pr.add_argument("--ratio", type=float, default=0.5, help="channels: fraction of channels to remove (default 0.5)")
    pr.add_argument(
        "--sparsity", type=float, default=0.8, help="gmp: fraction of the pruned weights set to zero (default 0.8)"
    )
    pr.add_argument(
        "--qat-epochs", type=int, default=0, help="gmp: quantization-aware training epochs after recovery (default 0)"
    )
    pr.add_argument("--data", type=Path, required=True, help="SPLIT_DIR for recovery fine-tuning")
    pr.add_argument("--epochs", type=int, default=10, help="recovery epochs (0: none)")
    pr.add_argument("--imgsz", type=int, default=320, help="input size in pixels for recovery fine-tuning")
    pr.add_argument("--batch", type=int, default=16, help="photos per recovery step")
    pr.add_argument("--output", "-o", type=Path, required=True, help="PRUNED.pt")
    add_gate_options(pr)
    pr.set_defaults(handler=cmd_prune)

    quant = commands.add_parser(
        "quantize",
        help="static INT8 quantization (ONNX Runtime QDQ, per-channel), calibrated on real photos",
        description=(
            "Quantize an fp32 ONNX model to INT8 with ONNX Runtime's static quantizer (QDQ format, per-channel "
            "weights, MinMax calibration). Calibration photos pass through the runtime's own decode and letterbox; "
            "the detection head stays in float. The model card records precision int8 and the calibration set's "
            "sha256. Needs the [toolchain] extra."
        ),
    )
    quant.add_argument(
        "model", type=Path, help="fp32 ONNX model from `andi-edge export` (or a classifier: `classifier export`)"
    )
    quant.add_argument(
        "--calib",
        type=Path,
        required=True,
        help="folder of real camera-trap photos (a classifier: a crops dataset, gated on its val crops)",
    )
    quant.add_argument("--calib-count", type=int, default=64, help="photos used, spread over the folder (default 64)")
    quant.add_argument("--output", "-o", type=Path, default=None, help="default: MODEL-int8.onnx")
    add_gate_options(quant)
    quant.set_defaults(handler=cmd_quantize)

    ev = commands.add_parser(
        "eval",
        help="F1-macro and mAP@0.5, overall and for seen vs unseen locations; loss against a reference model",
        description=(
            "Evaluate an ONNX model on a labelled camera-trap dataset: image-level F1-macro (every class, empty "
            "included, at the card's typical threshold) and mAP@0.5, per-image inference time. With "
            "--split-manifest: the val and test images, split into locations seen in training and unseen ones. "
            "With --reference: mAP@0.5, recall and small-object recall against the reference model's own boxes."
        ),
    )
    ev.add_argument("--model", "-m", type=Path, required=True, help="the ONNX model to score")
    ev.add_argument(
        "--dataset", dest="data", type=Path, required=True, help="COCO Camera Traps JSON, or a YOLO dataset folder"
    )
    add_renamed(ev, "--dataset", "--data")
    ev.add_argument("--images", type=Path, default=None, help="image root for a CCT JSON")
    ev.add_argument("--split-manifest", type=Path, default=None, help="SPLIT_DIR from `andi-edge dataset split`")
    ev.add_argument("--reference", type=Path, default=None, help="reference ONNX model (e.g. the fp32 one)")
    ev.add_argument("--class-map", default=None, help="model -> dataset class names: YAML, or coco-to-megadetector")
    ev.add_argument("--output", "-o", dest="json", type=Path, default=None, help="write the report here (JSON)")
    add_renamed(ev, "--output", "--json")
    ev.set_defaults(handler=cmd_eval)
