from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from andi_edge.runtime.letterbox import PAD_VALUE, LetterboxGeometry, letterbox_rgb, to_input_tensor

photo_sides = st.integers(min_value=1, max_value=8000)
input_sides = st.sampled_from([160, 320, 640, 1280])


@given(photo_sides, photo_sides, input_sides)
def test_geometry_fits_inside_input(w: int, h: int, size: int) -> None:
    g = LetterboxGeometry.fit(w, h, size, size)
    assert g.resized_w <= size and g.resized_h <= size
    assert max(g.resized_w, g.resized_h) == size or min(w, h) * g.gain < 1
    assert g.pad_left >= 0 and g.pad_left + g.resized_w <= size
    assert g.pad_top >= 0 and g.pad_top + g.resized_h <= size


@given(photo_sides, photo_sides, input_sides, st.lists(st.floats(0, 1), min_size=4, max_size=4))
def test_box_round_trip(w: int, h: int, size: int, fractions: list[float]) -> None:
    a, b, c, d = fractions
    g = LetterboxGeometry.fit(w, h, size, size)
    x0, x1 = sorted((a * w, b * w))
    y0, y1 = sorted((c * h, d * h))
    photo_box = np.array([[x0, y0, x1, y1]], dtype=np.float32)
    back = g.to_photo_xyxy(g.to_input_xyxy(photo_box))
    np.testing.assert_allclose(back, photo_box, atol=max(w, h) * 1e-5 + 1e-3)


def test_geometry_matches_yolov5_rule_by_hand() -> None:
    # 2048x1536 into 320: gain 0.15625, 320x240, 40 px of padding split 20/20 top and bottom
    g = LetterboxGeometry.fit(2048, 1536, 320, 320)
    assert (g.resized_w, g.resized_h, g.pad_left, g.pad_top) == (320, 240, 0, 40)
    # odd padding: 300x169 -> 320x180, 140 px split 70/70; 1022x580 -> 320x182 (181.6), 138 split 69/69
    g = LetterboxGeometry.fit(1022, 580, 320, 320)
    assert (g.resized_w, g.resized_h, g.pad_top) == (320, 182, 69)
    g = LetterboxGeometry.fit(640, 427, 320, 320)  # 213.5 -> 214 rows, 106 px: 53 / 53
    assert (g.resized_h, g.pad_top) == (214, 53)
    g = LetterboxGeometry.fit(640, 426, 320, 320)  # 213 rows, 107 px: round(53.4)=53 top, 54 bottom
    assert (g.resized_h, g.pad_top) == (213, 53)


def test_letterboxed_pixels_and_tensor() -> None:
    rgb = np.zeros((150, 400, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    g = LetterboxGeometry.fit(400, 150, 320, 320)
    boxed = letterbox_rgb(rgb, g)
    assert boxed.shape == (320, 320, 3)
    assert np.all(boxed[: g.pad_top] == PAD_VALUE)
    assert np.all(boxed[g.pad_top + g.resized_h :] == PAD_VALUE)
    assert np.all(boxed[g.pad_top : g.pad_top + g.resized_h, :, 0] == 255)
    tensor = to_input_tensor(boxed)
    assert tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    assert tensor.max() == 1.0 and abs(tensor[0, 1, 0, 0] - PAD_VALUE / 255) < 1e-6


def test_reduced_decode_gets_same_geometry_as_full() -> None:
    """A DCT-reduced image is resized to the geometry of the original size: same input layout."""
    g = LetterboxGeometry.fit(2048, 1536, 320, 320)
    full = letterbox_rgb(np.full((1536, 2048, 3), 7, np.uint8), g)
    reduced = letterbox_rgb(np.full((384, 512, 3), 7, np.uint8), g)
    np.testing.assert_array_equal(full, reduced)


def test_exact_paddings_for_portrait_and_landscape_photos() -> None:
    """Table of (photo, input) -> resized size and paddings; portrait photos pad left and right."""
    rows = [
        ((2048, 1536), (320, 240, 0, 40)),  # landscape: 40 rows above
        ((1536, 2048), (240, 320, 40, 0)),  # portrait: 40 columns to the left
        ((580, 1022), (182, 320, 69, 0)),  # portrait, odd: 138 columns split 69 / 69
        ((427, 640), (214, 320, 53, 0)),  # 213.5 -> 214, 106 columns: 53 / 53
        ((426, 640), (213, 320, 53, 0)),  # 213 columns, 107 of padding: round(53.4) = 53 left, 54 right
        ((320, 320), (320, 320, 0, 0)),
    ]
    for (w, h), expected in rows:
        g = LetterboxGeometry.fit(w, h, 320, 320)
        assert (g.resized_w, g.resized_h, g.pad_left, g.pad_top) == expected, (w, h)
    portrait = np.zeros((2048, 1536, 3), dtype=np.uint8)
    portrait[..., 2] = 255
    g = LetterboxGeometry.fit(1536, 2048, 320, 320)
    boxed = letterbox_rgb(portrait, g)
    assert np.all(boxed[:, :40] == PAD_VALUE) and np.all(boxed[:, 280:] == PAD_VALUE)
    assert np.all(boxed[:, 40:280, 2] == 255)
    # a box on the photo's left edge lands at the padding's edge, and comes back exactly
    box = np.array([[0, 1024, 768, 2048]], dtype=np.float32)
    np.testing.assert_allclose(g.to_input_xyxy(box), [[40, 160, 160, 320]])
    np.testing.assert_allclose(g.to_photo_xyxy(g.to_input_xyxy(box)), box)
