"""The daemon's memory: the one owner of how much one photo may take, so that ``watch`` stays within half of its
unit's ``MemoryMax`` for any accepted config on any photo.

A photo's decode is bounded by ``detector.max_decode_mb`` (JPEGs too big for it are decoded at a reduced DCT
scale, crops cut at a smaller scale, anything else fails as ``too_large``); the model's input tensor and a chunk
of classifier crops count against that same budget (``Detector.decode_budget_bytes``). Under a memory limit (the
cgroup's: systemd's ``MemoryMax``, v2 or v1), the budget is lowered at start where the workers' photos together
would pass half of the limit, once the model is loaded: ``half the limit - what the process holds then``, shared
by the photos decoded at once (the pipeline's decode workers and the writer cutting crops).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from andi_edge.errors import UsageError
from andi_edge.runtime.detector import Detector

log = logging.getLogger(__name__)

MIB = 2**20
#: a limit at or above this is "no limit" (cgroup v1 writes 2^63 rounded down to a page)
_UNLIMITED = 2**62
#: the least a photo's decode is given: below it, the limit is too tight for this model and these workers
MIN_PHOTO_BUDGET_BYTES = 32 * MIB


def cgroup_memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """This process's cgroup memory limit in bytes (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None for
    none or when it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2: one hierarchy
            candidate = root / relative / "memory.max"
        elif "memory" in controllers.split(","):
            candidate = root / "memory" / relative / "memory.limit_in_bytes"
        else:
            continue
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            return int(text)
    return None


def resident_bytes() -> int:
    """What this process holds in memory now (its resident set)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def photo_budget_bytes(limit: int, resident: int, photos_at_once: int) -> int:
    """Each photo's share of half the limit, once what the process already holds is counted."""
    return (limit // 2 - resident) // max(photos_at_once, 1)


def fit_to_memory(detector: Detector, photos_at_once: int, limit: int | None = None) -> None:
    """Lower ``detector``'s per-photo budget where the memory limit asks for it (see the module's docstring).
    UsageError where the limit leaves a photo too little, with what to change."""
    limit = cgroup_memory_limit() if limit is None else limit
    if limit is None:
        return
    share = photo_budget_bytes(limit, resident_bytes(), photos_at_once)
    settings = detector.settings
    if share >= settings.max_decode_bytes:
        return
    if share - detector.stage_bytes < MIN_PHOTO_BUDGET_BYTES:
        raise UsageError(
            f"the memory limit of {limit // MIB} MiB leaves each of {photos_at_once} photos in the works "
            f"{max(share, 0) // MIB} MiB once the model is loaded: too little to run this model "
            f"({detector.stage_bytes // MIB} MiB of input and crops) within half of the limit",
            hint="lower pipeline.workers, use a smaller model, or raise the unit's MemoryMax",
        )
    detector.settings = dataclasses.replace(settings, max_decode_mb=share // MIB)
    log.info(
        "memory limit %d MiB: each photo's decode within %d MiB (detector.max_decode_mb %d), %d photo(s) at once",
        limit // MIB,
        share // MIB,
        settings.max_decode_mb,
        photos_at_once,
    )


#: the shipped watch unit, whose MemoryMax= holds where no unit is installed
SHIPPED_UNIT = Path(__file__).resolve().parents[1] / "assets" / "systemd" / "andi-edge.service"
_SIZE_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def unit_memory_max(unit: Path) -> int | None:
    """The ``MemoryMax=`` of a unit file in bytes (K, M, G, T suffixes, base 1024); None when it sets none."""
    try:
        lines = unit.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the last assignment wins
        key, _, value = line.strip().partition("=")
        if key != "MemoryMax":
            continue
        value = value.strip()
        factor = _SIZE_SUFFIXES.get(value[-1:].upper(), 1)
        number = value[:-1] if factor != 1 else value
        return int(float(number) * factor) if number.replace(".", "", 1).isdigit() else None
    return None


def memory_verdict(detector: Detector, photos_at_once: int, limit: int) -> tuple[bool, str]:
    """Whether ``detector`` fits a unit with this ``MemoryMax``, as the daemon will hold it: the model loaded and
    run once at its largest input (its arena grown), then each photo in the works given at least
    MIN_PHOTO_BUDGET_BYTES within half of the limit (``fit_to_memory``'s rule). Runs the model once."""
    import numpy as np

    card = detector.card
    side = max(card.input_height, card.input_width)
    shape = (1, 3, side, side) if card.rect else (1, 3, card.input_height, card.input_width)
    detector.backend.run(np.zeros(shape, np.float32))
    held = resident_bytes()  # the model and the arena its first run grew stay resident
    needed = held + photos_at_once * (detector.stage_bytes + MIN_PHOTO_BUDGET_BYTES)
    fits = needed <= limit // 2
    text = (
        f"the model holds {held // MIB} MiB once run at {shape[2]}x{shape[3]}; with {photos_at_once} photo(s) in "
        f"the works it needs about {needed // MIB} MiB within half of the unit's MemoryMax ({limit // MIB} MiB)"
    )
    return fits, text
