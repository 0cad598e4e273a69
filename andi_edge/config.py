"""Typed settings for running a detector: the detector, its classifier, the backend and the pipeline. Each setting is
declared once (``andi_edge.declare``): the config keys, the command-line flags of `detect`, `batch`, `bench`,
`watch` and `check`, the checks and the docs' config reference come from these classes. Validated at construction;
no I/O here. Where a detector setting is None, the model card's value holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from andi_edge.declare import check, setting
from andi_edge.errors import ConfigError

#: MegaDetector's batch default: keep very low-confidence boxes, consumers choose their own threshold.
DEFAULT_CONF_THRESHOLD = 0.005
DEFAULT_IOU_THRESHOLD = 0.45
DEFAULT_MAX_DETECTIONS = 100
#: bounds on what a config may ask for: each box costs NMS time, a batch entry and, classified, a crop
MAX_DETECTIONS_LIMIT = 1000
MAX_CROPS_LIMIT = 200
#: The largest photo we decode (pixels). Trail cameras reach ~40 MP; a bigger "photo" is most likely a
#: decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 120_000_000
#: The memory one photo's decode may take (MiB); under a memory limit, lowered at start to each photo's share of three
#: quarters of it (the units' MemoryHigh) less the model's measured footprint (andi_edge/daemon/memory.py).
DEFAULT_MAX_DECODE_MB = 384
#: how a run uses the cores (andi_edge.pipeline.plan_pipeline): auto, parallel or split
PIPELINE_MODES = ("auto", "parallel", "split")
#: the arithmetic inference may use where the backend offers a choice (OpenVINO on the CPU): f32, or bf16 on
#: CPUs with AMX or AVX512-BF16 (about half the time at 640 px, the same boxes within noise: docs/benchmarks.md)
INFERENCE_PRECISIONS = ("f32", "bf16")
#: DCT-scaled JPEG decode keeps at least this many decoded pixels per model-input pixel along each side.
DEFAULT_DECODE_OVERSAMPLE = 1.0


@dataclass(frozen=True)
class DetectorSettings:
    """How a detector runs. ``None`` means: take the model card's value."""

    conf_threshold: float | None = setting(
        None,
        "keep boxes at or above this confidence (MegaDetector's batch default keeps weak ones: reviewers choose "
        "their own threshold)",
        min=0,
        max=1,
        flag="--conf",
        none_means="the model card's (0.005)",
    )
    iou_threshold: float | None = setting(
        None,
        "non-maximum suppression: a box overlapping a more confident one of its class this much (IoU) is dropped",
        min=0,
        max=1,
        flag="--iou",
        none_means="the model card's (0.45)",
    )
    max_detections: int = setting(
        DEFAULT_MAX_DETECTIONS,
        "at most this many boxes per photo, the most confident",
        min=1,
        max=MAX_DETECTIONS_LIMIT,
        flag="--max-det",
    )
    class_agnostic_nms: bool = setting(
        False,
        "non-maximum suppression across classes: of two overlapping boxes of different classes only the more "
        "confident is kept",
        flag="--agnostic-nms",
        flag_style="on",
    )
    reduced_decode: bool | None = setting(
        None,
        "decode a JPEG much larger than the model input at a reduced DCT scale (fast); the flag turns it off: every "
        "photo decoded in full (slower), as MegaDetector's own pipeline does",
        flag="--full-decode",
        flag_style="off",
        none_means="reduced, unless the model card asks for a full decode (MegaDetector v5 exported by name)",
    )
    decode_oversample: float = setting(
        DEFAULT_DECODE_OVERSAMPLE,
        "a reduced decode keeps at least this many decoded pixels per model-input pixel along each side",
        min=1,
    )
    max_image_pixels: int = setting(
        DEFAULT_MAX_IMAGE_PIXELS,
        "the largest photo decoded, in pixels (trail cameras reach about 40 MP; larger is a decompression bomb)",
        min=1,
    )
    max_decode_mb: int = setting(
        DEFAULT_MAX_DECODE_MB,
        "the memory one photo's decode may take, in MiB (estimated before decoding, and fitted to the service's "
        "MemoryMax when it has one); a file larger than this is not read",
        min=1,
    )
    native_classes: bool = setting(
        False,
        "report the network's own classes (e.g. COCO's 80) instead of the model card's camera-trap categories "
        "(animal, person, vehicle)",
        flag="--native-classes",
        flag_style="on",
    )
    native_classifications: bool = setting(
        False,
        "with categories: also record each box's best native class (e.g. bird) as a MegaDetector per-detection "
        "classification",
        flag="--native-classifications",
        flag_style="on",
    )

    def __post_init__(self) -> None:
        check(self, "detector")

    @property
    def max_decode_bytes(self) -> int:
        return self.max_decode_mb * 2**20


#: the torchvision architectures `andi-edge classifier train` builds: the study's three, then two sized for a device
CLASSIFIER_ARCHITECTURES = ("resnext50_32x4d", "alexnet", "vgg19", "mobilenet_v3_small", "efficientnet_b0")
#: where a classifier's starting weights come from: ImageNet's when on this machine (auto), required, or none
PRETRAINED_MODES = ("auto", "required", "none")
#: the detector categories a classifier names by default: species classifiers are trained on animals
DEFAULT_CLASSIFY_CLASSES = ("animal",)


@dataclass(frozen=True)
class ClassifierSettings:
    """How the second stage runs: which boxes it classifies, how many labels it keeps, when a label names a box."""

    model: str = setting(
        "",
        "the species classifier's ONNX file, run on the detector's boxes (from `andi-edge classifier export`, or "
        "your own with a YAML card); empty: no second stage",
        flag="--classifier",
        metavar="CLS.onnx",
    )
    card: str = setting(
        "",
        "the YAML card of a classifier whose ONNX file has none: labels, input_size, normalisation (empty: the "
        "file's own, or CLS.yaml beside it)",
        flag="--classifier-card",
        metavar="CARD.yaml",
    )
    min_conf: float = setting(
        0.2,
        "boxes at or above this detector confidence are classified",
        min=0,
        max=1,
        flag="--classifier-min-conf",
        metavar="CONF",
    )
    classes: tuple[str, ...] = setting(
        DEFAULT_CLASSIFY_CLASSES,
        "detector categories whose boxes are classified (flag: A,B or 'all'; config: a list, empty for every box)",
        flag="--classifier-classes",
        flag_style="list",
        metavar="A,B",
    )
    max_crops: int = setting(
        20,
        "the most boxes of one photo that are classified, the most confident first (a herd stays affordable)",
        min=1,
        max=MAX_CROPS_LIMIT,
    )
    top_k: int = setting(
        3,
        "labels kept per box, best first (MegaDetector's classifications)",
        min=1,
        flag="--classifier-top-k",
        metavar="K",
    )
    label_threshold: float = setting(
        0.5,
        "a species names a box, its crop folder and its event at or above this confidence; below it they keep the "
        "detector's category (animal)",
        min=0,
        max=1,
        flag="--classifier-label-threshold",
        metavar="CONF",
    )

    def __post_init__(self) -> None:
        check(self, "classifier")


@dataclass(frozen=True)
class BackendSettings:
    """Which inference engine runs the model, where, with how many threads."""

    name: str = setting(
        "ort", "inference backend: ort (ONNX Runtime) or openvino (the optional extra)", flag="--backend"
    )
    threads: int = setting(
        0,
        "inference threads per inference (0: 1 in parallel mode, else the cores the decode workers leave)",
        min=0,
        flag="--threads",
    )
    providers: tuple[str, ...] = setting(
        (),
        "ONNX Runtime execution providers to try first, e.g. CUDAExecutionProvider (the flag repeats; the CPU is "
        "always the fallback)",
        flag="--provider",
        flag_style="append",
        metavar="EP",
    )
    prefer_int8: bool = setting(
        False, "run MODEL-int8.onnx beside the model when its card says it passed the accuracy gate"
    )
    precision: str = setting(
        "f32",
        "inference arithmetic: f32, or bf16 (OpenVINO on a CPU with AMX or AVX512-BF16: about half the time at "
        "640 px, the same boxes within noise)",
        choices=INFERENCE_PRECISIONS,
        flag="--precision",
    )

    def __post_init__(self) -> None:
        check(self, "backend")
        if self.precision != "f32" and self.name != "openvino":
            raise ConfigError(
                f"backend.precision {self.precision} needs backend.name: openvino (ONNX Runtime's CPU kernels are f32)"
            )


@dataclass(frozen=True)
class PipelineSettings:
    """How a run uses the cores; ``pipeline.plan_pipeline`` resolves it for the backend."""

    mode: str = setting(
        "auto",
        "parallel: several photos decoded and inferred at once, one inference thread each (the most photos/s on "
        "CPUs); split: decoding ahead of one inference at a time; auto: parallel where the inference runs on the CPU",
        choices=PIPELINE_MODES,
        flag="--pipeline",
    )
    workers: int = setting(
        0,
        "parallel: photos in the works at once (0: one per core this run may use)",
        min=0,
        flag="--pipeline-workers",
    )
    decode_workers: int = setting(
        1,
        "split: threads decoding ahead of inference (0: decoding in the inference thread)",
        min=0,
        flag="--decode-workers",
    )
    max_in_flight: int = setting(4, "photos decoded ahead of inference at most (bounds memory)", min=1)
    #: set by ``plan_pipeline``, never by a user: the workers also infer
    parallel: bool = False

    def __post_init__(self) -> None:
        check(self, "pipeline")


#: which files a run processes: photos and clips, photos only, or clips only
MEDIA_KINDS = ("all", "photos", "videos")


@dataclass(frozen=True)
class VideoSettings:
    """How a clip is sampled: frames by time (or every Nth), each detected as a photo is."""

    sample_fps: float = setting(
        1.0,
        "frames analysed per second of video (each one detected as a photo is)",
        above=0,
        max=120,
        flag="--sample-fps",
    )
    every_nth_frame: int = setting(
        0,
        "analyse every Nth decoded frame instead of sampling by time (0: by time, sample_fps)",
        min=0,
        flag="--every-nth-frame",
        metavar="N",
    )
    max_frames: int = setting(
        600,
        "the most frames analysed in one clip (a 10-hour clip cannot run for days): the first ones sampled",
        min=1,
        max=100_000,
        flag="--max-frames",
        metavar="N",
    )
    all_frames: bool = setting(
        False,
        "the batch file keeps every analysed frame's boxes; by default a clip keeps its most confident detection "
        "of each category (MegaDetector's video convention); sidecars always hold every frame",
        flag="--all-frames",
        flag_style="on",
    )
    decode_timeout_s: float = setting(
        600.0,
        "a clip whose decoding takes longer is given up on with a reason (its decoder process is stopped)",
        above=0,
    )
    max_long_side_px: int = setting(
        1280,
        "frames are decoded at most this large along their long side (never larger than the clip): enough for the "
        "detector and for crops, and a 4K clip's frames stay small in memory",
        min=64,
        max=8192,
    )

    def __post_init__(self) -> None:
        check(self, "video")
