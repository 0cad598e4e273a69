"""The record of one processed file, as the journal keeps it, and its own versioned schema.

A record is the typed result (``ImageResult``: ``Detections`` in the photo's pixels at full float32 precision, the
photo's facts, per-stage timings, or a failure) plus what processing wrote beside it (its crops) and which run
produced it. The journal stores ``dump_record``'s text and gives back ``load_record``'s record, bit for bit; every
output (sidecar, MegaDetector batch JSON, Camtrap DP, report, events, repeats) is rendered from it, so output
formats, with their rounding and their conventions, never come back in.

Schema history: 1, a photo; 2, the kind ``clip``: a video clip's facts and each analysed frame's boxes.
``load_record`` reads every schema it knows and refuses one from a newer andi-edge (``RecordError``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from andi_edge.detections import ClipInfo, Detections, FrameResult, ImageResult, PhotoInfo

RECORD_SCHEMA = 2
#: the kinds of processed file a record can hold
RECORD_KINDS = ("photo", "clip")


class RecordError(ValueError):
    """A stored record that cannot be read (damaged, or written by a newer andi-edge)."""


@dataclass(frozen=True)
class OutputFacts:
    """What processing wrote beside the result, for the outputs rendered later to say."""

    #: the crops written, relative to the card's output folder
    crops: tuple[str, ...] = ()
    #: why crops were not cut although boxes were above the crop threshold (memory, a decode error)
    crops_skipped: str | None = None
    #: the scale crops were cut at against the original, when smaller than 1
    crops_scale: float | None = None


@dataclass(frozen=True)
class ResultRecord:
    """One processed file: its result, what was written beside it, and the run that produced it."""

    result: ImageResult
    outputs: OutputFacts = field(default_factory=OutputFacts)
    #: the key of the run facts (model, backend, thresholds) that produced it, as the journal keeps them
    run_id: str | None = None

    @property
    def kind(self) -> str:
        return "clip" if self.result.clip is not None or self.result.frames else "photo"

    @property
    def failure(self) -> str | None:
        return self.result.failure


def dump_record(record: ResultRecord) -> str:
    """The record as compact JSON text of schema RECORD_SCHEMA. Floats are written as the shortest decimal that
    reads back to the same double, and float32 values are exact doubles: the text reads back bit for bit."""
    result = record.result
    data: dict[str, Any] = {"schema": RECORD_SCHEMA, "kind": record.kind}
    if result.failure is not None:
        data["failure"] = result.failure
    if result.photo is not None:
        data["photo"] = _photo_json(result.photo)
    if result.detections is not None:
        data["detections"] = _detections_json(result.detections)
    if result.timings_ms:
        data["timings_ms"] = {k: float(v) for k, v in result.timings_ms.items()}
    if result.clip is not None:
        data["clip"] = dataclasses.asdict(result.clip)
    if result.frames:
        data["frames"] = [
            {
                "frame_number": f.frame_number,
                "time_s": float(f.time_s),
                "detections": _detections_json(f.detections),
                "timings_ms": {k: float(v) for k, v in f.timings_ms.items()},
            }
            for f in result.frames
        ]
    outputs = record.outputs
    if outputs.crops:
        data["crops"] = list(outputs.crops)
    if outputs.crops_skipped is not None:
        data["crops_skipped"] = outputs.crops_skipped
    if outputs.crops_scale is not None:
        data["crops_scale"] = float(outputs.crops_scale)
    if record.run_id is not None:
        data["run"] = record.run_id
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def load_record(text: str, path: Path) -> ResultRecord:
    """The record ``dump_record`` wrote (of any schema up to RECORD_SCHEMA); ``path``: the file it is of (the
    journal keys records by path, so the text does not repeat it). RecordError when it cannot be read."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    schema = data.get("schema")
    if not isinstance(schema, int) or not 1 <= schema <= RECORD_SCHEMA:
        raise RecordError(f"record schema {schema!r}: this andi-edge reads 1..{RECORD_SCHEMA} (a newer one wrote it?)")
    kind = data.get("kind")
    if kind not in RECORD_KINDS:
        raise RecordError(f"unknown kind of record {kind!r}")
    try:
        photo = _photo_from(data["photo"]) if "photo" in data else None
        detections = _detections_from(data["detections"]) if "detections" in data else None
        timings = {str(k): float(v) for k, v in (data.get("timings_ms") or {}).items()}
        clip = _clip_from(data["clip"]) if "clip" in data else None
        frames = tuple(
            FrameResult(
                frame_number=_int(f["frame_number"]),
                time_s=float(f["time_s"]),
                detections=_detections_from(f["detections"]),
                timings_ms={str(k): float(v) for k, v in (f.get("timings_ms") or {}).items()},
            )
            for f in data.get("frames") or ()
        )
        result = ImageResult(
            path=path,
            detections=detections,
            photo=photo,
            timings_ms=timings,
            failure=data.get("failure"),
            clip=clip,
            frames=frames,
        )
        scale = data.get("crops_scale")
        outputs = OutputFacts(
            crops=tuple(str(c) for c in data.get("crops") or ()),
            crops_skipped=data.get("crops_skipped"),
            crops_scale=None if scale is None else float(scale),
        )
    except (KeyError, TypeError, ValueError) as exc:  # ValueError: what Detections and ImageResult refuse
        raise RecordError(f"damaged record: {exc}") from exc
    run = data.get("run")
    record = ResultRecord(result=result, outputs=outputs, run_id=run if isinstance(run, str) else None)
    if record.kind != kind:
        raise RecordError(f"a record of kind {kind!r} holds a {record.kind}")
    return record


def failure_record(path: Path, failure: str, run_id: str | None = None) -> ResultRecord:
    """The record of a file that failed without a result."""
    return ResultRecord(result=ImageResult(path=path, failure=failure), run_id=run_id)


_PHOTO_TEXT = ("format", "capture_time", "camera_make", "camera_model", "camera_serial")


def _photo_json(photo: PhotoInfo) -> dict[str, Any]:
    data: dict[str, Any] = {"width_px": photo.width_px, "height_px": photo.height_px}
    for name in _PHOTO_TEXT:
        value = getattr(photo, name)
        if value is not None:
            data[name] = value
    if photo.exif_orientation != 1:
        data["exif_orientation"] = photo.exif_orientation
    return data


def _photo_from(data: dict[str, Any]) -> PhotoInfo:
    text = _texts(data, _PHOTO_TEXT, "photo")
    return PhotoInfo(
        width_px=_int(data["width_px"]),
        height_px=_int(data["height_px"]),
        exif_orientation=_int(data.get("exif_orientation", 1)),
        **text,
    )


def _clip_from(data: dict[str, Any]) -> ClipInfo:
    duration = data.get("duration_s")
    text = _texts(data, ("codec", "creation_time", "partial"), "clip")
    return ClipInfo(
        width_px=_int(data["width_px"]),
        height_px=_int(data["height_px"]),
        frame_rate=float(data["frame_rate"]),
        duration_s=None if duration is None else float(duration),
        rotation=_int(data.get("rotation", 0)),
        **text,
    )


def _detections_json(detections: Detections) -> dict[str, Any]:
    data: dict[str, Any] = {
        "xyxy_px": detections.xyxy_px.tolist(),  # float32 -> the exact double of each value
        "conf": detections.confidence.tolist(),
        "class_id": detections.class_id.tolist(),
    }
    if detections.classification_id is not None and detections.classification_conf is not None:
        data["classification_id"] = detections.classification_id.tolist()
        data["classification_conf"] = detections.classification_conf.tolist()
        data["top_k"] = int(detections.classification_id.shape[1])  # an empty array keeps its width too
    return data


def _detections_from(data: dict[str, Any]) -> Detections:
    xyxy = np.asarray(data["xyxy_px"], dtype=np.float32).reshape(-1, 4)
    ids = data.get("classification_id")
    confs = data.get("classification_conf")
    n = len(xyxy)
    k = _int(data.get("top_k", 0))
    return Detections(
        xyxy,
        np.asarray(data["conf"], dtype=np.float32),
        np.asarray(data["class_id"], dtype=np.int64),
        None if ids is None else np.asarray(ids, dtype=np.int64).reshape(n, k),
        None if confs is None else np.asarray(confs, dtype=np.float32).reshape(n, k),
    )


def _texts(data: dict[str, Any], names: tuple[str, ...], what: str) -> dict[str, str | None]:
    """The optional text fields ``names`` of ``data``; TypeError naming one that is not text."""
    text: dict[str, str | None] = {}
    for name in names:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{what} {name} must be text")
        text[name] = value
    return text


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value != int(value):
        raise TypeError(f"{value!r} is not a whole number")
    return int(value)
