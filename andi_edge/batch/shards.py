"""Resumable results: each finished chunk is a small JSON shard written atomically beside the output.

``results.json.parts/part-<digest>.json`` holds ``{file: entry}`` for one chunk, plus the run's identity
(model sha256 and settings). A rerun with the same identity loads every shard and skips those photos; the
final results file is merged from them, and the shards are removed only once it is written. A crashed or
cancelled 10-hour run therefore continues where it stopped.
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


class ShardStore:
    def __init__(self, output: Path, identity: dict[str, Any]) -> None:
        self.folder = output.with_name(output.name + PARTS_SUFFIX)
        self.identity = identity

    def load(self) -> dict[str, dict[str, Any]]:
        """Entries already finished by an earlier run with the same model and settings."""
        done: dict[str, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return done
        mismatched = 0
        for part in sorted(self.folder.glob("part-*.json")):
            try:
                document = json.loads(part.read_text())
            except (OSError, json.JSONDecodeError):
                log.warning("ignoring unreadable shard %s", part)
                continue
            if document.get("identity") != self.identity:
                mismatched += 1
                continue
            done.update(document["entries"])
        if mismatched:
            log.warning("%d shard(s) in %s came from another model or settings: not reused", mismatched, self.folder)
        return done

    def save(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        if not entries:
            return
        digest = hashlib.sha256("\n".join(f for f, _ in entries).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        write_json_atomic(
            self.folder / f"part-{digest}.json",
            {"identity": self.identity, "entries": dict(entries)},
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
