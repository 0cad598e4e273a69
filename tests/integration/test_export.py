from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from andi_edge.runtime.detector import Detector
from andi_edge.runtime.model_meta import CARD_KEY, ModelCard
from tests.integration.cli_runner import run_cli

OFFICIAL_SHA256 = "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"


def test_card_is_inside_the_onnx_file(model_320: Path) -> None:
    model = onnx.load(str(model_320))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    card = ModelCard.from_json(props[CARD_KEY])
    assert card.head == "yolov5"
    assert (card.input_height, card.input_width, card.stride) == (320, 320, 32)
    assert card.num_classes == 80 and card.class_names[0] == "person" and card.class_names[16] == "dog"
    assert card.source_weights_sha256 == OFFICIAL_SHA256
    assert card.licence == "AGPL-3.0"
    assert {"torch", "onnx", "andi_edge", "opset"} <= set(card.export_tools)
    assert card.thresholds.conf == 0.005 and card.thresholds.iou == 0.45
    session = ort.InferenceSession(str(model_320), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 320, 320]
    assert session.get_outputs()[0].shape == [1, 6300, 85]


def test_export_cli_by_registry_name(tmp_path: Path, weights_path: Path) -> None:
    env = dict(os.environ, ANDI_EDGE_MODELS_DIR=str(weights_path.parent))
    out = tmp_path / "n256.onnx"
    proc = run_cli("export", "yolov5n", "--imgsz", "256", "-o", out, "--name", "nano-256", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "yolov5 head, 80 classes reported as animal/person/vehicle, stride 32, 256 px" in proc.stdout
    summary = run_cli("info", out)  # a short summary for people
    assert summary.returncode == 0 and "detector nano-256 (yolov5 head, 256x256, fp32)" in summary.stdout
    assert "reports: animal, person, vehicle (from 80 classes)" in summary.stdout and len(summary.stdout) < 800
    info = run_cli("info", out, "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["card"]["name"] == "nano-256" and described["card"]["input_height"] == 256
    assert described["runtime"]["model_sha256"] and described["runtime"]["backend"] == "ort"


def test_export_errors_are_clear(tmp_path: Path, weights_path: Path) -> None:
    proc = run_cli("export", str(weights_path), "--imgsz", "300", "-o", tmp_path / "x.onnx")
    assert proc.returncode == 2 and "multiple of 32" in proc.stderr and "try --imgsz 288" in proc.stderr
    proc = run_cli(
        "export", "md_v5a", "-o", tmp_path / "x.onnx", env=dict(os.environ, ANDI_EDGE_MODELS_DIR=str(tmp_path))
    )
    assert proc.returncode == 3 and "not on this machine" in proc.stderr and "download" in proc.stderr
    fake = tmp_path / "fake.pt"
    fake.write_text("not a checkpoint")
    proc = run_cli("export", fake, "-o", tmp_path / "x.onnx")
    assert proc.returncode == 3 and "not a readable PyTorch checkpoint" in proc.stderr
    for p in (proc,):
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "x.onnx").exists()


ULTRALYTICS_CHECKPOINT = """
import sys
from ultralytics import YOLO
YOLO("yolov5n.yaml").save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def ultralytics_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ultralytics-format YOLOv5u checkpoint (random weights: no such pretrained file exists offline here)."""
    folder = tmp_path_factory.mktemp("ultra")
    path = folder / "yolov5nu-untrained.pt"
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(folder / "cfg"))
    subprocess.run([sys.executable, "-c", ULTRALYTICS_CHECKPOINT, str(path)], check=True, env=env, cwd=folder)
    return path


def test_ultralytics_checkpoint_exports_with_anchor_free_head(
    tmp_path: Path, ultralytics_checkpoint: Path, photos_dir: Path
) -> None:
    import torch
    from ultralytics import YOLO  # type: ignore[attr-defined]

    out = tmp_path / "u.onnx"
    proc = run_cli("export", ultralytics_checkpoint, "--imgsz", "128", "-o", out)
    assert proc.returncode == 0, proc.stderr
    detector = Detector(out)
    assert detector.card.head == "ultralytics"
    assert detector.loaded.output_shapes[0] == (1, 84, 336)  # 4 + 80 channels, 16x16 + 8x8 + 4x4 cells
    # the ONNX graph computes what the ultralytics PyTorch model computes on the same input
    prepared = detector.prepare(photos_dir / "ecoassist_md_examples" / "1.jpg")
    torch_model: torch.nn.Module = YOLO(str(ultralytics_checkpoint)).model  # type: ignore[assignment]
    torch_model = torch_model.float().eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(prepared.tensor))[0].numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"images": prepared.tensor})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-3, rtol=1e-3)
    result = detector.infer(prepared)
    assert result.ok and result.detections is not None


def test_registry_knows_megadetector_and_checks_its_published_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from andi_edge.errors import ModelError
    from andi_edge.toolchain.weights import load_registry, resolve_weights

    registry = load_registry()
    v5a = registry["md-v5a"]
    assert (v5a.imgsz, v5a.typical, v5a.conservative, v5a.licence) == (1280, 0.2, 0.05, "MIT")
    assert v5a.rect and registry["md-v5b"].rect, "exported by name as MegaDetector infers: rectangular, stride 64"
    assert v5a.decode == registry["md-v5b"].decode == "full", "and decoded in full, as MegaDetector decodes"
    assert not registry["yolov5n"].rect and not registry["md-v6-yolov9-c"].rect
    assert v5a.md5 == "ec1d7603ec8cf642d6e0cd008ba2be8c" and v5a.url.endswith("/v5.0/md_v5a.0.0.pt")
    for name in ("md-v6-yolov9-c", "md-v6-yolov10-c", "md-v6-rtdetr-c", "md-v5b", "yolov5x"):
        assert registry[name].url.startswith("https://"), name
    # a file with MegaDetector's name but other bytes, found by name (any spelling): refused with the URL to fetch
    (tmp_path / "md_v5a.0.0.pt").write_bytes(b"not the release")
    monkeypatch.setenv("ANDI_EDGE_MODELS_DIR", str(tmp_path))
    for spelling in ("md-v5a", "md_v5a", "MDV5A"):
        with pytest.raises(ModelError, match=r"md5 .* does not match the official md-v5a") as raised:
            resolve_weights(spelling)
        assert raised.value.hint is not None and "download it again" in raised.value.hint
    # given as a path, the same file is someone's own model: accepted, not labelled as the official one
    assert resolve_weights(str(tmp_path / "md_v5a.0.0.pt")).known is None
