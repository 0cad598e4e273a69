"""Labelled crops from the real photos in ../shared, for a small species classifier trained in the suite.

- ``burrowing owl``: the Reconyx frames of the burrowing-owl project, labelled by folder (image-level labels; the
  detector's boxes are the crops), each frame's site (RanchoJamul, Otay, RJER; the short-named frames as one
  more) as its location;
- ``squirrel``: the YOLO boxes of the squirrel sequence (its class ``animal`` renamed), one location.

Small and honest: two labels, one of them from a single sequence, so a split by location cannot put squirrels
in both training and test; tests that need both split by class.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from andi_edge.runtime.classifier_card import CLASSIFIER_CARD_KEY

_SITE = re.compile(r"^BUOW_\d+_MAP_([A-Za-z]+)_")
OWL = "burrowing owl"
SQUIRREL = "squirrel"


def owl_site(file_name: str) -> str:
    match = _SITE.match(file_name)
    return match.group(1) if match else "buow-short-names"


def write_owl_labels(photos_dir: Path, out: Path) -> Path:
    """A labels CSV (file,label,location), files relative to ``photos_dir``."""
    rows = [
        (f"burrowing_owl/{p.name}", OWL, owl_site(p.name))
        for p in sorted((photos_dir / "burrowing_owl").iterdir())
        if p.suffix.upper() == ".JPG"
    ]
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "location"])
        writer.writerows(rows)
    return out


def dataset_args(photos_dir: Path, labels_csv: Path, detector: Path, out: Path, by: str = "class") -> list[str]:
    """``andi-edge classifier dataset`` arguments for owls (detector crops) and squirrels (YOLO boxes)."""
    return [
        "classifier", "dataset",
        "--labels", str(labels_csv), "--images", str(photos_dir), "--detector", str(detector), "--conf", "0.2",
        "--boxes", str(photos_dir / "squirrels_yolo"), "--rename", f"animal={SQUIRREL}",
        "--by", by, "--seed", "0", "-o", str(out),
    ]  # fmt: skip


def mean_colour_classifier(path: Path, with_card: bool = True) -> Path:
    """A real ONNX classifier with a dynamic batch and no training: the crop's mean colour (32 px), as the logits
    of three labels. ``with_card``: its card inside (else it needs a YAML card beside it)."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"]),
        ],
        "mean_colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    card = {"labels": ["red", "green", "blue"], "input_size": 32, "output": "logits"}
    if with_card:
        helper.set_model_props(model, {CLASSIFIER_CARD_KEY: json.dumps(card)})
    onnx.save(model, str(path))
    return path
