from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from andi_edge.boxes import pairwise_iou
from andi_edge.config import PipelineSettings
from andi_edge.pipeline import plan_pipeline
from andi_edge.runtime.detector import Detector
from tests.integration.cli_runner import ANDI_EDGE, run_cli
from tests.integration.daemon_harness import wait_until
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
    assert "results:" in proc.stdout and "4 failed" in proc.stdout, "3 bad photos and video.mp4, a broken clip"
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_megadetector_format(odd_results: dict) -> None:  # type: ignore[type-arg]
    info = odd_results["info"]
    assert info["format_version"] == "1.6"
    assert info["detector"] == "yolov5n-320.onnx"
    assert info["andi_edge"]["conf_threshold"] == 0.005 and info["andi_edge"]["iou_threshold"] == 0.45
    assert len(info["andi_edge"]["model_sha256"]) == 64
    categories = odd_results["detection_categories"]
    assert categories == {"1": "animal", "2": "person", "3": "vehicle"}, "camera-trap categories by default"
    assert info["andi_edge"]["categories"]["mapping"] == "coco-to-megadetector"
    assert "classification_categories" not in odd_results, "native classes ride along only when asked"
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
        "DCIM/100RECNX/video.mp4",  # a clip (a broken one), in the same file as the photos
        "DCIM/100RECNX/zero.jpg",
        "car.jpeg",
    ]


def test_failures_recorded_and_the_run_goes_on(odd_results: dict) -> None:  # type: ignore[type-arg]
    by_file = {image["file"]: image for image in odd_results["images"]}
    assert by_file["DCIM/100RECNX/truncated.jpg"]["failure"].startswith("corrupt: DCIM/100RECNX/truncated.jpg: ")
    assert by_file["DCIM/100RECNX/zero.jpg"]["failure"].startswith("empty_file:")
    assert by_file["DCIM/100RECNX/notes.jpg"]["failure"].startswith("unsupported_format:")
    for name in ("truncated.jpg", "zero.jpg", "notes.jpg"):
        assert "detections" not in by_file[f"DCIM/100RECNX/{name}"]
    png = by_file["DCIM/100RECNX/png_named.JPG"]
    assert png["width"] == 1603 and png["height"] == 1203 and "failure" not in png
    giraffe = by_file["DCIM/100RECNX/IMG_0001.JPG"]
    top = giraffe["detections"][0]
    assert odd_results["detection_categories"][top["category"]] == "animal" and top["conf"] > 0.5
    reconyx = by_file["DCIM/100RECNX/reconyx.JPG"]
    assert reconyx["datetime"] == "2019-06-22T16:50:53" and reconyx["exif_metadata"]["Make"] == "RECONYX"
    assert by_file["car.jpeg"]["detections"][0]["category"] == "3"  # vehicle


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


def test_camera_trap_categories_native_classes_and_riding_classifications(
    tmp_path: Path, photos_dir: Path, model_320: Path, model_320_native: Path
) -> None:
    """Burrowing owls: COCO splits them between bird, sheep, cow and bear; the default output calls them animals,
    --native-classes restores COCO's names, and --native-classifications keeps the COCO class beside the animal."""
    owls = photos_dir / "burrowing_owl"
    runs = {}
    for name, model, flags in (
        ("mapped", model_320, []),
        ("native", model_320, ["--native-classes"]),
        ("card-native", model_320_native, []),
        ("riding", model_320, ["--native-classifications"]),
    ):
        out = tmp_path / f"{name}.json"
        proc = run_cli("detect", owls, "-m", model, "-o", out, *flags)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads(out.read_text())
    mapped, native = runs["mapped"], runs["native"]
    assert mapped["detection_categories"] == {"1": "animal", "2": "person", "3": "vehicle"}
    assert len(native["detection_categories"]) == 80 and native["detection_categories"]["15"] == "bird"
    assert runs["card-native"]["detection_categories"] == native["detection_categories"], "the card option"
    typical = 0.25

    def best(entry: dict, category: str | None = None) -> float:  # type: ignore[type-arg]
        return max((d["conf"] for d in entry["detections"] if category in (None, d["category"])), default=0.0)

    animals = sum(1 for e in mapped["images"] if best(e, "1") >= typical)
    any_native = sum(1 for e in native["images"] if best(e) >= typical)
    assert animals >= any_native + 3, f"{animals} owl photos with an animal vs {any_native} with any COCO class"
    native_names = set()
    for m, n in zip(mapped["images"], native["images"], strict=True):
        # combining the animal classes' probabilities never scores an animal below its best COCO animal class
        coco_animal = max(
            (d["conf"] for d in n["detections"] if native["detection_categories"][d["category"]] in ANIMALS),
            default=0.0,
        )
        assert best(m, "1") >= coco_animal - 0.002
        native_names |= {native["detection_categories"][d["category"]] for d in n["detections"] if d["conf"] >= 0.1}
    assert len(native_names & set(ANIMALS)) >= 3, "COCO does split the owls between animal classes"
    assert "teddy bear" not in mapped["detection_categories"].values()
    riding = runs["riding"]
    categories = riding["classification_categories"]
    assert len(categories) == 80 and categories["15"] == "bird" and "0" not in categories
    seen = 0
    for entry in riding["images"]:
        for detection in entry["detections"]:
            [[label, conf]] = detection["classifications"]
            assert label in categories and 0 <= conf <= detection["conf"] + 0.001
            kind = {"1": ANIMALS, "2": ("person",), "3": ("bicycle", "car", "motorcycle", "bus", "truck")}
            assert categories[label] in kind[detection["category"]]
            seen += 1
    assert seen > 50


ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")


def test_parallel_and_split_pipelines_give_the_same_results(
    odd_card: Path,
    odd_results: dict[str, Any],
    model_320: Path,
    tmp_path: Path,
) -> None:
    """The default wherever there are 2 cores or more is parallel (photos decoded and inferred at once); split
    (decode ahead of one inference on the rest of the cores) and three parallel workers give the same entries, in
    the same order, broken files included."""
    auto = run_cli("--log-level", "debug", "detect", odd_card, "-m", model_320, "-o", tmp_path / "auto.json")
    expected = plan_pipeline(PipelineSettings(), 0, ()).describe()  # parallel wherever there are 2 cores or more
    assert auto.returncode == 0 and f"pipeline {expected}" in auto.stderr, auto.stderr
    for flags in (("--pipeline", "split"), ("--pipeline", "parallel", "--pipeline-workers", "3")):
        out = tmp_path / f"{flags[1]}.json"
        proc = run_cli("detect", odd_card, "-m", model_320, "-o", out, *flags)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["images"] == odd_results["images"], flags


def test_an_unwritable_output_is_refused_before_any_photo(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """`detect -o UNWRITABLE/r.json` processed every photo, then failed at the final write: the run was lost."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    locked = tmp_path / "locked"
    locked.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)], check=True)
    try:
        done = run_cli("detect", photos_dir / "burrowing_owl", "-m", model_320, "-o", locked / "r.json")
    finally:
        subprocess.run(["umount", "-l", str(locked)], check=False)
    assert done.returncode == 6, done.stderr
    assert f"cannot write the results in {locked}" in done.stderr and "nothing was processed" in done.stderr
    assert "photos/s" not in done.stdout


def test_detect_resumes_and_keeps_its_work_when_the_final_write_fails(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    results = tmp_path / "r.json"
    proc = subprocess.Popen(
        [str(ANDI_EDGE), "detect", str(photos_dir), "-m", str(model_320), "-o", str(results), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # once work is saved, a folder takes the results file's place: the final write fails
    wait_until(lambda: any(results.with_name("r.json.parts").glob("part-*.json")), 120, "the first saved photos")
    results.mkdir()
    (results / "in the way").write_text("x")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 6, err
    assert "are kept in" in err and "run the same command again" in err
    shutil.rmtree(results)
    again = run_cli("detect", photos_dir, "-m", model_320, "-o", results)
    assert again.returncode == 0, again.stderr
    total = len(json.loads(results.read_text())["images"])
    assert f"{total} photos (0 processed" in again.stdout and f"{total} from an interrupted run" in again.stdout
    assert not results.with_name("r.json.parts").exists()
    reference = tmp_path / "reference.json"
    assert run_cli("detect", photos_dir, "-m", model_320, "-o", reference, "-q").returncode == 0
    assert json.loads(results.read_text())["images"] == json.loads(reference.read_text())["images"]


def test_video_clips_are_processed_and_counted_apart(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A card in video mode gave "0 photos" without a word about its clips; now each clip is processed, and a clip
    that is only a header is that clip's failure, in MegaDetector's video convention."""
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy2(sorted((photos_dir / "burrowing_owl").glob("*.JPG"))[0], card / "IMG_0001.JPG")
    for name in ("CLIP0001.MP4", "CLIP0002.avi"):
        (card / name).write_bytes(b"\0\0\0\x18ftypmp42")
    done = run_cli("detect", card, "-m", model_320, "-o", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    assert "1 photos and 2 video clip(s)" in done.stdout and "2 failed" in done.stdout, done.stdout
    by_file = {e["file"]: e for e in json.loads((tmp_path / "r.json").read_text())["images"]}
    for name in ("CLIP0001.MP4", "CLIP0002.avi"):
        assert by_file[name]["failure"] and by_file[name]["frame_rate"] == -1.0, by_file[name]
