"""A photo's result in the review's terms (events, repeats, labels, the report, Camtrap DP): from the journal's
record, or from a MegaDetector batch file's entry (any producer's)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from andi_edge.boxes import clip_xyxy_px, xyxy_px_to_xywh_norm
from andi_edge.detections import ImageResult
from andi_edge.state.journal import PhotoRow

#: Camera folders under DCIM (``100RECNX``, ``101_BTCF``...) roll over every few thousand photos: one camera.
_DCIM_SUBFOLDER = re.compile(r"^\d{3}[A-Za-z0-9_]{5}$")


@dataclass(frozen=True)
class Box:
    """One detection as stored: class index, confidence, ``[x, y, w, h]`` normalised from the top-left, and its
    classifier labels (label index, confidence), best first."""

    class_index: int
    conf: float
    xywh_norm: tuple[float, float, float, float]
    classifications: tuple[tuple[int, float], ...] = ()

    @property
    def area_norm(self) -> float:
        return self.xywh_norm[2] * self.xywh_norm[3]


@dataclass(frozen=True)
class PhotoRecord:
    card_id: str
    rel_path: str
    #: where its sidecar and crops live on the card's output folder (the path, unless two photos shared it)
    output_key: str
    camera_key: str
    #: EXIF capture time, camera-local and without an offset (EXIF has none)
    capture_time: datetime | None
    #: the file's modification time (UTC): the only clock left when EXIF has none
    file_mtime: datetime
    width_px: int | None
    height_px: int | None
    boxes: tuple[Box, ...]
    failure: str | None
    camera_make: str | None = None
    camera_model: str | None = None
    camera_serial: str | None = None
    #: a video clip: the number of its poster frame (the frame of its most confident box), whose boxes these are
    poster_frame: int | None = None
    #: a video clip: the poster frame's time and the clip's length, in seconds from its start
    poster_time_s: float = 0.0
    clip_duration_s: float = 0.0

    @property
    def is_clip(self) -> bool:
        return self.poster_frame is not None

    @property
    def key(self) -> tuple[str, str]:
        return (self.card_id, self.rel_path)


def camera_key(rel_path: str, serial: str | None) -> str:
    """Which camera took a photo: its EXIF serial number, else its folder (DCIM roll-over folders merged)."""
    if serial:
        return f"serial:{serial}"
    parts = list(PurePosixPath(rel_path).parent.parts)
    if parts and _DCIM_SUBFOLDER.match(parts[-1]):
        parts.pop()
    return "folder:" + ("/".join(parts) or ".")


def record_from_entry(
    card_id: str, rel_path: str, output_key: str | None, mtime_ns: int, entry: dict[str, Any] | None
) -> PhotoRecord:
    """An ``images[]`` entry of a MegaDetector batch file (any producer's). A clip's entry (its frames' boxes, in
    MegaDetector's video convention) is known by its poster frame: the boxes of its most confident box's frame."""
    entry = entry or {}
    exif = entry.get("exif_metadata") or {}
    serial = exif.get("SerialNumber")
    found = list(entry.get("detections") or ())
    poster = None
    poster_s = duration_s = 0.0
    if "frames_processed" in entry:  # a clip (MegaDetector's video convention): its most confident box's frame
        frames = entry.get("frames_processed") or [0]
        poster = int(max(found, key=lambda d: abs(float(d["conf"])))["frame_number"]) if found else int(frames[0])
        found = [d for d in found if d.get("frame_number") == poster]
        rate = float(entry.get("frame_rate") or 0.0)
        if rate > 0:
            poster_s, duration_s = poster / rate, max(int(n) for n in frames) / rate
    boxes = tuple(
        Box(
            int(d["category"]) - 1,
            abs(float(d["conf"])),
            (d["bbox"][0], d["bbox"][1], d["bbox"][2], d["bbox"][3]),
            tuple((int(label) - 1, float(conf)) for label, conf in d.get("classifications") or ()),
        )
        for d in found
    )
    return PhotoRecord(
        card_id=card_id,
        rel_path=rel_path,
        output_key=output_key or rel_path,
        camera_key=camera_key(rel_path, serial),
        capture_time=_capture_time(entry.get("datetime")),
        file_mtime=datetime.fromtimestamp(mtime_ns / 1e9, UTC),
        width_px=entry.get("width"),
        height_px=entry.get("height"),
        boxes=boxes,
        failure=entry.get("failure"),
        camera_make=exif.get("Make"),
        camera_model=exif.get("Model"),
        camera_serial=serial,
        poster_frame=poster,
        poster_time_s=poster_s,
        clip_duration_s=duration_s,
    )


def record_from_row(row: PhotoRow) -> PhotoRecord:
    """A journal row's record, in the review's terms: boxes normalised to the photo, at full precision."""
    stored = row.record
    result = stored.result if stored is not None else None
    photo = result.photo if result is not None else None
    boxes: tuple[Box, ...] = ()
    detections = result.detections if result is not None else None
    if detections is not None and photo is not None and len(detections):
        votes = _species_votes(result) if result is not None else {}
        ordered = detections.sorted_by_confidence()
        inside = clip_xyxy_px(ordered.xyxy_px, photo.width_px, photo.height_px)
        xywh = xyxy_px_to_xywh_norm(inside, photo.width_px, photo.height_px)
        boxes = tuple(
            Box(
                int(cls),
                float(conf),
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                votes.get(int(cls)) or tuple(ordered.classifications(i)),
            )
            for i, (b, conf, cls) in enumerate(zip(xywh, ordered.confidence, ordered.class_id, strict=True))
        )
    serial = photo.camera_serial if photo is not None else None
    capture = photo.capture_time if photo is not None else None
    return PhotoRecord(
        card_id=row.card_id,
        rel_path=row.rel_path,
        output_key=row.output_key or row.rel_path,
        camera_key=camera_key(row.rel_path, serial),
        capture_time=_capture_time(capture),
        file_mtime=datetime.fromtimestamp(row.mtime_ns / 1e9, UTC),
        width_px=photo.width_px if photo is not None else None,
        height_px=photo.height_px if photo is not None else None,
        boxes=boxes,
        failure=result.failure if result is not None else row.failure,
        camera_make=photo.camera_make if photo is not None else None,
        camera_model=photo.camera_model if photo is not None else None,
        camera_serial=serial,
        poster_frame=_poster_number(result),
        poster_time_s=poster.time_s if (poster := result.poster_frame if result is not None else None) else 0.0,
        clip_duration_s=_duration(result),
    )


def _species_votes(result: ImageResult) -> dict[int, tuple[tuple[int, float], ...]]:
    """A clip's species by vote over its frames: for each detector class, each classifier label's mean confidence
    over every box of that class in every analysed frame, best first. One odd frame does not name the clip."""
    sums: dict[int, dict[int, float]] = {}
    boxes: dict[int, int] = {}
    for frame in result.frames:
        detections = frame.detections
        for i, cls in enumerate(detections.class_id):
            labels = detections.classifications(i)
            if not labels:
                continue
            boxes[int(cls)] = boxes.get(int(cls), 0) + 1
            for label, conf in labels:
                sums.setdefault(int(cls), {})[label] = sums.get(int(cls), {}).get(label, 0.0) + conf
    return {
        cls: tuple(sorted(((label, total / boxes[cls]) for label, total in by_label.items()), key=lambda x: -x[1]))
        for cls, by_label in sums.items()
    }


def _poster_number(result: ImageResult | None) -> int | None:
    poster = result.poster_frame if result is not None else None
    if poster is not None:
        return poster.frame_number
    return 0 if result is not None and result.clip is not None else None


def _duration(result: ImageResult | None) -> float:
    if result is None or result.clip is None:
        return 0.0
    last = max((f.time_s for f in result.frames), default=0.0)
    declared = result.clip.duration_s
    return float(declared) if declared is not None and declared >= last and not result.clip.partial else last


def _capture_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
