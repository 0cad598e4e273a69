"""A small COCO Camera Traps dataset built from the real photos in ../shared and their MegaDetector v5a
reference outputs: MDv5a's boxes >= 0.5 as annotations (animal, person, vehicle), the source dataset as location.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

SOURCES = {  # folder -> its MegaDetector reference file
    "lila_md_testset": "megadetector_v5a_reference.json",
    "ecoassist_md_examples": "megadetector_v5a_reference.json",
    "peru_sdzg2": "megadetector_reference.json",
}
LILA_PREFIXES = ("caltech_camera_traps", "channel_islands_camera_traps", "idaho_camera_traps",
                 "missouri_camera_traps", "nacti", "snapshot_camdeboo", "snapshot_enonkishu", "snapshot_karoo",
                 "snapshot_kruger", "snapshot_serengeti")  # fmt: skip
MIN_CONF = 0.5


def location_of(folder: str, file_name: str) -> str:
    if folder == "lila_md_testset":
        return next(p for p in LILA_PREFIXES if file_name.startswith(p))
    return folder


def build_cct(photos_dir: Path, out: Path) -> Path:
    images, annotations = [], []
    categories = [{"id": 0, "name": "empty"}, {"id": 1, "name": "animal"}, {"id": 2, "name": "person"},
                  {"id": 3, "name": "vehicle"}]  # fmt: skip
    for folder, reference in SOURCES.items():
        document = json.loads((photos_dir / folder / reference).read_text())
        for entry in document["images"]:
            path = photos_dir / folder / entry["file"]
            if not path.is_file() or entry.get("failure"):
                continue
            with Image.open(path) as im:
                from PIL import ImageOps

                width, height = ImageOps.exif_transpose(im).size
            image_id = f"{folder}/{entry['file']}"
            images.append({"id": image_id, "file_name": image_id, "width": width, "height": height,
                           "location": location_of(folder, entry["file"])})  # fmt: skip
            for i, det in enumerate(d for d in entry.get("detections") or [] if d["conf"] >= MIN_CONF):
                x, y, w, h = det["bbox"]
                annotations.append({"id": f"{image_id}#{i}", "image_id": image_id, "category_id": int(det["category"]),
                                    "bbox": [x * width, y * height, w * width, h * height]})  # fmt: skip
    out.write_text(json.dumps({"info": {"version": "1", "description": "test"}, "images": images,
                               "categories": categories, "annotations": annotations}))  # fmt: skip
    return out
