"""Make odd photo files from real camera-trap photos, in a temp dir (never in ../shared)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

ORIENTATION_TAG = 0x0112


def save_with_orientation(upright: Image.Image, path: Path, orientation: int) -> None:
    """Store ``upright`` so that a viewer honouring EXIF ``orientation`` shows it upright again."""
    inverse = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,  # stored rotated 90 deg counter-clockwise; viewer rotates it back clockwise
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    upright.transpose(inverse).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width x height``: what a decompression bomb looks like up front."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr_start = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr_start : ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr_start + 13]))
    data[ihdr_start + 13 : ihdr_start + 17] = struct.pack(">I", crc)
    return bytes(data)
