"""A video clip through the detector: its sampled frames (``runtime.video``), each letterboxed, inferred, decoded
and suppressed as a photo is, into one result that carries every analysed frame."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from andi_edge.config import VideoSettings
from andi_edge.detections import FrameResult, ImageResult, PhotoInfo, poster_frame
from andi_edge.errors import PhotoError
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.video import ClipReader

log = logging.getLogger(__name__)


def detect_clip(detector: Detector, path: Path, settings: VideoSettings) -> ImageResult:
    """The clip's result; a clip that cannot be analysed is a failure result, never an exception. A clip read only
    in part (truncated: its battery died) keeps the frames that decoded, and says so in ``clip.partial``."""
    start = time.perf_counter()
    frames: list[FrameResult] = []
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise PhotoError("empty_file", f"{path}: file is empty (0 bytes)")
        with ClipReader(path, settings) as reader:
            waited = time.perf_counter()
            for sampled, width, height in reader.frames():
                decode_ms = (time.perf_counter() - waited) * 1000
                info = PhotoInfo(width_px=width, height_px=height, format="video")
                result = detector.infer(detector.prepare_frame(sampled.rgb, info, path, decode_ms))
                assert result.detections is not None
                frames.append(FrameResult(sampled.number, sampled.time_s, result.detections, result.timings_ms))
                waited = time.perf_counter()
            clip = reader.info
            partial = reader.partial
    except PhotoError as exc:
        log.warning("%s", exc.message)
        return ImageResult(path=path, failure=f"{exc.reason}: {exc.message}")
    if clip is None or not frames:
        return ImageResult(path=path, failure=f"no_frames: {path}: no frame was analysed")
    if partial is not None:
        log.warning("%s: %s", path, partial)
        clip = dataclasses.replace(clip, partial=partial)
    photo = PhotoInfo(width_px=clip.width_px, height_px=clip.height_px, format=clip.codec)
    timings = {"decode": 0.0, "letterbox": 0.0, "inference": 0.0, "postprocess": 0.0}
    for frame in frames:
        for stage in timings:
            timings[stage] += frame.timings_ms.get(stage, 0.0)
    timings["read"] = (time.perf_counter() - start) * 1000 - sum(timings.values())  # start-up, waiting, the rest
    poster = poster_frame(tuple(frames))
    assert poster is not None
    return ImageResult(
        path=path, detections=poster.detections, photo=photo, timings_ms=timings, clip=clip, frames=tuple(frames)
    )
