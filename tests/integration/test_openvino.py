"""The OpenVINO backend (optional extra, installed by `make venv`) against ONNX Runtime on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from andi_edge.boxes import pairwise_iou
from andi_edge.config import DetectorSettings
from andi_edge.runtime.backends import available_backends
from andi_edge.runtime.detector import Detector

pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

PHOTOS = ["ecoassist_md_examples/1.jpg", "ecoassist_md_examples/3.jpg", "burrowing_owl/RCNX2938.JPG",
          "burrowing_owl/IMG_8968.JPG", "edge_cases/10050028_0.JPG"]  # fmt: skip


def test_openvino_reads_the_card_and_matches_onnx_runtime(model_320: Path, photos_dir: Path) -> None:
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
