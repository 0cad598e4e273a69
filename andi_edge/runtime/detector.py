"""The detector: one photo in, one ``ImageResult`` out, through decode -> letterbox -> backend -> head -> NMS.

``prepare`` (read, decode, letterbox) holds no model state and may run in other threads; ``infer`` runs the
backend and post-processing. ``detect`` does both for one photo and turns a bad photo into a failure result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge.config import DetectorSettings
from andi_edge.detections import Detections, ImageResult, PhotoInfo
from andi_edge.errors import ConfigError, ModelError, ModelNotFoundError, PhotoError
from andi_edge.runtime.backends import Backend, BackendOptions, create_backend
from andi_edge.runtime.categories import CategoryMap, preset_for
from andi_edge.runtime.classifier import Classifier, PhotoPixels
from andi_edge.runtime.classifier_card import CLASSIFIER_CARD_KEY
from andi_edge.runtime.decode import DecodedPhoto, decode_photo, read_photo_bytes
from andi_edge.runtime.heads import decode_head
from andi_edge.runtime.letterbox import LetterboxGeometry, letterbox_tensor
from andi_edge.runtime.model_meta import CategorySpec, ModelCard, card_from_metadata, file_sha256
from andi_edge.runtime.nms import nms_xyxy

log = logging.getLogger(__name__)

#: the least detector.max_decode_mb must leave a photo's decode, beside the input tensor and the crops
MIN_DECODE_BYTES = 16 * 2**20

#: at most this many candidates go into NMS (highest scores kept), as YOLOv5 does
MAX_NMS_CANDIDATES = 30_000
#: a detection narrower or lower than this on the photo (pixels) is dropped: it lay in the letterbox padding
MIN_BOX_PX = 1.0


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo ready for the network: its input tensor, where it sits in the input, and what it is."""

    path: Path
    tensor: npt.NDArray[np.float32]
    geometry: LetterboxGeometry
    info: PhotoInfo
    timings_ms: dict[str, float]
    #: the decoded photo and its bytes, kept when a classifier will cut crops from them
    pixels: PhotoPixels | None = None


class Detector:
    def __init__(
        self,
        model_path: Path,
        settings: DetectorSettings | None = None,
        backend: str | Backend = "ort",
        backend_options: BackendOptions | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        """``classifier``: the second stage, naming the species in the boxes it is set to classify."""
        if not model_path.is_file():
            raise ModelNotFoundError(
                f"model file not found: {model_path}",
                hint="build one with `andi-edge export WEIGHTS.pt -o MODEL.onnx` (or `make model`)",
            )
        self.model_path = model_path
        self.settings = settings or DetectorSettings()
        self.backend_options = backend_options or BackendOptions()
        start = time.perf_counter()
        self._backend = create_backend(backend) if isinstance(backend, str) else backend
        self.loaded = self._backend.load(model_path, self.backend_options)
        self.load_ms = _ms_since(start)
        if CLASSIFIER_CARD_KEY in self.loaded.metadata:
            raise ModelError(
                f"{model_path} is a crop classifier, not a detector",
                hint=f"give a detector as --model and this one as --classifier {model_path}",
            )
        self.card: ModelCard = card_from_metadata(
            self.loaded.metadata, self.loaded.input_shape, self.loaded.output_shapes[0], model_path.stem
        )
        card_thresholds = self.card.thresholds
        s = self.settings
        self.categories = _category_map(self.card, s.native_classes)
        #: the names of ``Detections.class_id``: the card's categories, or the native classes
        self.class_names: tuple[str, ...] = self.categories.names if self.categories else self.card.class_names
        self.classifier = classifier
        if classifier is not None and s.native_classifications:
            raise ConfigError(
                "a classifier and native classifications both fill the boxes' classifications: choose one",
                hint="drop --native-classifications (detector.native_classifications) when running a classifier",
            )
        #: the detector classes whose boxes the classifier names
        self.classified_classes = classifier.eligible_classes(self.class_names) if classifier else frozenset()
        #: the names of ``Detections.classification_id``: the classifier's labels, or the native classes riding
        #: along, when recorded
        self.classification_names: tuple[str, ...] | None = (
            classifier.names
            if classifier is not None
            else (self.card.class_names if self.categories is not None and s.native_classifications else None)
        )
        #: where the classifications come from: "classifier", "native classes", or None
        self.classification_source: str | None = (
            "classifier" if classifier is not None else ("native classes" if self.classification_names else None)
        )
        #: what a photo holds beside its decode: the model's input tensor (a rectangular model's at its largest)
        #: and one chunk of classifier crops; they count against detector.max_decode_mb (``decode_budget_bytes``)
        _, channels, height, width = self.largest_input_shape
        tensor_bytes = 4 * channels * height * width
        self.stage_bytes = tensor_bytes + (classifier.chunk_bytes if classifier is not None else 0)
        if s.max_decode_bytes - self.stage_bytes < MIN_DECODE_BYTES:
            raise ConfigError(
                f"detector.max_decode_mb {s.max_decode_mb} leaves a photo's decode too little once the model's input "
                f"and a chunk of crops ({-(-self.stage_bytes // 2**20)} MiB) are counted",
                hint=f"raise detector.max_decode_mb to at least {-(-(self.stage_bytes + MIN_DECODE_BYTES) // 2**20)}",
            )
        self.conf_threshold = s.conf_threshold if s.conf_threshold is not None else card_thresholds.conf
        self.iou_threshold = s.iou_threshold if s.iou_threshold is not None else card_thresholds.iou
        log.info(
            "loaded %s (%s head, %dx%d, %d classes -> %s) on %s %s [%s] in %.0f ms",
            model_path.name,
            self.card.head,
            self.card.input_width,
            self.card.input_height,
            self.card.num_classes,
            "/".join(self.class_names) if self.categories else "native classes",
            self.loaded.backend,
            self.loaded.backend_version,
            ",".join(self.loaded.execution_providers),
            self.load_ms,
        )

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def decode_budget_bytes(self) -> int:
        """What one photo's decode may take: detector.max_decode_mb less the input tensor and the crops."""
        return self.settings.max_decode_bytes - self.stage_bytes

    @cached_property
    def model_sha256(self) -> str:
        return file_sha256(self.model_path)

    def provenance(self) -> dict[str, Any]:
        """What produced a result: recorded in every output so a result can be traced to its model and settings."""
        return {
            "model_name": self.card.name,
            "model_file": self.model_path.name,
            "model_sha256": self.model_sha256,
            "head": self.card.head,
            "input_size": [self.card.input_height, self.card.input_width],
            "backend": self.loaded.backend,
            "backend_version": self.loaded.backend_version,
            "execution_providers": list(self.loaded.execution_providers),
            "conf_threshold": self.conf_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections": self.settings.max_detections,
            "reduced_decode": self.reduced_decode,
            "categories": self.categories_provenance(),
            "classifications": self.classification_source,
            "classifier": None if self.classifier is None else self.classifier.provenance(),
        }

    @property
    def reduced_decode(self) -> bool:
        """Whether large photos are decoded at a reduced DCT scale: as the run says, else as the model card's
        publisher decodes (MegaDetector v5: in full), else reduced."""
        if self.settings.reduced_decode is not None:
            return self.settings.reduced_decode
        return self.card.decode != "full"

    def categories_provenance(self) -> dict[str, Any]:
        """How the reported classes relate to the network's: recorded with every result."""
        if self.categories is None:
            return {"mapping": "native", "native_classes": len(self.card.class_names)}
        spec = self.categories.spec
        return {
            "mapping": spec.preset or "model card",
            "combine": spec.combine,
            "native_classes": len(self.card.class_names),
            "members": {name: list(members) for name, members in zip(spec.names, spec.members, strict=True)},
        }

    # -- stages ---------------------------------------------------------------------------------------------

    @property
    def largest_input_shape(self) -> tuple[int, int, int, int]:
        """The largest NCHW tensor a photo becomes: a rectangular model's is the square of its long side."""
        card = self.card
        if card.rect:
            side = max(card.input_width, card.input_height)
            return (1, 3, side, side)
        return (1, 3, card.input_height, card.input_width)

    def geometry_for(self, photo_w: int, photo_h: int) -> LetterboxGeometry:
        """How a photo of this upright size is fed to the model: letterboxed to the square input, to its own
        rectangle (``card.rect``), or stretched to the input (``card.stretched``: RT-DETR)."""
        card = self.card
        if card.stretched:
            return LetterboxGeometry.stretch(photo_w, photo_h, card.input_width, card.input_height)
        if card.rect:
            return LetterboxGeometry.fit_rect(photo_w, photo_h, max(card.input_width, card.input_height), card.stride)
        return LetterboxGeometry.fit(photo_w, photo_h, card.input_width, card.input_height)

    def prepare(self, path: Path) -> PreparedPhoto:
        """Read, decode and letterbox one photo. Raises PhotoError for a bad photo."""
        start = time.perf_counter()
        data = read_photo_bytes(path, self.settings.max_decode_bytes)
        read_ms = _ms_since(start)
        return self.prepare_bytes(data, path, read_ms=read_ms)

    def prepare_bytes(self, data: bytes, path: Path, read_ms: float = 0.0) -> PreparedPhoto:
        card = self.card
        start = time.perf_counter()
        target = max(card.input_width, card.input_height) if self.reduced_decode else None
        decoded = decode_photo(
            data,
            target_long_side_px=target,
            max_image_pixels=self.settings.max_image_pixels,
            oversample=self.settings.decode_oversample,
            name=str(path),
            max_decode_bytes=self.decode_budget_bytes,
        )
        decode_ms = _ms_since(start)
        start = time.perf_counter()
        geometry = self.geometry_for(decoded.info.width_px, decoded.info.height_px)
        tensor = letterbox_tensor(decoded.rgb, geometry)
        letterbox_ms = _ms_since(start)
        pixels = None
        if self.classifier is not None:
            settings = self.settings
            pixels = PhotoPixels(decoded, data, str(path), settings.max_image_pixels, self.decode_budget_bytes)
        return PreparedPhoto(
            path=path,
            tensor=tensor,
            geometry=geometry,
            info=decoded.info,
            timings_ms={"read": read_ms, "decode": decode_ms, "letterbox": letterbox_ms},
            pixels=pixels,
        )

    def prepare_frame(
        self, rgb: npt.NDArray[np.uint8], info: PhotoInfo, path: Path, decode_ms: float = 0.0
    ) -> PreparedPhoto:
        """A decoded video frame (upright RGB, possibly scaled down from ``info``'s size) ready for the network:
        letterboxed from the full size, as a photo decoded at a reduced DCT scale is, so its boxes come out in the
        full frame's pixels; a classifier's crops are cut from the frame as decoded."""
        start = time.perf_counter()
        geometry = self.geometry_for(info.width_px, info.height_px)
        tensor = letterbox_tensor(rgb, geometry)
        pixels = None
        if self.classifier is not None:  # crops cut from the frame as decoded (there are no bytes to decode again)
            decoded = DecodedPhoto(rgb, info)
            pixels = PhotoPixels(decoded, b"", str(path), self.settings.max_image_pixels, self.decode_budget_bytes)
        return PreparedPhoto(
            path=path,
            tensor=tensor,
            geometry=geometry,
            info=info,
            timings_ms={"read": 0.0, "decode": decode_ms, "letterbox": _ms_since(start)},
            pixels=pixels,
        )

    def infer(self, prepared: PreparedPhoto) -> ImageResult:
        start = time.perf_counter()
        raw = self._backend.run(prepared.tensor)
        inference_ms = _ms_since(start)
        start = time.perf_counter()
        detections = self.postprocess(raw, prepared.geometry)
        post_ms = _ms_since(start)
        timings = dict(prepared.timings_ms, inference=inference_ms, postprocess=post_ms)
        if self.classifier is not None and prepared.pixels is not None:
            start = time.perf_counter()
            detections = self.classifier.classify(prepared.pixels, detections, self.classified_classes)
            redecode_ms = prepared.pixels.redecode_ms
            if prepared.pixels.redecoded:
                timings["crop_decode"] = redecode_ms
            timings["classify"] = _ms_since(start) - redecode_ms
        return ImageResult(path=prepared.path, detections=detections, photo=prepared.info, timings_ms=timings)

    def postprocess(self, raw_output: npt.NDArray[np.float32], geometry: LetterboxGeometry) -> Detections:
        """Raw network output -> final detections in original photo pixels."""
        card = self.card
        candidates = decode_head(
            raw_output,
            card.head,
            card.num_classes,
            self.conf_threshold,
            self.categories,
            input_hw=(geometry.input_h, geometry.input_w),
        )
        candidates = candidates.top(MAX_NMS_CANDIDATES)
        if candidates.one_per_object:
            keep = np.argsort(-candidates.scores, kind="stable")[: self.settings.max_detections]
        else:
            keep = nms_xyxy(
                candidates.xyxy_input_px,
                candidates.scores,
                self.iou_threshold,
                class_ids=None if self.settings.class_agnostic_nms else candidates.class_ids,
                max_keep=self.settings.max_detections,
            )
        kept = candidates.select(keep)
        xyxy_px = geometry.to_photo_xyxy(kept.xyxy_input_px)
        # a box wholly in the letterbox padding clips to less than a pixel of the photo: nothing to see, and no
        # box a reviewer or a matcher can use
        visible = ((xyxy_px[:, 2] - xyxy_px[:, 0]) >= MIN_BOX_PX) & ((xyxy_px[:, 3] - xyxy_px[:, 1]) >= MIN_BOX_PX)
        if not visible.all():
            kept, xyxy_px = kept.select(visible), xyxy_px[visible]
        native_ids, native_scores = kept.native_class_ids, kept.native_scores
        if self.classification_source != "native classes" or native_ids is None or native_scores is None:
            native_ids = native_scores = None
        return Detections(
            xyxy_px=xyxy_px,
            confidence=kept.scores,
            class_id=kept.class_ids,
            classification_id=None if native_ids is None else native_ids.reshape(-1, 1),
            classification_conf=None if native_scores is None else native_scores.reshape(-1, 1),
        )

    def detect(self, path: Path) -> ImageResult:
        """Detect on one photo; a photo that cannot be read becomes a failure result, never an exception."""
        try:
            prepared = self.prepare(path)
        except PhotoError as exc:
            log.warning("%s", exc.message)
            return ImageResult(path=path, failure=f"{exc.reason}: {exc.message}")
        return self.infer(prepared)


def _category_map(card: ModelCard, native: bool) -> CategoryMap | None:
    """The card's categories, else the camera-trap preset for its classes (COCO); None for native classes."""
    if native:
        return None
    spec = card.categories if card.categories is not None else preset_for(card.class_names)
    if spec is None or _is_identity(spec, card.class_names):
        return None
    return CategoryMap.resolve(spec, card.class_names)


def _is_identity(spec: CategorySpec, class_names: tuple[str, ...]) -> bool:
    """A card that names the native classes as its categories (``export --classes native``)."""
    return spec.names == class_names and spec.members == tuple((n,) for n in class_names)
