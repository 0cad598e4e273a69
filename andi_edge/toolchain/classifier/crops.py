"""``andi-edge classifier dataset``: labelled crops for a species classifier, split by location.

Two ways in:

- a **boxes dataset** (COCO Camera Traps JSON or a YOLO folder): each box with its category is a crop;
- **photos with image-level labels** (a CSV ``file,label[,location]`` or one folder per label) and a detector:
  the detector's boxes (at or above a confidence, of the classes asked for) take their photo's label. Photos
  labelled empty give the detector's false positives as crops of the background class, which is what a
  classifier must learn to say "nothing here" to.

Crops are cut with the runtime's own crop policy (``runtime.classifier.crop_windows_xyxy_px``: padding, square)
from the photo as the runtime decodes it (EXIF-upright), so the classifier trains on the crops it will be shown.
The split is by location (as ``dataset split``: a camera's photos in one split only) unless asked otherwise; the
manifest records the policy, the split, every crop's source and box, and the locations of each split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from andi_edge.boxes import xywh_px_to_xyxy_px
from andi_edge.errors import PhotoError, UsageError
from andi_edge.photos import walk_photos
from andi_edge.runtime.classifier import class_ids, crop_windows_xyxy_px, cut
from andi_edge.runtime.classifier_card import CropPolicy
from andi_edge.runtime.decode import decode_photo, read_photo_bytes
from andi_edge.runtime.detector import Detector
from andi_edge.sinks.names import bounded_name, safe_name, short_hash
from andi_edge.toolchain.dataset import EMPTY_NAMES, SPLITS, Box, Dataset, ImageRecord, split_by_class
from andi_edge.toolchain.dataset import split_by_location as split_images_by_location

log = logging.getLogger(__name__)

MANIFEST = "crops.json"
#: the background class's name in a crops dataset
EMPTY_LABEL = "empty"
#: crops are stored with their long side at most this (the classifier resizes them to its input anyway)
DEFAULT_MAX_SIDE_PX = 448
DEFAULT_MIN_SIDE_PX = 16
_MAX_IMAGE_PIXELS = 120_000_000


@dataclass(frozen=True)
class LabelledBox:
    label: str
    xyxy_px: tuple[float, float, float, float]
    #: where it came from: "annotation", "detector", or "background" (a window of an empty photo)
    origin: str
    conf: float | None = None


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    file_name: str  # as its dataset names it (relative to its root): what the manifest records
    location: str
    boxes: tuple[LabelledBox, ...]


@dataclass(frozen=True)
class CropItem:
    file: str  # relative to the crops dataset folder
    label: str
    split: str
    location: str
    source: str
    xyxy_px: tuple[float, float, float, float]
    origin: str


@dataclass(frozen=True)
class CropsDataset:
    folder: Path
    labels: tuple[str, ...]
    items: tuple[CropItem, ...]
    policy: CropPolicy
    manifest_sha256: str

    def split(self, name: str) -> list[CropItem]:
        return [i for i in self.items if i.split == name]

    @property
    def train_locations(self) -> frozenset[str]:
        return frozenset(i.location for i in self.items if i.split == "train")

    def pixels(self, item: CropItem) -> npt.NDArray[np.uint8]:
        """A crop's RGB pixels, as stored."""
        with Image.open(self.folder / item.file) as image:
            return np.asarray(image.convert("RGB"))


def _background_window(width: int, height: int, rng: random.Random) -> tuple[float, float, float, float]:
    side = rng.uniform(0.2, 0.5) * min(width, height)
    x0 = rng.uniform(0, width - side)
    y0 = rng.uniform(0, height - side)
    return (x0, y0, x0 + side, y0 + side)


def photos_from_boxes(
    dataset: Dataset, include_empty: bool, seed: int, rename: dict[str, str] | None = None
) -> list[LabelledPhoto]:
    """Every annotated box of a CCT/YOLO dataset as a labelled crop (its category, or what ``rename`` maps it to:
    a YOLO folder of one species labelled ``animal``); an empty photo gives one background window when
    ``include_empty``. Image-level labels without a box are skipped (there is nothing to cut)."""
    rename = rename or {}
    rng = random.Random(seed)
    photos = []
    skipped_image_level = 0
    for img in sorted(dataset.images, key=lambda i: i.file_name):
        boxes = []
        for box in img.boxes:
            if box.xywh_px is None:
                skipped_image_level += 1
                continue
            x0, y0, x1, y1 = (float(v) for v in xywh_px_to_xyxy_px([box.xywh_px])[0])
            boxes.append(LabelledBox(rename.get(box.category, box.category), (x0, y0, x1, y1), "annotation"))
        if not img.boxes and include_empty and img.width and img.height:
            boxes.append(LabelledBox(EMPTY_LABEL, _background_window(img.width, img.height, rng), "background"))
        if boxes:
            photos.append(LabelledPhoto(dataset.images_root / img.file_name, img.file_name, img.location, tuple(boxes)))
    if skipped_image_level:
        log.warning(
            "%d image-level label(s) without a box skipped: use photo labels with a detector", skipped_image_level
        )
    return photos


def read_photo_labels(source: Path, photos_root: Path | None) -> tuple[Path, list[tuple[str, str, str | None]]]:
    """(photos root, [(file, label, location or None)]) from a CSV ``file,label[,location]`` (header optional;
    files relative to ``photos_root`` or to the CSV's folder) or from one folder per label
    (``ROOT/<label>/[<location>/]photo.jpg``)."""
    if source.is_dir():
        rows = []
        for path in walk_photos(source):
            parts = path.relative_to(source).parts
            if len(parts) < 2:
                log.warning("%s: not inside a label folder; skipped", path)
                continue
            location = parts[1] if len(parts) > 2 else None
            rows.append((path.relative_to(source).as_posix(), parts[0], location))
        return source, rows
    root = photos_root or source.parent
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the labels CSV {source}: {exc}") from exc
    rows = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["file", "label"]:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"{source}, line {n}: expected file,label[,location], got {row!r}")
        location = row[2].strip() if len(row) > 2 and row[2].strip() else None
        rows.append((row[0].strip(), row[1].strip(), location))
    return root, rows


def photos_from_labels(
    rows: list[tuple[str, str, str | None]],
    root: Path,
    detector: Detector,
    min_conf: float,
    classes: tuple[str, ...],
    include_empty: bool,
    seed: int,
) -> list[LabelledPhoto]:
    """The detector's boxes on each labelled photo, labelled with the photo's label. A photo without a location
    is its own location (so its crops never straddle two splits). Photos labelled empty give background crops
    (the detector's boxes, else one random window) when ``include_empty``, and nothing otherwise."""
    wanted = class_ids(classes, detector.class_names, hint="choose --classes among the detector's, or 'all'")
    rng = random.Random(seed)
    photos = []
    for file_name, label, location in rows:
        is_empty = label.strip().lower() in EMPTY_NAMES
        if is_empty and not include_empty:
            continue
        result = detector.detect(root / file_name)
        if result.failure is not None or result.detections is None or result.photo is None:
            log.warning("%s: skipped (%s)", file_name, result.failure)
            continue
        found = result.detections.above(min_conf)
        keep = [i for i in range(len(found)) if int(found.class_id[i]) in wanted]
        name = EMPTY_LABEL if is_empty else label
        boxes = [
            LabelledBox(name, tuple(float(v) for v in found.xyxy_px[i]), "detector", float(found.confidence[i]))  # type: ignore[arg-type]
            for i in keep
        ]
        if not boxes and is_empty:
            boxes = [
                LabelledBox(name, _background_window(result.photo.width_px, result.photo.height_px, rng), "background")
            ]
        if not boxes:
            log.info("%s: labelled %s but the detector found no box >= %.2f; skipped", file_name, label, min_conf)
            continue
        photos.append(LabelledPhoto(root / file_name, file_name, location or f"photo:{file_name}", tuple(boxes)))
    return photos


def split_photos(photos: list[LabelledPhoto], method: str, val: float, test: float, seed: int) -> dict[str, str]:
    """file -> split, by location (default) or stratified by label; all crops of a photo go together."""
    names = [p.file_name for p in photos]
    if len(set(names)) != len(names):
        raise UsageError("two sources name a photo alike: give each its own folder")
    images = [
        ImageRecord(p.file_name, None, None, p.location, tuple(Box(b.label, None) for b in p.boxes)) for p in photos
    ]
    dataset = Dataset(images=images, class_names=sorted({b.label for p in photos for b in p.boxes}), images_root=Path())
    if method == "location":
        return split_images_by_location(dataset, val, test, seed)
    if method == "class":
        return split_by_class(dataset, val, test, seed)
    raise UsageError(f"unknown split method {method!r}: location or class")


def write_crops_dataset(
    photos: list[LabelledPhoto],
    out: Path,
    policy: CropPolicy,
    assignment: dict[str, str],
    provenance: dict[str, Any],
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
    min_side_px: int = DEFAULT_MIN_SIDE_PX,
) -> CropsDataset:
    """Cut every crop (full-resolution decode, upright), write ``crops/<split>/<label>/...jpg`` and the manifest."""
    items: list[CropItem] = []
    skipped: Counter[str] = Counter()
    for photo in photos:
        try:
            decoded = decode_photo(read_photo_bytes(photo.path), max_image_pixels=_MAX_IMAGE_PIXELS,
                                   name=photo.file_name)  # fmt: skip
        except PhotoError as exc:
            log.warning("%s: skipped (%s)", photo.file_name, exc.message)
            skipped["unreadable photo"] += 1
            continue
        height, width = decoded.rgb.shape[:2]
        xyxy = np.asarray([b.xyxy_px for b in photo.boxes], dtype=np.float32)
        windows = crop_windows_xyxy_px(xyxy, width, height, policy)
        split = assignment[photo.file_name]
        for n, (box, window) in enumerate(zip(photo.boxes, windows, strict=True)):
            if min(window[2] - window[0], window[3] - window[1]) < min_side_px:
                skipped[f"smaller than {min_side_px} px"] += 1
                continue
            crop = Image.fromarray(cut(decoded.rgb, window))
            if max(crop.size) > max_side_px:
                crop.thumbnail((max_side_px, max_side_px), Image.Resampling.BILINEAR)
            stem = bounded_name(safe_name(Path(photo.file_name).with_suffix("").as_posix().replace("/", "__")),
                                suffix=f"__{short_hash(photo.file_name)}__{n:02d}.jpg")  # fmt: skip
            relative = f"crops/{split}/{bounded_name(safe_name(box.label))}/{stem}"
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            crop.save(target, format="JPEG", quality=95)
            items.append(CropItem(relative, box.label, split, photo.location, photo.file_name, box.xyxy_px, box.origin))
    if not items:
        raise UsageError("no crops were cut: no labelled box found (see the warnings above)")
    counts = {s: dict(sorted(Counter(i.label for i in items if i.split == s).items())) for s in SPLITS}
    labels = sorted({i.label for i in items})
    missing = [label for label in labels if not counts["train"].get(label)]
    if missing:
        log.warning("label(s) with no training crop: %s (a classifier cannot learn them)", ", ".join(missing))
    manifest = {
        "kind": "andi-edge crops dataset",
        "crop_policy": asdict(policy),
        "max_side_px": max_side_px,
        "labels": labels,
        "counts": counts,
        "missing_from_train": missing,
        "skipped": dict(skipped),
        "locations": {s: sorted({i.location for i in items if i.split == s}) for s in SPLITS},
        **provenance,
        "crops": [asdict(i) for i in items],
    }
    text = json.dumps(manifest, indent=1) + "\n"
    (out / MANIFEST).write_text(text)
    return CropsDataset(out, tuple(labels), tuple(items), policy, hashlib.sha256(text.encode()).hexdigest())


def read_crops_dataset(folder: Path) -> CropsDataset:
    path = folder / MANIFEST
    try:
        text = path.read_text()
        manifest = json.loads(text)
        items = tuple(
            CropItem(c["file"], c["label"], c["split"], c["location"], c["source"], tuple(c["xyxy_px"]), c["origin"])
            for c in manifest["crops"]
        )
        policy = CropPolicy(**manifest["crop_policy"])
        labels = tuple(manifest["labels"])
    except FileNotFoundError:
        raise UsageError(
            f"{folder} is not a crops dataset (no {MANIFEST})", hint="make one with `andi-edge classifier dataset`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a crops manifest from `andi-edge classifier dataset` ({exc})") from exc
    return CropsDataset(folder, labels, items, policy, hashlib.sha256(text.encode()).hexdigest())
