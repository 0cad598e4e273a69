"""Shared fixtures: the real checkpoint from ../shared exported once per session, and real photos."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANDI_EDGE_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "data" / "camera_trap_images"
WEIGHTS = SHARED / "models" / "yolov5n.pt"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (the suite expects ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return _require(PHOTOS)


@pytest.fixture(scope="session")
def weights_path() -> Path:
    return _require(WEIGHTS)


@pytest.fixture(scope="session")
def model_320(tmp_path_factory: pytest.TempPathFactory, weights_path: Path) -> Path:
    """The official YOLOv5n exported to ONNX at 320 px by our own exporter (once per session)."""
    from andi_edge.toolchain.export import ExportRequest, export_onnx
    from andi_edge.toolchain.weights import resolve_weights

    out = tmp_path_factory.mktemp("models") / "yolov5n-320.onnx"
    export_onnx(ExportRequest(weights=resolve_weights(str(weights_path)), output=out, imgsz=320))
    return out


@pytest.fixture(scope="session")
def model_320_native(tmp_path_factory: pytest.TempPathFactory, weights_path: Path) -> Path:
    """The same export with ``--native-classes``: its card keeps COCO's 80 classes as the output."""
    from andi_edge.toolchain.export import ExportRequest, export_onnx
    from andi_edge.toolchain.weights import resolve_weights

    out = tmp_path_factory.mktemp("models") / "yolov5n-320-native.onnx"
    export_onnx(ExportRequest(weights=resolve_weights(str(weights_path)), output=out, imgsz=320, native_classes=True))
    return out


@pytest.fixture(scope="session")
def detector_full(model_320: Path):  # type: ignore[no-untyped-def]
    """A detector on the full-quality decode path (no DCT scaling) reporting COCO's own 80 classes, for parity
    checks against the PyTorch model."""
    from andi_edge.config import DetectorSettings
    from andi_edge.runtime.detector import Detector

    return Detector(model_320, settings=DetectorSettings(reduced_decode=False, native_classes=True))


@pytest.fixture(scope="session")
def detector_fast(model_320: Path):  # type: ignore[no-untyped-def]
    from andi_edge.runtime.detector import Detector

    return Detector(model_320)


@pytest.fixture(scope="session")
def species_classifier(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path, model_320: Path) -> dict[str, Path]:
    """A real, small species classifier (burrowing owl / squirrel, MobileNetV3-Small at 64 px from scratch) made by
    the CLI from crops of the sample photos: its crops dataset, training run and ONNX export (once per session)."""
    from tests.classifier_factory import dataset_args, write_owl_labels
    from tests.integration.cli_runner import run_cli

    work = tmp_path_factory.mktemp("classifier")
    labels = write_owl_labels(photos_dir, work / "owls.csv")
    crops, run, onnx = work / "crops", work / "run", work / "species.onnx"
    steps = [
        dataset_args(photos_dir, labels, model_320, crops),
        ["classifier", "train", "--crops", str(crops), "--arch", "mobilenet_v3_small", "--imgsz", "64",
         "--epochs", "8", "--batch", "16", "--seed", "0", "--threads", "2", "--licence", "CC0-1.0", "-o", str(run)],
        ["classifier", "export", str(run / "best.pt"), "-o", str(onnx)],
    ]  # fmt: skip
    for step in steps:
        done = run_cli(*step)
        if done.returncode != 0:
            pytest.fail(f"andi-edge {' '.join(step[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return {"crops": crops, "run": run, "model": onnx, "labels_csv": labels}


@pytest.fixture()
def card_copy(tmp_path: Path, photos_dir: Path) -> Iterator[Path]:
    """A writable copy of a few real photos laid out like a camera card."""
    card = tmp_path / "card" / "DCIM" / "100RECNX"
    card.mkdir(parents=True)
    sources = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[:3]
    for src in sources:
        shutil.copy2(src, card / src.name)
    yield tmp_path / "card"
