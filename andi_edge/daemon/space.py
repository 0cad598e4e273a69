"""What happens when a disk is full: the one owner of the daemon's space policy.

Two volumes matter. The output volume: below ``disk.crops_min_free_mb`` crops stop first; below
``disk.min_free_mb`` nothing is written, the photos in hand go back to pending and the daemon pauses for
``disk.retry_interval_s`` before it looks again. The state volume: when SQLite cannot write the journal
(JournalFullError), the transaction is rolled back whole and the daemon pauses the same way. Nothing is lost
either way: a photo is marked done only after its outputs are durable.

The long-running daemon waits as long as it takes. `watch --once` (the card unit) gives up after
``disk.once_give_up_s`` without progress, with exit code 9 (DiskFullGiveUpError), so the unit ends and writes
its status file instead of hanging until its start timeout.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from andi_edge.daemon.metrics import DaemonMetrics
from andi_edge.daemon.notify import Notifier
from andi_edge.errors import DiskFullGiveUpError
from andi_edge.settings import DiskSettings

log = logging.getLogger(__name__)

MIB = 1 << 20


class DiskFullError(Exception):
    """Outputs cannot be written for lack of space; the photo goes back to pending."""


class SpacePolicy:
    def __init__(
        self, *, settings: DiskSettings, output_dir: Path, once: bool, notifier: Notifier, metrics: DaemonMetrics
    ) -> None:
        self.settings = settings
        self.output_dir = output_dir
        self.once = once
        self.notifier = notifier
        self.metrics = metrics
        self._paused_until = 0.0
        #: when the current shortage began (monotonic); None while there is space
        self._short_since: float | None = None

    # -- the output volume ----------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        try:
            free = shutil.disk_usage(self.output_dir).free
        except OSError:
            return 0
        self.metrics.free_bytes = free
        return free

    def check_outputs(self) -> int:
        """Free bytes on the output volume; DiskFullError below ``min_free_mb`` (nothing may be written)."""
        free = self.free_bytes()
        if free < self.settings.min_free_mb * MIB:
            raise DiskFullError(f"only {free // MIB} MiB free in {self.output_dir}")
        return free

    def crops_allowed(self, free_bytes: int) -> bool:
        return free_bytes >= self.settings.crops_min_free_mb * MIB

    # -- pausing ----------------------------------------------------------------------------------------------

    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def pause(self, reason: str, volume: str) -> None:
        """No room on ``volume`` ("output" or "state"): wait before trying again. Raises DiskFullGiveUpError in
        --once mode once the shortage has lasted ``once_give_up_s``."""
        now = time.monotonic()
        retry = self.settings.retry_interval_s
        if self._short_since is None:
            self._short_since = now
            log.error("disk full on the %s volume (%s): pausing, trying again every %.0f s", volume, reason, retry)
            self.notifier.status(f"paused: {volume} disk full ({reason})")
        self.metrics.paused_disk = True
        self._paused_until = now + retry
        if self.once and now - self._short_since >= self.settings.once_give_up_s:
            raise DiskFullGiveUpError(
                f"no space on the {volume} volume for {now - self._short_since:.0f} s ({reason}): giving up",
                hint="free space (or lower disk.min_free_mb) and run it again: what is done stays done, the rest "
                "is processed then",
            )

    def progressed(self) -> None:
        """A photo was committed: any shortage is over."""
        if self._short_since is not None:
            log.info("disk space is back: going on")
            self.notifier.status("running")
        self._short_since = None
        self.metrics.paused_disk = False
