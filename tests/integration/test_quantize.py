"""``andi-edge quantize`` on the real exported model, calibrated on real photos."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from andi_edge.bench import accuracy_delta
from andi_edge.runtime.detector import Detector
from andi_edge.toolchain.quantize import calibration_photos, calibration_sha256, head_nodes
from tests.integration.cli_runner import run_cli


@pytest.fixture(scope="module")
def int8_model(model_320: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "yolov5n-320-int8.onnx"
    cwd = tmp_path_factory.mktemp("cwd")
    proc = run_cli(
        "quantize", model_320, "--calib", photos_dir / "burrowing_owl", "--calib-count", "16", "-o", out, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    assert "andi-edge bench" in proc.stdout
    # ONNX Runtime's tools once left 7 MB `<uuid>.data` files in the working directory (the repository's root)
    assert not list(cwd.iterdir())
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    return out


def test_int8_model_is_smaller_quantized_and_carries_its_card(
    int8_model: Path, model_320: Path, photos_dir: Path
) -> None:
    assert int8_model.stat().st_size < model_320.stat().st_size / 2
    graph = onnx.load(str(int8_model)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the head stays in float: no quantize/dequantize node inside the last layer
    assert not [n.name for n in graph.node if n.name.startswith("/model.24/") and "Quantize" in n.op_type]
    # only the operator sets it uses (ONNX Runtime's quantizer stamps ai.onnx.ml 5, com.microsoft.nchwc and
    # more, and DeepSparse refused the model for them)
    declared = {opset.domain for opset in onnx.load(str(int8_model)).opset_import}
    assert declared == {node.domain for node in graph.node} == {""}
    detector = Detector(int8_model)
    card = detector.card
    assert card.precision == "int8" and card.name.endswith("-int8")
    expected = calibration_sha256(calibration_photos(photos_dir / "burrowing_owl", 16))
    assert card.calibration_sha256 == expected
    assert card.source_weights_sha256 == Detector(model_320).card.source_weights_sha256


def test_int8_keeps_most_of_the_fp32_detections(int8_model: Path, model_320: Path, photos_dir: Path) -> None:
    photos = sorted((photos_dir / "ecoassist_md_examples").glob("*.jpg")) + sorted(
        (photos_dir / "burrowing_owl").glob("RCNX*.JPG")
    )
    delta = accuracy_delta(Detector(model_320), Detector(int8_model), photos)
    assert delta["reference_boxes"] >= 10
    # measured 0.93 mAP@0.5 / 0.87 recall on all 185 photos against fp32's own boxes; a broken quantization
    # (the head quantized, wrong calibration input) collapses these towards 0
    assert delta["map50"] >= 0.7 and delta["recall_at_typical"] >= 0.6


def test_head_nodes_and_calibration_spread(model_320: Path, photos_dir: Path) -> None:
    head = head_nodes(model_320)
    assert head and all(n.startswith("/model.24/") for n in head)
    assert any(n.endswith("Conv") for n in head)
    picked = calibration_photos(photos_dir, 10)
    assert len(picked) == 10 and len({p.parent for p in picked}) >= 4, "spread over folders, not one burst"


def test_quantize_mistakes(int8_model: Path, model_320: Path, tmp_path: Path, photos_dir: Path) -> None:
    again = run_cli("quantize", int8_model, "--calib", photos_dir / "burrowing_owl", "-o", tmp_path / "x.onnx")
    assert again.returncode == 2 and "already int8" in again.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("quantize", model_320, "--calib", empty, "-o", tmp_path / "x.onnx")
    assert proc.returncode == 2 and "no photos" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.onnx").exists()
    proc = run_cli("quantize", model_320, "--calib", tmp_path / "nope")
    assert proc.returncode == 2 and "no such folder" in proc.stderr
