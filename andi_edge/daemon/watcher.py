"""Discovery: which photos under the watched folder are complete and new.

Three sources, because each misses something: a full rescan at start and every ``poll_interval_s`` (events
are lost while we are down, and FAT/exFAT cards or network mounts may send none), and inotify events through
watchdog for low latency. A file is handed over only once it is complete: closed after writing (inotify
close-write), or its size and mtime unchanged for ``stable_s``. A half-copied photo is never read as broken.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from andi_edge.daemon.card import Mount, card_id_for, read_mounts
from andi_edge.photos import is_photo_name, walk_photos
from andi_edge.settings import DiscoverySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundPhoto:
    path: Path
    rel_path: str
    card_id: str
    size_bytes: int
    mtime_ns: int


@dataclass
class _Observation:
    size_bytes: int
    mtime_ns: int
    unchanged_since: float
    closed: bool = False


class Discovery:
    def __init__(self, root: Path, settings: DiscoverySettings, card_id: str | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.settings = settings
        #: every photo under root is on this card (the card unit hands over the volume it mounted)
        self.card_id = card_id
        self._observing: dict[Path, _Observation] = {}
        self._handed_over: set[tuple[Path, int, int]] = set()
        self._closed_events: set[Path] = set()
        self._touched: set[Path] = set()
        self._lock = threading.Lock()
        self._last_scan = 0.0
        self._observer: object | None = None
        self._card_ids: dict[Path, str] = {}
        self._mounts: list[Mount] = []

    # -- inotify ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.settings.inotify:
            return
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a runtime dependency
            log.warning("watchdog is not installed: discovering photos by polling only")
            return
        discovery = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    if not raw:
                        continue
                    path = Path(os.fsdecode(raw))
                    if is_photo_name(path.name):
                        discovery._note_event(path, closed=event.event_type in ("closed", "moved"))

        try:
            observer = Observer()
            observer.schedule(Handler(), str(self.root), recursive=True)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            log.warning("inotify unavailable on %s (%s): discovering photos by polling only", self.root, exc)
            return
        self._observer = observer

    def stop(self) -> None:
        observer = self._observer
        self._observer = None
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=5)  # type: ignore[attr-defined]

    def _note_event(self, path: Path, closed: bool) -> None:
        with self._lock:
            self._touched.add(path)
            if closed:
                self._closed_events.add(path)

    # -- polling ------------------------------------------------------------------------------------------

    def available(self) -> bool:
        """Is the card (watched folder) there and readable?"""
        try:
            with os.scandir(self.root):
                return True
        except OSError:
            return False

    def poll(self, now: float | None = None, force_scan: bool = False) -> list[FoundPhoto]:
        """Photos that became complete since the last call."""
        now = time.monotonic() if now is None else now
        with self._lock:
            touched, self._touched = self._touched, set()
            closed, self._closed_events = self._closed_events, set()
        candidates = set(touched)
        if force_scan or now - self._last_scan >= self.settings.poll_interval_s:
            self._last_scan = now
            mounts = read_mounts()
            if mounts != self._mounts:  # a card came or went: which folder is on which card may have changed
                self._mounts = mounts
                self._card_ids.clear()
            try:
                candidates.update(walk_photos(self.root))
            except OSError as exc:
                log.warning("cannot scan %s: %s", self.root, exc)
        candidates.update(self._observing)
        ready: list[FoundPhoto] = []
        for path in sorted(candidates):
            found = self._check(path, now, path in closed)
            if found is not None:
                ready.append(found)
        return ready

    def settling(self) -> int:
        """How many files are seen but not yet complete."""
        return len(self._observing)

    def forget_handed_over(self) -> None:
        """After a card swap the same names may come back with other bytes: look at everything again."""
        self._handed_over.clear()

    def _check(self, path: Path, now: float, closed: bool) -> FoundPhoto | None:
        try:
            st = path.stat()
        except OSError:
            self._observing.pop(path, None)
            return None
        if not path.is_file() or (path.is_symlink() and not self._inside(path)):
            self._observing.pop(path, None)
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        if key in self._handed_over:
            self._observing.pop(path, None)
            return None
        seen = self._observing.get(path)
        if seen is None or (seen.size_bytes, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
            # A file last modified longer ago than stable_s is not being written now (a card just inserted).
            settled = seen is None and time.time() - st.st_mtime >= self.settings.stable_s
            self._observing[path] = _Observation(st.st_size, st.st_mtime_ns, now, closed or settled)
            if not (closed or settled):
                return None
            seen = self._observing[path]
        seen.closed = seen.closed or closed
        if not (seen.closed or now - seen.unchanged_since >= self.settings.stable_s):
            return None
        del self._observing[path]
        self._handed_over.add(key)
        return FoundPhoto(
            path=path,
            rel_path=path.relative_to(self.root).as_posix(),
            card_id=self._card_id(path.parent),
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )

    def _inside(self, path: Path) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.root))

    def _card_id(self, folder: Path) -> str:
        if self.card_id is not None:
            return self.card_id
        card = self._card_ids.get(folder)
        if card is None:
            card = card_id_for(folder, self._mounts)
            self._card_ids[folder] = card
        return card
