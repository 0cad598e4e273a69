"""Finding photos on a card or in a folder tree: which files count, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from andi_edge.errors import UsageError

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: clips trail cameras write: found and counted, so that a card in video mode is not "0 photos" without a word
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".mpg", ".mpeg", ".wmv"})


@dataclass(frozen=True)
class PhotoSource:
    """A photo and the folder its results are reported relative to."""

    root: Path
    path: Path

    @property
    def relative(self) -> str:
        """Path relative to the root, with forward slashes (MegaDetector and Timelapse expect them)."""
        return self.path.relative_to(self.root).as_posix()


def is_photo_name(name: str) -> bool:
    """jpg/jpeg/png in any case; hidden files and macOS ``._`` resource forks are not photos."""
    if name.startswith("."):
        return False
    return os.path.splitext(name)[1].lower() in PHOTO_SUFFIXES


def is_video_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def is_clip_for(name: str, media: str) -> bool:
    """A video clip's name, and the media setting (all, photos, videos) takes clips."""
    return media != "photos" and is_video_name(name)


def is_wanted(name: str, media: str) -> bool:
    """A photo or a clip the media setting takes."""
    return (media != "videos" and is_photo_name(name)) or is_clip_for(name, media)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _walk(root: Path, videos: list[Path] | None = None) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not is_photo_name(name):
                if videos is not None and is_video_name(name):
                    videos.append(Path(dirpath) / name)
                continue
            path = Path(dirpath) / name
            if path.is_symlink() and not _inside(path, root):
                continue
            yield path


def walk_photos(root: Path, videos: list[Path] | None = None) -> list[Path]:
    """Photos under ``root`` sorted by relative path, skipping hidden folders; symlinks never lead outside ``root``.
    ``videos``: the clips found on the way are added to it (they are not photos)."""
    return sorted(_walk(root, videos), key=lambda p: p.relative_to(root).as_posix())


def find_photos(paths: Iterable[Path], videos: list[Path] | None = None) -> tuple[Path, list[PhotoSource]]:
    """Photos from files and folders given on a command line, and the common root they are reported under.
    ``videos``: the clips found under the folders are added to it."""
    given = list(paths)
    if not given:
        raise UsageError("no photos or folders given")
    for p in given:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
    # Paths stay as the user gave them (made absolute, links not resolved): a card mounted through a symlink
    # reports files relative to the folder named, not to wherever the link points.
    roots = [Path(os.path.abspath(p if p.is_dir() else p.parent)) for p in given]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    sources: list[PhotoSource] = []
    seen: set[Path] = set()
    for p in given:
        candidates = walk_photos(p, videos) if p.is_dir() else [p]
        for photo in candidates:
            absolute = photo.resolve() if not photo.is_symlink() else photo.absolute()
            if absolute in seen:
                continue
            seen.add(absolute)
            sources.append(PhotoSource(root=common, path=Path(os.path.abspath(photo))))
    return common, sources


@dataclass(frozen=True)
class FoundMedia:
    """Photos and clips from a command line's files and folders, as the media setting takes them."""

    root: Path
    photos: list[PhotoSource]
    clips: list[PhotoSource]
    #: clips found that the media setting (photos) leaves out
    clips_left_out: int = 0

    @property
    def everything(self) -> list[PhotoSource]:
        return sorted([*self.photos, *self.clips], key=lambda s: s.relative)


def find_media(paths: Iterable[Path], media: str) -> FoundMedia:
    """``find_photos``, with the clips under the folders as sources too; ``media``: all, photos or videos."""
    videos: list[Path] = []
    root, photos = find_photos(paths, videos)
    clips = [PhotoSource(root, Path(os.path.abspath(v))) for v in videos]
    return FoundMedia(
        root=root,
        photos=photos if media != "videos" else [],
        clips=clips if media != "photos" else [],
        clips_left_out=len(clips) if media == "photos" else 0,
    )
