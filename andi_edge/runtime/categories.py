"""Output categories: what a detector's native classes mean on a camera trap.

A general detector (COCO) splits one owl between ``bird``, ``sheep`` and ``cow``. Relabelling the single best
class after NMS keeps only one of those weak votes; here the *probabilities* of the native classes that fall into
one category are combined before NMS, so the owl scores as one ``animal``:

- ``noisy_or``: ``1 - prod(1 - p_i)``, the chance that at least one member class is right, treating the member
  classes' sigmoid outputs as independent (they are: YOLO's class heads are per-class sigmoids);
- ``clipped_sum``: ``min(1, sum p_i)``.

Native classes in no category (COCO's household objects, say) are dropped. The mapping is data: it is carried in
the model card (``ModelCard.categories``); this module holds the MegaDetector preset for COCO models and the
arithmetic. ``DetectorSettings.native_classes`` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from andi_edge.errors import ModelError
from andi_edge.runtime.model_meta import CategorySpec

#: MegaDetector's categories, in its id order ("1" animal, "2" person, "3" vehicle in the batch format).
MEGADETECTOR_CATEGORIES = ("animal", "person", "vehicle")
COCO_TO_MEGADETECTOR = "coco-to-megadetector"

#: COCO 2017's 80 detection classes in YOLO's index order (the order every COCO-trained YOLO reports).
COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
#: COCO's animal classes. COCO's "mouse" is a computer mouse (supercategory electronic), so it is not here.
COCO_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
#: Road vehicles. Airplane, train and boat are left out: on a trail camera they are mostly false alarms on logs,
#: rocks and fences, and MegaDetector's own "vehicle" is trained on road vehicles.
COCO_VEHICLES = ("bicycle", "car", "motorcycle", "bus", "truck")


def coco_to_megadetector() -> CategorySpec:
    return CategorySpec(
        names=MEGADETECTOR_CATEGORIES,
        members=(COCO_ANIMALS, ("person",), COCO_VEHICLES),
        combine="noisy_or",
        preset=COCO_TO_MEGADETECTOR,
    )


def preset_for(class_names: tuple[str, ...]) -> CategorySpec | None:
    """The camera-trap mapping a model with these native classes gets by default (None: report them as they are)."""
    if tuple(n.strip().lower() for n in class_names) == COCO_CLASS_NAMES:
        return coco_to_megadetector()
    return None


@dataclass(frozen=True)
class CategoryMap:
    """A ``CategorySpec`` resolved against a model's native classes, ready for arithmetic."""

    spec: CategorySpec
    #: (native classes, categories) 0/1 membership
    membership: npt.NDArray[np.float32]
    #: per native class, its category index, or -1 when dropped
    category_of_native: npt.NDArray[np.int64]

    @classmethod
    def resolve(cls, spec: CategorySpec, native_names: tuple[str, ...]) -> CategoryMap:
        index = {name: i for i, name in enumerate(native_names)}
        membership = np.zeros((len(native_names), len(spec.names)), dtype=np.float32)
        category_of = np.full(len(native_names), -1, dtype=np.int64)
        for k, members in enumerate(spec.members):
            for member in members:
                if member not in index:
                    raise ModelError(
                        f"model card: category {spec.names[k]!r} lists {member!r}, which is not one of the model's "
                        f"{len(native_names)} classes",
                        hint="fix the card's categories, or run with --native-classes",
                    )
                i = index[member]
                if category_of[i] != -1:
                    raise ModelError(
                        f"model card: class {member!r} is in two categories "
                        f"({spec.names[int(category_of[i])]!r} and {spec.names[k]!r})"
                    )
                membership[i, k] = 1.0
                category_of[i] = k
        return cls(spec, membership, category_of)

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    def upper_bound(self, native_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per row, an upper bound of every category's combined probability (the plain sum): a cheap pre-filter."""
        bound: npt.NDArray[np.float32] = (native_probs @ self.membership).astype(np.float32)
        return bound

    def combine(self, native_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(N, native classes) probabilities -> (N, categories) probabilities."""
        combined: npt.NDArray[np.float32]
        if self.spec.combine == "clipped_sum":
            combined = np.clip(native_probs @ self.membership, 0.0, 1.0).astype(np.float32)
        else:
            # noisy-or in log space: one matrix product instead of a loop over categories
            log_miss = np.log1p(-np.clip(native_probs, 0.0, 1.0 - 1e-7)) @ self.membership
            combined = (-np.expm1(log_miss)).astype(np.float32)
        return combined

    def best_member(
        self, native_probs: npt.NDArray[np.float32], category_ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Per row, the native class with the highest probability inside the row's category, and that probability."""
        masked = native_probs * self.membership[:, category_ids].T
        native = masked.argmax(axis=1).astype(np.int64)
        return native, masked[np.arange(len(native)), native].astype(np.float32)
