"""Per-photo sidecar JSON: the MegaDetector image entry plus where the result came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from andi_edge.sinks.atomic import write_json_atomic

SIDECAR_SUFFIX = ".json"


def sidecar_path(card_out: Path, output_key: str) -> Path:
    """``OUT/CARD/DCIM/100RECNX/IMG_0001.JPG`` -> ``.../IMG_0001.JPG.json`` (the photo's own name kept whole)."""
    return card_out / (output_key + SIDECAR_SUFFIX)


def write_sidecar(path: Path, image_entry: dict[str, Any], provenance: dict[str, Any]) -> None:
    write_json_atomic(path, {**image_entry, "andi_edge": provenance})
