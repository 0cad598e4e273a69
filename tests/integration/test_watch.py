"""``andi-edge watch`` as a real subprocess, on copies of real photos: arrivals, crashes, signals, faults."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import Daemon, copy_slowly, hashes, make_daemon, wait_until

SERENGETI = "serengeti_S1_D04_R6_sequence"


def _real_photos(photos_dir: Path, n: int) -> list[Path]:
    pool = sorted((photos_dir / SERENGETI).glob("*.JPG")) + sorted((photos_dir / "peru_sdzg2").glob("*.JPG"))
    return pool[:n]


def _fill_card(card: Path, photos: list[Path]) -> list[str]:
    rels = []
    for i, src in enumerate(photos):
        rel = f"DCIM/{100 + i % 3}RECNX/IMG_{i:04d}.JPG"
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, card / rel)
        rels.append(rel)
    return rels


def _assert_exactly_once(daemon: Daemon, rels: list[str]) -> None:
    sidecars = {p.relative_to(daemon.out / "local").as_posix() for p in daemon.sidecars()}
    assert sidecars == {f"{r}.json" for r in rels}
    files = [image["file"] for image in daemon.batch()["images"]]
    assert sorted(files) == sorted(rels), "each photo exactly once in the batch JSON"
    assert not list(daemon.out.rglob("*.tmp")), "no temporary files left behind"
    for sidecar in daemon.sidecars():
        document = json.loads(sidecar.read_text())
        for crop in document["andi_edge"]["crops"]:
            assert (daemon.out / "local" / crop).is_file()


def test_once_processes_a_card_and_leaves_originals_untouched(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    rels = _fill_card(daemon.card, _real_photos(photos_dir, 6))
    data = (daemon.card / rels[0]).read_bytes()
    (daemon.card / "DCIM/100RECNX/TRUNC.JPG").write_bytes(data[: len(data) // 2])
    (daemon.card / "DCIM/100RECNX/ZERO.JPG").write_bytes(b"")
    (daemon.card / "DCIM/100RECNX/NOTES.JPG").write_text("not a photo")
    (daemon.card / "DCIM/100RECNX/._IMG_0000.JPG").write_bytes(b"\x00\x05")
    before = hashes(daemon.card)
    daemon.run_once()
    assert hashes(daemon.card) == before, "originals must never change"
    assert daemon.counts() == {"done": 6, "failed": 3}
    batch = daemon.batch()
    assert batch["info"]["format_version"] == "1.6"
    by_file = {image["file"]: image for image in batch["images"]}
    assert by_file["DCIM/100RECNX/TRUNC.JPG"]["failure"].startswith("corrupt")
    assert by_file["DCIM/100RECNX/ZERO.JPG"]["failure"].startswith("empty_file")
    assert by_file["DCIM/100RECNX/NOTES.JPG"]["failure"].startswith("unsupported_format")
    sidecar = json.loads((daemon.out / "local" / f"{rels[0]}.json").read_text())
    provenance = sidecar["andi_edge"]
    assert provenance["model_sha256"] and provenance["sha256"] and provenance["backend"] == "ort"
    assert set(provenance["timings_ms"]) == {"read", "decode", "letterbox", "inference", "postprocess"}
    assert sidecar["width"] == 2048 and sidecar["height"] == 1536
    crops = list((daemon.out / "local" / "crops").rglob("*.jpg"))
    assert crops, "the Serengeti frames hold animals above the crop threshold"
    # a second run finds nothing new to do
    daemon.run_once()
    assert daemon.counts() == {"done": 6, "failed": 3}
    status = run_cli("status", "--state", daemon.state, "--json")
    report = json.loads(status.stdout)
    assert report["counts"]["done"] == 6 and len(report["recent_failures"]) == 3
    assert 'andi_edge_photos{state="done"} 6' in (tmp_path / "metrics.prom").read_text()


def test_card_folders_named_like_outputs(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A card folder named like the batch file, the crops folder or a sidecar: every photo in the batch JSON, each
    sidecar a file, the daemon carries on (it lost the whole batch file, or exited 6 at every start)."""
    daemon = make_daemon(tmp_path, model_320)
    rels = [
        "megadetector_results.json/IMG_0001.JPG",
        "crops/IMG_0002.JPG",
        "DCIM/IMG_0003.JPG",
        "DCIM/IMG_0003.JPG.json/IMG_0004.JPG",
    ]
    for rel, src in zip(rels, _real_photos(photos_dir, len(rels)), strict=True):
        (daemon.card / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, daemon.card / rel)
    daemon.run_once()
    assert daemon.counts() == {"done": len(rels)}
    assert sorted(image["file"] for image in daemon.batch()["images"]) == sorted(rels)
    assert (daemon.out / "local" / "DCIM" / "IMG_0003.JPG.json").is_file()
    sidecars = [json.loads(p.read_text()) for p in daemon.sidecars() if "crops" not in p.relative_to(daemon.out).parts]
    assert sorted(document["file"] for document in sidecars) == sorted(rels)


def test_photos_arriving_slowly_and_in_bursts(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    proc = daemon.start()
    try:
        photos = _real_photos(photos_dir, 10)
        rels = []
        for burst in range(3):
            for i, src in enumerate(photos[burst * 3 : burst * 3 + 3]):
                rel = f"DCIM/{100 + burst}RECNX/nested/IMG_{burst}{i}.JPG"
                copy_slowly(src, daemon.card / rel) if i == 0 else shutil.copy2(src, daemon.card / rel)
                rels.append(rel)
            time.sleep(0.5)
        rel = "late/IMG_LAST.JPG"
        (daemon.card / "late").mkdir()
        shutil.copy(photos[9], daemon.card / "late" / ".partial")
        os.rename(daemon.card / "late" / ".partial", daemon.card / rel)  # how rsync lands a file
        rels.append(rel)
        wait_until(lambda: daemon.counts().get("done") == len(rels), 120, "all photos processed", daemon.log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert daemon.counts() == {"done": len(rels)}, "no half-copied photo was read as broken"
    _assert_exactly_once(daemon, rels)


def test_kill_9_at_random_moments_loses_nothing_and_repeats_nothing(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    rels = _fill_card(daemon.card, _real_photos(photos_dir, 48))
    before = hashes(daemon.card)
    rng = random.Random(20261126)
    for round_ in range(6):
        proc = daemon.start()
        if round_ == 0:
            time.sleep(rng.uniform(0.1, 0.6))  # during start-up, possibly before the journal exists
        else:
            # on progress, not on a timer, so every kill lands while photos are being processed
            target = daemon.counts().get("done", 0) + rng.randint(1, 5)
            wait_until(
                lambda target=target: daemon.counts().get("done", 0) >= target,  # type: ignore[misc]
                60,
                "progress before the kill",
                daemon.log,
            )
            time.sleep(rng.uniform(0, 0.04))
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait(timeout=30)
    assert daemon.counts().get("done", 0) < len(rels), "the kills must land before the card is finished"
    daemon.run_once()
    assert daemon.counts() == {"done": len(rels)}
    _assert_exactly_once(daemon, rels)
    assert hashes(daemon.card) == before
    assert "re-queued" in daemon.log.read_text(), "some kill landed mid-photo and its claim was reaped"


@pytest.mark.slow
def test_kill_9_soak_of_a_thousand_photos_and_twenty_kills(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """The soak behind `-m slow` (a minute or two here): 1,000 photos, 24 SIGKILLs landing while photos are in
    flight, then every photo exactly once in every output."""
    daemon = make_daemon(tmp_path, model_320)
    pool = _real_photos(photos_dir, 60)
    rels = _fill_card(daemon.card, [pool[i % len(pool)] for i in range(1000)])
    before = hashes(daemon.card)
    rng = random.Random(20261201)
    kills = 0
    while kills < 24:
        proc = daemon.start()
        target = daemon.counts().get("done", 0) + rng.randint(5, 35)
        wait_until(
            lambda target=target: daemon.counts().get("done", 0) >= min(target, len(rels)),  # type: ignore[misc]
            120,
            "progress before the kill",
            daemon.log,
        )
        time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.wait(timeout=30)
        kills += 1
    assert daemon.counts().get("done", 0) < len(rels), "the kills must land before the card is finished"
    daemon.run_once(timeout=600)
    assert daemon.counts() == {"done": len(rels)}
    _assert_exactly_once(daemon, rels)
    assert hashes(daemon.card) == before
    log = daemon.log.read_text()
    assert log.count("re-queued") >= 5, "kills landed mid-photo and their claims were reaped"


def test_sigterm_finishes_the_current_photo_and_exits_cleanly(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    rels = _fill_card(daemon.card, _real_photos(photos_dir, 30))
    proc = daemon.start()
    wait_until(lambda: daemon.counts().get("done", 0) >= 3, 120, "some photos done", daemon.log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    counts = daemon.counts()
    assert counts.get("claimed", 0) == 0, "nothing left claimed after a clean stop"
    assert counts.get("done", 0) < len(rels), "it stopped part-way, as asked"
    daemon.run_once()
    _assert_exactly_once(daemon, rels)


def test_two_cards_with_the_same_file_names(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    first, second = _real_photos(photos_dir, 2)
    target = daemon.card / "DCIM" / "100RECNX" / "IMG_0001.JPG"
    target.parent.mkdir(parents=True)
    shutil.copy2(first, target)
    daemon.run_once()
    shutil.rmtree(daemon.card / "DCIM")  # card A out, card B in: same name, other photo
    target.parent.mkdir(parents=True)
    shutil.copy2(second, target)
    daemon.run_once()
    sidecars = daemon.sidecars()
    assert len(sidecars) == 2
    shas = {json.loads(p.read_text())["andi_edge"]["sha256"] for p in sidecars}
    assert len(shas) == 2, "neither card's result overwrote the other's"
    assert daemon.counts() == {"done": 2}


def test_full_disk_pauses_leaves_nothing_partial_and_resumes(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the disk-full path is then untested")
    try:
        daemon = make_daemon(tmp_path, model_320, out=small / "out")
        rels = _fill_card(daemon.card, _real_photos(photos_dir, 8))
        filler = small / "filler"
        filler.write_bytes(b"\0" * (3 * 1024 * 1024 - 48 * 1024))  # leave ~48 KiB: a few sidecars, no crops
        proc = daemon.start()
        try:
            wait_until(lambda: "disk full" in daemon.log.read_text(), 60, "the disk-full pause", daemon.log)
            assert proc.poll() is None, "a full disk must not kill the daemon"
            assert not list(daemon.out.rglob("*.tmp")) and not list(daemon.out.rglob(".*.tmp"))
            stalled = daemon.counts()
            assert stalled.get("done", 0) < len(rels)
            filler.unlink()
            wait_until(lambda: daemon.counts().get("done") == len(rels), 120, "resume after space frees up", daemon.log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()
        _assert_exactly_once(daemon, rels)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_card_pulled_out_and_put_back(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    photos = _real_photos(photos_dir, 4)
    rels = _fill_card(daemon.card, photos[:2])
    proc = daemon.start()
    try:
        wait_until(lambda: daemon.counts().get("done") == 2, 60, "first photos", daemon.log)
        os.rename(daemon.card, tmp_path / "pulled")
        wait_until(lambda: "is gone" in daemon.log.read_text(), 30, "the card-missing pause", daemon.log)
        assert proc.poll() is None
        os.rename(tmp_path / "pulled", daemon.card)
        shutil.copy2(photos[2], daemon.card / "DCIM" / "100RECNX" / "NEW.JPG")
        rels.append("DCIM/100RECNX/NEW.JPG")
        wait_until(lambda: daemon.counts().get("done") == 3, 60, "processing after the card returned", daemon.log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    _assert_exactly_once(daemon, rels)


def test_a_card_pulled_from_its_mount_point_loses_no_photo(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """The card unmounted while its mount point stays (an empty folder): pending photos wait for the card, and
    every one is processed once it is back (they were forgotten as "vanished", and never queued again)."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    daemon = make_daemon(tmp_path, model_320)
    card_volume = tmp_path / "card-volume"  # the card's file system; bind-mounted at the mount point
    card_volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(card_volume)], check=True)
    rels = []
    for i, src in enumerate(_real_photos(photos_dir, 12) * 10):  # 120 photos: a card still in progress
        rel = f"DCIM/{100 + i % 3}RECNX/IMG_{i:04d}.JPG"
        (card_volume / rel).parent.mkdir(parents=True, exist_ok=True)
        (card_volume / rel).write_bytes(src.read_bytes() + f"#{i}".encode())  # after the JPEG's end: other bytes
        rels.append(rel)
    subprocess.run(["mount", "--bind", str(card_volume), str(daemon.card)], check=True)
    proc = daemon.start()
    try:
        wait_until(lambda: (daemon.counts().get("done") or 0) >= 3, 60, "the first photos", daemon.log)
        proc.send_signal(signal.SIGSTOP)  # pull it while photos are claimed and pending
        subprocess.run(["umount", str(daemon.card)], check=True)
        proc.send_signal(signal.SIGCONT)
        wait_until(lambda: "is gone" in daemon.log.read_text(), 30, "the card-missing pause", daemon.log)
        time.sleep(1.0)
        assert (daemon.counts().get("done") or 0) < len(rels)
        subprocess.run(["mount", "--bind", str(card_volume), str(daemon.card)], check=True)
        wait_until(lambda: daemon.counts().get("done") == len(rels), 120, "every photo after the card returned")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        subprocess.run(["umount", "-l", str(daemon.card)], check=False)
        subprocess.run(["umount", "-l", str(card_volume)], check=False)
    assert "vanished" not in daemon.log.read_text()
    _assert_exactly_once(daemon, rels)


def test_sd_notify_ready_watchdog_status_stopping(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    _fill_card(daemon.card, _real_photos(photos_dir, 2))
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="1000000")
    proc = daemon.start(env=env)
    messages: list[str] = []
    try:
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        while sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        sock.close()
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=watching" in ready


def test_one_daemon_per_state_folder_and_config_errors(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    proc = daemon.start()
    try:
        wait_until(lambda: "watching" in daemon.log.read_text(), 60, "the first daemon", daemon.log)
        second = run_cli("watch", daemon.card, "-m", model_320, "-o", daemon.out, "--state", daemon.state, "--once")
        assert second.returncode == 2 and "already using the state folder" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"watch: {daemon.card}\nmodel: {model_320}\noutput: {daemon.out}\noutputs:\n  crop_treshold: 0.3\n")
    proc_check = run_cli("check", "--config", bad)
    assert proc_check.returncode == 2
    assert "unknown key 'outputs.crop_treshold'" in proc_check.stderr and str(bad) in proc_check.stderr
    good = tmp_path / "good.yaml"
    good.write_text(f"watch: {daemon.card}\nmodel: {model_320}\noutput: {daemon.out}\n")
    ok = run_cli("check", "--config", good)
    assert ok.returncode == 0 and "config ok" in ok.stdout and "model ok" in ok.stdout
    missing = run_cli("watch", "--config", good, "--model", tmp_path / "nope.onnx", "--once")
    assert missing.returncode == 3 and "model file not found" in missing.stderr


def test_status_and_report_read_a_journal_they_cannot_write(tmp_path: Path, card_copy: Path, model_320: Path) -> None:
    """A journal on a read-only mount, or read by another user: status and report read it without writing.
    Run as the unprivileged user `nobody` (root ignores file modes), against a state folder made read-only."""
    from tests.integration.cli_runner import ANDI_EDGE

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*as_nobody, str(ANDI_EDGE), "--help"], capture_output=True, check=False).returncode != 0:
        pytest.skip("this checkout is not readable by an unprivileged user")
    daemon = make_daemon(tmp_path, model_320)  # its card is card_copy (tmp_path / "card"): three real photos
    assert daemon.card == card_copy
    daemon.run_once()
    # pytest's own folders are private to root: nobody may not even look in; that is a clear error...
    refused = subprocess.run(
        [*as_nobody, str(ANDI_EDGE), "status", "--state", str(daemon.state)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 6 and "cannot look into" in refused.stderr and "internal" not in refused.stderr
    # ...and a state folder it may read but not write is read
    shared = Path(tempfile.mkdtemp(prefix="andi-ro-"))
    shared.chmod(0o755)
    daemon.state = Path(shutil.copytree(daemon.state, shared / "state"))
    for path in [daemon.state, *daemon.state.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    report = shared / "public" / "report.html"
    report.parent.mkdir()
    report.parent.chmod(0o777)
    try:
        status = subprocess.run(
            [*as_nobody, str(ANDI_EDGE), "status", "--state", str(daemon.state)],
            check=False,
            capture_output=True,
            text=True,
        )
        made = subprocess.run(
            [*as_nobody, str(ANDI_EDGE), "report", "--state", str(daemon.state), "-o", str(report)],
            check=False,
            capture_output=True,
            text=True,
        )
        written = report.is_file()
    finally:
        for path in [daemon.state, *daemon.state.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(shared)
    assert status.returncode == 0, status.stderr
    assert "done 3" in status.stdout
    assert made.returncode == 0, made.stderr
    assert written and "3 photos" in made.stdout


def test_long_deep_and_colliding_names_each_get_their_own_outputs(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """Names that once stopped a card: a 240-byte name three 200-byte folders deep (its sidecar and temp names
    past 255 bytes), and names whose flattened or cleaned forms collide. Every photo is done, once, with its own
    sidecar and crops."""
    daemon = make_daemon(tmp_path, model_320)
    frames = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))
    deep = daemon.card / ("a" * 200) / ("b" * 200) / ("c" * 200)
    deep.mkdir(parents=True)
    names = [
        deep.relative_to(daemon.card) / ("d" * 240 + ".JPG"),
        Path("x") / "y.JPG",
        Path("x__y.JPG"),
        Path("IMG_1.JPG"),
        Path("IMG_1.PNG"),  # a JPEG named .PNG: read by content
    ]
    for name, frame in zip(names, frames, strict=False):
        (daemon.card / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(frame, daemon.card / name)
    daemon.run_once()
    status = run_cli("status", "--state", daemon.state)
    assert f"done {len(names)}, failed 0" in status.stdout, status.stdout + daemon.log.read_text()[-3000:]
    from andi_edge.sinks.sidecar import sidecar_path

    crops: list[str] = []
    for name in names:
        sidecar = sidecar_path(daemon.out / "local", name.as_posix())
        assert sidecar.is_file(), name
        assert all(len(os.fsencode(part)) <= 255 for part in sidecar.relative_to(daemon.out).parts)
        crops += json.loads(sidecar.read_text())["andi_edge"]["crops"]
    assert crops and len(set(crops)) == len(crops), "no two photos share a crop file"
    on_disk = {p.relative_to(daemon.out / "local").as_posix() for p in (daemon.out / "local" / "crops").rglob("*.jpg")}
    assert on_disk == set(crops)


def _watch_once(daemon: Daemon, *extra: str) -> tuple[int, str]:
    before = daemon.log.stat().st_size if daemon.log.exists() else 0
    code = daemon.start("--once", *extra).wait(timeout=240)
    with daemon.log.open("rb") as log:
        log.seek(before)
        return code, log.read().decode("utf-8", "replace")


@pytest.mark.parametrize("damage", ["zero bytes", "garbage", "truncated"])
def test_a_damaged_journal_stops_the_daemon_with_the_way_back(
    tmp_path: Path, card_copy: Path, model_320: Path, damage: str
) -> None:
    """Never a silent restart from zero, never an internal error at every start: exit 8, what is wrong, and the
    documented recovery (the daemon's rolling backup), which then works and loses nothing."""
    daemon = make_daemon(tmp_path, model_320)
    daemon.run_once()
    journal = daemon.state / "journal.sqlite3"
    backup = daemon.state / "journal.backup.sqlite3"
    assert backup.is_file(), "the daemon keeps a rolling backup"
    data = journal.read_bytes()
    for leftover in daemon.state.glob("journal.sqlite3-*"):  # the WAL of the run, as a power cut might leave it
        leftover.unlink()
    journal.write_bytes(
        {"zero bytes": b"", "garbage": random.Random(0).randbytes(8192), "truncated": data[: len(data) // 2]}[damage]
    )
    code, log = _watch_once(daemon)
    assert code == 8, log
    assert "is damaged" in log and "Traceback" not in log and "internal error" not in log
    assert f"cp {backup} {journal}" in log, "the message says how to restore the backup"
    (journal).rename(journal.with_name("journal.sqlite3.damaged"))
    shutil.copy2(backup, journal)
    code, log = _watch_once(daemon)
    assert code == 0, log
    status = run_cli("status", "--state", daemon.state)
    assert "done 3, failed 0" in status.stdout, status.stdout


def test_a_lost_journal_is_not_silently_started_anew(tmp_path: Path, card_copy: Path, model_320: Path) -> None:
    daemon = make_daemon(tmp_path, model_320)
    daemon.run_once()
    (daemon.state / "journal.sqlite3").unlink()
    code, log = _watch_once(daemon)
    assert code == 8 and "missing, but its backup is there" in log, log
    (daemon.state / "journal.backup.sqlite3").unlink()
    code, log = _watch_once(daemon)
    assert code == 8 and "holds results of an earlier run" in log and "--new-journal" in log, log
    code, log = _watch_once(daemon, "--new-journal")
    assert code == 0, log
    assert "done 3" in run_cli("status", "--state", daemon.state).stdout


def test_a_memory_bomb_is_that_photos_failure_not_the_daemons_death(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    """A tiny PNG declaring 10000 x 10000 (under the pixel cap) took watch past the unit's MemoryMax=1G, then
    killed it at every start. Now the decode budget refuses it before decoding: a recorded failure; the card goes
    on."""
    from PIL import Image

    daemon = make_daemon(tmp_path, model_320)
    # a valid PNG: one flat grey plane of 10000 x 10000 compresses to ~97 KB, and decodes to 100 MP
    Image.new("L", (10_000, 10_000), 90).save(daemon.card / "DCIM" / "100RECNX" / "BOMB.PNG", optimize=True)
    daemon.run_once()
    status = run_cli("status", "--state", daemon.state)
    assert "done 3, failed 1" in status.stdout, status.stdout
    [bomb] = [e for e in daemon.batch()["images"] if e["file"].endswith("BOMB.PNG")]
    assert bomb["failure"].startswith("too_large:") and "MiB" in bomb["failure"]


def test_a_photo_too_big_to_decode_in_full_gets_its_crops_at_a_smaller_scale(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """A 48 MP JPEG would take about 460 MiB to decode in full, over the budget (384 MiB: half the unit's
    MemoryMax less the model): its crops are cut from a 1/2-scale DCT decode instead, and the sidecar says so."""
    from PIL import Image

    daemon = make_daemon(tmp_path, model_320)
    daemon.config.write_text(daemon.config.read_text().replace("crop_threshold: 0.3", "crop_threshold: 0.001"))
    source = sorted((photos_dir / SERENGETI).glob("*.JPG"))[3]
    big = daemon.card / "DCIM" / "100RECNX" / "BIG.JPG"
    big.parent.mkdir(parents=True)
    Image.open(source).convert("RGB").resize((8000, 6000)).save(big, quality=85)
    daemon.run_once()
    sidecar = json.loads((daemon.out / "local" / "DCIM" / "100RECNX" / "BIG.JPG.json").read_text())
    provenance = sidecar["andi_edge"]
    assert provenance["crops"] and provenance["crops_scale"] == 0.5 and "crops_skipped" not in provenance
    crop = Image.open(daemon.out / "local" / provenance["crops"][0])
    box = next(d for d in sidecar["detections"] if d["conf"] >= 0.001)["bbox"]  # the best, cut first
    assert abs(crop.width - box[2] * 8000 * 0.5 * 1.2) < 0.25 * crop.width  # padded by crop_padding (0.1 a side)
