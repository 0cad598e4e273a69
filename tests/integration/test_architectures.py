"""Every head layout the runtime claims, checked against the upstream code's own inference on real photos.

Checkpoints are built from the upstream definitions with random weights (tests/architectures.py): classic YOLOv5
s/m/l/x and the P6 layout of MegaDetector v5 (yolov5n6: the same four-level, stride-64 structure as MDv5's
yolov5x6, at a size CI can run), YOLOv9 (MDv6-yolov9), the NMS-free YOLOv10 (MDv6-yolov10) and RT-DETR
(MDv6-rtdetr), each with MegaDetector's three classes. Each is exported by ``andi-edge export``; then on the same
letterboxed input (a) the ONNX output equals the upstream model's own forward pass, and (b) the runtime's final
boxes equal what the upstream code's own post-processing makes of it (its NMS, or its end-to-end decoding):
within 1 px in input space and 0.01 in confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from andi_edge.config import DetectorSettings
from andi_edge.detections import Detections
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.letterbox import LetterboxGeometry
from andi_edge.toolchain.export import ExportRequest, export_onnx
from andi_edge.toolchain.weights import resolve_weights
from tests.architectures import MD_CLASSES, classic_checkpoint, letterboxed, ultralytics_checkpoint
from tests.integration.cli_runner import run_cli

PHOTOS = ("burrowing_owl/RCNX2938.JPG", "lila_md_testset/nacti_part3_sub308_CA-11_0001325.jpg")
#: the photos the random models' BatchNorm statistics are measured on (others than the compared ones)
CALIBRATION = (
    "serengeti_S1_D04_R6_sequence/S1_D04_R6_PICT0020.JPG",
    "peru_sdzg2/EK000008.JPG",
    "ecoassist_md_examples/1.jpg",
)


def _calibration(photos_dir: Path, imgsz: int) -> list[np.ndarray]:
    return letterboxed([photos_dir / rel for rel in CALIBRATION], imgsz)


CONF = 0.001
BOX_TOL_PX = 1.0
CONF_TOL = 0.01
TOP = 15


def _export(weights: Path, imgsz: int) -> Detector:
    out = weights.with_suffix(".onnx")
    export_onnx(ExportRequest(weights=resolve_weights(str(weights)), output=out, imgsz=imgsz))
    return Detector(out, settings=DetectorSettings(conf_threshold=CONF, reduced_decode=False, max_detections=300))


def _upstream_raw(model: Any, tensor: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(tensor))
    out = out[0] if isinstance(out, tuple | list) else out
    return np.asarray(out.float().numpy())


def _runtime_boxes(detector: Detector, raw: np.ndarray, imgsz: int) -> Detections:
    """The runtime's final boxes in input pixels (an identity letterbox)."""
    return detector.postprocess(raw, LetterboxGeometry.fit(imgsz, imgsz, imgsz, imgsz))


def _assert_same_boxes(ours: Detections, reference: np.ndarray, imgsz: int) -> None:
    """``reference``: (n, 6) rows of x1, y1, x2, y2, conf, class. Each of our TOP boxes is one of theirs.

    The runtime clips boxes to the frame (as every upstream predictor does after NMS); so does the reference.
    Boxes under a pixel wide or high are left out on both sides: random weights make some, and whether NMS
    suppresses one hangs on rounding (the IoU of two near-empty boxes is 0/0)."""
    assert len(ours) > 0 and len(reference) > 0, "the random model finds something on a real photo"
    ref = reference[np.argsort(-reference[:, 4], kind="stable")].copy()
    ref[:, :4] = ref[:, :4].clip(0, imgsz)
    ref = ref[((ref[:, 2] - ref[:, 0]) >= 1) & ((ref[:, 3] - ref[:, 1]) >= 1)][: 3 * TOP]
    wh = ours.xyxy_px[:, 2:] - ours.xyxy_px[:, :2]
    ours = ours.select(np.asarray((wh >= 1).all(axis=1), dtype=bool)).sorted_by_confidence()
    ours = ours.select(np.arange(min(TOP, len(ours))))
    for box, conf, cls in zip(ours.xyxy_px, ours.confidence, ours.class_id, strict=True):
        same_class = ref[ref[:, 5].astype(int) == cls]
        near = np.abs(same_class[:, :4] - box).max(axis=1) <= BOX_TOL_PX if len(same_class) else np.zeros(0, bool)
        close = near & (np.abs(same_class[:, 4] - conf) <= CONF_TOL) if len(same_class) else near
        assert close.any(), f"box {box} ({MD_CLASSES[int(cls)]} {conf:.4f}) has no upstream counterpart"
    assert abs(float(ours.confidence[0]) - float(ref[0, 4])) <= CONF_TOL, "the best box scores the same"


def _check(
    detector: Detector,
    model: Any,
    photos_dir: Path,
    reference: Callable[[np.ndarray], np.ndarray],
    raw_atol: float | None,
) -> None:
    """``raw_atol``: compare the raw outputs element by element (None for end-to-end heads, whose rows are a
    top-k selection: rounding may reorder near-equal rows, so they are compared as boxes only)."""
    imgsz = detector.card.input_height
    for rel in PHOTOS:
        prepared = detector.prepare(photos_dir / rel)
        raw = detector.backend.run(prepared.tensor)
        upstream = _upstream_raw(model, prepared.tensor)
        assert raw.shape == upstream.shape
        if raw_atol is not None:
            np.testing.assert_allclose(raw, upstream, atol=raw_atol, rtol=1e-3)
        _assert_same_boxes(_runtime_boxes(detector, raw, imgsz), reference(upstream), imgsz)
        result = detector.infer(prepared)  # and the whole path, back in photo pixels
        assert result.detections is not None and len(result.detections)
        w, h = prepared.info.width_px, prepared.info.height_px
        assert (
            result.detections.xyxy_px[:, [0, 2]].max() <= w + 1 and result.detections.xyxy_px[:, [1, 3]].max() <= h + 1
        )


# -- classic YOLOv5, incl. P6 (MegaDetector v5's layout) --------------------------------------------------------


def _yolov5_nms(upstream: np.ndarray) -> np.ndarray:
    from yolov5.utils.general import non_max_suppression

    kept = non_max_suppression(torch.from_numpy(upstream), conf_thres=CONF, iou_thres=0.45, max_det=300)[0]
    return np.asarray(kept.numpy())


@pytest.mark.parametrize(
    ("arch", "imgsz", "stride"),
    [("yolov5n6", 1280, 64), ("yolov5s", 320, 32), ("yolov5m", 320, 32)],
)
def test_classic_layouts_match_the_yolov5_code(
    tmp_path: Path, photos_dir: Path, arch: str, imgsz: int, stride: int
) -> None:
    model = classic_checkpoint(arch, tmp_path / f"{arch}.pt", _calibration(photos_dir, imgsz))
    detector = _export(tmp_path / f"{arch}.pt", imgsz)
    card = detector.card
    assert (card.head, card.stride, card.input_height, card.class_names) == ("yolov5", stride, imgsz, MD_CLASSES)
    assert card.categories is None and detector.class_names == MD_CLASSES, "MegaDetector's classes stay as they are"
    _check(detector, model, photos_dir, _yolov5_nms, raw_atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["yolov5l", "yolov5x"])
def test_large_classic_layouts_match_the_yolov5_code(tmp_path: Path, photos_dir: Path, arch: str) -> None:
    """The large layouts, boxes only: in 46-86 M random parameters, float rounding (ONNX Runtime vs torch) moves
    a few of the raw values past an element-wise tolerance while the boxes still agree. (yolov5x6, MDv5's own
    size, is left out: with 140 M random parameters rounding moves even a top box; yolov5n6 covers its layout.)"""
    imgsz = 1280 if arch.endswith("6") else 320
    model = classic_checkpoint(arch, tmp_path / f"{arch}.pt", _calibration(photos_dir, imgsz))
    _check(_export(tmp_path / f"{arch}.pt", imgsz), model, photos_dir, _yolov5_nms, raw_atol=None)


def test_p6_export_checks_the_stride(tmp_path: Path, photos_dir: Path) -> None:
    classic_checkpoint("yolov5n6", tmp_path / "p6.pt", _calibration(photos_dir, 384))
    proc = run_cli("export", tmp_path / "p6.pt", "--imgsz", "352", "-o", tmp_path / "p6.onnx")
    assert proc.returncode == 2 and "multiple of 64" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("export", tmp_path / "p6.pt", "--imgsz", "384", "-o", tmp_path / "p6.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "stride 64, 384 px" in proc.stdout and "reported as" not in proc.stdout


# -- Ultralytics: YOLOv9, the NMS-free YOLOv10, RT-DETR --------------------------------------------------------


def _ultralytics_nms(upstream: np.ndarray) -> np.ndarray:
    from ultralytics.utils.nms import non_max_suppression

    kept = non_max_suppression(torch.from_numpy(upstream), conf_thres=CONF, iou_thres=0.45, max_det=300)[0]
    return np.asarray(kept.numpy(), dtype=np.float32)


def _end_to_end(upstream: np.ndarray) -> np.ndarray:
    """Ultralytics' predictor on an end-to-end output: keep rows above the threshold, nothing else."""
    rows: np.ndarray = upstream[0]
    return np.asarray(rows[rows[:, 4] > CONF])


def _rtdetr(imgsz: int) -> Callable[[np.ndarray], np.ndarray]:
    def decode(upstream: np.ndarray) -> np.ndarray:
        from ultralytics.utils.ops import xywh2xyxy

        rows: np.ndarray = upstream[0][upstream[0][:, 4] > CONF].copy()
        rows[:, :4] = np.asarray(xywh2xyxy(rows[:, :4])) * imgsz  # type: ignore[no-untyped-call]
        return np.asarray(rows)

    return decode


@pytest.mark.parametrize(
    ("yaml_name", "head", "stride"),
    [("yolov9t.yaml", "ultralytics", 32), ("yolov10n.yaml", "end2end", 32), ("rtdetr-l.yaml", "rtdetr", 32)],
)
def test_ultralytics_layouts_match_the_ultralytics_code(
    tmp_path: Path, photos_dir: Path, yaml_name: str, head: str, stride: int
) -> None:
    imgsz = 640
    weights = tmp_path / yaml_name.replace(".yaml", ".pt")
    model = ultralytics_checkpoint(yaml_name, weights, _calibration(photos_dir, imgsz))
    detector = _export(weights, imgsz)
    card = detector.card
    assert (card.head, card.stride, card.class_names) == (head, stride, MD_CLASSES)
    reference = {"ultralytics": _ultralytics_nms, "end2end": _end_to_end, "rtdetr": _rtdetr(imgsz)}[head]
    _check(detector, model, photos_dir, reference, raw_atol=0.05 if head == "ultralytics" else None)
    _assert_prepared_as_ultralytics_predicts(detector, photos_dir, stretched=head == "rtdetr")


def _assert_prepared_as_ultralytics_predicts(detector: Detector, photos_dir: Path, stretched: bool) -> None:
    """Each photo becomes the tensor Ultralytics' own predictor makes of the same pixels: letterboxed to the
    square (YOLOv9, YOLOv10), stretched to it (RT-DETR: ``LetterBox(scale_fill=True)``, as its predictor and
    validator feed it; the runtime letterboxed it, so every box of an MDv6-rtdetr came from another input)."""
    from PIL import Image, ImageOps
    from ultralytics.data.augment import LetterBox

    imgsz = detector.card.input_height
    for rel in PHOTOS:
        with Image.open(photos_dir / rel) as opened:
            rgb = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        letterbox: Any = LetterBox((imgsz, imgsz), auto=False, scale_fill=stretched)
        bgr: np.ndarray = letterbox(image=np.ascontiguousarray(rgb[..., ::-1]))
        upstream = bgr[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        ours = detector.prepare(photos_dir / rel).tensor * 255.0
        assert ours.shape == upstream.shape
        apart = np.abs(ours - upstream)
        assert apart.max() <= 3.0 and apart.mean() <= 0.5, f"{rel}: {apart.max():.1f} levels apart at most"
