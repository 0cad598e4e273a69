"""``andi-edge dataset balance``: the original study's data fixes, applied to a split's training images only.

- ``--upsample-below N``: a class with fewer than N training images gets its images repeated until it has N
  (at most ``--max-factor`` times; the study doubled its weakest classes).
- ``--copy-paste K``: K new training images, each an animal crop from one location pasted onto an empty frame
  from *another* location (the study's "object isolation"): the model sees the same animal on backgrounds it
  did not come with, which is what unseen locations demand.
- ``--jitter J``: colour jitter (brightness, contrast, saturation within +-J) on every image this makes.

New files go under ``images/train/_balance/`` with their labels, and the manifest records what was added.
Validation and test splits are never touched.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from andi_edge.errors import UsageError
from andi_edge.toolchain.dataset import MANIFEST, read_manifest

BALANCE_DIR = "_balance"
MIN_CROP_PX = 8


@dataclass(frozen=True)
class BalanceRequest:
    split_dir: Path
    upsample_below: int = 0
    max_factor: int = 2
    copy_paste: int = 0
    jitter: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class _TrainImage:
    file: str
    location: str
    classes: list[str]
    image: Path
    label: Path


def _train_images(split_dir: Path, manifest: dict[str, Any]) -> list[_TrainImage]:
    out = []
    for entry in manifest["images"]:
        if entry["split"] != "train" or entry["file"].startswith(BALANCE_DIR):
            continue
        image = split_dir / "images" / "train" / entry["file"]
        label = (split_dir / "labels" / "train" / entry["file"]).with_suffix(".txt")
        out.append(_TrainImage(entry["file"], entry["location"], entry["classes"], image, label))
    return out


def _jittered(image: Image.Image, amount: float, rng: random.Random) -> Image.Image:
    if amount <= 0:
        return image
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(1 + rng.uniform(-amount, amount))
    return image


def _save(split_dir: Path, name: str, image: Image.Image, label_lines: list[str]) -> str:
    rel = f"{BALANCE_DIR}/{name}.jpg"
    image_path = split_dir / "images" / "train" / rel
    image_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(image_path, quality=92)
    label = (split_dir / "labels" / "train" / rel).with_suffix(".txt")
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("\n".join(label_lines) + ("\n" if label_lines else ""))
    return rel


def _upsample(
    split_dir: Path, train: list[_TrainImage], request: BalanceRequest, rng: random.Random
) -> list[dict[str, Any]]:
    by_class: dict[str, list[_TrainImage]] = defaultdict(list)
    for img in train:
        for cls in img.classes:
            by_class[cls].append(img)
    added = []
    for cls in sorted(by_class):
        members = by_class[cls]
        target = min(request.upsample_below, len(members) * request.max_factor)
        for i in range(max(0, target - len(members))):
            source = members[i % len(members)]
            with Image.open(source.image) as im:
                picture = _jittered(ImageOps.exif_transpose(im).convert("RGB"), request.jitter, rng)
            stem = Path(source.file).with_suffix("").as_posix().replace("/", "__")
            rel = _save(split_dir, f"up__{cls}__{i:04d}__{stem}", picture, source.label.read_text().splitlines())
            added.append(
                {
                    "file": rel,
                    "split": "train",
                    "location": source.location,
                    "classes": source.classes,
                    "made_by": f"upsample {cls} from {source.file}",
                }
            )
    return added


def _crops(img: _TrainImage) -> list[tuple[Image.Image, str]]:
    """(crop, class index) for each labelled box of an image."""
    crops = []
    with Image.open(img.image) as im:
        picture = ImageOps.exif_transpose(im).convert("RGB")
    w, h = picture.size
    for line in img.label.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        box = (round((cx - bw / 2) * w), round((cy - bh / 2) * h), round((cx + bw / 2) * w), round((cy + bh / 2) * h))
        if box[2] - box[0] >= MIN_CROP_PX and box[3] - box[1] >= MIN_CROP_PX:
            crops.append((picture.crop(box), parts[0]))
    return crops


def _copy_paste(
    split_dir: Path, train: list[_TrainImage], request: BalanceRequest, rng: random.Random
) -> list[dict[str, Any]]:
    empties = [i for i in train if not i.classes]
    donors = [i for i in train if i.classes]
    if not empties or not donors:
        raise UsageError("--copy-paste needs empty frames and labelled animals in the training split")
    added: list[dict[str, Any]] = []
    attempts = 0
    while len(added) < request.copy_paste and attempts < request.copy_paste * 20:
        attempts += 1
        background, donor = rng.choice(empties), rng.choice(donors)
        if background.location == donor.location and len({i.location for i in train}) > 1:
            continue  # the point is a background the animal was not photographed on
        crops = _crops(donor)
        if not crops:
            continue
        crop, cls = rng.choice(crops)
        with Image.open(background.image) as im:
            canvas = ImageOps.exif_transpose(im).convert("RGB")
        w, h = canvas.size
        scale = min(1.0, 0.5 * w / crop.width, 0.5 * h / crop.height) * rng.uniform(0.6, 1.0)
        crop = crop.resize((max(MIN_CROP_PX, round(crop.width * scale)), max(MIN_CROP_PX, round(crop.height * scale))))
        x, y = rng.randint(0, w - crop.width), rng.randint(0, h - crop.height)
        canvas.paste(crop, (x, y))
        canvas = _jittered(canvas, request.jitter, rng)
        cx, cy = (x + crop.width / 2) / w, (y + crop.height / 2) / h
        line = f"{cls} {cx:.6f} {cy:.6f} {crop.width / w:.6f} {crop.height / h:.6f}"
        name = f"paste__{len(added):04d}"
        rel = _save(split_dir, name, canvas, [line])
        added.append(
            {
                "file": rel,
                "split": "train",
                "location": background.location,
                "classes": donor.classes[:1],
                "made_by": f"copy-paste from {donor.file} ({donor.location}) onto {background.file}",
            }
        )
    if len(added) < request.copy_paste:
        raise UsageError(f"made only {len(added)} of {request.copy_paste} copy-paste images: too few usable crops")
    return added


def balance(request: BalanceRequest) -> dict[str, Any]:
    if request.upsample_below < 0 or request.copy_paste < 0 or not 0 <= request.jitter < 1 or request.max_factor < 1:
        raise UsageError("--upsample-below and --copy-paste must be >= 0, --jitter in [0, 1), --max-factor >= 1")
    if not request.upsample_below and not request.copy_paste:
        raise UsageError("nothing to do: give --upsample-below N and/or --copy-paste K")
    manifest = read_manifest(request.split_dir)
    for kind in ("images", "labels"):  # a rerun replaces what an earlier one made, never stacks on it
        shutil.rmtree(request.split_dir / kind / "train" / BALANCE_DIR, ignore_errors=True)
    rng = random.Random(request.seed)
    train = _train_images(request.split_dir, manifest)
    added = []
    if request.upsample_below:
        added += _upsample(request.split_dir, train, request, rng)
    if request.copy_paste:
        added += _copy_paste(request.split_dir, train, request, rng)
    manifest["images"] = [e for e in manifest["images"] if not e["file"].startswith(BALANCE_DIR)] + added
    counts: dict[str, int] = defaultdict(int)
    for entry in manifest["images"]:
        if entry["split"] == "train":
            for cls in entry["classes"] or ["empty"]:
                counts[cls] += 1
    manifest["class_counts"]["train"] = dict(sorted(counts.items()))
    manifest["balance"] = {**{k: str(v) for k, v in request.__dict__.items()}, "added": len(added)}
    (request.split_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return {"added": len(added), "train_counts": manifest["class_counts"]["train"]}
