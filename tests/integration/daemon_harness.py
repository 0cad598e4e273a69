"""Helpers to run ``andi-edge watch`` as a real subprocess and inspect what it wrote."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.cli_runner import ANDI_EDGE

FAST_CONFIG = """
discovery:
  poll_interval_s: 0.3
  stable_s: 0.6
outputs:
  batch_json_interval_s: 0.5
  crop_threshold: 0.3
disk:
  min_free_mb: {min_free_mb}
  crops_min_free_mb: {crops_min_free_mb}
  retry_interval_s: 0.5
  once_give_up_s: {once_give_up_s}
retry:
  max_attempts: 3
  backoff_s: 0.3
  max_backoff_s: 1.0
metrics:
  textfile: {metrics}
  interval_s: 0.5
"""


@dataclass
class Daemon:
    card: Path
    out: Path
    state: Path
    config: Path
    log: Path

    def start(
        self, *extra: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """``prefix``: run it under another command (e.g. setpriv, to drop root's power to read any file)."""
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [
                    *prefix,
                    str(ANDI_EDGE),
                    "--log-level",
                    "info",
                    "watch",
                    str(self.card),
                    "--model",
                    str(self.model),
                    "--output",
                    str(self.out),
                    "--state",
                    str(self.state),
                    "--config",
                    str(self.config),
                    *extra,
                ],
                stdout=log,
                stderr=log,
                env=env,
            )

    def run_once(self, timeout: float = 240, prefix: tuple[str, ...] = ()) -> None:
        proc = self.start("--once", prefix=prefix)
        assert proc.wait(timeout=timeout) == 0, self.log.read_text()

    model: Path = Path()

    def counts(self) -> dict[str, int]:
        """Journal rows by state; empty while no daemon has created the journal yet."""
        path = self.state / "journal.sqlite3"
        if not path.exists():
            return {}
        with sqlite3.connect(path) as db:
            try:
                return dict(db.execute("SELECT state, COUNT(*) FROM photos GROUP BY state").fetchall())
            except sqlite3.OperationalError:  # killed before it created its tables
                return {}

    def sidecars(self) -> list[Path]:
        return sorted(p for p in self.out.rglob("*.json") if p.name != "megadetector_results.json")

    def batch(self, card_id: str = "local") -> dict[str, Any]:
        return json.loads((self.out / card_id / "megadetector_results.json").read_text())  # type: ignore[no-any-return]


def make_daemon(
    tmp_path: Path,
    model: Path,
    min_free_mb: int = 0,
    crops_min_free_mb: int = 0,
    out: Path | None = None,
    once_give_up_s: float = 600,
) -> Daemon:
    card = tmp_path / "card"
    card.mkdir(exist_ok=True)
    config = tmp_path / "watch.yaml"
    config.write_text(
        FAST_CONFIG.format(
            min_free_mb=min_free_mb,
            crops_min_free_mb=crops_min_free_mb,
            metrics=tmp_path / "metrics.prom",
            once_give_up_s=once_give_up_s,
        )
    )
    daemon = Daemon(
        card=card, out=out or tmp_path / "out", state=tmp_path / "state", config=config, log=tmp_path / "daemon.log"
    )
    daemon.model = model
    return daemon


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, sqlite3.Error, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.1)
    detail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{detail}")


def hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_slowly(source: Path, target: Path, chunks: int = 4, pause_s: float = 0.15) -> None:
    """Write a photo in pieces, as a slow card reader or network copy would."""
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    step = len(data) // chunks + 1
    with target.open("wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            os.fsync(f.fileno())
            time.sleep(pause_s)
