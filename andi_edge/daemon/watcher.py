"""Discovery: which photos under the watched folder are complete and new.

Three sources, because each misses something: a full scan at start and every ``full_rescan_s``; every
``poll_interval_s`` a look at each known folder's mtime, listing again only the folders that changed (events are
lost while we are down, and FAT/exFAT cards or network mounts may send none; a card of 100,000 photos in a few
hundred folders costs a few hundred stats per poll, not 100,000); and inotify events through watchdog for low
latency. A folder modified within the last few seconds is listed again at the next poll even if its mtime looks
unchanged (FAT keeps times to 2 s). A file is handed over only once it is complete: closed after writing (inotify
close-write), or its size and mtime unchanged for ``stable_s``. A half-copied photo is never read as broken.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from andi_edge.daemon.card import Mount, card_id_for, read_mounts
from andi_edge.photos import is_video_name, is_wanted
from andi_edge.settings import DiscoverySettings

log = logging.getLogger(__name__)

#: file times are claims from the card: a file dated past 2262 (or before 1678) has a time in nanoseconds that
#: no 64-bit integer holds (SQLite's INTEGER, datetime's range); it is held at the nearest one, and processed
_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1


def _held_ns(value: int) -> int:
    return min(max(value, _NS_MIN), _NS_MAX)


#: a folder whose mtime is this recent is listed again at the next poll (coarse file-system clocks: FAT's 2 s)
RECENT_FOLDER_S = 5.0


@dataclass(frozen=True)
class FoundPhoto:
    path: Path
    rel_path: str
    card_id: str
    size_bytes: int
    mtime_ns: int
    #: changes with any write to the file (and chmod): a rewrite in place that kept size and mtime shows here
    ctime_ns: int


@dataclass
class _Observation:
    size_bytes: int
    mtime_ns: int
    unchanged_since: float
    closed: bool = False


class Discovery:
    def __init__(self, root: Path, settings: DiscoverySettings, card_id: str | None = None, media: str = "all") -> None:
        """``media``: which files are handed over: photos and video clips (all), photos, or videos."""
        self.root = Path(os.path.abspath(root))
        self.settings = settings
        self.media = media
        #: every photo under root is on this card (the card unit hands over the volume it mounted)
        self.card_id = card_id
        self._observing: dict[Path, _Observation] = {}
        #: each photo handed over, with the (size, mtime, ctime) it had then
        self._handed_over: dict[Path, tuple[int, int, int]] = {}
        #: a card was seen mounted at root: root then is only "available" while a card is mounted at it (a pulled
        #: card can leave its mount point behind, an empty folder)
        self._card_was_mounted = False
        self._closed_events: set[Path] = set()
        self._touched: set[Path] = set()
        self._lock = threading.Lock()
        self._last_scan = 0.0
        self._last_full_scan = 0.0
        #: every folder under root and its mtime when last listed (None: list it again at the next poll)
        self._folders: dict[str, int | None] = {}
        self._observer: object | None = None
        self._card_ids: dict[Path, str] = {}
        self._mounts: list[Mount] = []
        #: files left out by the media setting (clips, with media: photos) at the last full scan, and how many were
        #: last reported
        self._videos = 0
        self._videos_reported = 0

    def wanted(self, name: str) -> bool:
        """Whether a file of this name is handed over: a photo, or a video clip, as the media setting asks."""
        return is_wanted(name, self.media)

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
                    if discovery.wanted(path.name):
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
        """Is the card (watched folder) there and readable? Where a card was mounted at the folder, only while
        a card is mounted there: an empty mount point left by a pulled card is not the card."""
        try:
            with os.scandir(self.root):
                pass
        except OSError:
            return False
        # ismount sees another device; a bind mount of the same device shows only in the mount table
        if os.path.ismount(self.root) or any(m.mount_point == self.root for m in read_mounts()):
            self._card_was_mounted = True
            return True
        return not self._card_was_mounted

    def hand_over_again(self, rel_path: str) -> None:
        """The journal let go of this photo (it vanished): should it come back, it is handed over again."""
        self._handed_over.pop(self.root / rel_path, None)

    def poll(self, now: float | None = None, force_scan: bool = False) -> list[FoundPhoto]:
        """Photos that became complete since the last call."""
        now = time.monotonic() if now is None else now
        with self._lock:
            touched, self._touched = self._touched, set()
            closed, self._closed_events = self._closed_events, set()
        candidates = set(touched)
        full = force_scan or now - self._last_full_scan >= self.settings.full_rescan_s
        if full or now - self._last_scan >= self.settings.poll_interval_s:
            self._last_scan = now
            mounts = read_mounts()
            if mounts != self._mounts:  # a card came or went: which folder is on which card may have changed
                self._mounts = mounts
                self._card_ids.clear()
            if full:
                self._last_full_scan = now
                self._folders.clear()
                self._videos = 0
                candidates.update(self._list_tree(str(self.root)))
                said, self._videos_reported = self._videos_reported, self._videos
                if self._videos and self._videos != said:
                    log.warning("%d video clip(s) on the card at %s left out (media: photos)", self._videos, self.root)
            else:
                candidates.update(self._list_changed())
        candidates.update(self._observing)
        ready: list[FoundPhoto] = []
        for path in sorted(candidates):
            found = self._check(path, now, path in closed)
            if found is not None:
                ready.append(found)
        return ready

    # -- folders --------------------------------------------------------------------------------------------

    def _list_folder(self, folder: str) -> tuple[list[Path], list[str]]:
        """One folder's photos and subfolders (hidden ones skipped, symlinked folders not followed), and its
        mtime remembered: taken before the listing, so a change during it is seen at the next poll."""
        try:
            mtime_ns = os.stat(folder).st_mtime_ns
            with os.scandir(folder) as entries:
                photos, subfolders = [], []
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        is_folder = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_folder:
                        subfolders.append(entry.path)
                    elif self.wanted(entry.name):
                        photos.append(Path(entry.path))
                    elif is_video_name(entry.name):
                        self._videos += 1
        except OSError as exc:
            if folder == str(self.root):
                log.warning("cannot scan %s: %s", self.root, exc)
            self._folders.pop(folder, None)
            return [], []
        # a folder dated in the future (a camera clock ahead, a box booted without its clock) is not "recent":
        # listed again at every poll, its photos would be stat'ed at every poll, forever
        recent = abs(time.time() - mtime_ns / 1e9) < RECENT_FOLDER_S
        self._folders[folder] = None if recent else mtime_ns
        return photos, subfolders

    def _list_tree(self, top: str) -> list[Path]:
        found: list[Path] = []
        stack = [top]
        while stack:
            photos, subfolders = self._list_folder(stack.pop())
            found.extend(photos)
            stack.extend(subfolders)
        return found

    def _list_changed(self) -> list[Path]:
        """Photos in the folders whose mtime changed since they were listed (new folders included)."""
        found: list[Path] = []
        for folder, listed_mtime in list(self._folders.items()):
            try:
                mtime_ns = os.stat(folder).st_mtime_ns
            except OSError:  # gone, with whatever was below it
                self._folders.pop(folder, None)
                continue
            if listed_mtime == mtime_ns:
                continue
            photos, subfolders = self._list_folder(folder)
            found.extend(photos)
            for sub in subfolders:
                if sub not in self._folders:
                    found.extend(self._list_tree(sub))
        return found

    def settling(self) -> int:
        """How many files are seen but not yet complete."""
        return len(self._observing)

    def forget_handed_over(self) -> None:
        """After a card swap the same names may come back with other bytes: look at everything again."""
        self._handed_over.clear()

    def _check(self, path: Path, now: float, closed: bool) -> FoundPhoto | None:
        st: os.stat_result | None
        try:
            st = os.lstat(path)  # one system call for a plain file; a link costs a second one
            if stat.S_ISLNK(st.st_mode):
                st = os.stat(path) if self._inside(path) else None
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            self._observing.pop(path, None)
            return None
        mtime_ns, ctime_ns = _held_ns(st.st_mtime_ns), _held_ns(st.st_ctime_ns)
        key = (st.st_size, mtime_ns, ctime_ns)
        if self._handed_over.get(path) == key:
            self._observing.pop(path, None)
            return None
        seen = self._observing.get(path)
        if seen is None or (seen.size_bytes, seen.mtime_ns) != (st.st_size, mtime_ns):
            # A file last modified longer ago than stable_s is not being written now (a card just inserted).
            settled = seen is None and time.time() - st.st_mtime >= self.settings.stable_s
            self._observing[path] = _Observation(st.st_size, mtime_ns, now, closed or settled)
            if not (closed or settled):
                return None
            seen = self._observing[path]
        seen.closed = seen.closed or closed
        if not (seen.closed or now - seen.unchanged_since >= self.settings.stable_s):
            return None
        del self._observing[path]
        self._handed_over[path] = key
        return FoundPhoto(
            path=path,
            rel_path=path.relative_to(self.root).as_posix(),
            card_id=self._card_id(path.parent),
            size_bytes=st.st_size,
            mtime_ns=mtime_ns,
            ctime_ns=ctime_ns,
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
