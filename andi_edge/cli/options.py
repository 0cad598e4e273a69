"""Options and objects several commands share: inference options, detector settings, the accuracy gate."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi_edge.config import INFERENCE_PRECISIONS

if TYPE_CHECKING:  # types only: the heavy modules load inside the commands that need them
    from andi_edge.config import ClassifierSettings, DetectorSettings
    from andi_edge.pipeline import PipelinePlan
    from andi_edge.runtime.detector import Detector
    from andi_edge.toolchain.gate import Gate

EXIT_OK = 0


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default (unless it says one already, or has none worth saying)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or not action.option_strings
            or default in (None, False, argparse.SUPPRESS, [], ())
        ):
            return text
        return f"{text} (default: %(default)s)"


class _RenamedOption(argparse.Action):
    """An option's old name, still accepted for a release: it says so and stores into the new option's place."""

    def __init__(self, option_strings: list[str], dest: str, new_name: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_name = new_name

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"andi-edge: warning: {option_string} is now {self.new_name}; the old name goes in a later release",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_renamed(parser: argparse.ArgumentParser, new: str, *old: str) -> None:
    """Accept the ``old`` names (not shown in --help) of the option already added as ``new``."""
    action = next(a for a in parser._actions if new in a.option_strings)
    extra: dict[str, Any] = {"type": action.type} if action.type is not None else {}
    parser.add_argument(
        *old,
        dest=action.dest,
        action=_RenamedOption,
        new_name=new,
        metavar=action.metavar,
        help=argparse.SUPPRESS,
        **extra,
    )


log = logging.getLogger("andi_edge")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference")
    group.add_argument("--model", "-m", type=Path, required=True, help="ONNX model (from `andi-edge export`)")
    group.add_argument(
        "--backend", default="ort", help="inference backend: ort (ONNX Runtime, default) or openvino (optional extra)"
    )
    group.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="EP",
        help="ONNX Runtime execution provider to try first, e.g. CUDAExecutionProvider "
        "(repeatable; CPU is always the fallback)",
    )
    group.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="f32",
        help="inference arithmetic: f32 (default) or bf16 (OpenVINO on a CPU with AMX/AVX512-BF16: about half "
        "the time at 640 px, the same boxes within noise)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=0,
        help="inference threads per inference (default 0: 1 in parallel mode, else the cores the decode workers leave)",
    )
    group.add_argument(
        "--conf",
        type=float,
        default=None,
        help="keep boxes at or above this confidence (default: the model card's, 0.005)",
    )
    group.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: the model card's, 0.45)")
    group.add_argument("--max-det", type=int, default=100, help="at most this many boxes per photo (default: 100)")
    group.add_argument(
        "--full-decode",
        action="store_true",
        help="decode every JPEG at full resolution (slower; the fast path uses DCT-scaled decoding)",
    )
    group.add_argument(
        "--pipeline",
        choices=("auto", "parallel", "split"),
        default="auto",
        help="parallel: several photos decoded and inferred at once, one inference thread each (the most photos/s "
        "on CPUs); split: decoding ahead of one inference at a time; auto (default): parallel where ONNX Runtime "
        "runs on the CPU",
    )
    group.add_argument(
        "--pipeline-workers",
        type=int,
        default=0,
        help="parallel: photos in the works at once (default 0 = one per core this run may use)",
    )
    group.add_argument(
        "--decode-workers", type=int, default=1, help="split: threads decoding ahead of inference (default: 1)"
    )
    add_category_options(group, default=False)
    add_classifier_options(parser)


def add_classifier_options(parser: argparse.ArgumentParser) -> None:
    """The second stage: a crop classifier that names the species in the detector's boxes."""
    group = parser.add_argument_group("species classifier (second stage)")
    group.add_argument(
        "--classifier",
        type=Path,
        default=None,
        metavar="CLS.onnx",
        help="classify the detector's boxes with this ONNX crop classifier (from `andi-edge classifier export`, "
        "or your own with a YAML card)",
    )
    group.add_argument(
        "--classifier-card",
        type=Path,
        default=None,
        metavar="CARD.yaml",
        help="the card of a classifier whose ONNX file has none: labels, input_size, normalisation "
        "(default: CLS.yaml beside it)",
    )
    # the flags are the config's classifier keys (classifier.min_conf -> --classifier-min-conf)
    group.add_argument(
        "--classifier-min-conf",
        dest="classify_conf",
        metavar="CONF",
        type=float,
        default=None,
        help="classify boxes at or above this detector confidence (default 0.2)",
    )
    group.add_argument(
        "--classifier-classes",
        dest="classify_classes",
        default=None,
        metavar="A,B",
        help="detector classes whose boxes are classified (default: animal; 'all' for every box)",
    )
    group.add_argument(
        "--classifier-top-k",
        dest="classify_top_k",
        metavar="K",
        type=int,
        default=None,
        help="labels kept per box, best first (default 3)",
    )
    group.add_argument(
        "--classifier-label-threshold",
        dest="species_threshold",
        metavar="CONF",
        type=float,
        default=None,
        help="a species names a box, its crop folder and its event at or above this confidence (default 0.5)",
    )
    add_renamed(parser, "--classifier-min-conf", "--classify-conf")
    add_renamed(parser, "--classifier-classes", "--classify-classes")
    add_renamed(parser, "--classifier-top-k", "--classify-top-k")
    add_renamed(parser, "--classifier-label-threshold", "--species-threshold")


def classifier_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The classifier options given on the command line, as ``ClassifierSettings`` fields."""
    classes = getattr(args, "classify_classes", None)
    values = {
        "model": str(args.classifier) if getattr(args, "classifier", None) else None,
        "card": str(args.classifier_card) if getattr(args, "classifier_card", None) else None,
        "min_conf": getattr(args, "classify_conf", None),
        "top_k": getattr(args, "classify_top_k", None),
        "label_threshold": getattr(args, "species_threshold", None),
        "classes": None if classes is None else class_list(classes),
    }
    return {k: v for k, v in values.items() if v is not None}


def class_list(text: str) -> tuple[str, ...]:
    """Detector classes named on a command line: ``A,B``, or ``all`` (every class: an empty tuple)."""
    if text.strip().lower() == "all":
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


def classifier_settings(args: argparse.Namespace) -> ClassifierSettings:
    from andi_edge.config import ClassifierSettings

    return ClassifierSettings(**classifier_overrides(args))


def add_category_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: bool | None) -> None:
    """What the output calls a box: the card's camera-trap categories, or the network's own classes."""
    parser.add_argument(
        "--native-classes",
        action="store_const",
        const=True,
        default=default,
        help="report the network's own classes (e.g. COCO's 80) instead of the model card's camera-trap "
        "categories (animal, person, vehicle)",
    )
    parser.add_argument(
        "--native-classifications",
        action="store_const",
        const=True,
        default=default,
        help="with categories: also record each box's best native class (e.g. bird) as a MegaDetector "
        "per-detection classification",
    )


def detector_settings(args: argparse.Namespace) -> DetectorSettings:
    from andi_edge.config import DetectorSettings

    return DetectorSettings(
        conf_threshold=args.conf,
        iou_threshold=args.iou,
        max_detections=args.max_det,
        reduced_decode=not args.full_decode,
        native_classes=args.native_classes,
        native_classifications=args.native_classifications,
    )


def pipeline_plan(args: argparse.Namespace) -> PipelinePlan:
    from andi_edge.pipeline import PipelineSettings, plan_pipeline

    settings = PipelineSettings(decode_workers=args.decode_workers, mode=args.pipeline, workers=args.pipeline_workers)
    return plan_pipeline(settings, args.threads, tuple(args.provider), args.backend, precision=args.precision)


def build_detector(args: argparse.Namespace, plan: PipelinePlan | None = None) -> Detector:
    """The detector (and its classifier, when asked for), its backend threaded for ``plan`` (``pipeline_plan(args)``
    when not given)."""
    from andi_edge.runtime.classifier import load_classifier
    from andi_edge.runtime.detector import Detector

    plan = plan or pipeline_plan(args)
    log.debug("pipeline %s", plan.describe())
    classifier = load_classifier(classifier_settings(args), plan.backend)
    return Detector(
        args.model,
        settings=detector_settings(args),
        backend=args.backend,
        backend_options=plan.backend,
        classifier=classifier,
    )


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    gate = parser.add_argument_group("accuracy gate (refuse the compressed model, write nothing)")
    gate.add_argument("--eval", type=Path, default=None, help="a labelled dataset (CCT JSON or YOLO folder)")
    gate.add_argument("--images", type=Path, default=None, help="the CCT dataset's image root")
    gate.add_argument("--max-loss", type=float, default=0.01, help="largest mAP@0.5 loss allowed (default 0.01)")
    gate.add_argument("--class-map", default=None, help="model -> dataset class names: YAML or a built-in map")


def gate_from_args(args: argparse.Namespace) -> Gate | None:
    if args.eval is None:
        return None
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map
    from andi_edge.toolchain.gate import Gate

    return Gate(load_dataset(args.eval, args.images), args.max_loss, load_class_map(args.class_map))
