"""What the daemon says while it works: a progress line at least every ``PROGRESS_INTERVAL_S`` while photos are
queued (done of total, photos/s, time left, failures), in the log and in systemd's STATUS, and the daemon's own
facts (pid, since when, rate) in ``daemon.json`` in the state folder, which `andi-edge status` reads while the
daemon holds the folder's lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from andi_edge.sinks.atomic import write_json_atomic

PROGRESS_INTERVAL_S = 10.0
#: how often the journal's counts are looked at for it
CHECK_INTERVAL_S = 1.0
DAEMON_FILE = "daemon.json"


def iso_utc(epoch_s: float) -> str:
    """The one time format of what the daemon and its card script write: ISO 8601, UTC."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def rate_per_s(finished: int, first_finished_at: float | None, now: float) -> float:
    """Photos finished per second of this run's work: the photos after the first over the time since the first
    finished (0 until two have). It was counted from the first progress check that saw a photo finished, at most
    once a second: a run of three photos in half a second said 189 photos/s of a 1280 px model."""
    if first_finished_at is None or finished < 2:
        return 0.0
    return (finished - 1) / max(now - first_finished_at, 1e-3)


@dataclass
class Progress:
    """When a progress line is due and what it says; the bar a person at a terminal sees."""

    state_dir: Path
    started_at: float = field(default_factory=time.time)
    interval_s: float = PROGRESS_INTERVAL_S
    _last_line: float = field(default_factory=time.monotonic)
    _last_check: float = 0.0
    _busy: bool = False
    #: a progress bar, on a terminal (``show_bar``)
    _bar: Any = None

    def show_bar(self, counts: dict[str, int]) -> None:
        """On a terminal: done of total as a bar, updated at each check (the log lines print above it)."""
        from tqdm import tqdm

        queued = counts.get("pending", 0) + counts.get("claimed", 0)
        done = sum(counts.get(k, 0) for k in ("done", "failed", "duplicate"))
        if self._bar is None:
            self._bar = tqdm(total=done + queued, initial=done, unit="photo", dynamic_ncols=True)
        self._bar.total = done + queued
        self._bar.n = done
        self._bar.refresh()

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def due(self) -> bool:
        """Whether to look at the journal's counts now: at most once a second (``tick`` decides what to say)."""
        now = time.monotonic()
        if now - self._last_check < CHECK_INTERVAL_S:
            return False
        self._last_check = now
        return True

    def tick(
        self,
        counts: dict[str, int],
        finished_this_run: int,
        failed_this_run: int,
        final: bool = False,
        first_finished_at: float | None = None,
    ) -> str | None:
        """The progress line when one is due (work queued, or the queue just emptied; ``final``: the run ends
        and did some work), else None. ``first_finished_at``: when (``time.monotonic``) this run finished its
        first photo, whence the rate."""
        now = time.monotonic()
        queued = counts.get("pending", 0) + counts.get("claimed", 0)
        emptied = self._busy and not queued
        self._busy = bool(queued)
        if final:
            emptied = finished_this_run > 0
        if not (emptied or (queued and now - self._last_line >= self.interval_s)):
            return None
        self._last_line = now
        rate = rate_per_s(finished_this_run, first_finished_at, now)
        done = counts.get("done", 0) + counts.get("failed", 0) + counts.get("duplicate", 0)
        parts = [f"{done:,} of {done + queued:,} photos done", f"{rate:.1f} photos/s"]
        if queued and rate > 0:
            parts.append(f"about {duration_text(queued / rate)} left")
        parts.append(f"{failed_this_run} failed this run" if failed_this_run else "none failed")
        return "progress: " + ", ".join(parts)

    def write_facts(
        self, counts: dict[str, int], finished_this_run: int, status: str, first_finished_at: float | None = None
    ) -> None:
        """``daemon.json``: who is working on this state folder, since when, how fast, doing what."""
        facts: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": iso_utc(self.started_at),
            "updated_at": iso_utc(time.time()),
            "photos_per_s": round(rate_per_s(finished_this_run, first_finished_at, time.monotonic()), 2),
            "finished_this_run": finished_this_run,
            "queued": counts.get("pending", 0) + counts.get("claimed", 0),
            "status": status,
        }
        write_json_atomic(self.state_dir / DAEMON_FILE, facts)
