from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andi_edge.runtime.letterbox import PAD_VALUE, LetterboxGeometry, letterbox_rgb, letterbox_tensor, to_input_tensor

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


@pytest.mark.parametrize("sizes", [(0, 10, 320, 320), (10, 0, 320, 320), (10, 10, 0, 320), (10, 10, 320, 0),
                                   (-5, 10, 320, 320)])  # fmt: skip
def test_a_size_that_is_not_positive_is_refused_and_named(sizes: tuple[int, int, int, int]) -> None:
    w, h, iw, ih = sizes
    with pytest.raises(ValueError, match=f"photo {w}x{h}, input {iw}x{ih}"):
        LetterboxGeometry.fit(w, h, iw, ih)


def test_a_one_pixel_sliver_keeps_one_row_and_one_column() -> None:
    """A 1 x 5000 strip at 320 px scales to 0.064 columns: it keeps one, centred (padding 159 / 160)."""
    g = LetterboxGeometry.fit(1, 5000, 320, 320)
    assert (g.resized_w, g.resized_h, g.pad_left, g.pad_top) == (1, 320, 159, 0)
    g = LetterboxGeometry.fit(5000, 1, 320, 320)
    assert (g.resized_w, g.resized_h, g.pad_left, g.pad_top) == (320, 1, 0, 159)


def test_boxes_map_back_exactly_and_are_clipped_to_the_photo() -> None:
    """2048x1536 at 320: gain 0.15625, 40 rows of padding above. Boxes reaching into the padding or past the
    input's edge are clipped to the photo, on every side; several boxes at once."""
    g = LetterboxGeometry.fit(2048, 1536, 320, 320)
    boxes_input = np.array([[10.0, 50.0, 170.0, 130.0], [-20.0, 0.0, 340.0, 300.0]], np.float32)
    back = g.to_photo_xyxy(boxes_input)
    assert back.dtype == np.float32 and back.shape == (2, 4)
    np.testing.assert_array_equal(back[0], [64.0, 64.0, 1088.0, 576.0])
    np.testing.assert_array_equal(back[1], [0.0, 0.0, 2048.0, 1536.0])
    again = g.to_input_xyxy(back[:1])
    assert again.dtype == np.float32 and again.shape == (1, 4)
    np.testing.assert_array_equal(again[0], boxes_input[0])
    np.testing.assert_array_equal(g.to_input_xyxy(back), [[10, 50, 170, 130], [0, 40, 320, 280]])
    assert g.to_photo_xyxy(np.zeros((0, 4), np.float32)).shape == (0, 4)
    np.testing.assert_array_equal(boxes_input[1], [-20.0, 0.0, 340.0, 300.0])  # the caller's array is untouched


@pytest.mark.parametrize("decoded", [(300, 240), (320, 200), (160, 120)])
def test_a_decode_of_another_size_is_resized_to_the_geometry(decoded: tuple[int, int]) -> None:
    """Only the width, only the height, or both differ from the geometry's resized size: each is resized."""
    w, h = decoded
    g = LetterboxGeometry.fit(2048, 1536, 320, 320)
    rgb = np.full((h, w, 3), 9, np.uint8)
    boxed = letterbox_rgb(rgb, g)
    assert boxed.shape == (320, 320, 3) and boxed.dtype == np.uint8
    assert np.all(boxed[40:280] == 9) and np.all(boxed[:40] == PAD_VALUE) and np.all(boxed[280:] == PAD_VALUE)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 900), st.integers(1, 900), st.sampled_from([1, 2, 4]), input_sides, st.integers(0, 2**32 - 1))
def test_the_fused_tensor_equals_letterbox_then_tensor(w: int, h: int, reduce: int, size: int, seed: int) -> None:
    """Decoded at the photo's size or DCT-reduced: the one-pass tensor is the two-step one, to the last bit."""
    g = LetterboxGeometry.fit(w, h, size, size)
    rgb = np.random.default_rng(seed).integers(0, 256, (max(1, h // reduce), max(1, w // reduce), 3), np.uint8)
    fused = letterbox_tensor(rgb, g)
    assert fused.dtype == np.float32 and fused.flags.c_contiguous and fused.shape == (1, 3, size, size)
    np.testing.assert_array_equal(fused, to_input_tensor(letterbox_rgb(rgb, g)))


@pytest.mark.parametrize("decoded", [(320, 240), (320, 200), (300, 240)])
def test_the_fused_tensor_of_a_decode_at_or_near_the_input_size(decoded: tuple[int, int]) -> None:
    """A photo decoded at exactly its letterboxed size goes in without a resize; one off in width or height only
    is resized. Pixel values land in the right channel, row and column."""
    w, h = decoded
    g = LetterboxGeometry.fit(2048, 1536, 320, 320)  # 320 x 240, 40 rows of padding above and below
    rgb = np.random.default_rng(w + h).integers(0, 256, (h, w, 3), np.uint8)
    fused = letterbox_tensor(rgb, g)
    np.testing.assert_array_equal(fused, to_input_tensor(letterbox_rgb(rgb, g)))
    if (w, h) == (320, 240):
        np.testing.assert_array_equal(fused[0, :, 40:280, :], rgb.transpose(2, 0, 1) / np.float32(255.0))
        assert fused[0, 2, 40, 7] == np.float32(rgb[0, 7, 2]) / np.float32(255.0)


@pytest.mark.parametrize(
    ("photo", "long_side", "stride", "input_wh"),
    [
        ((2048, 1536), 640, 32, (640, 480)),  # 4:3: 480 is a multiple of 32 already
        ((1920, 1080), 640, 32, (640, 384)),  # 16:9: 360 rounded up to the stride
        ((1080, 1920), 640, 64, (384, 640)),  # portrait, a P6 model's stride
        ((640, 640), 640, 32, (640, 640)),
        ((100, 3000), 320, 32, (32, 320)),  # 11 px wide at the gain: one stride
    ],
)
def test_rectangular_inference_pads_only_to_the_stride(
    photo: tuple[int, int], long_side: int, stride: int, input_wh: tuple[int, int]
) -> None:
    """YOLOv5's letterbox(auto=True): the square's gain, the input the resized photo rounded up to the stride."""
    geometry = LetterboxGeometry.fit_rect(photo[0], photo[1], long_side, stride)
    assert (geometry.input_w, geometry.input_h) == input_wh
    square = LetterboxGeometry.fit(photo[0], photo[1], long_side, long_side)
    assert geometry.gain == square.gain and (geometry.resized_w, geometry.resized_h) == (
        square.resized_w,
        square.resized_h,
    )
    assert geometry.input_w % stride == 0 and geometry.input_h % stride == 0


@pytest.mark.parametrize("sizes", [(0, 480, 640, 32), (640, 0, 640, 32), (640, 480, 0, 32), (640, 480, 640, 0)])
def test_rectangular_inference_refuses_sizes_that_are_not_positive(sizes: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="sizes must be positive"):
        LetterboxGeometry.fit_rect(*sizes)
    assert LetterboxGeometry.fit_rect(1, 1, 1, 1).input_w == 1, "one of each is the smallest that goes"


def test_a_stretched_photo_fills_the_input_and_its_boxes_map_back_by_each_axis() -> None:
    """RT-DETR's preprocessing (Ultralytics' ``LetterBox(scale_fill=True)``): a 4:3 photo fills the square input,
    no padding; a box maps back by 4000/640 across and 3000/640 down."""
    geometry = LetterboxGeometry.stretch(4000, 3000, 640, 640)
    assert (geometry.resized_w, geometry.resized_h, geometry.pad_left, geometry.pad_top) == (640, 640, 0, 0)
    box = np.array([[64.0, 64.0, 320.0, 640.0]], np.float32)
    np.testing.assert_allclose(geometry.to_photo_xyxy(box), [[400.0, 300.0, 2000.0, 3000.0]], rtol=1e-6)
    np.testing.assert_allclose(geometry.to_input_xyxy(geometry.to_photo_xyxy(box)), box, rtol=1e-6)
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    tensor = letterbox_tensor(rgb, LetterboxGeometry.stretch(400, 300, 64, 64))
    assert tensor.shape == (1, 3, 64, 64) and not np.isclose(tensor, PAD_VALUE / 255).all(axis=1).all(), "no pad"
    np.testing.assert_allclose(tensor, to_input_tensor(letterbox_rgb(rgb, LetterboxGeometry.stretch(400, 300, 64, 64))))
    with pytest.raises(ValueError, match="positive"):
        LetterboxGeometry.stretch(0, 300, 64, 64)
