"""Video clips on a card: found by name or content, sampled frames detected as photos are, written in
MegaDetector's video convention (checked by MegaDetector's own validator), and each bad clip that clip's failure.
The clips are made from the sample photos by tests/clips.py: real encodes, real decoding, real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from andi_edge.config import VideoSettings
from andi_edge.errors import PhotoError
from andi_edge.runtime.clips import detect_clip
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.video import ClipReader
from tests import clips
from tests.integration.cli_runner import run_cli

SERENGETI = "serengeti_S1_D04_R6_sequence"


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> list[Path]:
    return sorted((photos_dir / SERENGETI).glob("*.JPG"))[:3]


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory, photos: list[Path], photos_dir: Path) -> Path:
    """A card in hybrid mode: photos, clips of each kind cameras write, and the clips a card gets wrong."""
    card = tmp_path_factory.mktemp("card") / "DCIM" / "100MEDIA"
    card.mkdir(parents=True)
    for photo in photos:
        shutil.copy2(photo, card / photo.name)
    clips.h264(card / "CLIP0001.MP4", photos)
    clips.h264(card / "CLIP0002.MOV", photos, seconds=2, rate=15, size=(480, 360))
    clips.mjpeg_422_then_420(card / "CLIP0003.AVI", photos)
    clips.h264(card / "CLIP0004.MP4", photos, size=(640, 360), rotation=90)
    clips.truncated(clips.h264(card.parent / "whole.mp4", photos, seconds=4), card / "CUT_INDEX.MP4", 0.6)
    clips.truncated(clips.h264(card.parent / "fast.mp4", photos, seconds=4, faststart=True), card / "CUT_FAST.MP4", 0.6)
    clips.audio_only(card / "AUDIO.MP4")
    clips.no_frames(card / "NOFRAMES.AVI")
    (card / "ZERO.AVI").write_bytes(b"")
    (card / "NOTES.MP4").write_text("not a video, whatever its name says")
    shutil.copy2(card / "CLIP0001.MP4", card / "IMG_9999.JPG")  # a clip named like a photo
    (card.parent / "whole.mp4").unlink()
    (card.parent / "fast.mp4").unlink()
    return card.parent.parent


def _detect(card: Path, out: Path, model: Path, *extra: str) -> dict[str, dict[str, Any]]:
    proc = run_cli("detect", card, "-m", model, "-o", out, *extra)
    assert proc.returncode == 0, proc.stderr
    return {e["file"]: e for e in json.loads(out.read_text())["images"]}


def test_a_hybrid_card_gives_one_batch_file_in_megadetectors_video_convention(
    card: Path, model_320: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    proc = run_cli("detect", card, "-m", model_320, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "3 photos and 11 video clip(s)" in proc.stdout, proc.stdout
    by_file = {e["file"]: e for e in json.loads(out.read_text())["images"]}
    d = "DCIM/100MEDIA/"

    clip = by_file[d + "CLIP0001.MP4"]
    assert clip["frame_rate"] == 10.0 and clip["frames_processed"] == [0, 10, 20], "1 frame a second, by time"
    assert clip["detections"] and all("frame_number" in det for det in clip["detections"])
    categories = [det["category"] for det in clip["detections"]]
    assert len(categories) == len(set(categories)), "by default the most confident detection of each category"
    assert clip["detections"][0]["conf"] > 0.5, "the Serengeti animals are found in the frames"
    assert (clip["width"], clip["height"]) == (640, 480)
    assert by_file[d + "CLIP0002.MOV"]["frames_processed"] == [0, 15]
    assert by_file[d + "CLIP0003.AVI"]["frames_processed"] == [0, 5], "4:2:2 then 4:2:0, each frame converted"
    rotated = by_file[d + "CLIP0004.MP4"]
    assert (rotated["width"], rotated["height"]) == (360, 640), "the display rotation is honoured"
    assert by_file[d + "IMG_9999.JPG"]["frames_processed"] == [0, 10, 20], "found by its content"

    cut_fast = by_file[d + "CUT_FAST.MP4"]
    assert cut_fast.get("partial", "").startswith("partial: ") and cut_fast["frames_processed"], cut_fast
    cut_index = by_file[d + "CUT_INDEX.MP4"]
    assert "failure" in cut_index or "partial" in cut_index, cut_index
    for name, reason in (
        ("ZERO.AVI", "empty_file"),
        ("NOTES.MP4", "not_a_video"),
        ("AUDIO.MP4", "no_video"),
        ("NOFRAMES.AVI", "no_frames"),
    ):
        entry = by_file[d + name]
        assert entry["failure"].startswith(reason + ":"), entry
        assert (entry["frame_rate"], entry["frames_processed"], entry["detections"]) == (-1.0, [], None)
    for photo in ("S1_D04_R6_PICT0020.JPG",):
        assert "frames_processed" not in by_file[d + photo] and by_file[d + photo]["detections"]

    # MegaDetector's validator runs in a process of its own: importing megadetector sets Pillow's global
    # LOAD_TRUNCATED_IMAGES, which would leak into every later test of this process
    validator = (
        "import json, sys\n"
        "from megadetector.postprocessing.validate_batch_results import ValidateBatchResultsOptions, "
        "validate_batch_results\n"
        "options = ValidateBatchResultsOptions()\n"
        "options.check_image_existence = True\n"
        "options.relative_path_base = sys.argv[2]\n"
        "options.raise_errors = True\n"
        "result = validate_batch_results(sys.argv[1], options)['validation_results']\n"
        "print(json.dumps({'errors': [str(e) for e in result['errors']], 'warnings': result['warnings']}))\n"
    )
    checked = subprocess.run(
        [sys.executable, "-c", validator, str(out), str(card)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    validated = json.loads(checked.stdout.strip().splitlines()[-1])
    assert validated["errors"] == [], validated["errors"]
    photo_failures = [w for w in validated["warnings"] if "null detections array" not in w]
    assert photo_failures == [], validated["warnings"]


def test_sampling_all_frames_and_media_choices(card: Path, model_320: Path, tmp_path: Path) -> None:
    one = card / "DCIM" / "100MEDIA" / "CLIP0001.MP4"
    every = _detect(one, tmp_path / "a.json", model_320, "--every-nth-frame", "5", "--all-frames")
    entry = every["CLIP0001.MP4"]
    assert entry["frames_processed"] == [0, 5, 10, 15, 20, 25]
    assert len({det["frame_number"] for det in entry["detections"]}) > 1, "every analysed frame's boxes"
    capped = _detect(one, tmp_path / "b.json", model_320, "--sample-fps", "5", "--max-frames", "4")
    assert capped["CLIP0001.MP4"]["frames_processed"] == [0, 2, 4, 6]
    photos_only = _detect(card, tmp_path / "c.json", model_320, "--media", "photos")
    assert not any("frames_processed" in e for e in photos_only.values()) and len(photos_only) == 4
    videos_only = _detect(card, tmp_path / "d.json", model_320, "--media", "videos")
    assert all("frames_processed" in e for e in videos_only.values()) and len(videos_only) == 10


def test_a_decoder_that_hangs_or_dies_is_that_clips_failure(card: Path, model_320: Path, tmp_path: Path) -> None:
    """FFmpeg runs in a child process: a clip it hangs on (a FIFO that never delivers, as a stalled card read) is
    stopped at the time limit, and one whose decoder is killed (as a native crash or the OOM killer would) is
    recorded as crashed; the parent goes on."""
    detector = Detector(model_320)
    fifo = tmp_path / "STALLED.MP4"
    os.mkfifo(fifo)
    hung = detect_clip(detector, fifo, VideoSettings(decode_timeout_s=2.0))
    assert hung.failure is not None and hung.failure.startswith("timeout: "), hung.failure
    clip = card / "DCIM" / "100MEDIA" / "CLIP0001.MP4"
    with ClipReader(clip, VideoSettings()) as reader:
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(PhotoError) as died:
            list(reader.frames())
    assert died.value.reason == "crashed" and "signal 9" in died.value.message
    after = detect_clip(detector, clip, VideoSettings())
    assert after.failure is None and len(after.frames) == 3, "the next clip decodes as before"


def test_clips_that_lie_in_their_headers_are_failures_or_processed_never_the_end_of_the_run(
    photos: list[Path], model_320: Path, tmp_path: Path
) -> None:
    """Absurd declared sizes (30000x30000) and frame rates (0, 1e9) in an AVI's headers: each clip is a recorded
    failure with a reason, or is processed correctly; the photo beside them always is."""
    card = tmp_path / "card"
    card.mkdir()
    shutil.copy2(photos[0], card / "IMG_0001.JPG")
    good = clips.mjpeg_422_then_420(tmp_path / "good.avi", photos)
    clips.patched_avi(good, card / "HUGE.AVI", size=(30000, 30000))
    clips.patched_avi(good, card / "RATE0.AVI", rate=(0, 1))
    clips.patched_avi(good, card / "RATE1E9.AVI", rate=(1_000_000_000, 1))
    by_file = _detect(card, tmp_path / "r.json", model_320)
    assert by_file["IMG_0001.JPG"]["detections"], "the photo is processed whatever the clips beside it do"
    for name in ("HUGE.AVI", "RATE0.AVI", "RATE1E9.AVI"):
        entry = by_file[name]
        if "failure" in entry:
            assert entry["failure"].split(":")[0] in {"too_large", "corrupt", "not_a_video", "no_frames"}, entry
            assert entry["frame_rate"] == -1.0
        else:
            assert entry["frames_processed"] and entry["frame_rate"] >= 0, entry
            assert 0 <= entry["frame_rate"] <= 1000, "a rate no camera records is not passed on"


def test_camtrap_dp_lists_clips_as_video_media_with_frame_times(card: Path, model_320: Path, tmp_path: Path) -> None:
    from tests.camtrap_validation import package_errors

    out = tmp_path / "r.json"
    _detect(card, out, model_320)
    template = tmp_path / "t.yaml"
    made = run_cli("export-camtrap-dp", out, "--images", card, "--template", template)
    assert made.returncode == 0, made.stderr
    text = re.sub(r'"TODO: [^"]*"', '"Someone"', template.read_text()).replace("timezone: null", "timezone: UTC")
    text = text.replace("latitude: null", "latitude: -2.3").replace("longitude: null", "longitude: 34.8")
    (tmp_path / "d.yaml").write_text(text)
    package = tmp_path / "package"
    done = run_cli(
        "export-camtrap-dp", out, "--images", card, "--deployment-config", tmp_path / "d.yaml", "-o", package
    )
    assert done.returncode == 0, done.stderr
    assert "(11 of them video clips;" in done.stdout, done.stdout
    assert package_errors(package) == []
    with (package / "media.csv").open() as f:
        media = {row["fileName"]: row for row in csv.DictReader(f)}
    assert media["CLIP0001.MP4"]["fileMediatype"] == "video/mp4"
    assert media["CLIP0003.AVI"]["fileMediatype"] == "video/x-msvideo"
    assert media["IMG_9999.JPG"]["fileMediatype"] == "video/mp4", "a clip named like a photo, by its content"
    assert media["S1_D04_R6_PICT0020.JPG"]["fileMediatype"] == "image/jpeg"
    with (package / "observations.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["mediaID"] == media["CLIP0001.MP4"]["mediaID"]]
    start = datetime.fromisoformat(media["CLIP0001.MP4"]["timestamp"].replace("Z", "+00:00"))
    animal = next(row for row in rows if row["observationType"] == "animal")
    seen = datetime.fromisoformat(animal["eventStart"].replace("Z", "+00:00"))
    assert timedelta(0) <= seen - start <= timedelta(seconds=3), "seen at its poster frame's time in the clip"


def test_a_classifier_names_a_clip_by_vote_over_its_frames(
    photos_dir: Path, model_320: Path, species_classifier: dict[str, Path], tmp_path: Path
) -> None:
    """The classifier runs on each frame's animal boxes (crops cut from the frame as decoded); the clip's entry
    carries each box's classifications, and the review names the clip by the mean over its frames."""
    from andi_edge.results.run import load_results_file

    owls = sorted((photos_dir / "burrowing_owl").glob("*.JPG"))[:4]
    card = tmp_path / "card"
    card.mkdir()
    clips.h264(card / "OWLS.MP4", owls, seconds=4, rate=5, size=(960, 720))
    out = tmp_path / "r.json"
    done = run_cli("detect", card, "-m", model_320, "--classifier", species_classifier["model"], "-o", out)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    [entry] = document["images"]
    assert "classification_categories" in document and entry["frames_processed"] == [0, 5, 10, 15]
    classified = [d for d in entry["detections"] if d.get("classifications")]
    assert classified, "animal boxes of the frames are classified"
    results = load_results_file(out, card)
    [record] = results.records
    assert record.is_clip and record.boxes
    species = {results.review.label_name(results.review.box_label(box)) for box in record.boxes if box.conf >= 0.25}
    assert "burrowing owl" in species, species


def test_batch_gives_detects_results_for_clips_on_both_workers(card: Path, model_320: Path, tmp_path: Path) -> None:
    by_detect = _detect(card, tmp_path / "d.json", model_320)
    proc = run_cli("batch", card, "-m", model_320, "-o", tmp_path / "b.json", "--workers", "2", "--chunk-size", "2")
    assert proc.returncode == 0, proc.stderr
    by_batch = {e["file"]: e for e in json.loads((tmp_path / "b.json").read_text())["images"]}
    assert set(by_batch) == set(by_detect)
    for name, entry in by_detect.items():
        if "frames_processed" in entry and "failure" not in entry:
            assert by_batch[name]["frames_processed"] == entry["frames_processed"], name
            assert by_batch[name]["detections"] == entry["detections"], name
        elif "failure" in entry:
            assert by_batch[name]["failure"].split(":")[0] == entry["failure"].split(":")[0], name
