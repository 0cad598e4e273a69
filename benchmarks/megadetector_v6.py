"""MegaDetector v6's layouts on a CPU: andi-edge against Ultralytics' own pipeline, on the same photos.

MegaDetector v6 (Pytorch-Wildlife) ships Ultralytics models (the registry's ``md-v6-*``): YOLOv9-c and -e, YOLOv10
compact (n) and extra (x), RT-DETR-l, all at 640 px. Their weights cannot be downloaded here, so each layout is built
from Ultralytics' own yaml with 3 classes, random weights and BatchNorm statistics measured on real photos, and
saved as Ultralytics' trainer saves a checkpoint (``tests/architectures.py``): the cost is the real one, the boxes
are not animals.

Pipelines, alternating in each round, each a whole command from a cold start:

- Ultralytics' ``predict`` (its defaults: PyTorch fp32 on the CPU, 640 px square letterbox, RT-DETR stretched to
  the square, its NMS with IoU 0.7; YOLOv10 with ``nms=False``: its NMS-free one-to-one head, as andi-edge runs
  it, where Ultralytics' default is NMS over the one-to-many head), with MegaDetector's confidence floor for
  these models (0.05) and 300 boxes;
- ``andi-edge detect`` on the checkpoint exported at 640 px, fp32 (ONNX Runtime), the same floor, IoU 0.7 and
  300 boxes, full decode (Ultralytics decodes in full too).

Measured: seconds per photo (the command's wall time less a one-photo run's, over the photos less one), peak RSS,
cold start, and box parity against Ultralytics' output: matched when the same category, every coordinate within
1 px at the photo's scale and the confidence within 0.01, and found at IoU 0.5 for boxes at >= 0.2. The same
input tensor through the PyTorch and ONNX models is checked in the suite (tests/integration/test_architectures.py).

Run: make bench-md6 (about 15 minutes on 2 cores). -> results/megadetector_v6.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import CLI, REPO, cpu_machine, matrix_units, save, stamped
from benchmarks.megadetector_cpu import (
    boxes_of,
    iou_match,
    log,
    match,
    photo_size,
    sample_photos,
    timed,
)

#: registry name -> the Ultralytics yaml its layout is built from
LAYOUTS = {
    "md-v6-yolov9-c": "yolov9c.yaml",
    "md-v6-yolov9-e": "yolov9e.yaml",
    "md-v6-yolov10-c": "yolov10n.yaml",
    "md-v6-yolov10-e": "yolov10x.yaml",
    "md-v6-rtdetr-c": "rtdetr-l.yaml",
}
IMGSZ = 640
CONF = 0.05  # the registry's conservative threshold for these models
IOU = 0.7  # Ultralytics' default
MAX_DETECTIONS = 300
CALIBRATION_PHOTOS = 6


def upstream_predict(checkpoint: Path, folder: Path, out: Path) -> None:
    """Ultralytics' own pipeline over a folder; its boxes written as andi-edge's batch file writes them
    (``images[].detections[]``: category from 1, conf, normalised x, y, w, h)."""
    from ultralytics.models import RTDETR, YOLO

    model: Any = RTDETR(str(checkpoint)) if "rtdetr" in checkpoint.name else YOLO(str(checkpoint))
    # YOLOv10: its NMS-free one-to-one head, as andi-edge runs it (Ultralytics' default is NMS over the other one)
    nms_free = {"nms": False} if "yolov10" in checkpoint.name else {}
    images = []
    for result in model.predict(
        source=str(folder), imgsz=IMGSZ, conf=CONF, iou=IOU, max_det=MAX_DETECTIONS, device="cpu", stream=True,
        verbose=False, save=False, **nms_free,
    ):  # fmt: skip
        height, width = result.orig_shape
        detections = [
            {
                "category": str(int(cls) + 1),
                "conf": float(conf),
                "bbox": [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height],
            }
            for (x0, y0, x1, y1), conf, cls in zip(
                result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist(), strict=True
            )
        ]
        images.append({"file": Path(result.path).name, "detections": detections})
    out.write_text(json.dumps({"images": images}))


def commands(checkpoint: Path, model: Path) -> dict[str, Callable[[Path, Path], list[str | Path]]]:
    """pipeline name -> the whole command that runs it over (photos folder, output file)."""

    def upstream(src: Path, out: Path) -> list[str | Path]:
        return [sys.executable, "-m", "benchmarks.megadetector_v6", "--upstream", checkpoint, src, out]

    def andi(src: Path, out: Path) -> list[str | Path]:
        return [CLI, "detect", src, "--model", model, "-o", out, "--quiet", "--full-decode", "--conf", str(CONF),
                "--iou", str(IOU), "--max-det", str(MAX_DETECTIONS)]  # fmt: skip

    return {"Ultralytics (PyTorch fp32)": upstream, "andi-edge fp32 (ONNX Runtime)": andi}


def bench_layout(
    work: Path, name: str, photos: list[Path], rounds: int, calibration: list[Any]
) -> list[dict[str, Any]]:
    """One MDv6 layout: its checkpoint and export, both pipelines in alternating rounds, the rows."""
    from tests.architectures import ultralytics_checkpoint

    yaml_name = LAYOUTS[name]
    checkpoint, model = work / yaml_name.replace(".yaml", ".pt"), work / yaml_name.replace(".yaml", ".onnx")
    log(f"{name}: {yaml_name}, random weights, calibrated BatchNorm; exporting at {IMGSZ} px")
    ultralytics_checkpoint(yaml_name, checkpoint, calibration)
    subprocess.run([CLI, "export", checkpoint, "--imgsz", str(IMGSZ), "-o", model], check=True, capture_output=True)
    pipelines = commands(checkpoint, model)
    folder, one = work / "photos", work / "one"
    measured: dict[str, dict[str, list[float]]] = {p: {} for p in pipelines}
    outputs: dict[str, Path] = {}
    for round_number in range(rounds):
        for pipeline in list(pipelines) if round_number % 2 == 0 else list(reversed(pipelines)):
            cold = timed(pipelines[pipeline](one, work / "cold.json"), cwd=REPO)
            outputs[pipeline] = work / f"{name}-{len(outputs)}.json"
            whole = timed(pipelines[pipeline](folder, outputs[pipeline]), cwd=REPO)
            per_photo = (whole["wall_s"] - cold["wall_s"]) / (len(photos) - 1)
            for key, value in (("per_photo_s", per_photo), ("cold_start_s", cold["wall_s"]),
                               ("peak_rss_mb", whole["peak_rss_mb"])):  # fmt: skip
                measured[pipeline].setdefault(key, []).append(value)
    sizes = {p.name: photo_size(p) for p in photos}
    upstream, ours = (boxes_of(outputs[p]) for p in pipelines)
    matched = [match(upstream[k], ours.get(k, []), *sizes[k]) for k in upstream]
    found = [iou_match(upstream[k], ours.get(k, []), 0.5, 0.2) for k in upstream]
    rows: list[dict[str, Any]] = []
    for pipeline in pipelines:
        row: dict[str, Any] = {
            "layout": name,
            "yaml": yaml_name,
            "pipeline": pipeline,
            "per_photo_s": round(float(np.median(measured[pipeline]["per_photo_s"])), 3),
            "peak_rss_mb": round(max(measured[pipeline]["peak_rss_mb"])),
            "cold_start_s": round(float(np.median(measured[pipeline]["cold_start_s"])), 1),
            "boxes": sum(len(v) for v in boxes_of(outputs[pipeline]).values()),
        }
        if rows:  # andi-edge, against Ultralytics
            row["upstream_matched"] = f"{sum(m for m, _ in matched)}/{sum(n for _, n in matched)}"
            row["upstream_found_iou_0.5_at_0.2"] = f"{sum(m for m, _ in found)}/{sum(n for _, n in found)}"
            row["speed_vs_upstream"] = round(rows[0]["per_photo_s"] / row["per_photo_s"], 2)
        rows.append(row)
        log(f"{row}")
    return rows


def run(work: Path, count: int, rounds: int, layouts: list[str]) -> dict[str, Any]:
    import torch

    from tests.architectures import letterboxed

    photos = sample_photos(count)
    (work / "photos").mkdir()
    (work / "one").mkdir()
    for path in photos:
        shutil.copyfile(path, work / "photos" / path.name)
    shutil.copyfile(photos[0], work / "one" / photos[0].name)
    torch.set_num_threads(os.cpu_count() or 1)
    calibration = letterboxed(photos[:CALIBRATION_PHOTOS], IMGSZ)
    rows = [row for name in layouts for row in bench_layout(work, name, photos, rounds, calibration)]
    return {"photos": len(photos), "rounds": rounds, "imgsz": IMGSZ, "cpu_matrix_units": matrix_units(),
            "rows": rows}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    """megadetector_v6.md, from the JSON result (also rendered into the docs by benchmarks/pages.py)."""
    lines = [
        "# MegaDetector v6 layouts on a CPU: against Ultralytics' own pipeline",
        "",
        f"{result['date']}, {result['machine']}; matrix instructions: {result['cpu_matrix_units']}. "
        f"`benchmarks/megadetector_v6.py` (see its docstring): each MDv6 layout from Ultralytics' yaml (3 classes, "
        f"random weights, calibrated BatchNorm), {result['photos']} sample photos, {result['rounds']} alternating "
        f"rounds of whole commands, {result['imgsz']} px square, confidence >= {CONF}, IoU {IOU}, 300 boxes.",
        "",
        "| MDv6 layout | pipeline | s / photo | vs Ultralytics | 10,000 photos | peak RSS | cold start | boxes "
        "| Ultralytics' boxes matched (1 px, 0.01) | found at IoU 0.5 (>= 0.2) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['layout']} ({row['yaml']}) | {row['pipeline']} | {row['per_photo_s']:.3f} | "
            f"{row.get('speed_vs_upstream', 1.0):.2f}x | {10000 * row['per_photo_s'] / 3600:.1f} h | "
            f"{row['peak_rss_mb']:,} MB | {row['cold_start_s']:.1f} s | {row['boxes']} | "
            f"{row.get('upstream_matched', '-')} | {row.get('upstream_found_iou_0.5_at_0.2', '-')} |"
        )
    lines += [
        "",
        "Matched boxes compare whole pipelines: each decodes the JPEG itself (Ultralytics with OpenCV, andi-edge with "
        "libjpeg-turbo through Pillow) and resizes it (RT-DETR stretched to the square, as Ultralytics feeds it). "
        "The suite checks the parts: each photo becomes the tensor Ultralytics' predictor makes of the same pixels, "
        "and that tensor gives the PyTorch model's boxes (tests/integration/test_architectures.py). Not measured: "
        "a GPU; INT8 and bf16 of these layouts; MegaDetector v6's real weights (the cost is theirs, the boxes are not "
        "animals).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--upstream":
        upstream_predict(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="sample photos (default 24)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="registry names, comma-separated")
    args = parser.parse_args()
    layouts = [name for name in args.layouts.split(",") if name]
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise SystemExit(f"unknown layouts {', '.join(unknown)} (known: {', '.join(LAYOUTS)})")
    with tempfile.TemporaryDirectory(prefix="andi-bench-md6-") as tmp:
        result = run(Path(tmp), args.photos, args.rounds, layouts)
    result = stamped(result, cpu_machine())
    save("megadetector_v6", result, markdown)


if __name__ == "__main__":
    main()
