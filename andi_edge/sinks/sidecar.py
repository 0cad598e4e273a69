"""Per-photo sidecar JSON: the MegaDetector image entry (with its event and repeat flags) plus where the result came
from, rendered from the photo's record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from andi_edge.record import ResultRecord
from andi_edge.sinks.atomic import write_json_atomic
from andi_edge.sinks.names import SIDECAR_SUFFIX, mirrored_path

PROVENANCE_KEY = "andi_edge"


def sidecar_path(card_out: Path, output_key: str) -> Path:
    """``OUT/CARD/DCIM/100RECNX/IMG_0001.JPG`` -> ``.../IMG_0001.JPG.json`` (the photo's own name kept whole when
    it fits the file system's limit, and no folder named like an output; see ``sinks.names``)."""
    return card_out / mirrored_path(output_key, SIDECAR_SUFFIX)


def sidecar_provenance(
    run: dict[str, Any], record: ResultRecord, card_id: str, sha256: str | None, size_bytes: int
) -> dict[str, Any]:
    """The sidecar's ``andi_edge`` part: the run that produced the result (model, backend, thresholds), the file's
    identity, the stage timings and the crops written for it."""
    result = record.result
    provenance: dict[str, Any] = {
        **run,
        "card_id": card_id,
        "sha256": sha256,
        "size_bytes": size_bytes,
        "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
        "crops": list(record.outputs.crops),
    }
    if record.outputs.crops_skipped is not None:
        provenance["crops_skipped"] = record.outputs.crops_skipped
    if record.outputs.crops_scale is not None:
        provenance["crops_scale"] = record.outputs.crops_scale
    if result.photo is not None:
        provenance["camera_serial"] = result.photo.camera_serial
    if result.frames:  # a clip: each analysed frame's stage timings, by frame number
        provenance["frame_timings_ms"] = {
            str(f.frame_number): {k: round(v, 3) for k, v in f.timings_ms.items()} for f in result.frames
        }
    return provenance


def write_sidecar(path: Path, image_entry: dict[str, Any], provenance: dict[str, Any]) -> None:
    """The sidecar: the photo's MegaDetector entry (with its event and repeat flags) and its provenance."""
    write_json_atomic(path, {**image_entry, PROVENANCE_KEY: provenance})
