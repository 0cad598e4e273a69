"""Full disks, for real: small tmpfs volumes filled to the brim. The state volume (SQLite's own disk-full error)
pauses the daemon as the output volume does; `--once` gives up after a bounded wait with exit code 9, and the
card unit's script records why. Nothing is lost or marked failed either way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.integration.cli_runner import ANDI_EDGE
from tests.integration.daemon_harness import make_daemon, wait_until
from tests.volumes import small_volume

REPO = Path(__file__).resolve().parents[2]
CARD_SCRIPT = REPO / "andi_edge" / "assets" / "andi-edge-card"


def fill(volume: Path, leave_bytes: int = 0) -> Path:
    """Fill ``volume`` until at most ``leave_bytes`` are free; returns the filler file."""
    filler = volume / "filler.bin"
    with filler.open("wb") as f:
        while shutil.disk_usage(volume).free > leave_bytes:
            step = min(1 << 16, shutil.disk_usage(volume).free - leave_bytes)
            try:
                f.write(b"\0" * max(step, 1))
                f.flush()
            except OSError:
                break
    return filler


def test_a_full_state_volume_pauses_the_daemon_until_there_is_room(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    with small_volume(daemon.state, "1m") as state:
        filler = fill(state)
        proc = daemon.start()
        try:
            wait_until(lambda: "disk full on the state volume" in daemon.log.read_text(), 120, "a pause", daemon.log)
            assert proc.poll() is None, daemon.log.read_text()  # waiting, not dead
            filler.unlink()
            wait_until(lambda: daemon.counts().get("done") == 3, 120, "three photos done", daemon.log)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert code == 0, daemon.log.read_text()
        assert "damaged" not in daemon.log.read_text()
        assert len(daemon.batch()["images"]) == 3


def test_once_gives_up_on_a_full_output_volume_with_its_own_exit_code(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    with small_volume(tmp_path / "out", "8m") as out:
        daemon = make_daemon(tmp_path, model_320, min_free_mb=4, out=out, once_give_up_s=1.5)
        filler = fill(out, leave_bytes=2 << 20)
        proc = daemon.start("--once")
        assert proc.wait(timeout=120) == 9, daemon.log.read_text()
        log = daemon.log.read_text()
        assert "no space on the output volume" in log and "run it again" in log and "Traceback" not in log
        assert daemon.counts().get("failed", 0) == 0 and daemon.counts().get("done", 0) == 0
        filler.unlink()
        daemon.run_once()
        assert daemon.counts() == {"done": 3}


def test_the_card_unit_records_a_full_disk_in_its_status_file(tmp_path: Path, card_copy: Path, model_320: Path) -> None:
    with small_volume(tmp_path / "cards", "8m") as cards:
        config = tmp_path / "card.yaml"
        config.write_text(
            f"watch: /unused\nmodel: {model_320}\noutput: /unused\n"
            "disk:\n  min_free_mb: 4\n  retry_interval_s: 0.3\n  once_give_up_s: 1.0\n"
        )
        fill(cards, leave_bytes=2 << 20)
        env = dict(
            os.environ,
            ANDI_EDGE=str(ANDI_EDGE),
            CARD_MOUNT=str(card_copy),
            CARD_OUTPUT=str(cards),
            CARD_CONFIG=str(config),
        )
        proc = subprocess.run(
            ["bash", str(CARD_SCRIPT), "process", "sdz7"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 9, proc.stdout + proc.stderr
        status = json.loads((cards / "sdz7.status.json").read_text())
        assert status["result"] == "failed" and status["exit_code"] == 9 and "no space left" in status["reason"]
