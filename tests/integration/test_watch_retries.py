"""A photo that cannot be read now may be readable later: retried with backoff, a bounded number of times, then a
recorded failure that `andi-edge retry-failed` puts back in the queue. Decode errors are final at once.

The unreadable file is a real one (mode 000) read by a real daemon: run as root without the capabilities that let
root read any file (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so the kernel refuses it (EACCES)
exactly as it refuses the daemon's user on a card with bad permissions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import make_daemon, wait_until

NO_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search")


def _needs_setpriv() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to make a file unreadable to the daemon")


def _rows(state: Path) -> dict[str, tuple[str, int, str | None]]:
    with sqlite3.connect(state / "journal.sqlite3") as db:
        return {
            path: (state_, attempts, failure)
            for path, state_, attempts, failure in db.execute("SELECT rel_path, state, attempts, failure FROM photos")
        }


def _lock(card: Path, index: int) -> tuple[Path, str]:
    """Make one photo of the card unreadable (mode 000); returns it and its path on the card."""
    photo = sorted(card.rglob("*.JPG"))[index]
    photo.chmod(0o000)
    return photo, photo.relative_to(card).as_posix()


def test_a_photo_unreadable_for_a_while_is_retried_and_then_processed(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    _needs_setpriv()
    daemon = make_daemon(tmp_path, model_320)
    locked, rel = _lock(card_copy, 1)
    proc = daemon.start(prefix=NO_OVERRIDE)
    try:

        def listed_as_retrying() -> bool:
            status = json.loads(run_cli("status", "--state", daemon.state, "--json").stdout)
            return any(r["file"] == rel and "Permission denied" in r["error"] for r in status["retrying"])

        wait_until(listed_as_retrying, 120, "the locked photo listed as retrying", daemon.log)
        text = run_cli("status", "--state", daemon.state).stdout
        assert f"retrying: local/{rel}: unreadable" in text
        locked.chmod(0o644)  # the card is reseated, the permission fixed
        wait_until(lambda: daemon.counts().get("done") == 3, 120, "all three photos done", daemon.log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    state, attempts, failure = _rows(daemon.state)[rel]
    assert state == "done" and attempts >= 2 and failure is None
    assert "trying again in" in daemon.log.read_text()
    assert "andi_edge_read_retries_total" in (tmp_path / "metrics.prom").read_text()


def test_retries_are_bounded_then_a_failure_that_retry_failed_puts_back(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    _needs_setpriv()
    daemon = make_daemon(tmp_path, model_320)
    locked, rel = _lock(card_copy, 0)
    broken = card_copy / "DCIM" / "100RECNX" / "BROKEN.JPG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a photo at all")
    broken_rel = broken.relative_to(card_copy).as_posix()

    daemon.run_once(prefix=NO_OVERRIDE)  # --once waits for the retries that are due, then stops
    rows = _rows(daemon.state)
    assert rows[rel][0] == "failed" and rows[rel][1] == 3  # retry.max_attempts in the test config
    assert "unreadable" in (rows[rel][2] or "") and "after 3 attempts" in (rows[rel][2] or "")
    assert rows[broken_rel][0] == "failed" and rows[broken_rel][1] == 1  # a decode error is final at once
    status = run_cli("status", "--state", daemon.state)
    assert f"failed (can be retried once fixed): local/{rel}: unreadable" in status.stdout
    assert f"andi-edge retry-failed --state {daemon.state}" in status.stdout
    entry = next(i for i in daemon.batch()["images"] if i["file"] == rel)
    assert "failure" in entry

    locked.chmod(0o644)
    again = run_cli("retry-failed", "--state", daemon.state, "--reason", "unreadable")
    assert again.returncode == 0 and "1 failed photo(s) (unreadable...) back in the queue" in again.stdout, again
    daemon.run_once(prefix=NO_OVERRIDE)
    rows = _rows(daemon.state)
    assert rows[rel][0] == "done" and rows[rel][2] is None
    assert rows[broken_rel][0] == "failed"  # not asked for: stays as it was
    entry = next(i for i in daemon.batch()["images"] if i["file"] == rel)
    assert "failure" not in entry and "detections" in entry
    nothing = run_cli("retry-failed", "--state", daemon.state, "--card", "vol-nope")
    assert nothing.returncode == 0 and "no failed photos of card vol-nope" in nothing.stdout
