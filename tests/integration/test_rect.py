"""Rectangular inference (`export --rect`): each photo at its own aspect, fp32 and INT8, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from andi_edge.bench import accuracy_delta
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.letterbox import LetterboxGeometry
from tests.integration.cli_runner import run_cli


@pytest.fixture(scope="module")
def rect_models(weights_path: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rect")
    fp32, int8 = folder / "yolov5n-320-rect.onnx", folder / "yolov5n-320-rect-int8.onnx"
    proc = run_cli("export", weights_path, "--imgsz", "320", "--rect", "-o", fp32)
    assert proc.returncode == 0 and "rectangular inference" in proc.stdout, proc.stderr
    proc = run_cli("quantize", fp32, "--calib", photos_dir, "--calib-count", "16", "-o", int8)
    assert proc.returncode == 0, proc.stderr
    return fp32, int8


def test_rect_geometry_pads_only_to_the_stride() -> None:
    for (w, h), (input_w, input_h), (pad_left, pad_top) in (
        ((2048, 1536), (640, 480), (0, 0)),
        ((1920, 1080), (640, 384), (0, 12)),
        ((1536, 2048), (480, 640), (0, 0)),
        ((2048, 1365), (640, 448), (0, 10)),  # 21 rows of padding: 10 above, 11 below
    ):
        g = LetterboxGeometry.fit_rect(w, h, 640, 32)
        assert (g.input_w, g.input_h, g.pad_left, g.pad_top) == (input_w, input_h, pad_left, pad_top)
        square = LetterboxGeometry.fit(w, h, 640, 640)
        assert (g.gain, g.resized_w, g.resized_h) == (square.gain, square.resized_w, square.resized_h)
        box = np.array([[100.0, 200.0, 900.0, 1000.0]], np.float32)
        np.testing.assert_allclose(g.to_photo_xyxy(g.to_input_xyxy(box)), box, atol=1e-3)


def test_rect_models_run_each_photo_at_its_aspect_and_keep_the_square_models_boxes(
    rect_models: tuple[Path, Path], model_320: Path, photos_dir: Path, tmp_path: Path
) -> None:
    """fp32 and INT8, including a 3:2 photo whose smallest feature map has an odd height (7 rows at 320 px):
    the INT8 model once quantized its own upsampling size there (7 x 2 = 13) and failed at every such photo."""
    fp32, int8 = rect_models
    rect = Detector(fp32)
    assert rect.card.rect and rect.loaded.input_shape[2:] == ("height", "width")
    assert rect.card.name == "yolov5n-320-rect", "a rect model's card says so in its name"
    source = Image.open(photos_dir / "ecoassist_md_examples" / "1.jpg").convert("RGB")
    three_two = tmp_path / "three_two.jpg"
    source.resize((960, 640)).save(three_two, quality=92)
    photos = [*sorted((photos_dir / "ecoassist_md_examples").glob("*.jpg")), three_two]
    shapes = {rect.prepare(p).tensor.shape[2:] for p in photos}
    assert (224, 320) in shapes and len(shapes) >= 2, shapes
    quantized = Detector(int8)
    assert quantized.card.rect and quantized.card.precision == "int8"
    for photo in photos:
        assert quantized.detect(photo).ok, photo.name
    # the same network seeing less grey padding: the square model's boxes >= 0.25, nearly all (measured on all
    # 185 photos at 640 px: mAP@0.5 0.98; against MDv5a's boxes F1-macro 0.679 vs 0.683 square)
    delta = accuracy_delta(Detector(model_320), rect, photos)
    assert delta["reference_boxes"] >= 5 and delta["map50"] >= 0.85


def test_rect_export_of_an_ultralytics_checkpoint_is_refused(tmp_path: Path) -> None:
    from tests.architectures import ultralytics_checkpoint

    checkpoint = tmp_path / "yolov10n.pt"
    ultralytics_checkpoint("yolov10n.yaml", checkpoint, [])
    proc = run_cli("export", checkpoint, "--imgsz", "320", "--rect", "-o", tmp_path / "u.onnx")
    assert proc.returncode == 2 and "rectangular inference is exported for classic YOLOv5" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "u.onnx").exists()


def test_a_rect_card_on_a_fixed_size_graph_is_refused(model_320: Path, tmp_path: Path) -> None:
    import shutil

    from andi_edge.errors import ModelError
    from andi_edge.toolchain.export import write_card

    fixed = tmp_path / "fixed.onnx"
    shutil.copy(model_320, fixed)
    write_card(fixed, Detector(model_320).card.with_updates(rect=True))
    with pytest.raises(ModelError, match="rectangular inference but the graph takes a fixed 320x320"):
        Detector(fixed)
