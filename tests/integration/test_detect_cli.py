from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from andi_edge.boxes import pairwise_iou
from andi_edge.runtime.detector import Detector
from tests.integration.cli_runner import run_cli
from tests.photo_factory import save_with_orientation

SUBCOMMANDS = ["detect", "export", "info", "watch", "check", "status", "bench", "batch", "service", "quantize"]


@pytest.fixture(scope="module")
def odd_card(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Path:
    """A card-like folder: real photos, the odd ones, and broken files made here."""
    root = tmp_path_factory.mktemp("odd") / "card"
    nested = root / "DCIM" / "100RECNX"
    nested.mkdir(parents=True)
    shutil.copy2(photos_dir / "ecoassist_md_examples" / "1.jpg", nested / "IMG_0001.JPG")
    shutil.copy2(photos_dir / "ecoassist_md_examples" / "3.jpg", root / "car.jpeg")
    shutil.copy2(photos_dir / "edge_cases" / "10050028_0.JPG", nested / "png_named.JPG")
    shutil.copy2(photos_dir / "lowres_trailcam" / "deer_20241018004500_44.jpg", nested / "tiny.jpg")
    big = next((photos_dir / "burrowing_owl").glob("BUOW_2019*.JPG"))
    shutil.copy2(big, nested / "reconyx.JPG")
    data = big.read_bytes()
    (nested / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (nested / "zero.jpg").write_bytes(b"")
    (nested / "notes.jpg").write_text("field notes, not a photo")
    (nested / "._IMG_0001.JPG").write_bytes(b"\x00\x05\x16\x07")
    (nested / ".hidden.jpg").write_bytes(data)
    (nested / "video.mp4").write_bytes(b"\x00")
    Image.new("RGB", (320, 240), (114, 114, 114)).save(nested / "blank.png")
    return root


@pytest.fixture(scope="module")
def odd_results(odd_card: Path, model_320: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("results") / "results.json"
    proc = run_cli("detect", odd_card, "--model", model_320, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "results:" in proc.stdout and "3 failed" in proc.stdout
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_megadetector_format(odd_results: dict) -> None:  # type: ignore[type-arg]
    info = odd_results["info"]
    assert info["format_version"] == "1.6"
    assert info["detector"] == "yolov5n-320.onnx"
    assert info["andi_edge"]["conf_threshold"] == 0.005 and info["andi_edge"]["iou_threshold"] == 0.45
    assert len(info["andi_edge"]["model_sha256"]) == 64
    categories = odd_results["detection_categories"]
    assert "0" not in categories and categories["1"] == "person" and len(categories) == 80
    for image in odd_results["images"]:
        for det in image.get("detections") or []:
            assert det["category"] in categories
            x, y, w, h = det["bbox"]
            assert 0 <= x <= 1 and 0 <= y <= 1 and 0 <= w <= 1 and 0 <= h <= 1
            assert x + w <= 1.0001 and y + h <= 1.0001
            assert 0.005 <= det["conf"] <= 1


def test_files_walked_relative_and_filtered(odd_results: dict) -> None:  # type: ignore[type-arg]
    files = [image["file"] for image in odd_results["images"]]
    assert files == [
        "DCIM/100RECNX/IMG_0001.JPG",
        "DCIM/100RECNX/blank.png",
        "DCIM/100RECNX/notes.jpg",
        "DCIM/100RECNX/png_named.JPG",
        "DCIM/100RECNX/reconyx.JPG",
        "DCIM/100RECNX/tiny.jpg",
        "DCIM/100RECNX/truncated.jpg",
        "DCIM/100RECNX/zero.jpg",
        "car.jpeg",
    ]


def test_failures_recorded_and_the_run_goes_on(odd_results: dict) -> None:  # type: ignore[type-arg]
    by_file = {image["file"]: image for image in odd_results["images"]}
    assert by_file["DCIM/100RECNX/truncated.jpg"]["failure"].startswith("corrupt:")
    assert by_file["DCIM/100RECNX/zero.jpg"]["failure"].startswith("empty_file:")
    assert by_file["DCIM/100RECNX/notes.jpg"]["failure"].startswith("unsupported_format:")
    for name in ("truncated.jpg", "zero.jpg", "notes.jpg"):
        assert "detections" not in by_file[f"DCIM/100RECNX/{name}"]
    png = by_file["DCIM/100RECNX/png_named.JPG"]
    assert png["width"] == 1603 and png["height"] == 1203 and "failure" not in png
    giraffe = by_file["DCIM/100RECNX/IMG_0001.JPG"]
    top = giraffe["detections"][0]
    assert odd_results["detection_categories"][top["category"]] == "giraffe" and top["conf"] > 0.5
    reconyx = by_file["DCIM/100RECNX/reconyx.JPG"]
    assert reconyx["datetime"] == "2019-06-22T16:50:53" and reconyx["exif_metadata"]["Make"] == "RECONYX"
    assert by_file["car.jpeg"]["detections"][0]["category"] == "3"  # car


def test_empty_photo_has_empty_list(odd_card: Path, model_320: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = run_cli("detect", odd_card / "DCIM" / "100RECNX" / "blank.png", "-m", model_320, "-o", out, "--conf", "0.3")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(out.read_text())
    assert document["images"] == [{"file": "blank.png", "detections": [], "width": 320, "height": 240}]
    assert document["info"]["andi_edge"]["conf_threshold"] == 0.3


def test_boxes_follow_exif_orientation(tmp_path: Path, photos_dir: Path, detector_fast: Detector) -> None:
    upright = Image.open(photos_dir / "ecoassist_md_examples" / "1.jpg").convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    save_with_orientation(upright, tmp_path / "rotated.jpg", 6)
    plain = detector_fast.detect(tmp_path / "upright.jpg")
    rotated = detector_fast.detect(tmp_path / "rotated.jpg")
    assert plain.detections is not None and rotated.detections is not None
    assert rotated.photo is not None and (rotated.photo.width_px, rotated.photo.height_px) == upright.size
    a = plain.detections.above(0.4)
    b = rotated.detections.above(0.3)
    assert len(a) >= 1
    iou = pairwise_iou(a.xyxy_px, b.xyxy_px)
    assert np.all(iou.max(axis=1) > 0.85), iou


def test_huge_photo_is_decoded_fast_and_boxes_scale(tmp_path: Path, photos_dir: Path, detector_fast: Detector) -> None:
    """A legitimate 48 MP photo (below the bomb limit): DCT-scaled decode, boxes in its own pixels."""
    source = Image.open(photos_dir / "ecoassist_md_examples" / "1.jpg").convert("RGB")
    huge = source.resize((8000, 6000), Image.Resampling.BILINEAR)
    huge.save(tmp_path / "huge.jpg", quality=90)
    source.save(tmp_path / "small.jpg", quality=90)
    big = detector_fast.detect(tmp_path / "huge.jpg")
    small = detector_fast.detect(tmp_path / "small.jpg")
    assert big.photo is not None and (big.photo.width_px, big.photo.height_px) == (8000, 6000)
    assert big.timings_ms["decode"] < 1000, "a 48 MP JPEG is decoded at 1/8 scale, not in full"
    assert big.detections is not None and small.detections is not None
    a = small.detections.above(0.5)
    b = big.detections.above(0.4)
    assert len(a) >= 1
    scale = np.array([8000 / 640, 6000 / 480] * 2, dtype=np.float32)
    iou = pairwise_iou(a.xyxy_px * scale, b.xyxy_px)
    assert np.all(iou.max(axis=1) > 0.8), iou


def test_help_everywhere() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "camera-trap" in proc.stdout
    for command in SUBCOMMANDS:
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, command
        assert "usage: andi-edge " + command in proc.stdout
    assert run_cli().returncode == 2


def test_user_mistakes_get_clear_errors(tmp_path: Path, model_320: Path, photos_dir: Path) -> None:
    photo = photos_dir / "ecoassist_md_examples" / "1.jpg"
    cases: list[tuple[list[str | Path], int, str]] = [
        (["detect", tmp_path / "nope", "-m", model_320, "-o", tmp_path / "r.json"], 2, "no such file or folder"),
        (["detect", photo, "-m", tmp_path / "missing.onnx", "-o", tmp_path / "r.json"], 3, "model file not found"),
        (["detect", photo, "-m", photo, "-o", tmp_path / "r.json"], 3, "ONNX Runtime cannot load"),
        (["detect", photo, "-m", model_320, "-o", tmp_path], 2, "is a folder"),
        (["detect", photo, "-m", model_320, "-o", tmp_path / "r.json", "--conf", "1.5"], 2, "between 0 and 1"),
        (["detect", photo, "-m", model_320, "-o", tmp_path / "r.json", "--backend", "tpu"], 4, "unknown backend"),
        (["info", tmp_path / "missing.onnx"], 3, "model file not found"),
    ]
    for args, code, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()
