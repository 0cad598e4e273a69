from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from andi_edge.errors import PhotoError
from andi_edge.runtime.decode import decode_photo, read_photo_bytes
from tests.photo_factory import png_claiming_size, save_with_orientation

LIMIT = 120_000_000


def _decode(path: Path, target: int | None = None) -> np.ndarray:
    return decode_photo(read_photo_bytes(path), target_long_side_px=target, max_image_pixels=LIMIT).rgb


@pytest.fixture(scope="module")
def reconyx(photos_dir: Path) -> Path:
    return next((photos_dir / "burrowing_owl").glob("BUOW_2019_MAP_RanchoJamul_Cage_4_R59*.JPG"))


def test_png_named_jpg_with_alpha(photos_dir: Path) -> None:
    path = photos_dir / "edge_cases" / "10050028_0.JPG"
    decoded = decode_photo(read_photo_bytes(path), max_image_pixels=LIMIT)
    assert decoded.info.format == "PNG"
    assert decoded.rgb.shape == (1203, 1603, 3) and decoded.rgb.dtype == np.uint8
    assert (decoded.info.width_px, decoded.info.height_px) == (1603, 1203)


def test_exif_time_and_camera(reconyx: Path) -> None:
    info = decode_photo(read_photo_bytes(reconyx), max_image_pixels=LIMIT).info
    assert info.capture_time == "2019-06-22T16:50:53"
    assert (info.camera_make, info.camera_model) == ("RECONYX", "HF2 PRO COVERT")
    assert (info.width_px, info.height_px) == (2048, 1440)


def test_dct_scaled_decode_is_smaller_but_reports_original_size(reconyx: Path) -> None:
    decoded = decode_photo(read_photo_bytes(reconyx), target_long_side_px=320, max_image_pixels=LIMIT)
    assert decoded.rgb.shape == (360, 512, 3)  # 1/4 scale: the smallest DCT reduction still >= 320 wide
    assert (decoded.info.width_px, decoded.info.height_px) == (2048, 1440)
    assert decoded.scale == 0.25
    full = _decode(reconyx)
    assert full.shape == (1440, 2048, 3)
    # same picture: the reduced decode resembles a box-filtered full decode
    pooled = full.reshape(360, 4, 512, 4, 3).mean(axis=(1, 3))
    assert np.abs(pooled - decoded.rgb).mean() < 4


def test_small_photo_is_never_reduced(photos_dir: Path) -> None:
    path = photos_dir / "lowres_trailcam" / "deer_20241018004500_44.jpg"
    assert _decode(path, target=320).shape == _decode(path).shape


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied_once(tmp_path: Path, reconyx: Path, orientation: int) -> None:
    upright = Image.open(reconyx).convert("RGB").resize((512, 360))
    path = tmp_path / f"rotated{orientation}.jpg"
    save_with_orientation(upright, path, orientation)
    decoded = decode_photo(read_photo_bytes(path), max_image_pixels=LIMIT)
    assert decoded.info.exif_orientation == orientation
    assert (decoded.info.width_px, decoded.info.height_px) == (512, 360)
    assert decoded.rgb.shape == (360, 512, 3)
    assert np.abs(decoded.rgb.astype(int) - np.asarray(upright, dtype=int)).mean() < 6


def test_greyscale_progressive_and_sixteen_bit(tmp_path: Path, reconyx: Path) -> None:
    grey = Image.open(reconyx).convert("L").resize((640, 450))
    grey.save(tmp_path / "grey.jpg", quality=95)
    grey.save(tmp_path / "grey.png")
    Image.open(reconyx).save(tmp_path / "progressive.jpg", progressive=True, quality=95)
    sixteen = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    sixteen.save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")

    grey_rgb = _decode(tmp_path / "grey.png")
    assert grey_rgb.shape == (450, 640, 3) and np.all(grey_rgb[..., 0] == grey_rgb[..., 2])
    assert np.abs(_decode(tmp_path / "grey.jpg").astype(int) - grey_rgb).mean() < 3
    np.testing.assert_array_equal(_decode(tmp_path / "sixteen.png"), grey_rgb)
    progressive = _decode(tmp_path / "progressive.jpg")
    assert progressive.shape == (1440, 2048, 3)
    assert np.abs(progressive.astype(int) - _decode(reconyx)).mean() < 3


def test_mpo_uses_the_primary_frame(tmp_path: Path, reconyx: Path) -> None:
    first = Image.open(reconyx).convert("RGB").resize((400, 300))
    second = Image.new("RGB", (400, 300), (255, 0, 0))
    path = tmp_path / "stereo.jpg"
    first.save(path, format="MPO", save_all=True, append_images=[second], quality=95)
    decoded = decode_photo(read_photo_bytes(path), max_image_pixels=LIMIT)
    assert decoded.info.format == "MPO"
    assert np.abs(decoded.rgb.astype(int) - np.asarray(first, dtype=int)).mean() < 4


def test_bad_files_raise_photo_errors_with_reasons(tmp_path: Path, reconyx: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(PhotoError, match="empty") as err:
        read_photo_bytes(empty)
    assert err.value.reason == "empty_file"

    data = reconyx.read_bytes()
    with pytest.raises(PhotoError) as err:
        decode_photo(data[: len(data) // 2], max_image_pixels=LIMIT)
    assert err.value.reason == "corrupt"

    with pytest.raises(PhotoError) as err:
        decode_photo(b"this is a text file, not a photo", max_image_pixels=LIMIT)
    assert err.value.reason == "unsupported_format"

    with pytest.raises(PhotoError, match="decompression bomb") as err:
        decode_photo(png_claiming_size(40_000, 40_000), max_image_pixels=LIMIT)
    assert err.value.reason == "too_large"

    with pytest.raises(PhotoError, match="directory") as err:
        read_photo_bytes(tmp_path)
    with pytest.raises(PhotoError, match="disappeared"):
        read_photo_bytes(tmp_path / "gone.jpg")

    gif = tmp_path / "anim.jpg"
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(PhotoError, match="looks like a GIF") as err:
        decode_photo(gif.read_bytes(), max_image_pixels=LIMIT)
    assert err.value.reason == "unsupported_format"


def test_decode_budget_refuses_a_memory_bomb_before_decoding_it() -> None:
    """A 97 KB-style PNG declaring 10000 x 10000 (under the pixel cap) would take ~1 GiB to decode: refused
    up front, as that photo's failure. A real photo within the budget decodes, and a big JPEG is judged at the
    size its DCT-scaled decode will have."""
    from andi_edge.runtime.decode import decode_peak_bytes

    budget = 384 * 2**20
    bomb = png_claiming_size(10_000, 10_000)
    with pytest.raises(PhotoError, match="would take about 1,049 MiB") as raised:
        decode_photo(bomb, max_image_pixels=LIMIT, max_decode_bytes=budget)
    assert raised.value.reason == "too_large" and raised.value.hint and "max_decode_mb" in raised.value.hint
    # Pillow holds RGB at 4 bytes a pixel, and tobytes() + the array take 6 more: 10 bytes a pixel, as measured
    assert decode_peak_bytes("RGB", 4000, 3000, rotated=False) == 4000 * 3000 * 10
    assert decode_peak_bytes("L", 100, 100, rotated=False) == 100 * 100 * (1 + 4 + 6)
    assert decode_peak_bytes("I;16", 100, 100, rotated=True) == 100 * 100 * (2 + 4 + 8 + 4 + 6)
    big = io.BytesIO()
    Image.new("RGB", (8000, 6000), (90, 120, 60)).save(big, format="JPEG", quality=70)  # 48 MP: ~458 MiB in full
    # over the budget at full quality: decoded at the largest DCT scale that fits (1/2: ~115 MiB), not refused
    fitted = decode_photo(big.getvalue(), max_image_pixels=LIMIT, max_decode_bytes=200 * 2**20)
    assert fitted.rgb.shape[:2] == (3000, 4000) and fitted.info.width_px == 8000 and fitted.scale == 0.5
    with pytest.raises(PhotoError, match="would take"):  # not even 1/8 fits
        decode_photo(big.getvalue(), max_image_pixels=LIMIT, max_decode_bytes=2 * 2**20)
    reduced = decode_photo(
        big.getvalue(), max_image_pixels=LIMIT, max_decode_bytes=200 * 2**20, target_long_side_px=640
    )
    assert max(reduced.rgb.shape[:2]) < 8000 and reduced.info.width_px == 8000
