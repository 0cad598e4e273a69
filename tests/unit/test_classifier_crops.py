"""Crops datasets for the classifier: labels from a CSV or from folders, boxes and background windows from a
COCO Camera Traps dataset of the sample photos, and the ImageNet weights' registry check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from andi_edge.errors import ModelError, UsageError
from andi_edge.runtime.classifier_card import CropPolicy
from andi_edge.toolchain.classifier.crops import (
    photos_from_boxes,
    read_crops_dataset,
    read_photo_labels,
    split_photos,
    write_crops_dataset,
)
from andi_edge.toolchain.classifier.train import imagenet_weights
from andi_edge.toolchain.dataset import load_cct
from andi_edge.toolchain.weights import resolve_weights
from tests.dataset_factory import build_cct


def test_labels_from_a_csv_with_or_without_header_and_location(tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label,location\na/1.jpg,deer,site-1\n\nb/2.jpg, fox ,\n")
    root, rows = read_photo_labels(csv_path, None)
    assert root == tmp_path and rows == [("a/1.jpg", "deer", "site-1"), ("b/2.jpg", "fox", None)]
    (tmp_path / "plain.csv").write_text("c.jpg,owl\n")
    assert read_photo_labels(tmp_path / "plain.csv", tmp_path / "photos")[1] == [("c.jpg", "owl", None)]
    (tmp_path / "bad.csv").write_text("file,label\nonly-a-file.jpg\n")
    with pytest.raises(UsageError, match="line 2: expected file,label"):
        read_photo_labels(tmp_path / "bad.csv", None)


def test_labels_from_folders_per_label_with_locations_below(tmp_path: Path, photos_dir: Path) -> None:
    source = photos_dir / "lowres_trailcam"
    for target in ("beaver/pond-3/beaver.jpg", "heron/heron.jpg", "stray.jpg"):
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "beaver_20241016221147_46.jpg", tmp_path / target)
    root, rows = read_photo_labels(tmp_path, None)
    assert root == tmp_path
    assert rows == [("beaver/pond-3/beaver.jpg", "beaver", "pond-3"), ("heron/heron.jpg", "heron", None)]


def test_boxes_and_background_windows_from_a_cct_dataset(tmp_path: Path, photos_dir: Path) -> None:
    dataset = load_cct(build_cct(photos_dir, tmp_path / "cct.json"), photos_dir)
    photos = photos_from_boxes(dataset, include_empty=True, seed=0, rename={"animal": "mammal"})
    labels = {b.label for p in photos for b in p.boxes}
    assert "mammal" in labels and "animal" not in labels and "empty" in labels
    empties = [p for p in photos if p.boxes[0].label == "empty"]
    assert all(len(p.boxes) == 1 and p.boxes[0].origin == "background" for p in empties)
    assignment = split_photos(photos, "location", 0.2, 0.2, seed=0)
    out = tmp_path / "crops"
    crops = write_crops_dataset(photos, out, CropPolicy(0.1, True), assignment, {"sources": []}, max_side_px=128)
    again = read_crops_dataset(out)
    assert again.items == crops.items and again.manifest_sha256 == crops.manifest_sha256
    by_location: dict[str, set[str]] = {}
    for item in crops.items:
        by_location.setdefault(item.location, set()).add(item.split)
        with Image.open(out / item.file) as im:
            assert max(im.size) <= 128
            # square crops stay square unless the photo's edge clipped them
            assert abs(im.size[0] - im.size[1]) <= 1 or item.origin != "background"
    assert all(len(s) == 1 for s in by_location.values())
    manifest = json.loads((out / "crops.json").read_text())
    assert manifest["crop_policy"] == {"padding": 0.1, "square": True} and manifest["max_side_px"] == 128
    with pytest.raises(UsageError, match="not a crops dataset"):
        read_crops_dataset(tmp_path)


def test_imagenet_weights_are_found_offline_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDI_EDGE_MODELS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # ./models and ../shared/models hold nothing here
    assert imagenet_weights("alexnet") is None, "absent: the caller warns and trains from scratch"
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not the official file")
    with pytest.raises(ModelError, match="does not start with the official alexnet-imagenet's 7be5be79"):
        resolve_weights("alexnet-imagenet")
