"""How outputs are named: every file and folder name within the file system's limit, no two photos sharing one.

A card's names are bytes from strangers (a FAT card mounted without ``utf8`` gives ``caf\\xe9.JPG``, held as a
surrogate escape), may be long (255 UTF-16 characters on FAT: up to 765 bytes in UTF-8) and may differ only in
what a flattened or cleaned name loses (``x/y.JPG`` vs ``x__y.JPG``, ``IMG_1.JPG`` vs ``IMG_1.PNG``). So:

- a name that fits is kept as it is; a longer one keeps as much of its start as fits, then ``~`` and a short hash
  of the whole name (deterministic: the same photo always gets the same name);
- derived names (crops) always carry a short hash of the photo's output key, so cleaning never merges two photos;
- temporary names (``.NAME.XXXXXXXX.tmp``) fall back to a hash when ``NAME`` leaves them no room;
- a card's mirrored tree never takes the name of an output beside it (``mirrored_path``): a card folder called
  ``crops`` or ``megadetector_results.json`` at the top, or any card folder whose name ends in ``.json`` (where
  a photo's sidecar would be), is mirrored as ``NAME~HASH``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import PurePosixPath

#: bytes in one file or folder name on ext4, XFS, btrfs, exFAT (in UTF-16 units there) and most others
NAME_MAX_BYTES = 255
#: what ``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")`` adds to NAME
TEMP_NAME_OVERHEAD_BYTES = len(".") + len(".") + 8 + len(".tmp")
HASH_CHARS = 10
#: the names of a card's outputs beside its mirrored tree (``OUT/<card>/``), owned here so no card path takes them
BATCH_JSON_NAME = "megadetector_results.json"
CROPS_DIR = "crops"
SIDECAR_SUFFIX = ".json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def name_bytes(name: str) -> int:
    """A name's length on disk (surrogate escapes stand for the card's original bytes)."""
    return len(os.fsencode(name))


def short_hash(text: str) -> str:
    return hashlib.sha1(os.fsencode(text), usedforsecurity=False).hexdigest()[:HASH_CHARS]


def bounded_name(name: str, suffix: str = "", limit: int = NAME_MAX_BYTES) -> str:
    """``name + suffix`` if it fits in ``limit`` bytes, else the start of ``name``, ``~``, its hash, ``suffix``."""
    if name_bytes(name + suffix) <= limit:
        return name + suffix
    tail = f"~{short_hash(name)}{suffix}"
    room = limit - name_bytes(tail)
    kept = ""
    for char in name:  # whole characters only: never half of a UTF-8 sequence
        if name_bytes(kept + char) > room:
            break
        kept += char
    return kept + tail


def mirrored_path(rel_path: str, suffix: str = "") -> str:
    """A photo's card path as the output tree mirrors it: each component bounded (``bounded_name``), ``suffix``
    (``.json``) added to the last within its limit, and no folder taking the name of an output. A card folder
    ``DCIM/IMG_0001.JPG.json/`` would make IMG_0001.JPG's sidecar both a file and a folder, and a top folder
    ``megadetector_results.json/`` the card's batch file: such a folder (compared without case, as exFAT and
    FAT output disks compare names) becomes ``NAME~HASH``, the same name every time."""
    parts = PurePosixPath(rel_path).parts
    if not parts:
        raise ValueError("an empty path has no output name")
    top_level = {BATCH_JSON_NAME, CROPS_DIR}
    folders = []
    for depth, part in enumerate(parts[:-1]):
        folded = part.lower()
        taken = folded.endswith(SIDECAR_SUFFIX) or (depth == 0 and folded in top_level)
        folders.append(bounded_name(part, f"~{short_hash(part + '/')}") if taken else bounded_name(part))
    return "/".join([*folders, bounded_name(parts[-1], suffix)])


def display_text(text: str) -> str:
    """Card text for people and text formats (HTML, CSV, a terminal): bytes that are not UTF-8 shown as ``\\xe9``,
    the rest as it is. Output *file names* keep the card's real bytes instead (``bounded_name``)."""
    return os.fsencode(text).decode("utf-8", "backslashreplace") if UNDECODABLE_BYTE.search(text) else text


#: how Python holds a name's byte that is not UTF-8 (os.fsdecode's surrogate escapes)
UNDECODABLE_BYTE = re.compile("[\udc80-\udcff]")


def safe_name(text: str) -> str:
    """ASCII letters, digits, ``.``, ``_`` and ``-`` only (a class name as a folder name)."""
    return _UNSAFE.sub("_", text).strip("._") or "unnamed"


def derived_stem(output_key: str, max_readable: int = 80) -> str:
    """A flat, safe, unique stem for files derived from one photo (its crops): a readable part of its path, and a
    hash of the whole key, so that two photos never share a stem however their names clean up."""
    readable = safe_name(PurePosixPath(output_key).with_suffix("").as_posix().replace("/", "__"))
    return f"{readable[-max_readable:].lstrip('._') or 'photo'}__{short_hash(output_key)}"


def temp_prefix(final_name: str) -> str:
    """The prefix of a temporary file written beside ``final_name``: ``.NAME.`` when that fits, else a hash."""
    if name_bytes(final_name) + TEMP_NAME_OVERHEAD_BYTES <= NAME_MAX_BYTES:
        return f".{final_name}."
    return f".{short_hash(final_name)}."
