"""Per-photo sidecar JSON: the MegaDetector image entry plus where the result came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from andi_edge.sinks.atomic import write_json_atomic
from andi_edge.sinks.names import SIDECAR_SUFFIX, mirrored_path

PROVENANCE_KEY = "andi_edge"


def sidecar_path(card_out: Path, output_key: str) -> Path:
    """``OUT/CARD/DCIM/100RECNX/IMG_0001.JPG`` -> ``.../IMG_0001.JPG.json`` (the photo's own name kept whole when
    it fits the file system's limit, and no folder named like an output; see ``sinks.names``)."""
    return card_out / mirrored_path(output_key, SIDECAR_SUFFIX)


def write_sidecar(path: Path, image_entry: dict[str, Any], provenance: dict[str, Any]) -> None:
    write_json_atomic(path, {**image_entry, PROVENANCE_KEY: provenance})


def update_sidecar(path: Path, image_entry: dict[str, Any], fallback_provenance: dict[str, Any]) -> None:
    """Rewrite a sidecar with a newer entry (its event grew, a repeat was flagged), keeping the provenance it was
    first written with (hash, timings, crops); a sidecar that is gone or unreadable is written anew."""
    provenance = fallback_provenance
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(existing, dict) and isinstance(existing.get(PROVENANCE_KEY), dict):
            provenance = existing[PROVENANCE_KEY]
    except (OSError, ValueError):
        pass
    write_sidecar(path, image_entry, provenance)
