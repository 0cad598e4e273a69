"""Which card a photo is on, and what the card is called: the one owner of card naming.

A card is named after its filesystem volume, ``vol-<label>-<uuid>``, so two cards that both hold
``DCIM/100RECNX/IMG_0001.JPG`` never meet in the journal or the outputs. The volume id is looked up where it
can be seen, in this order:

1. a volume file handed over by the privileged mount step (``blkid -o export``, written by the card script:
   the sandboxed daemon runs with ``PrivateDevices=yes`` and cannot probe the device itself);
2. ``/dev/disk/by-uuid`` and ``by-label`` (visible outside the sandbox);
3. udev's database, ``/run/udev/data/b<major>:<minor>`` (visible inside it: ``PrivateDevices`` hides /dev only).

Each source writes a label in its own way (blkid escapes for a shell, udev's links and ``ID_FS_LABEL_ENC`` as
``\\x20``, its ``ID_FS_LABEL`` with ``_`` for each unsafe character): each is read back to the label itself, so
one card gets one id whichever source names it. Only when none of them knows the volume is the kernel device
name used (``vol-sda1``, logged as a warning: two
cards in that slot would share an id, and only the content hash keeps their outputs apart). A plain folder (not
its own mount) is the card ``local``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from andi_edge.errors import UsageError

log = logging.getLogger(__name__)

LOCAL_CARD = "local"
_DISK_LINKS = Path("/dev/disk")
_UDEV_DATA = Path("/run/udev/data")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: a label or uuid is card text: cut to keep the card id (a folder name in the outputs) short
_MAX_PART = 64


@dataclass(frozen=True)
class Mount:
    mount_point: Path
    source: str
    #: "major:minor" of the mounted device, as /proc/self/mountinfo gives it
    device_number: str = ""
    #: the kernel's id of this mount: a card swapped in the same slot is mounted anew under another id
    mount_id: str = ""


@dataclass(frozen=True)
class Volume:
    """What is known of a volume: any field may be missing."""

    label: str = ""
    uuid: str = ""
    device: str = ""


def card_name(volume: Volume) -> str:
    """``vol-<label>-<uuid>`` (either may be missing; the device name stands in for a missing uuid)."""
    parts = [p for p in (volume.label, volume.uuid or Path(volume.device).name) if p]
    if not parts:
        raise ValueError("a volume with neither label, uuid nor device has no name")
    return "vol-" + "-".join(_UNSAFE.sub("_", p)[:_MAX_PART] for p in parts)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    mounts = []
    try:
        lines = mountinfo.read_text(errors="surrogateescape").splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        right_fields = right.split()
        if len(fields) < 5 or len(right_fields) < 2:
            continue
        mounts.append(Mount(Path(_unescape(fields[4])), right_fields[1], fields[2], fields[0]))
    return mounts


def read_volume_file(path: Path) -> Volume:
    """A volume file in ``blkid -o export`` form (``UUID=...``, ``LABEL=...``, ``DEVNAME=...``, one per line).

    Raises UsageError when it cannot be read or names no volume: a card unit must not guess its card's identity."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(
            f"cannot read the volume file {path}: {exc.strerror or exc}",
            hint="it is written by `andi-edge-card mount` (blkid -o export); is the card mounted?",
        ) from exc
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = _shell_unquote(value.strip())
    volume = Volume(label=fields.get("LABEL", ""), uuid=fields.get("UUID", ""), device=fields.get("DEVNAME", ""))
    if not (volume.uuid or volume.label):
        raise UsageError(
            f"the volume file {path} names no volume (no UUID= or LABEL= line)",
            hint="write it with: blkid -o export /dev/DEVICE > FILE",
        )
    return volume


def _shell_unquote(value: str) -> str:
    """blkid -o export escapes odd characters with backslashes (it is meant for a shell's eval)."""
    return re.sub(r"\\(.)", r"\1", value)


def _udev_unescape(text: str) -> str:
    """udev writes the bytes of a label that are unsafe in a file name as ``\\xNN`` (a space: ``\\x20``)."""
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), os.fsencode(text))
    return raw.decode("utf-8", "surrogateescape")


def _link_name_for(device: str, folder: Path) -> str | None:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    real = os.path.realpath(device)
    for entry in entries:
        if os.path.realpath(entry) == real:
            return _udev_unescape(entry.name)
    return None


def _udev_volume(device_number: str, udev_data: Path) -> Volume | None:
    if not re.fullmatch(r"\d+:\d+", device_number):
        return None
    try:
        lines = (udev_data / f"b{device_number}").read_text(errors="replace").splitlines()
    except OSError:
        return None
    values = dict(line[2:].partition("=")[::2] for line in lines if line.startswith("E:"))
    uuid = _udev_unescape(values.get("ID_FS_UUID_ENC", "")) or values.get("ID_FS_UUID", "")
    # ID_FS_LABEL has "_" for every unsafe character: the encoded one is the label as the card has it
    label = _udev_unescape(values.get("ID_FS_LABEL_ENC", "")) or values.get("ID_FS_LABEL", "")
    return Volume(label=label, uuid=uuid) if (uuid or label) else None


def volume_of(mount: Mount, udev_data: Path = _UDEV_DATA, disk_links: Path = _DISK_LINKS) -> Volume:
    """The mounted device's volume, from whichever source can see it (see the module's docstring)."""
    uuid = _link_name_for(mount.source, disk_links / "by-uuid")
    label = _link_name_for(mount.source, disk_links / "by-label")
    if uuid or label:
        return Volume(label=label or "", uuid=uuid or "", device=mount.source)
    found = _udev_volume(mount.device_number, udev_data)
    if found is not None:
        return Volume(label=found.label, uuid=found.uuid, device=mount.source)
    log.warning(
        "cannot see the volume id of %s (mounted at %s): naming its card after the device; another card in the "
        "same slot would share the name (hand the id over with `watch --volume-file`)",
        mount.source,
        mount.mount_point,
    )
    return Volume(device=mount.source)


def card_id_for(folder: Path, mounts: list[Mount] | None = None, udev_data: Path = _UDEV_DATA) -> str:
    """The card id of a block-device volume mounted at or above ``folder`` (not /), else ``local``."""
    resolved = Path(os.path.realpath(folder))
    candidates = [
        m for m in (mounts if mounts is not None else read_mounts()) if resolved.is_relative_to(m.mount_point)
    ]
    if not candidates:
        return LOCAL_CARD
    mount = max(candidates, key=lambda m: len(m.mount_point.parts))
    if mount.mount_point == Path("/") or not mount.source.startswith("/dev/"):
        return LOCAL_CARD
    return card_name(volume_of(mount, udev_data))
