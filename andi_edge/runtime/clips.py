"""A video clip through the detector: its sampled frames (``runtime.video``), each letterboxed, inferred, decoded
and suppressed as a photo is, into one result that carries every analysed frame."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from andi_edge.config import VideoSettings
from andi_edge.detections import FrameResult, ImageResult, PhotoInfo, poster_frame
from andi_edge.errors import PhotoError
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.video import ClipReader, looks_like_video

log = logging.getLogger(__name__)


def camera_time(creation_time: str | None) -> str | None:
    """A container's creation time as the camera's clock, as EXIF gives a photo's (ISO-8601, no offset): the time as
    written, its offset dropped. Trail cameras write their local clock there, labelled UTC or not at all, so this
    places a clip among the photos of the same camera; None when there is none, or it does not parse."""
    if not creation_time:
        return None
    try:
        moment = datetime.fromisoformat(creation_time.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.year < 1990:  # 1904/1970: an unset clock written as the epoch, not a time
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def disguised_clip(failure: str | None, path: Path, media: str) -> bool:
    """Whether a file that failed to decode as a photo (``unsupported_format``) is a clip named like one, found by
    its content, and the media setting takes clips."""
    return (
        failure is not None
        and failure.startswith("unsupported_format")
        and media != "photos"
        and looks_like_video(path)
    )


def detect_clip(detector: Detector, path: Path, settings: VideoSettings) -> ImageResult:
    """The clip's result; a clip that cannot be analysed is a failure result, never an exception. A clip read only
    in part (truncated: its battery died) keeps the frames that decoded, and says so in ``clip.partial``."""
    return detect_clip_with_poster(detector, path, settings)[0]


def detect_clip_with_poster(
    detector: Detector, path: Path, settings: VideoSettings
) -> tuple[ImageResult, dict[int, npt.NDArray[np.uint8]]]:
    """``detect_clip``, and the pixels (as decoded) of the frames its crops are cut from, by frame number: its
    poster frame (the frame of its most confident box) and the frame of each category's most confident box (the
    boxes its batch entry keeps). Only those frames' pixels are kept while the clip runs: one per category, and
    the poster."""
    start = time.perf_counter()
    kept: dict[int, npt.NDArray[np.uint8]] = {}
    best_of_class: dict[int, tuple[float, int]] = {}
    poster: tuple[float, int] = (-2.0, -1)
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
                detections = result.detections
                score = float(detections.confidence.max()) if len(detections) else -1.0
                if score > poster[0]:  # the same choice as poster_frame: the first frame of the highest score
                    poster = (score, sampled.number)
                for cls, conf in zip(detections.class_id.tolist(), detections.confidence.tolist(), strict=True):
                    if conf > best_of_class.get(cls, (-1.0, -1))[0]:
                        best_of_class[cls] = (conf, sampled.number)
                wanted = {poster[1]} | {number for _, number in best_of_class.values()}
                if sampled.number in wanted:
                    kept[sampled.number] = sampled.rgb
                kept = {number: rgb for number, rgb in kept.items() if number in wanted}
                waited = time.perf_counter()
            clip = reader.info
            partial = reader.partial
    except PhotoError as exc:
        log.warning("%s", exc.message)
        return ImageResult(path=path, failure=f"{exc.reason}: {exc.message}"), {}
    if clip is None or not frames:
        return ImageResult(path=path, failure=f"no_frames: {path}: no frame was analysed"), {}
    if partial is not None:
        log.warning("%s: %s", path, partial)
        clip = dataclasses.replace(clip, partial=partial)
    photo = PhotoInfo(
        width_px=clip.width_px,
        height_px=clip.height_px,
        format=clip.codec,
        capture_time=camera_time(clip.creation_time),
    )
    timings = {"decode": 0.0, "letterbox": 0.0, "inference": 0.0, "postprocess": 0.0}
    for frame in frames:
        for stage in timings:
            timings[stage] += frame.timings_ms.get(stage, 0.0)
    timings["read"] = (time.perf_counter() - start) * 1000 - sum(timings.values())  # start-up, waiting, the rest
    chosen = poster_frame(tuple(frames))
    assert chosen is not None
    result = ImageResult(
        path=path, detections=chosen.detections, photo=photo, timings_ms=timings, clip=clip, frames=tuple(frames)
    )
    return result, kept
