"""A small JPEG of what alerted: the label's best crop as `watch` wrote it, else cut from the photo on the card.

At most ``max_bytes`` (the quality, then the size, stepped down until it fits); None when neither the crop nor the
photo can be read any more (crops off, the card pulled): the alert goes without one.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from andi_edge.sinks.names import bounded_name, safe_name

log = logging.getLogger(__name__)

#: the long side a thumbnail starts at (halved while it does not fit)
START_SIDE_PX = 320
QUALITIES = (80, 65, 50, 35)


def crop_for_label(crops: tuple[str, ...], label: str) -> str | None:
    """The first (most confident) crop `watch` wrote in the label's folder."""
    folder = bounded_name(safe_name(label))
    for crop in crops:
        parts = PurePosixPath(crop).parts
        if len(parts) >= 3 and parts[1] == folder:
            return crop
    return None


def thumbnail_jpeg(
    *,
    crop_file: Path | None,
    photo_file: Path | None,
    photo_size_bytes: int,
    photo_mtime_ns: int,
    box_xyxy_px: tuple[float, float, float, float] | None,
    photo_width_px: int,
    max_bytes: int,
) -> bytes | None:
    """The thumbnail from the crop file, else from the photo (only if it is still the file that was processed:
    same size and modification time; another card in the slot may hold another photo at that path)."""
    image = _open(crop_file) if crop_file is not None else None
    if image is None and photo_file is not None and box_xyxy_px is not None:
        try:
            stat = photo_file.stat()
        except OSError:
            return None
        if stat.st_size != photo_size_bytes or stat.st_mtime_ns != photo_mtime_ns:
            return None
        photo = _open(photo_file)
        if photo is None:
            return None
        scale = photo.width / photo_width_px if photo_width_px > 0 else 1.0  # decoded reduced (draft)
        x0, y0, x1, y1 = (v * scale for v in box_xyxy_px)
        pad = 0.1 * max(x1 - x0, y1 - y0)
        window = (
            max(0, int(x0 - pad)),
            max(0, int(y0 - pad)),
            min(photo.width, int(x1 + pad) + 1),
            min(photo.height, int(y1 + pad) + 1),
        )
        if window[2] <= window[0] or window[3] <= window[1]:
            return None
        image = photo.crop(window)
    if image is None:
        return None
    return fit_jpeg(image, max_bytes)


def fit_jpeg(image: Image.Image, max_bytes: int) -> bytes | None:
    side = START_SIDE_PX
    rgb = image.convert("RGB")
    while side >= 32:
        small = rgb.copy()
        small.thumbnail((side, side))
        for quality in QUALITIES:
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        side //= 2
    return None


def _open(path: Path) -> Image.Image | None:
    """The upright image, decoded small (a photo of 20 MP need not be decoded whole for a 320 px thumbnail)."""
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (START_SIDE_PX * 4, START_SIDE_PX * 4))
            upright = ImageOps.exif_transpose(opened)
            upright.load()
            return upright
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("no thumbnail from %s: %s", path, exc)
        return None
