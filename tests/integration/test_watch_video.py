"""The daemon and video clips: a clip is one journal item like a photo, processed exactly once through kill -9,
its sidecar holding every analysed frame, crops cut from its poster frame, in the card's one batch file."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import time
from pathlib import Path

from tests import clips
from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import make_daemon, wait_until

SERENGETI = "serengeti_S1_D04_R6_sequence"


def test_clips_on_a_card_are_processed_exactly_once_through_kill_9(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    photos = sorted((photos_dir / SERENGETI).glob("*.JPG"))[:3]
    daemon = make_daemon(tmp_path, model_320)
    folder = daemon.card / "DCIM" / "100MEDIA"
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy2(photo, folder / photo.name)
    # long enough (40 s at 10 frames/s, 5 analysed a second) to be claimed when the kill comes
    clips.h264(tmp_path / "long.mp4", photos, seconds=40, rate=10, size=(640, 480))
    clips.h264(tmp_path / "short.mov", photos, seconds=2, rate=15, size=(480, 360))
    (tmp_path / "watch.yaml").write_text((tmp_path / "watch.yaml").read_text() + "video:\n  sample_fps: 5\n")
    proc = daemon.start()
    try:
        shutil.copy2(tmp_path / "long.mp4", folder / "CLIP0001.MP4")
        shutil.copy2(tmp_path / "short.mov", folder / "CLIP0002.MOV")

        def long_clip_claimed() -> bool:
            with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
                row = db.execute("SELECT state FROM photos WHERE rel_path LIKE '%CLIP0001.MP4'").fetchone()
            return row is not None and row[0] == "claimed"

        wait_until(long_clip_claimed, 60, "the long clip in the works", daemon.log)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    daemon.run_once()
    assert daemon.counts() == {"done": 5}, daemon.log.read_text()[-3000:]
    with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
        rows = db.execute(
            "SELECT rel_path, crashes FROM photos WHERE rel_path LIKE '%CLIP%' ORDER BY rel_path"
        ).fetchall()
    assert [r[0] for r in rows] == ["DCIM/100MEDIA/CLIP0001.MP4", "DCIM/100MEDIA/CLIP0002.MOV"], "one row each"
    assert rows[0][1] == 1, "the clip held at the kill was redone (one crash counted), the other not"

    batch = daemon.batch()
    files = [image["file"] for image in batch["images"]]
    assert len(files) == len(set(files)) == 5
    by_file = {image["file"]: image for image in batch["images"]}
    long_clip = by_file["DCIM/100MEDIA/CLIP0001.MP4"]
    assert long_clip["frame_rate"] == 10.0 and long_clip["frames_processed"][:3] == [0, 2, 4]
    assert len(long_clip["frames_processed"]) == 200 and all("frame_number" in d for d in long_clip["detections"])
    sidecars = [p for p in daemon.sidecars() if "CLIP" in p.name]
    assert sorted(p.name for p in sidecars) == ["CLIP0001.MP4.json", "CLIP0002.MOV.json"], "one sidecar each"
    sidecar = json.loads(sidecars[0].read_text())
    frames_with_boxes = {d["frame_number"] for d in sidecar["detections"]}
    assert len(frames_with_boxes) > 3, "the sidecar holds every analysed frame's boxes"
    assert len(sidecar["andi_edge"]["frame_timings_ms"]) == 200
    crops = sorted(p.name for p in (daemon.out / "local" / "crops").rglob("*CLIP0001*"))
    assert crops and all(re.search(r"CLIP0001_frame\d{6}__", name) for name in crops), crops
    status = run_cli("status", daemon.out)
    assert "done 5, failed 0" in status.stdout and "(of the done ones, 2 video clip(s))" in status.stdout


def test_a_clip_copied_with_a_stall_is_read_again_whole(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A clip whose copy stalls longer than stable_s is read half-written (its index, at the end, not there yet:
    not a video FFmpeg can open); once the copy ends, the whole clip replaces that failure: one row, done."""
    photos = sorted((photos_dir / SERENGETI).glob("*.JPG"))[:3]
    daemon = make_daemon(tmp_path, model_320)
    clip = clips.h264(tmp_path / "clip.mp4", photos, seconds=3).read_bytes()
    proc = daemon.start()
    try:
        target = daemon.card / "DCIM" / "100MEDIA" / "CLIP0001.MP4"
        target.parent.mkdir(parents=True)
        with target.open("wb") as f:
            f.write(clip[: len(clip) // 2])
            f.flush()
            wait_until(lambda: daemon.counts().get("failed") == 1, 60, "the half-written clip read", daemon.log)
            f.write(clip[len(clip) // 2 :])
        wait_until(lambda: daemon.counts() == {"done": 1}, 60, "the whole clip", daemon.log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    [entry] = daemon.batch()["images"]
    assert entry["frames_processed"] == [0, 10, 20] and "failure" not in entry
