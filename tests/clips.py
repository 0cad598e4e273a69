"""Video clips made from the sample photos with PyAV, for the tests: real files, really encoded (H.264 in MP4 and
QuickTime MOV, MJPEG in AVI with a 4:2:2 first frame and 4:2:0 after it, as some Bushnell cameras write), and
damaged as cards damage them (cut short by a dying battery)."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import numpy.typing as npt
from av.video.stream import VideoStream
from PIL import Image


def frames_from(photos: list[Path], size: tuple[int, int]) -> list[npt.NDArray[np.uint8]]:
    return [np.asarray(Image.open(p).convert("RGB").resize(size)) for p in photos]


def h264(path: Path, photos: list[Path], seconds: int = 3, rate: int = 10, size: tuple[int, int] = (640, 480),
         rotation: int = 0, faststart: bool = False) -> Path:  # fmt: skip
    """An H.264 clip (MP4 or MOV by the suffix): each photo held for an equal share of the clip. ``faststart``:
    the index first (a clip cut short keeps it, so the frames before the cut still decode)."""
    return encode(path, photos, "libx264", seconds, rate, size, rotation, faststart)


def encode(path: Path, photos: list[Path], codec: str, seconds: int, rate: int, size: tuple[int, int],
           rotation: int = 0, faststart: bool = False) -> Path:  # fmt: skip
    """A clip of ``codec`` (libx264, mjpeg, ...): each photo held for an equal share of it."""
    images = frames_from(photos, size)
    total = seconds * rate
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = cast(VideoStream, container.add_stream(codec, rate=rate))
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(images[i * len(images) // total], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mjpeg_422_then_420(path: Path, photos: list[Path], frames: int = 10, rate: int = 5) -> Path:
    """An MJPEG AVI whose first frame is 4:2:2 and the others 4:2:0 (two encoders, one stream)."""
    size = (320, 240)
    images = frames_from(photos, size)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuvj422p"
        later = av.CodecContext.create("mjpeg", "w")
        later.width, later.height, later.pix_fmt = size[0], size[1], "yuvj420p"
        later.time_base = Fraction(1, rate)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(images[i % len(images)], format="rgb24")
            if i == 0:
                packets = stream.encode(frame.reformat(format="yuvj422p"))
            else:
                frame = frame.reformat(format="yuvj420p")
                frame.pts, frame.time_base = i, Fraction(1, rate)
                packets = later.encode(frame)
                for packet in packets:
                    packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, rate)
            for packet in packets:
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncated(source: Path, path: Path, keep: float) -> Path:
    """The first ``keep`` share of a clip's bytes: a recording cut short (an MP4's index, at the end, is lost)."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def patched_avi(
    source: Path,
    path: Path,
    *,
    size: tuple[int, int] | None = None,
    rate: tuple[int, int] | None = None,
) -> Path:
    """An AVI whose headers claim another frame size (``size``: avih and the stream's BITMAPINFOHEADER) or frame
    rate (``rate``: the stream header's dwRate/dwScale), as a damaged or hostile card's clip would."""
    data = bytearray(source.read_bytes())
    if size is not None:
        avih = data.find(b"avih") + 8
        struct.pack_into("<II", data, avih + 32, *size)
        strf = data.find(b"strf") + 8
        struct.pack_into("<ii", data, strf + 4, *size)
    if rate is not None:
        strh = data.find(b"strh") + 8
        struct.pack_into("<II", data, strh + 20, rate[1], rate[0])  # dwScale, dwRate: rate = dwRate / dwScale
    path.write_bytes(bytes(data))
    return path


def no_frames(path: Path) -> Path:
    """A container with a video stream and not one frame in it (a recording that stopped before its first)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        container.start_encoding()  # the header, and no packet after it
    return path
