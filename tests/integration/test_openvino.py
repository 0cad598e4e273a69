"""The OpenVINO backend (optional extra, installed by `make venv`) against ONNX Runtime on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from andi_edge.boxes import pairwise_iou
from andi_edge.config import DetectorSettings
from andi_edge.runtime.backends import available_backends
from andi_edge.runtime.detector import Detector

PHOTOS = ["ecoassist_md_examples/1.jpg", "ecoassist_md_examples/3.jpg", "burrowing_owl/RCNX2938.JPG",
          "burrowing_owl/IMG_8968.JPG", "edge_cases/10050028_0.JPG"]  # fmt: skip


def test_openvino_reads_the_card_and_matches_onnx_runtime(model_320: Path, photos_dir: Path) -> None:
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    assert {"ort", "openvino"} <= set(available_backends())
    settings = DetectorSettings(reduced_decode=False)
    ov = Detector(model_320, settings=settings, backend="openvino")
    ort = Detector(model_320, settings=settings, backend="ort")
    assert ov.card == ort.card, "the model card comes through OpenVINO's runtime info"
    assert ov.loaded.execution_providers == ("CPU",) and ov.loaded.backend == "openvino"
    compared = 0
    for rel in PHOTOS:
        prepared = ort.prepare(photos_dir / rel)
        a = ort.infer(prepared).detections
        b = ov.infer(prepared).detections
        assert a is not None and b is not None
        for box, conf, cls in zip(a.xyxy_px, a.confidence, a.class_id, strict=True):
            if conf < 0.12:
                continue
            same = b.class_id == cls
            assert same.any()
            j = int(pairwise_iou(box[None], b.xyxy_px[same])[0].argmax())
            input_px = prepared.geometry.to_input_xyxy(np.stack([box, b.xyxy_px[same][j]]))
            assert np.abs(input_px[0] - input_px[1]).max() <= 1.0
            assert abs(float(conf) - float(b.confidence[same][j])) <= 0.01
            compared += 1
    assert compared >= 5


def test_deepsparse_is_reported_unavailable_when_absent(model_320: Path, photos_dir: Path, tmp_path: Path) -> None:
    """DeepSparse is never installed by andi-edge (end-of-life, evaluation licence): it must fail cleanly.

    Its present path was run by hand in a separate venv with deepsparse 1.8.0 (README: same boxes as ONNX
    Runtime on the EcoAssist examples); that venv is not part of CI.
    """
    import importlib.util

    from tests.integration.cli_runner import run_cli

    if importlib.util.find_spec("deepsparse") is not None:
        pytest.skip("deepsparse is installed here; this test is about its absence")
    assert "deepsparse" not in available_backends()
    proc = run_cli("detect", photos_dir / "ecoassist_md_examples", "-m", model_320, "-o", tmp_path / "r.json",
                   "--backend", "deepsparse")  # fmt: skip
    assert proc.returncode == 4 and "pip install deepsparse==1.8.0" in proc.stderr and "Traceback" not in proc.stderr
