"""Resumable results: each finished chunk is a small JSON shard written atomically beside the output.

``results.json.parts/part-<digest>.json`` holds ``{file: entry}`` for one chunk, each file's identity when
it was processed (size and mtime), plus the run's identity (the folders given, model sha256 and settings). A
rerun with the same identity loads every shard and skips the photos whose file is still the one processed; the
final results file is merged from them, and the shards are removed only once it is written. A crashed or
cancelled 10-hour run therefore continues where it stopped, and a run over other folders (every card has a
``DCIM/100RECNX/IMG_0001.JPG``) or over files changed since starts anew for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from andi_edge.sinks.atomic import write_json_atomic

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts"


#: a file as it was when processed: (size in bytes, mtime in ns)
FileIdentity = tuple[int, int]


def file_identity(path: Path) -> FileIdentity | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


#: what a run's results depend on, as the detector's provenance names it: shards of another run are not reused
IDENTITY_KEYS = (
    "model_sha256",
    "conf_threshold",
    "iou_threshold",
    "max_detections",
    "reduced_decode",
    "categories",
    "classifications",
    "classifier",
)


def run_identity(roots: list[Path], provenance: dict[str, Any]) -> dict[str, Any]:
    """The identity of a run over ``roots`` by the detector whose ``provenance`` this is."""
    return {"roots": sorted(str(r.resolve()) for r in roots)} | {key: provenance[key] for key in IDENTITY_KEYS}


class ShardStore:
    def __init__(self, output: Path, identity: dict[str, Any], files: dict[str, FileIdentity | None]) -> None:
        """``files``: each photo of this run (its path relative to the root) and its file's identity now."""
        self.folder = output.with_name(output.name + PARTS_SUFFIX)
        self.identity = identity
        self.files = files

    def load(self) -> dict[str, dict[str, Any]]:
        """Entries already finished by an earlier run of the same folders, model and settings, for files that are
        still the ones processed then."""
        done: dict[str, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return done
        other_runs: set[str] = set()
        changed = 0
        for part in sorted(self.folder.glob("part-*.json")):
            try:
                document = json.loads(part.read_text())
                identity, entries, files = document["identity"], document["entries"], document.get("files", {})
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                log.warning("ignoring unreadable shard %s", part)
                continue
            if identity != self.identity:
                differ = {k for k in {*self.identity, *identity} if identity.get(k) != self.identity.get(k)}
                other_runs |= differ
                continue
            for file, entry in entries.items():
                was = files.get(file)
                if was is not None and self.files.get(file) == tuple(was):
                    done[file] = entry
                elif file in self.files:
                    changed += 1
        if other_runs:
            log.warning(
                "results of an interrupted run in %s are not reused: its %s differ from this run's; starting anew",
                self.folder,
                ", ".join(sorted(other_runs)),
            )
        if changed:
            log.warning("%d photo(s) changed since an interrupted run processed them: processing them again", changed)
        return done

    def save(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        if not entries:
            return
        digest = hashlib.sha256("\n".join(f for f, _ in entries).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        write_json_atomic(
            self.folder / f"part-{digest}.json",
            {
                "identity": self.identity,
                "entries": dict(entries),
                "files": {f: self.files.get(f) for f, _ in entries},
            },
            indent=None,
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def load_previous_results(path: Path, categories: dict[str, str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Entries of an earlier MegaDetector results file, by file; failed photos are not reused."""
    from andi_edge.errors import UsageError

    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--previous-results {path}: not a readable JSON file ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError(f"--previous-results {path}: not a MegaDetector results file (no 'images' list)")
    if document.get("detection_categories") != categories:
        raise UsageError(
            f"--previous-results {path} names its categories differently from this model's",
            hint="reuse only results made by the same model (or one with the same classes)",
        )
    entries = {
        image["file"]: image
        for image in document["images"]
        if isinstance(image, dict) and "file" in image and image.get("failure") is None and "detections" in image
    }
    detector = (document.get("info") or {}).get("detector")
    return entries, detector
