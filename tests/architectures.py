"""Architecture-faithful checkpoints with random weights, built from the upstream model definitions.

No weights but ``../shared/models/yolov5n.pt`` exist here, so the other architectures (classic YOLOv5 s-x and the
P6 layout of MegaDetector v5, YOLOv9, the NMS-free YOLOv10 of MDv6-yolov10, RT-DETR) are built from their own
code with random weights and saved the way their projects save them:

- classic YOLOv5 (incl. P6): the ``yolov5`` pip package's model yamls and classes (installed ``--no-deps`` by the
  Makefile, test/dev only), pickled under ``models.yolo`` / ``models.common`` as the original repository's
  ``train.py`` pickles them (MegaDetector v5 checkpoints are such pickles);
- Ultralytics models: ``ultralytics.nn.tasks`` from the yamls Ultralytics ships, saved as its trainer saves them.

The one stand-in: the ``yolov5`` package imports ``pkg_resources`` for ``parse_version`` alone, which setuptools
81+ no longer ships; ``packaging``'s ``parse`` is the same function and is put in its place when it is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from andi_edge.config import DEFAULT_MAX_IMAGE_PIXELS
from andi_edge.runtime.decode import decode_photo
from andi_edge.runtime.letterbox import LetterboxGeometry, letterbox_rgb, to_input_tensor

MD_CLASSES = ("animal", "person", "vehicle")


def _yolov5_package() -> types.ModuleType:
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    return importlib.import_module("yolov5")


def yolov5_yaml(name: str) -> Path:
    """``yolov5s`` -> the package's yolov5s.yaml; ``yolov5n6`` (P6) -> models/hub/yolov5n6.yaml."""
    root = Path(_yolov5_package().__file__ or "").parent / "models"
    for candidate in (root / f"{name}.yaml", root / "hub" / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the yolov5 package has no {name}.yaml")


@contextlib.contextmanager
def _pickled_as_original_repo(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """While saving, the package's classes say they live in ``models.yolo`` / ``models.common``."""
    renamed: list[tuple[type, str]] = []
    saved = {name: sys.modules.get(name) for name in ("models", *modules)}
    sys.modules["models"] = types.ModuleType("models")
    for original_name, module in modules.items():
        sys.modules[original_name] = module
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                renamed.append((value, value.__module__))
                value.__module__ = original_name
    try:
        yield
    finally:
        for cls, name in renamed:
            cls.__module__ = name
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def classic_checkpoint(
    name: str, out: Path, photos: list[np.ndarray], classes: tuple[str, ...] = MD_CLASSES, seed: int = 0
) -> Any:
    """A classic YOLOv5 checkpoint of architecture ``name`` (yolov5s, yolov5x6...) with random weights.

    Returns the upstream model, fused and in eval mode, for reference inference."""
    _yolov5_package()
    yolo = importlib.import_module("yolov5.models.yolo")
    common = importlib.import_module("yolov5.models.common")
    torch.manual_seed(seed)
    model = yolo.DetectionModel(str(yolov5_yaml(name)), ch=3, nc=len(classes))
    _calibrate_batchnorm(model, photos)
    model.names = list(classes)
    checkpoint = {"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None, "optimizer": None}
    with _pickled_as_original_repo({"models.yolo": yolo, "models.common": common}):
        torch.save(checkpoint, out)
    return model.fuse()  # YOLOv5's own detect.py infers on the fused model (DetectMultiBackend)


def ultralytics_checkpoint(
    yaml_name: str, out: Path, photos: list[np.ndarray], classes: tuple[str, ...] = MD_CLASSES, seed: int = 0
) -> Any:
    """An Ultralytics checkpoint (yolov9t.yaml, yolov10n.yaml, rtdetr-l.yaml...) with random weights, saved as
    Ultralytics' trainer saves one. Returns the upstream model (eval mode)."""
    from ultralytics.nn.tasks import DetectionModel, RTDETRDetectionModel

    torch.manual_seed(seed)
    cls: Any = RTDETRDetectionModel if yaml_name.startswith("rtdetr") else DetectionModel
    model: Any = cls(yaml_name, nc=len(classes), verbose=False)
    _calibrate_batchnorm(model, photos)
    model.names = dict(enumerate(classes))
    model.args = {"imgsz": 640, "task": "detect"}
    torch.save({"model": model, "train_args": {"task": "detect"}, "epoch": -1, "date": None, "version": None}, out)
    head = model.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        head.end2end = True  # YOLOv10's NMS-free branch, as Ultralytics' exporter selects it (nms=False)
    return model.fuse(verbose=False)  # as Ultralytics' predictor infers (AutoBackend fuses)


def _calibrate_batchnorm(model: torch.nn.Module, photos: list[np.ndarray]) -> None:
    """BatchNorm statistics measured on real letterboxed photos, as a trained network's are.

    With the initial statistics (mean 0, variance 1) activations fade layer by layer and the deepest features no
    longer depend on the photo; measured statistics keep every level alive (and make BN folding a real test)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the photos
    model.eval()
    for norm in norms:
        norm.train()
    with torch.no_grad():
        for photo in photos:
            model(torch.from_numpy(photo))
    model.eval()


def letterboxed(paths: list[Path], imgsz: int) -> list[np.ndarray]:
    """Real photos as network inputs, by the runtime's own decode and letterbox."""
    tensors = []
    for path in paths:
        rgb = decode_photo(path.read_bytes(), max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, name=str(path)).rgb
        geometry = LetterboxGeometry.fit(rgb.shape[1], rgb.shape[0], imgsz, imgsz)
        tensors.append(to_input_tensor(letterbox_rgb(rgb, geometry)))
    return tensors
