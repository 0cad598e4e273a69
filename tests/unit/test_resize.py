from __future__ import annotations

from pathlib import Path

import cv2  # only in the test environment (via the toolchain): the reference the runtime must match
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from andi_edge.runtime.resize import resize_bilinear, resize_bilinear_bands, resize_bilinear_levels


def _cv2(image: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_matches_opencv_inter_linear_within_one_level(src_w: int, src_h: int, w: int, h: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
    ours = resize_bilinear(image, w, h)
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - _cv2(image, w, h)).max() <= 1


def test_real_photo_both_decode_sizes(photos_dir: Path) -> None:
    photo = np.asarray(Image.open(photos_dir / "ecoassist_md_examples" / "1.jpg").convert("RGB"))
    for source in (photo, np.ascontiguousarray(photo[::2, ::2])):
        assert np.abs(resize_bilinear(source, 320, 240).astype(int) - _cv2(source, 320, 240)).max() <= 1


def test_same_size_is_untouched_and_bad_size_refused() -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    assert resize_bilinear(image, 5, 4) is image
    with pytest.raises(ValueError, match="positive"):
        resize_bilinear(image, 0, 4)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 200), st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_grey_levels_are_the_resize_before_its_uint8_cast(src_w: int, src_h: int, w: int, h: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
    levels = resize_bilinear_levels(image, w, h)
    assert levels.dtype == np.float32 and levels.shape == (h, w, 3)
    assert np.array_equal(levels, np.rint(levels)) and levels.min() >= 0 and levels.max() <= 255
    expected = image if (src_w, src_h) == (w, h) else resize_bilinear(image, w, h)
    np.testing.assert_array_equal(levels.astype(np.uint8), expected)
    grey = image[..., 0].copy()
    np.testing.assert_array_equal(resize_bilinear_levels(grey, w, h), levels[..., 0] if (src_w, src_h) != (w, h)
                                  else grey)  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 120), st.integers(1, 120), st.integers(1, 120), st.integers(1, 120), st.integers(1, 40))
def test_bands_make_up_the_whole_resize(src_w: int, src_h: int, w: int, h: int, band_rows: int) -> None:
    """The banded resize (what letterbox_tensor writes from) covers every output row once, in order, with the
    same grey levels whatever the band height."""
    image = np.random.default_rng(src_w * 131 + src_h).integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
    bands = list(resize_bilinear_bands(image, w, h, band_rows))
    assert [first for first, _, _ in bands] == list(range(0, h, band_rows)) and bands[-1][1] == h
    stacked = np.concatenate([levels.copy() for _, _, levels in bands]).reshape(h, w, 3)
    np.testing.assert_array_equal(stacked, resize_bilinear_levels(image, w, h))
    assert np.abs(stacked.astype(int) - _cv2(image, w, h)).max() <= 1
