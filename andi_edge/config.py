"""Typed settings for detection. Validated once, at construction; no I/O here.

Defaults come from the model card; anything set here overrides the card.
"""

from __future__ import annotations

from dataclasses import dataclass

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
#: The memory one photo's decode may take (MiB): half the service's MemoryMax (1 GiB) less the model and the rest.
DEFAULT_MAX_DECODE_MB = 384
#: how a run uses the cores (andi_edge.pipeline.plan_pipeline): auto, parallel or split
PIPELINE_MODES = ("auto", "parallel", "split")
#: the arithmetic inference may use where the backend offers a choice (OpenVINO on the CPU): f32, or bf16 on
#: CPUs with AMX or AVX512-BF16 (about half the time at 640 px here, the same boxes within noise: README)
INFERENCE_PRECISIONS = ("f32", "bf16")
#: DCT-scaled JPEG decode keeps at least this many decoded pixels per model-input pixel along each side.
DEFAULT_DECODE_OVERSAMPLE = 1.0


@dataclass(frozen=True)
class DetectorSettings:
    """How a detector runs. ``None`` means: take the model card's value."""

    conf_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int = DEFAULT_MAX_DETECTIONS
    class_agnostic_nms: bool = False
    #: use DCT-scaled JPEG decoding when the photo is much larger than the model input (fast path)
    reduced_decode: bool = True
    decode_oversample: float = DEFAULT_DECODE_OVERSAMPLE
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: the memory one photo's decode may take, in MiB (estimated before decoding; see runtime.decode)
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB
    #: report the network's own classes (e.g. COCO's 80) instead of the card's camera-trap categories
    native_classes: bool = False
    #: with categories: also record each box's best native class as a MegaDetector ``classifications`` entry
    native_classifications: bool = False

    def __post_init__(self) -> None:
        for name in ("conf_threshold", "iou_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if not 1 <= self.max_detections <= MAX_DETECTIONS_LIMIT:
            raise ConfigError(f"max_detections must be 1..{MAX_DETECTIONS_LIMIT}, got {self.max_detections}")
        if self.decode_oversample < 1.0:
            raise ConfigError(f"decode_oversample must be at least 1.0, got {self.decode_oversample}")
        if self.max_image_pixels < 1:
            raise ConfigError(f"max_image_pixels must be positive, got {self.max_image_pixels}")
        if self.max_decode_mb < 1:
            raise ConfigError(f"max_decode_mb must be positive, got {self.max_decode_mb}")

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

    #: the classifier's ONNX file (empty: no second stage)
    model: str = ""
    #: its YAML card, for a classifier whose ONNX file carries none (empty: the file's own, or MODEL.yaml beside it)
    card: str = ""
    #: boxes at or above this detector confidence are classified
    min_conf: float = 0.2
    #: detector categories whose boxes are classified (empty = every box)
    classes: tuple[str, ...] = DEFAULT_CLASSIFY_CLASSES
    #: the most boxes of one photo that are classified (the most confident first): a herd stays affordable
    max_crops: int = 20
    #: labels kept per box, best first (MegaDetector's ``classifications``)
    top_k: int = 3
    #: a box, its crop folder and its event are named by the species only at or above this confidence; below it
    #: they keep the detector's category (animal)
    label_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_conf", "label_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"classifier {name} must be between 0 and 1, got {value}")
        if not 1 <= self.max_crops <= MAX_CROPS_LIMIT:
            raise ConfigError(f"classifier max_crops must be 1..{MAX_CROPS_LIMIT}, got {self.max_crops}")
        if self.top_k < 1:
            raise ConfigError(f"classifier top_k must be at least 1, got {self.top_k}")
