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
    assert ov.loaded.execution_providers == ("CPU f32",) and ov.loaded.backend == "openvino"
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


def test_openvino_bf16_and_concurrent_requests_keep_onnx_runtimes_boxes(model_320: Path, photos_dir: Path) -> None:
    """bf16 (on this CPU's AMX; f32 where a CPU has no bf16 units, which the loaded model says) with two
    requests in flight from two threads, as the parallel pipeline runs it: every box >= 0.25 of ONNX Runtime's
    f32 run is there (IoU >= 0.9, confidence within 0.05; measured on all 185 photos at 640 px: mAP@0.5
    0.9998), and each thread gets its own photo's answer."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    from concurrent.futures import ThreadPoolExecutor

    from andi_edge.runtime.backends import BackendOptions

    settings = DetectorSettings(reduced_decode=False)
    options = BackendOptions(intra_op_threads=1, precision="bf16", concurrent_runs=2)
    ov = Detector(model_320, settings=settings, backend="openvino", backend_options=options)
    ort = Detector(model_320, settings=settings, backend="ort")
    assert ov.loaded.execution_providers[0] in {"CPU bf16", "CPU f32"}
    prepared = [ort.prepare(photos_dir / rel) for rel in PHOTOS]
    with ThreadPoolExecutor(2) as pool:
        ours = list(pool.map(lambda p: ov.infer(p).detections, prepared * 3))
    matched = 0
    for index, detections in enumerate(ours):
        reference = ort.infer(prepared[index % len(PHOTOS)]).detections
        assert detections is not None and reference is not None
        for box, conf, cls in zip(reference.xyxy_px, reference.confidence, reference.class_id, strict=True):
            if conf < 0.25:
                continue
            same = detections.class_id == cls
            assert same.any(), f"{PHOTOS[index % len(PHOTOS)]}: no class {cls} box"
            iou = pairwise_iou(box[None], detections.xyxy_px[same])[0]
            j = int(iou.argmax())
            assert iou[j] >= 0.9 and abs(float(conf) - float(detections.confidence[same][j])) <= 0.05
            matched += 1
    assert matched >= 15


def test_onnx_runtime_refuses_a_precision_it_does_not_have(model_320: Path) -> None:
    from andi_edge.errors import BackendError
    from andi_edge.runtime.backends import BackendOptions

    with pytest.raises(BackendError, match="ONNX Runtime runs f32 on the CPU, not bf16") as refused:
        Detector(model_320, backend="ort", backend_options=BackendOptions(precision="bf16"))
    assert refused.value.hint is not None and "--backend openvino" in refused.value.hint


def test_bf16_on_onnx_runtime_from_the_command_line_is_a_clear_error(
    model_320: Path, photos_dir: Path, tmp_path: Path
) -> None:
    from tests.integration.cli_runner import run_cli

    proc = run_cli("detect", photos_dir / "ecoassist_md_examples", "-m", model_320, "-o", tmp_path / "r.json",
                   "--precision", "bf16")  # fmt: skip
    # refused with the settings, before the model is loaded: the same check as a config file's
    assert proc.returncode == 2 and "--precision (backend.precision) bf16 needs --backend" in proc.stderr, proc.stderr
    assert "openvino" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.json").exists()


def test_deepsparse_is_reported_unavailable_when_absent(model_320: Path, photos_dir: Path, tmp_path: Path) -> None:
    """DeepSparse is never installed by andi-edge (end-of-life, evaluation licence): it must fail cleanly.

    Its present path was run by hand in a separate venv with deepsparse 1.8.0 (docs: same boxes as ONNX
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
