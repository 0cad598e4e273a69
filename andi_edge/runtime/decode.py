"""Photo decoding: bytes -> oriented RGB pixels + what the EXIF says.

- JPEG (baseline, progressive), PNG (also a PNG named .JPG: we sniff content, never trust the extension),
  MPO (first frame), greyscale, RGBA (alpha dropped, as cv2 and the training loaders do), 16-bit (scaled).
- EXIF orientation is applied exactly once, here; everything downstream sees the upright photo, and all boxes
  are reported against it.
- Decompression bombs are refused before any pixel is decoded.
- Fast path: when a JPEG is much larger than the model input, libjpeg's DCT scaling (Pillow ``draft``) decodes
  it at 1/2, 1/4 or 1/8 size directly. That is what makes a 3 MP photo cheap at 320 px input. It changes the
  pixels the network sees, so it can be switched off (``reduced_decode=False``) for a full-quality path.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from andi_edge.config import DEFAULT_MAX_DECODE_MB
from andi_edge.detections import PhotoInfo
from andi_edge.errors import PhotoError

log = logging.getLogger(__name__)

_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_ORIENTATION = 0x0112
_TAG_DATETIME = 0x0132
_IFD_EXIF = 0x8769
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_BODY_SERIAL = 0xA431
_EXIF_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"

#: EXIF orientation -> the PIL transpose that makes the photo upright.
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG"})
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: what other files on a card usually are, by their first bytes, to say so in the failure reason
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF/RAW file"),
    (b"MM\x00*", "a TIFF/RAW file"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF file (WebP or AVI video)"),
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


@dataclass(frozen=True)
class DecodedPhoto:
    """Upright RGB pixels, possibly at reduced size, and the photo's real (oriented) size."""

    rgb: npt.NDArray[np.uint8]
    info: PhotoInfo

    @property
    def scale(self) -> float:
        """Decoded pixels per original pixel (1.0 on the full-quality path)."""
        return float(self.rgb.shape[1]) / float(self.info.width_px)


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """A whole file of at most ``max_bytes``: a bigger one (a damaged FAT chain, a disk image named .JPG) is
    refused before it is read into memory, PhotoError ``too_large``. OSError as the system raises it."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:
        raise PhotoError(
            "too_large",
            f"{path.name}: the file is {max(size, len(data)) / 2**20:.0f} MiB, more than a photo's decode may take "
            f"({max_bytes / 2**20:.0f} MiB, detector.max_decode_mb)",
        )
    return data


def read_photo_bytes(path: Path, max_bytes: int = DEFAULT_MAX_DECODE_MB * 2**20) -> bytes:
    """Read a whole photo file of at most ``max_bytes``. Raises PhotoError for the ways a file on a card goes
    wrong."""
    try:
        data = read_bounded(path, max_bytes)
    except FileNotFoundError as exc:
        raise PhotoError("unreadable", f"{path}: file disappeared before it could be read") from exc
    except IsADirectoryError as exc:
        raise PhotoError("unreadable", f"{path}: is a directory, not a photo") from exc
    except OSError as exc:
        raise PhotoError("unreadable", f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise PhotoError("empty_file", f"{path}: file is empty (0 bytes)", hint="was the copy interrupted?")
    return data


def decode_photo(
    data: bytes,
    *,
    target_long_side_px: int | None = None,
    max_image_pixels: int,
    oversample: float = 1.0,
    name: str = "photo",
    max_decode_bytes: int | None = None,
) -> DecodedPhoto:
    """Decode photo bytes to upright RGB.

    ``target_long_side_px``: the model input's long side; when given and the photo is a JPEG much larger than
    that, decode at a DCT-reduced size that still keeps at least ``oversample`` x the target along each side.
    ``None`` decodes at full quality. ``max_decode_bytes``: the memory the decode may take (its estimated peak:
    the decoded frame, the RGB conversion, the EXIF rotation and the array), checked before any pixel is decoded
    and after DCT scaling has shrunk a JPEG. A JPEG over it at full quality is decoded at the largest DCT scale
    that fits (``DecodedPhoto.scale`` says which); anything else over it is refused as ``too_large``.
    """
    _check_signature(data, name)
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's global bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
    except UnidentifiedImageError as exc:
        raise PhotoError("unsupported_format", f"{name}: not an image we can read (JPEG or PNG expected)") from exc
    except Image.DecompressionBombError as exc:
        raise PhotoError("too_large", f"{name}: refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError("corrupt", f"{name}: corrupt image header ({exc})") from exc

    with image:
        if image.format not in _SUPPORTED_FORMATS:
            raise PhotoError(
                "unsupported_format",
                f"{name}: {image.format} images are not supported",
                hint="camera-trap photos are expected as JPEG or PNG",
            )
        raw_width, raw_height = image.size
        if raw_width <= 0 or raw_height <= 0:
            raise PhotoError("corrupt", f"{name}: image reports an empty size {raw_width}x{raw_height}")
        if raw_width * raw_height > max_image_pixels:
            raise PhotoError(
                "too_large",
                f"{name}: {raw_width}x{raw_height} = {raw_width * raw_height:,} pixels exceeds the limit of "
                f"{max_image_pixels:,}; refused as a possible decompression bomb",
                hint="if this is a genuine photo, raise max_image_pixels in the config",
            )
        info = _photo_info(image, raw_width, raw_height)
        if target_long_side_px is not None and image.format in {"JPEG", "MPO"}:
            _request_dct_scaling(image, target_long_side_px, oversample)
        if max_decode_bytes is not None:
            rotated = info.exif_orientation != 1
            needed = decode_peak_bytes(image.mode, *image.size, rotated=rotated)
            if needed > max_decode_bytes and image.format in {"JPEG", "MPO"} and not image.decoderconfig:
                # over the budget at full size: a JPEG is decoded smaller (1/2, 1/4, 1/8), never refused for it
                for divisor in (2, 4, 8):
                    size = (-(-raw_width // divisor), -(-raw_height // divisor))
                    if decode_peak_bytes(image.mode, *size, rotated=rotated) <= max_decode_bytes:
                        image.draft(image.mode, size)
                        break
                needed = decode_peak_bytes(image.mode, *image.size, rotated=rotated)
            if needed > max_decode_bytes:
                raise PhotoError(
                    "too_large",
                    f"{name}: decoding {image.size[0]}x{image.size[1]} ({image.mode}) would take about "
                    f"{needed / 2**20:,.0f} MiB, more than the budget of {max_decode_bytes / 2**20:,.0f} MiB",
                    hint="if this is a genuine photo, raise detector.max_decode_mb in the config (and the "
                    "service's MemoryMax with it)",
                )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
            upright = _to_rgb(image)
        except Image.DecompressionBombError as exc:
            raise PhotoError("too_large", f"{name}: refused as a possible decompression bomb ({exc})") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise PhotoError("corrupt", f"{name}: image data is corrupt or truncated ({exc})") from exc

    transpose = _ORIENTATION_TRANSPOSE.get(info.exif_orientation)
    if transpose is not None:
        upright = upright.transpose(transpose)
    rgb = np.asarray(upright, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PhotoError("unsupported_format", f"{name}: unexpected pixel layout {rgb.shape}")
    return DecodedPhoto(rgb=rgb, info=info)


#: bytes per pixel of Pillow's modes as decoded (unlisted modes count as 4)
#: bytes per pixel of a decoded frame as Pillow holds it (its RGB-like modes are stored 4 bytes a pixel)
_MODE_BYTES = {
    "1": 1, "L": 1, "P": 1, "LA": 4, "PA": 4, "La": 4, "RGB": 4, "YCbCr": 4, "LAB": 4, "HSV": 4,
    "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4,
}  # fmt: skip
#: the frame's way out to numpy: Pillow's tobytes() (chunks, then joined) and the array on top of it
_TO_ARRAY_BYTES = 6


def decode_peak_bytes(mode: str, width_px: int, height_px: int, rotated: bool) -> int:
    """What decoding a ``width x height`` frame in ``mode`` to an upright RGB array takes at its peak: the frame as
    Pillow holds it, its RGB conversion (none for RGB; 16-bit and float frames go through a float64 array), a
    rotated copy, and the way out to numpy. Measured: a 31.7 MP RGB JPEG peaks at 10 bytes a pixel, as here."""
    per_pixel = _MODE_BYTES.get(mode, 4)
    if mode != "RGB":
        per_pixel += 4 + (8 if mode.startswith(("I", "F")) else 0)
    per_pixel += (4 if rotated else 0) + _TO_ARRAY_BYTES
    return width_px * height_px * per_pixel


def _check_signature(data: bytes, name: str) -> None:
    """Only JPEG and PNG bytes ever reach a decoder: nothing else on a card is tried against Pillow's plugins."""
    if data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC):
        return
    looks_like = next((what for magic, what in _OTHER_MAGIC if data.startswith(magic)), None)
    if looks_like is None and data[4:8] == b"ftyp":
        looks_like = "an ISO media file (HEIC photo or MP4/MOV video)"
    raise PhotoError(
        "unsupported_format",
        f"{name}: not a JPEG or PNG photo" + (f" (looks like {looks_like})" if looks_like else ""),
        hint="camera-trap photos are expected as JPEG or PNG",
    )


def _request_dct_scaling(image: Image.Image, target_long_side_px: int, oversample: float) -> None:
    raw_width, raw_height = image.size
    ratio = target_long_side_px * oversample / max(raw_width, raw_height)
    if ratio >= 0.5:
        return  # not worth it: at best a 1/2 reduction that would fall below the target
    requested = (max(1, int(np.ceil(raw_width * ratio))), max(1, int(np.ceil(raw_height * ratio))))
    # draft() picks the largest DCT reduction (1/2, 1/4, 1/8) whose result is still >= the requested size.
    image.draft(None, requested)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if (mode != "I" or values.max(initial=0) > 255) else 255.0
        grey = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), mode="RGB")
    if mode == "F":
        return image.convert("L").convert("RGB")
    # L, LA, P, PA, RGBA, CMYK, YCbCr, 1: Pillow's conversion drops alpha like cv2.imread(IMREAD_COLOR) does.
    return image.convert("RGB")


#: EXIF text is from strangers: control characters (C0, DEL, C1) go, so no output format has to carry them
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: a camera make, model or serial is a short label; more than this is not one
MAX_EXIF_TEXT_CHARS = 256


def _clean_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = _CONTROL_CHARACTERS.sub(" ", value).strip()[:MAX_EXIF_TEXT_CHARS].strip()
    return text or None


def _exif_time(value: object) -> str | None:
    text = _clean_text(value)
    if text is None:
        return None
    try:
        return datetime.strptime(text[:19], _EXIF_TIME_FORMAT).isoformat()
    except ValueError:
        return None  # cameras write "0000:00:00 00:00:00" and worse when their clock is unset


def _photo_info(image: Image.Image, raw_width: int, raw_height: int) -> PhotoInfo:
    orientation = 1
    make = model = serial = capture_time = None
    try:
        exif = image.getexif()
        raw_orientation = exif.get(_TAG_ORIENTATION, 1)
        orientation = raw_orientation if isinstance(raw_orientation, int) and 1 <= raw_orientation <= 8 else 1
        make = _clean_text(exif.get(_TAG_MAKE))
        model = _clean_text(exif.get(_TAG_MODEL))
        sub_ifd = exif.get_ifd(_IFD_EXIF)
        capture_time = _exif_time(sub_ifd.get(_TAG_DATETIME_ORIGINAL)) or _exif_time(exif.get(_TAG_DATETIME))
        serial = _clean_text(sub_ifd.get(_TAG_BODY_SERIAL))
    except Exception as exc:  # noqa: BLE001 - broken EXIF must never cost us the photo's pixels
        log.debug("ignoring unreadable EXIF: %s", exc)
    width, height = (raw_height, raw_width) if orientation in _SWAPS_AXES else (raw_width, raw_height)
    return PhotoInfo(
        width_px=width,
        height_px=height,
        format=image.format,
        capture_time=capture_time,
        camera_make=make,
        camera_model=model,
        camera_serial=serial,
        exif_orientation=orientation,
    )
