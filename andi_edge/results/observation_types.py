"""Which Camtrap DP ``observationType`` a detector class is: animal, human, vehicle, blank or unknown.

MegaDetector's classes (animal, person, vehicle) and the classes of models trained on camera-trap data (species
names, "empty") map by name; a COCO model's household objects (chair, umbrella...) are ``unknown``. A deployment
config can override any class.
"""

from __future__ import annotations

from collections.abc import Mapping

OBSERVATION_TYPES = ("animal", "human", "vehicle", "blank", "unknown", "unclassified")

_HUMAN = {"person", "people", "human", "humans", "hunter", "researcher"}
_VEHICLE = {"vehicle", "car", "truck", "bus", "motorcycle", "motorbike", "bicycle", "train", "boat", "airplane"}
_BLANK = {"empty", "blank", "none", "nothing"}
#: COCO's classes that are neither animals, people nor vehicles ("mouse" left out: on a trail camera it is a rodent)
_COCO_OBJECTS = {
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "backpack", "umbrella", "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
}  # fmt: skip


def observation_type(class_name: str, overrides: Mapping[str, str] | None = None) -> str:
    if overrides and class_name in overrides:
        return overrides[class_name]
    name = class_name.strip().lower()
    if name in _HUMAN:
        return "human"
    if name in _VEHICLE:
        return "vehicle"
    if name in _BLANK:
        return "blank"
    if name in _COCO_OBJECTS:
        return "unknown"
    return "animal"
