"""One failure policy for everything a photo can do to the daemon (issue: field faults, second round).

Inference and classifier exceptions become the photo's recorded outcome in both pipeline modes; memory pressure
is retried; a photo that ends the process again and again is given up on after ``retry.max_crashes`` starts; a
file far bigger than a photo is refused before it is read. Real photos, real SQLite, a real `watch` subprocess
for the kills. Where a model must raise on one photo, a fake backend stands in: no real model raises on
chosen photos (the fake is said to be one in each test that uses it)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from andi_edge.daemon.service import RunOptions, WatchService
from andi_edge.pipeline import plan_pipeline
from andi_edge.runtime.backends.fake import FakeBackend
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard
from andi_edge.settings import load_watch_config
from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import make_daemon, wait_until

CARD = ModelCard(name="fake", class_names=("animal", "person"), input_height=320, input_width=320, head="yolov5")
SERENGETI = "serengeti_S1_D04_R6_sequence"


def _raising_on_grey_levels(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The fake model: raises as ONNX Runtime does on an all-black square photo (no padding), runs out of memory on
    an all-white one."""
    mean = float(x.mean())
    if mean < 0.01:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")
    if mean > 0.99:
        raise MemoryError
    output = np.zeros((1, 6300, 7), np.float32)
    output[0, 0] = [160, 160, 80, 40, 0.9, 0.9, 0.1]
    return output


@pytest.mark.parametrize("mode", ["parallel", "split"])
def test_an_exception_in_inference_is_the_photos_outcome(tmp_path: Path, photos_dir: Path, mode: str) -> None:
    card = tmp_path / "card"
    card.mkdir()
    for src in sorted((photos_dir / SERENGETI).glob("*.JPG"))[:3]:
        shutil.copy2(src, card / src.name)
    Image.new("RGB", (640, 640), (0, 0, 0)).save(card / "BLACK.JPG")
    Image.new("RGB", (640, 640), (255, 255, 255)).save(card / "WHITE.JPG")
    model = tmp_path / "fake.onnx"
    model.write_bytes(b"not read by the fake backend")
    config = load_watch_config(
        None,
        {
            "watch": str(card),
            "model": str(model),
            "output": str(tmp_path / "out"),
            "pipeline.mode": mode,
            "retry.max_attempts": 2,
            "retry.backoff_s": 0.1,
            "retry.max_backoff_s": 0.1,
        },
    )
    backend = FakeBackend(_raising_on_grey_levels, (1, 3, 320, 320), (1, 6300, 7), {CARD_KEY: CARD.to_json()})
    detector = Detector(model, backend=backend)
    plan = plan_pipeline(dataclasses.replace(config.pipeline, workers=2), 0, ())
    service = WatchService(
        config=config,
        detector=detector,
        pipeline=plan.settings,
        state_dir=tmp_path / "state",
        options=RunOptions(once=True),
    )
    assert service.run() == 0
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        rows = dict(db.execute("SELECT rel_path, state || ' ' || COALESCE(failure, '') FROM photos"))
    assert rows.pop("BLACK.JPG") == (
        "failed internal_error: BLACK.JPG: RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero "
        "status code"
    )
    white = rows.pop("WHITE.JPG")
    assert white.startswith("failed out_of_memory: WHITE.JPG") and "after 2 attempts" in white  # tried again first
    assert set(rows.values()) == {"done "}


def _slow_png(path: Path) -> None:
    """A real photo as a big PNG: no reduced decode for PNG, so it stays claimed long enough to be caught."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(path, compress_level=1)


def _started(log: Path, times: int) -> bool:
    return log.read_text().count("watching") >= times


def _claimed(state: Path, rel: str) -> bool:
    with sqlite3.connect(f"file:{state / 'journal.sqlite3'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT state FROM photos WHERE rel_path=?", (rel,)).fetchone()
    return row is not None and row[0] == "claimed"


def test_a_photo_that_keeps_killing_the_daemon_is_given_up_on(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """kill -9 each time the daemon holds one photo (as a decoder crash, an OOM kill or the watchdog would):
    after retry.max_crashes starts it is recorded as failed, and every other photo is processed once."""
    daemon = make_daemon(tmp_path, model_320)
    _slow_png(daemon.card / "A_KILLER.PNG")
    others = sorted((photos_dir / SERENGETI).glob("*.JPG"))[:4]
    for src in others:
        shutil.copy2(src, daemon.card / src.name)
    for kill in range(3):  # retry.max_crashes defaults to 3
        proc = daemon.start()
        try:  # the claim left by the last kill is reaped at start: wait for this run's own
            wait_until(partial(_started, daemon.log, kill + 1), 60, "the start", daemon.log)
            wait_until(lambda: _claimed(daemon.state, "A_KILLER.PNG"), 60, f"the photo claimed ({kill})", daemon.log)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
    daemon.run_once()
    with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
        rows = dict(db.execute("SELECT rel_path, state || ' ' || COALESCE(failure, '') FROM photos"))
    assert rows.pop("A_KILLER.PNG").startswith("failed crashed: the daemon stopped 3 times")
    assert rows == {src.name: "done " for src in others}
    killer = next(i for i in daemon.batch()["images"] if i["file"] == "A_KILLER.PNG")
    assert killer["failure"].startswith("crashed")


def test_a_huge_file_named_like_a_photo_is_refused_before_it_is_read(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """A multi-GB .JPG (a damaged FAT chain, a disk image) was read whole: MemoryError or an OOM kill, every start.
    A sparse file stands in for it (no disk used); the limit is detector.max_decode_mb."""
    daemon = make_daemon(tmp_path, model_320)
    with (daemon.card / "DISK.JPG").open("wb") as f:
        f.truncate(3 * 2**30)
    shutil.copy2(sorted((photos_dir / SERENGETI).glob("*.JPG"))[0], daemon.card / "IMG_0001.JPG")
    daemon.run_once()
    by_file = {i["file"]: i for i in daemon.batch()["images"]}
    assert by_file["DISK.JPG"]["failure"].startswith("too_large: DISK.JPG: the file is 3072 MiB")
    assert "failure" not in by_file["IMG_0001.JPG"]
    assert os.path.getsize(daemon.card / "DISK.JPG") == 3 * 2**30


def test_a_card_path_that_is_not_utf8_under_systemd_notify(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """NOTIFY_SOCKET set (every Type=notify unit) and a watched path with a byte that is not UTF-8 (and a line
    break): UnicodeEncodeError, exit 70, at every start. The status says the path as `status` shows it."""
    card = tmp_path / os.fsdecode(b"card caf\xe9\nREADY=1")
    card.mkdir()
    daemon = dataclasses.replace(make_daemon(tmp_path, model_320), card=card)
    shutil.copy2(sorted((photos_dir / SERENGETI).glob("*.JPG"))[0], daemon.card / "IMG_0001.JPG")
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        proc = daemon.start("--once", env=dict(os.environ, NOTIFY_SOCKET=address))
        assert proc.wait(timeout=120) == 0, daemon.log.read_text()
        messages = []
        with contextlib.suppress(TimeoutError):
            while True:
                sock.settimeout(0.5)
                messages.append(sock.recv(65536).decode("utf-8"))
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert ready.count("\n") == 1 and "caf\\xe9?READY=1" in ready
    assert daemon.counts() == {"done": 1}


def test_a_render_that_fails_does_not_stop_the_daemon(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A row whose stored result cannot be read (a damaged row) made every render raise, at every start."""
    daemon = make_daemon(tmp_path, model_320)
    photos = sorted((photos_dir / SERENGETI).glob("*.JPG"))[:3]
    for src in photos[:2]:
        shutil.copy2(src, daemon.card / src.name)
    daemon.run_once()
    with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
        db.execute("UPDATE photos SET record_json='{not json' WHERE rel_path=?", (photos[0].name,))
    shutil.copy2(photos[2], daemon.card / photos[2].name)
    daemon.run_once()
    assert daemon.counts() == {"done": 3}
    assert sorted(i["file"] for i in daemon.batch()["images"]) == sorted(p.name for p in photos[1:])
    assert "its stored result cannot be read" in daemon.log.read_text()


def test_retry_failed_does_not_upgrade_a_journal_under_a_running_older_daemon(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    (daemon.card / "EMPTY.JPG").write_bytes(b"")
    daemon.run_once()
    journal = daemon.state / "journal.sqlite3"
    with sqlite3.connect(journal) as db:  # as an older daemon (schema 3) left it
        db.execute("ALTER TABLE photos DROP COLUMN crashes")
    with (daemon.state / "watch.lock").open("a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # that daemon, running
        refused = run_cli("retry-failed", "--state", daemon.state, "--all")
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    assert refused.returncode == 2 and "would upgrade it under that daemon" in refused.stderr
    with sqlite3.connect(journal) as db:
        assert "crashes" not in {row[1] for row in db.execute("PRAGMA table_info(photos)")}
    done = run_cli("retry-failed", "--state", daemon.state, "--all")
    assert done.returncode == 0 and "1 failed photo(s)" in done.stdout, done.stderr


def _memory_cgroup(tmp_name: str, limit: int) -> Path:
    """A child memory cgroup of ours (v2, or v1's memory hierarchy) limited to ``limit`` bytes; skip where none
    can be made (not root, or a read-only cgroup file system)."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = next((line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(",")), None)
    base = Path("/sys/fs/cgroup/memory") / v1.lstrip("/") if v1 is not None else None
    if base is None:
        v2 = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        base = Path("/sys/fs/cgroup") / v2.lstrip("/")
    group = base / tmp_name
    try:
        group.mkdir(exist_ok=True)
        (group / ("memory.limit_in_bytes" if v1 is not None else "memory.max")).write_text(str(limit))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here ({exc})")
    return group


def test_watch_stays_within_its_planned_memory_whatever_the_config(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """MemoryMax=1G (the card unit's) and an accepted but greedy config: six workers, a 3 GB decode budget, full
    decodes, a crop for every weak box. 48 MP photos took the daemon past its limit (OOM kill); now each photo's
    decode is fitted to what the model's measured footprint leaves of three quarters of the limit (the units'
    MemoryHigh) and every photo is processed."""
    group = _memory_cgroup(f"andi-test-{os.getpid()}", 2**30)
    try:
        daemon = make_daemon(tmp_path, model_320)
        big = Image.open(sorted((photos_dir / SERENGETI).glob("*.JPG"))[0]).convert("RGB").resize((8000, 6000))
        buffer = io.BytesIO()
        big.save(buffer, format="JPEG", quality=90)
        for i in range(8):
            (daemon.card / f"BIG_{i}.JPG").write_bytes(buffer.getvalue() + f"#{i}".encode())
        daemon.config.write_text(
            daemon.config.read_text()
            + "detector:\n  max_decode_mb: 3000\n  reduced_decode: false\n  conf_threshold: 0.001\n"
            + "pipeline:\n  mode: parallel\n  workers: 6\n"
        )
        daemon.config.write_text(daemon.config.read_text().replace("crop_threshold: 0.3", "crop_threshold: 0.01"))
        procs = group / "cgroup.procs"
        daemon.run_once(prefix=("sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"'))
        peak_file = group / (
            "memory.max_usage_in_bytes" if (group / "memory.max_usage_in_bytes").exists() else "memory.peak"
        )
        peak = int(peak_file.read_text()) if peak_file.exists() else None
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()
    assert daemon.counts() == {"done": 8}
    assert re.search(
        r"memory limit 1024 MiB: the model holds \d+ MiB; each photo's decode within", daemon.log.read_text()
    )
    if peak is not None:  # v1 counts the page cache too: still within the plan (the units' MemoryHigh)
        assert peak <= 3 * 2**28, f"peak {peak / 2**20:.0f} MiB"


def test_watch_runs_one_inference_at_a_time_where_two_do_not_fit(
    tmp_path: Path, photos_dir: Path, weights_path: Path
) -> None:
    """A model whose two inferences at once do not fit the memory limit but whose one does (YOLOv5n at 1280 px
    under 480 MiB: here about 275 MiB held for two at once and 185 for one, each photo then needing its input and
    32 MiB): with the pipeline left to the machine, watch ran nothing and said to run one inference at a time
    (pipeline.workers 1, backend.threads N); now it runs that, says so, and processes every photo. Workers set by
    hand are kept, and refused with what to change."""
    from andi_edge.toolchain.export import ExportRequest, export_onnx
    from andi_edge.toolchain.weights import resolve_weights

    model = tmp_path / "yolov5n-1280.onnx"
    export_onnx(ExportRequest(weights=resolve_weights(str(weights_path)), output=model, imgsz=1280))
    group = _memory_cgroup(f"andi-test-one-{os.getpid()}", 480 * 2**20)
    procs = group / "cgroup.procs"
    in_group = ("sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"')
    (tmp_path / "auto").mkdir()
    (tmp_path / "by-hand").mkdir()
    try:
        daemon = make_daemon(tmp_path / "auto", model)
        for source in sorted((photos_dir / SERENGETI).glob("*.JPG"))[:4]:
            (daemon.card / source.name).write_bytes(source.read_bytes())
        daemon.run_once(prefix=in_group)
        by_hand = make_daemon(tmp_path / "by-hand", model)
        by_hand.card.joinpath("IMG_0001.JPG").write_bytes(next((photos_dir / SERENGETI).glob("*.JPG")).read_bytes())
        by_hand.config.write_text(by_hand.config.read_text() + "pipeline:\n  workers: 2\n")
        refused = by_hand.start("--once", prefix=in_group)
        assert refused.wait(timeout=240) == 2, by_hand.log.read_text()
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()
    log = daemon.log.read_text()
    cores = len(os.sched_getaffinity(0))
    assert daemon.counts() == {"done": 4}, log
    assert re.search(
        r"memory: 2 inferences at once need at least \d+ MiB of the 360 MiB planned under the memory limit of 480 "
        rf"MiB, one at a time \d+ MiB: running one inference at a time on {cores} threads",
        log,
    ), log
    assert f"pipeline parallel: 1 worker, {cores} inference thread(s) each" in log
    assert re.search(r"memory limit 480 MiB: the model holds \d+ MiB", log)
    refusal = by_hand.log.read_text()
    assert "too little memory for this model" in refusal and "run 2 at once" in refusal, refusal
    assert f"pipeline.mode: parallel, pipeline.workers: 1, backend.threads: {cores}" in refusal
    assert by_hand.counts().get("done", 0) == 0


def test_check_refuses_what_would_fail_at_the_first_photo(
    tmp_path: Path, photos_dir: Path, model_320: Path, weights_path: Path
) -> None:
    """`check` passed an output folder on a read-only file system (watch then exited 6 at start) and a PyTorch
    checkpoint as the model."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    daemon = make_daemon(tmp_path, model_320)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        args = (daemon.card, "--config", daemon.config, "--model", model_320)
        refused = run_cli("check", *args, "--output", readonly / "out", "--state", daemon.state)
        started = run_cli("watch", *args, "--output", readonly / "out", "--state", daemon.state, "--once")
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert refused.returncode == 6 and f"cannot write the outputs in {readonly}" in refused.stderr, refused.stderr
    assert started.returncode == 6 and "cannot write the outputs" in started.stderr
    checkpoint = run_cli("check", daemon.card, "--config", daemon.config, "--model", weights_path, "-o", daemon.out)
    assert checkpoint.returncode == 2 and "is a PyTorch checkpoint" in checkpoint.stderr
    assert "andi-edge export" in checkpoint.stderr


def test_a_copy_that_stalls_mid_file_is_not_a_failure(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A copy that stalls longer than stable_s is read half-written (a corrupt photo); once the copy ends, the
    finished file is the same photo: its sidecar at the photo's own name holds the result, counted once (it was
    'done 1, failed 1', the result under a ~hash name)."""
    daemon = make_daemon(tmp_path, model_320)
    proc = daemon.start()
    try:
        source = sorted((photos_dir / SERENGETI).glob("*.JPG"))[0]
        data = source.read_bytes()
        target = daemon.card / "DCIM" / "IMG_0001.JPG"
        target.parent.mkdir(parents=True)
        with target.open("wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            wait_until(lambda: daemon.counts().get("failed") == 1, 60, "the half-written photo read", daemon.log)
            f.write(data[len(data) // 2 :])
        wait_until(lambda: daemon.counts() == {"done": 1}, 60, "the finished photo", daemon.log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    [sidecar] = daemon.sidecars()
    assert sidecar.name == "IMG_0001.JPG.json"
    assert "failure" not in json.loads(sidecar.read_text())
    [entry] = daemon.batch()["images"]
    assert entry["file"] == "DCIM/IMG_0001.JPG" and "failure" not in entry
    status = run_cli("status", "--state", daemon.state)
    assert "done 1, failed 0" in status.stdout, status.stdout


def test_the_daemon_says_what_it_is_doing(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A progress line (done of total, photos/s, failures) in the log while photos are queued, and `status` says
    a daemon is running (pid, since when, rate) in a reviewer's words; it was silent from start to stop."""
    daemon = make_daemon(tmp_path, model_320)
    photos = sorted((photos_dir / SERENGETI).glob("*.JPG"))
    for i in range(40):
        (daemon.card / f"IMG_{i:04d}.JPG").write_bytes(photos[i % len(photos)].read_bytes() + f"#{i}".encode())
    (daemon.card / "BROKEN.JPG").write_bytes(b"\xff\xd8 not a photo")
    (daemon.card / "CLIP0001.MP4").write_bytes(b"\0\0\0\x18ftypmp42")  # a clip that is only a header
    proc = daemon.start()
    try:
        wait_until(lambda: "progress: 42 of 42 photos done" in daemon.log.read_text(), 120, "the progress line")
        status = run_cli("status", daemon.out)  # the output folder, as a user would give it
        assert status.returncode == 0, status.stderr
        assert f"daemon: running (pid {proc.pid}, since " in status.stdout, status.stdout
        facts = json.loads(run_cli("status", daemon.state, "--json").stdout)
        assert facts["daemon"]["running"] is True and facts["daemon"]["photos_per_s"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    line = next(x for x in daemon.log.read_text().splitlines() if "progress: 42 of 42" in x)
    assert "photos/s" in line and "2 failed this run" in line
    after = run_cli("status", daemon.out).stdout
    assert "photos: done 40, failed 2, waiting 0" in after and "daemon: not running" in after
    assert "local/CLIP0001.MP4: not_a_video" in after
    assert "at confidence >= 0.25:" in after and "with animal" in after
    assert "failed (final: the file itself): local/BROKEN.JPG: unsupported_format" in after
    assert "retry-failed" not in after  # nothing that retrying could mend
    kept = run_cli("retry-failed", "--state", daemon.state)
    assert "no failed photos to try again" in kept.stdout and "left alone" in kept.stdout
    assert "2 failed photo(s) back in the queue" in run_cli("retry-failed", "--state", daemon.state, "--all").stdout
