"""Video clips: frames sampled by time (or every Nth), decoded by FFmpeg through PyAV in a process of its own.

FFmpeg is native code, and a clip from a card is untrusted: a decoder that crashes or hangs on it must cost that
clip, never the run. So a clip is decoded in a child process (``ClipReader``) that sends its sampled frames back
over a pipe, under a time limit: a child that dies, hangs past ``video.decode_timeout_s`` or reports an error makes
the clip a failure with a reason, or, when frames came before, a clip analysed as far as it could be read
(``ClipInfo.partial``).

Each sampled frame is converted from its own pixel format and size (a camera that switches from 4:2:2 to 4:2:0
after its first frame, or changes size, is converted frame by frame), turned upright by the clip's rotation, and
scaled down to ``video.max_long_side_px`` at most; its boxes are reported in the upright frame's full-size pixels.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from andi_edge.config import VideoSettings
from andi_edge.detections import ClipInfo
from andi_edge.errors import PhotoError

log = logging.getLogger(__name__)

#: a frame larger than this along a side, or a rate above this, is a claim no trail camera makes
MAX_SIDE_PX = 16384
MAX_FRAME_RATE = 1000.0


@dataclass(frozen=True)
class SampledFrame:
    number: int
    time_s: float
    #: upright RGB, at most max_long_side_px along its long side
    rgb: npt.NDArray[np.uint8]


def clip_failure(reason: str, message: str) -> PhotoError:
    """A clip that cannot be analysed: the same typed error (and failure text) as a photo's."""
    return PhotoError(reason, message)


# -- the child process --------------------------------------------------------------------------------------


def _rate(stream: Any) -> float:
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            rate = float(candidate) if candidate is not None else 0.0
        except (ZeroDivisionError, TypeError, ValueError):
            continue
        if math.isfinite(rate) and 0 < rate <= MAX_FRAME_RATE:
            return rate
    return 0.0


def _upright(frame: Any, long_side_px: int) -> tuple[npt.NDArray[np.uint8], int, int]:
    """The frame as upright RGB scaled to ``long_side_px`` at most, and its full upright size."""
    width, height = int(frame.width), int(frame.height)
    scale = min(1.0, long_side_px / max(width, height))
    out_w, out_h = max(2, round(width * scale)), max(2, round(height * scale))
    rgb = frame.reformat(width=out_w, height=out_h, format="rgb24").to_ndarray()
    quarter_turns = round(float(frame.rotation or 0) / 90.0) % 4  # counterclockwise, as FFmpeg reports it
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))
        if quarter_turns % 2:
            width, height = height, width
    return rgb, width, height


def _decode(path: str, settings: dict[str, Any], send: Any) -> None:
    """The child: open the clip, send its info, then each sampled frame, then the end (or an error)."""
    import av  # only the decoding process loads FFmpeg

    video = VideoSettings(**settings)
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        send(("error", "not_a_video", f"{path}: not a video FFmpeg can open ({exc})"))
        return
    with container:
        if not container.streams.video:
            send(("error", "no_video", f"{path}: the file holds no video stream (audio only, or no frames)"))
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
            send(("error", "too_large", f"{path}: claims frames of {width}x{height} px (at most {MAX_SIDE_PX})"))
            return
        rate = _rate(stream)
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        created = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
        codec = stream.codec_context.name
        step = 1.0 / video.sample_fps
        next_time = 0.0
        first_time: float | None = None
        number = -1
        relative = 0.0
        sent = 0
        info_sent = False
        try:
            frame: Any
            for frame in container.decode(stream):
                number += 1
                seconds = frame.time if frame.time is not None else (number / rate if rate else float(number))
                first_time = seconds if first_time is None else first_time
                relative = max(0.0, seconds - first_time)
                wanted = number % video.every_nth_frame == 0 if video.every_nth_frame else relative >= next_time - 1e-6
                if not wanted:
                    continue
                rgb, full_w, full_h = _upright(frame, video.max_long_side_px)
                if not info_sent:
                    info = ClipInfo(full_w, full_h, rate, duration, codec, created, int(frame.rotation or 0))
                    send(("info", asdict(info)))
                    info_sent = True
                send(("frame", number, relative, rgb, full_w, full_h))
                sent += 1
                next_time = relative + step if relative + step > next_time else next_time + step
                if sent >= video.max_frames:
                    break
        except (av.error.FFmpegError, OSError, ValueError, MemoryError) as exc:
            if sent:
                send(("end", f"partial: decoding stopped after frame {number} ({type(exc).__name__}: {exc})"))
            else:
                send(("error", "corrupt", f"{path}: no frame could be decoded ({type(exc).__name__}: {exc})"))
            return
        if not sent:
            send(("error", "no_frames", f"{path}: the video stream holds no frame that decodes"))
            return
        last = relative if first_time is not None else 0.0
        frame_s = 1.0 / rate if rate else 0.0
        if sent < video.max_frames and duration is not None and last + 2 * frame_s + 0.05 < duration:
            # no error, but the frames end well before the length the container declares: cut short
            send(("end", f"partial: the frames end at {last:.1f} s of the {duration:.1f} s the clip declares"))
            return
        send(("end", None))


def _child(path: str, settings: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    with contextlib.suppress(BrokenPipeError, EOFError):
        try:
            _decode(path, settings, conn.send)
        except Exception as exc:  # noqa: BLE001 - whatever the clip does to the decoder is the clip's failure
            conn.send(("error", "corrupt", f"{path}: {type(exc).__name__}: {exc}"))
    conn.close()


# -- the parent -----------------------------------------------------------------------------------------------


class ClipReader:
    """The sampled frames of one clip, decoded in a child process under a time limit.

    ``info`` is known once the first frame has come (``frames()`` raises the clip's PhotoError when none can);
    after the frames, ``partial`` says why decoding stopped early, if it did."""

    def __init__(self, path: Path, settings: VideoSettings) -> None:
        self.path = path
        self.settings = settings
        self.info: ClipInfo | None = None
        self.partial: str | None = None
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None

    def __enter__(self) -> ClipReader:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(os.fsdecode(self.path), asdict(self.settings), child), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        process = self._process
        if process is not None:
            process.join(timeout=1.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=5.0)
            self._process = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def frames(self) -> Iterator[tuple[SampledFrame, int, int]]:
        """Each sampled frame with the clip's full upright size (width, height)."""
        assert self._conn is not None, "use ClipReader as a context manager"
        deadline = time.monotonic() + self.settings.decode_timeout_s
        sent = 0
        while True:
            remaining = deadline - time.monotonic()
            message = self._receive(remaining)
            if message is None:  # the child died, or hung past the deadline
                remaining = deadline - time.monotonic()
                why = self._why_stopped(remaining)
                if sent:
                    self.partial = f"partial: {why} after {sent} frame(s)"
                    return
                raise clip_failure("timeout" if remaining <= 0 else "crashed", f"{self.path}: {why}")
            kind = message[0]
            if kind == "info":
                self.info = ClipInfo(**message[1])
            elif kind == "frame":
                _, number, time_s, rgb, full_w, full_h = message
                sent += 1
                yield SampledFrame(int(number), float(time_s), rgb), int(full_w), int(full_h)
            elif kind == "end":
                self.partial = message[1]
                return
            else:
                _, reason, text = message
                raise clip_failure(reason, text)

    def _receive(self, remaining: float) -> tuple[Any, ...] | None:
        assert self._conn is not None
        if remaining <= 0:
            return None
        try:
            if not self._conn.poll(remaining):
                return None
            message = self._conn.recv()
        except (EOFError, OSError):
            return None
        return message if isinstance(message, tuple) and message else None

    def _why_stopped(self, remaining: float) -> str:
        process = self._process
        if remaining <= 0:
            if process is not None and process.is_alive():
                process.kill()
            return f"the decoder did not finish within {self.settings.decode_timeout_s:g} s and was stopped"
        if process is not None:
            process.join(timeout=2.0)
            code = process.exitcode
            if code is not None and code < 0:
                return f"the decoder died (signal {-code})"
            return f"the decoder stopped (exit code {code})"
        return "the decoder stopped"


def poster_frame_rgb(path: Path, frame_number: int, long_side_px: int) -> npt.NDArray[np.uint8]:
    """One frame of a clip (its poster frame, for a picture), upright, at most ``long_side_px`` along its long side;
    PhotoError when it cannot be decoded."""
    settings = VideoSettings(
        every_nth_frame=max(frame_number, 1),
        max_frames=2 if frame_number else 1,
        max_long_side_px=max(64, long_side_px),
    )
    with ClipReader(path, settings) as reader:
        for sampled, _, _ in reader.frames():
            if sampled.number == frame_number:
                return sampled.rgb
    raise clip_failure("no_frames", f"{path}: frame {frame_number} does not decode")


def looks_like_video(path: Path) -> bool:
    """Whether the file at ``path`` starts like a video container (``probe_is_video``); False when unreadable."""
    try:
        with path.open("rb") as f:
            return probe_is_video(f.read(16))
    except OSError:
        return False


def probe_is_video(data_head: bytes) -> bool:
    """Whether a file's first bytes look like a video container trail cameras write (MP4/MOV, AVI, MKV, MPEG, ASF):
    a clip named like a photo is found by its content."""
    if len(data_head) >= 12 and data_head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return True
    if data_head[:4] == b"RIFF" and data_head[8:12] == b"AVI ":
        return True
    if data_head[:4] == b"\x1aE\xdf\xa3":  # Matroska / WebM
        return True
    if data_head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):  # MPEG program / video stream
        return True
    return data_head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # ASF (WMV)
