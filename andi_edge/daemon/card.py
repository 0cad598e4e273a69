"""Which card a photo is on: the filesystem volume (UUID/label) when the folder is a mounted card.

Two cards that both hold ``DCIM/100RECNX/IMG_0001.JPG`` get different card ids, so their outputs never meet.
A plain folder (not its own mount) is the card ``local``; there, a different photo at a path already used is
told apart by its content hash (see the service).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LOCAL_CARD = "local"
_BY_UUID = Path("/dev/disk/by-uuid")
_BY_LABEL = Path("/dev/disk/by-label")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Mount:
    mount_point: Path
    source: str


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    mounts = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        right_fields = right.split()
        if len(fields) < 5 or len(right_fields) < 2:
            continue
        mounts.append(Mount(mount_point=Path(_unescape(fields[4])), source=right_fields[1]))
    return mounts


def _link_name_for(device: str, folder: Path) -> str | None:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    real = os.path.realpath(device)
    for entry in entries:
        if os.path.realpath(entry) == real:
            return entry.name
    return None


def card_id_for(folder: Path, mounts: list[Mount] | None = None) -> str:
    """``vol-<label>-<uuid>`` for a block-device volume mounted at or above ``folder`` (not /), else ``local``."""
    resolved = Path(os.path.realpath(folder))
    candidates = [
        m for m in (mounts if mounts is not None else read_mounts()) if resolved.is_relative_to(m.mount_point)
    ]
    if not candidates:
        return LOCAL_CARD
    mount = max(candidates, key=lambda m: len(m.mount_point.parts))
    if mount.mount_point == Path("/") or not mount.source.startswith("/dev/"):
        return LOCAL_CARD
    uuid = _link_name_for(mount.source, _BY_UUID)
    label = _link_name_for(mount.source, _BY_LABEL)
    parts = [p for p in (label, uuid or Path(mount.source).name) if p]
    return "vol-" + "-".join(_UNSAFE.sub("_", p) for p in parts)
