"""The watch loop, composed of its parts: ingest (discovery -> journal), processing (claim -> detect -> outputs
-> commit, with the per-photo failure and retry policy), rendering (journal -> batch JSON, events, repeats),
and the space policy (full disks). This module owns the daemon's life: the state lock, the journal's opening
and backups, the loop, card removal, signals and metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from andi_edge import __version__
from andi_edge.config import PipelineSettings
from andi_edge.daemon.context import DaemonContext, DaemonPaths
from andi_edge.daemon.ingest import Ingest
from andi_edge.daemon.metrics import DaemonMetrics
from andi_edge.daemon.notify import Notifier
from andi_edge.daemon.processing import Processor
from andi_edge.daemon.progress import DAEMON_FILE, Progress
from andi_edge.daemon.rendering import Renderer
from andi_edge.daemon.space import SpacePolicy
from andi_edge.daemon.watcher import Discovery
from andi_edge.errors import JournalFullError, OutputError, UsageError
from andi_edge.pipeline import label_space
from andi_edge.runtime.detector import Detector
from andi_edge.settings import WatchConfig
from andi_edge.sinks.atomic import prove_writable, remove_stale_temp_files, write_bytes_atomic
from andi_edge.sinks.names import BATCH_JSON_NAME
from andi_edge.state.journal import STATE_POINTER, Journal, check_not_lost

log = logging.getLogger(__name__)

__all__ = ["BATCH_JSON_NAME", "WatchService"]

LOCK_NAME = "watch.lock"
IDLE_SLEEP_S = 0.2
LOCK_POLL_S = 0.5
T = TypeVar("T")


@contextlib.contextmanager
def state_lock_if_free(state_dir: Path) -> Iterator[bool]:
    """The state folder's lock, for as long as the block runs, if no `watch` holds it: yields whether it does."""
    try:
        lock_file = (state_dir / LOCK_NAME).open("a+")
    except OSError as exc:
        raise OutputError(f"cannot use the state folder {state_dir}: {exc.strerror or exc}") from exc
    with lock_file:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def daemon_running(state_dir: Path) -> bool | None:
    """Whether a `watch` holds this state folder now (None: this user cannot tell). Opens nothing for writing."""
    try:
        with (state_dir / LOCK_NAME).open("r") as lock_file:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False
    except OSError:
        return None


class StopBeforeStartError(Exception):
    """A stop was asked for before the run began (waiting for the state folder's lock, or for space)."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How this run goes, beyond the config."""

    #: process what is there, then stop (the card unit)
    once: bool = False
    #: begin a journal anew even where outputs of an earlier run exist (the documented recovery)
    new_journal: bool = False
    #: the card's id, from its volume (the card unit); None: discovery names it
    card_id: str | None = None
    #: another watch holds the state folder (a second card inserted): wait for it instead of failing
    wait_for_lock: bool = False


class WatchService:
    def __init__(
        self,
        *,
        config: WatchConfig,
        detector: Detector,
        pipeline: PipelineSettings,
        state_dir: Path,
        options: RunOptions | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """``pipeline``: as ``pipeline.plan_pipeline`` resolved it for the detector's backend."""
        options = options or RunOptions()
        self.config = config
        self.options = options
        self.once = options.once
        self.detector = detector
        self.labels = label_space(detector)
        self.root = Path(os.path.abspath(config.watch))
        self.output_dir = Path(config.output)
        self.state_dir = state_dir
        self.context = DaemonContext(
            config=config,
            paths=DaemonPaths(root=self.root, output_dir=self.output_dir, state_dir=state_dir),
            notifier=notifier or Notifier(),
            metrics=DaemonMetrics(started_at=time.time()),
            provenance=detector.provenance(),
        )
        self.notifier = self.context.notifier
        self.metrics = self.context.metrics
        self._stop = self.context.stop
        self.progress = Progress(state_dir)
        #: a progress bar on the terminal (the CLI sets it when stderr is one)
        self.show_bar = False
        self._last_metrics = 0.0
        self._lock_file: Any = None
        self._ready = False
        # Crops need a full-resolution decode and JPEG encodes: as costly as inference, so they run behind it.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="andi-write")
        self.discovery = Discovery(self.root, config.discovery, card_id=options.card_id, media=config.media)
        self.space = SpacePolicy(
            settings=config.disk,
            output_dir=self.output_dir,
            once=options.once,
            notifier=self.notifier,
            metrics=self.metrics,
        )
        self.renderer = Renderer(context=self.context, detector=detector, writer=self._writer)
        self.ingest = Ingest(discovery=self.discovery, root=str(self.root))
        self.processor = Processor(
            context=self.context,
            detector=detector,
            pipeline=pipeline,
            discovery=self.discovery,
            space=self.space,
            writer=self._writer,
        )

    # -- lifecycle ------------------------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: finishing the current photo, then stopping", signal.Signals(signum).name)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        try:
            self._acquire_lock()
            if not self.options.new_journal:
                check_not_lost(self.state_dir, self.output_dir)
            # a damaged journal stops here, with the way back (JournalError); a full state volume waits
            journal = self._until_space(lambda: Journal(self.state_dir))
        except StopBeforeStartError:
            log.info("stopped before starting: nothing was done")
            self._writer.shutdown(wait=True)
            self.renderer.close()
            return 0
        try:
            self._back_up(journal)
            self._until_space(lambda: self._begin(journal))
            prove_writable(self.output_dir, "outputs", "output")  # a read-only output disk stops here, not per photo
            state_dir = os.fsencode(os.path.abspath(self.state_dir))
            write_bytes_atomic(self.output_dir / STATE_POINTER, state_dir + b"\n")
            # An earlier run may have died in the middle of an atomic write: its final files are whole, but its
            # temp file stays.
            swept = remove_stale_temp_files(self.output_dir)
            if swept:
                log.warning("removed %d temp file(s) left by an interrupted write", swept)
            self.discovery.start()
            self._say_ready(f"watching {self.root}")
            log.info("watching %s -> %s (state %s)", self.root, self.output_dir, self.state_dir)
            self._loop(journal)
        except StopBeforeStartError:
            log.info("stopped while waiting for space")
        finally:
            self._writer.shutdown(wait=True)
            self.notifier.stopping("flushing results")
            self.discovery.stop()
            with contextlib.suppress(OutputError):
                self.renderer.render(journal, force=True)
                self._write_metrics(journal, force=True)
            self._say_progress(journal, final=True)
            self.renderer.close()
            counts = journal.counts()
            self._back_up(journal)
            journal.close()
            with contextlib.suppress(OSError):
                (self.state_dir / DAEMON_FILE).unlink()
            self.progress.close_bar()
            self.notifier.close()
            log.info("stopped: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    def _begin(self, journal: Journal) -> None:
        reaped, given_up = journal.reap_stale_claims(self.config.retry.max_crashes)
        if reaped:
            log.warning("re-queued %d photo(s) claimed by an earlier run that did not finish", reaped)
        for row in given_up:
            log.error("%s", row.failure)
        journal.set_meta("run", self._run_facts())
        journal.set_meta(f"run:{self.context.run_id}", self.context.provenance)  # what each record names
        self.renderer.start(journal)

    def _say_ready(self, status: str) -> None:
        """READY=1 once: systemd's start timeout must not run out while the daemon waits for space."""
        if not self._ready:
            self.notifier.ready(status)
            self._ready = True
        else:
            self.notifier.status(status)

    def _until_space(self, action: Callable[[], T]) -> T:
        """``action``, tried again while the state volume is full (SpacePolicy decides how long)."""
        while True:
            try:
                return action()
            except JournalFullError as exc:
                self.space.pause(exc.message, "state")
                self._say_ready(f"paused: {exc.message}")
            self.notifier.heartbeat()
            if self._stop.wait(self.config.disk.retry_interval_s):
                raise StopBeforeStartError("stopped while waiting for space")

    @staticmethod
    def _back_up(journal: Journal) -> None:
        """The rolling backup a damaged journal is restored from (at start, once checked, and at stop)."""
        try:
            journal.back_up()
        except OutputError as exc:
            log.warning("%s: the previous backup stays", exc.message)

    def _run_facts(self) -> dict[str, Any]:
        """What `report` and `export-camtrap-dp` need to know about this run, kept in the journal."""
        card = self.detector.card
        return {
            **self.context.provenance,
            "andi_edge_version": __version__,
            "class_names": list(self.detector.class_names),
            "species_names": list(self.labels.species_names),
            "species_threshold": self.labels.species_threshold,
            "typical_threshold": card.thresholds.typical,
            "conservative_threshold": card.thresholds.conservative,
            "watch_root": str(self.root),
            "output_dir": str(Path(os.path.abspath(self.output_dir))),
            "events": dataclasses.asdict(self.config.events),
            "crop_threshold": self.config.outputs.crop_threshold if self.config.outputs.crops else None,
            "repeats": dataclasses.asdict(self.config.repeats),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _acquire_lock(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = (self.state_dir / LOCK_NAME).open("a+")
        except OSError as exc:
            raise OutputError(f"cannot use the state folder {self.state_dir}: {exc.strerror or exc}") from exc
        waiting = False
        while True:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not self.options.wait_for_lock:
                    raise UsageError(
                        f"another andi-edge watch is already using the state folder {self.state_dir}",
                        hint="stop it first, give this one its own --state folder, or pass --wait-for-lock",
                    ) from None
            if not waiting:
                log.info("another andi-edge watch is using %s: waiting for it to finish", self.state_dir)
                self.notifier.status("waiting for another run to finish")
                waiting = True
            self.notifier.heartbeat()
            if self._stop.wait(LOCK_POLL_S):
                raise StopBeforeStartError("stopped while waiting for the state folder")

    # -- the loop -------------------------------------------------------------------------------------------

    def _loop(self, journal: Journal) -> None:
        first_scan = True
        requeue = False  # a full state volume interrupted a batch: its claims go back to pending
        while not self._stop.is_set():
            self.notifier.heartbeat()
            if not self.discovery.available():
                self._wait_for_card(journal)
                first_scan = True
                continue
            self.metrics.paused_card = False
            if self.space.paused():
                self._stop.wait(IDLE_SLEEP_S)
                continue
            try:
                if requeue:
                    journal.release_claims()  # ours alone: we hold the state lock
                    requeue = False
                self.ingest.poll(journal, full_scan=first_scan)
                first_scan = False
                max_wait_s = self.config.retry.max_backoff_s
                claimed = journal.claim(self.processor.pipeline.max_in_flight * 2, max_wait_s=max_wait_s)
                if claimed:
                    processed = self.processor.process(journal, claimed)
                    self.renderer.changed(processed.cards)
                    for rel_path in processed.vanished:
                        self.discovery.hand_over_again(rel_path)
                elif (
                    self.once
                    and self.discovery.settling() == 0
                    and journal.next_retry_at(max_wait_s=max_wait_s) is None
                ):
                    break  # --once: everything there is done, and no photo waits to be read again
                else:
                    self._stop.wait(IDLE_SLEEP_S)
                self.renderer.render(journal)
            except JournalFullError as exc:
                self.space.pause(exc.message, "state")
                requeue = True
            self._write_metrics(journal)
            self._say_progress(journal)

    def _wait_for_card(self, journal: Journal) -> None:
        if not self.metrics.paused_card:
            log.warning("the card at %s is gone: pausing until it comes back", self.root)
            self.notifier.status(f"waiting for a card at {self.root}")
            with contextlib.suppress(OutputError):
                self.renderer.render(journal, force=True)
        self.metrics.paused_card = True
        self.discovery.forget_handed_over()
        self.notifier.heartbeat()  # waiting for a card is healthy, not a hang
        self._write_metrics(journal)
        self._stop.wait(self.config.discovery.poll_interval_s)
        if self.once and not self.discovery.available():
            log.error("the card at %s is gone and --once was given: stopping", self.root)
            self._stop.set()

    def _say_progress(self, journal: Journal, final: bool = False) -> None:
        """The progress line, at least every PROGRESS_INTERVAL_S while photos are queued (and once at the end of
        a run that did work): log, STATUS, and the daemon's facts for `status`."""
        metrics = self.metrics
        finished = metrics.processed_total + metrics.failed_total
        if not (final or self.progress.due()):
            return
        counts = journal.counts()
        if self.show_bar:
            self.progress.show_bar(counts)
        first = metrics.first_finished_at
        line = self.progress.tick(counts, finished, metrics.failed_total, final=final, first_finished_at=first)
        if line is None:
            return
        log.info("%s", line)
        self.notifier.status(line)
        if final:  # the daemon's facts are removed as it stops: nothing to write
            return
        try:
            self.progress.write_facts(counts, finished, line, first_finished_at=first)
        except OutputError as exc:
            log.debug("could not write the daemon's facts: %s", exc)

    def _write_metrics(self, journal: Journal, force: bool = False) -> None:
        textfile = self.config.metrics.textfile
        now = time.monotonic()
        if not textfile or (not force and now - self._last_metrics < self.config.metrics.interval_s):
            return
        self._last_metrics = now
        self.metrics.photos = journal.counts()
        self.space.free_bytes()
        try:
            self.metrics.write(Path(textfile))
        except OutputError as exc:
            log.warning("could not write metrics: %s", exc)
