"""Atomic, durable file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader sees the old file or the new one, never half of either, even across a power cut.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from andi_edge.errors import OutputError
from andi_edge.sinks.names import UNDECODABLE_BYTE, temp_prefix

TMP_SUFFIX = ".tmp"
#: what ``mkstemp(prefix=".NAME.", suffix=".tmp")`` creates: a hidden name, 8 random characters, .tmp
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it (os.umask() can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # not Linux: read by setting, then put it back
    os.umask(current)
    return current


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """``mode``: the file's permissions, set before it appears under its name. By default, what a plain
    ``open()`` would give (0o666 less the umask): mkstemp's own 0o600 would hide outputs from the group that
    the service's UMask=0027 means to share them with."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # an unwritable or missing place, or a full disk (the daemon pauses on ENOSPC)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    _fsync_dir(path.parent)


def prove_writable(folder: Path, what: str, option: str, create: bool = True) -> None:
    """Before any work: ``folder`` exists or can be made, and a file can be written in it (a read-only file
    system, a permission, a full disk). OutputError naming ``what`` it is for and the ``option`` that set it.
    ``create=False`` makes nothing: a folder not there yet is judged by the nearest one above it that is."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
        fd, probe = tempfile.mkstemp(prefix=".andi-edge-probe.", suffix=TMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write the {what} in {folder}: {exc.strerror or exc}",
            hint=f"give {option} a folder this user can write to (nothing was processed)",
        ) from exc


def json_text(document: Any, indent: int | None = 1) -> str:
    """JSON text for UTF-8 output. A card name with bytes that are not UTF-8 (a surrogate escape) is written as
    JSON's own ``\\udcXX`` escape: valid JSON, read back by Python as exactly the name it was."""
    separators = None if indent is not None else (", ", ": ")
    text = json.dumps(document, indent=indent, ensure_ascii=False, separators=separators)
    return UNDECODABLE_BYTE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def write_json_atomic(path: Path, document: Any, indent: int | None = 1) -> None:
    """UTF-8 JSON (see ``json_text``), written atomically."""
    write_text_atomic(path, json_text(document, indent))


def remove_stale_temp_files(root: Path) -> int:
    """Delete temp files a killed writer left under ``root``; only for a folder no one else is writing to."""
    removed = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if _TMP_NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (Path(dirpath) / name).unlink()
                    removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems (and Windows) cannot open a folder; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
