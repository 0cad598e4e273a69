"""The device side runs with torch, torchvision, ultralytics and onnx unimportable, and never imports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "torchvision", "ultralytics", "onnx")

SCRIPT = """
import importlib.abc, json, sys

BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the runtime must not need it")
        return None

sys.meta_path.insert(0, Block())
import andi_edge
import andi_edge.cli
after_import = sorted(m for m in ("onnxruntime", "cv2", "numpy") if m in sys.modules)
from andi_edge.cli import main
detect_code = main(["detect", sys.argv[1], "--model", sys.argv[2], "-o", sys.argv[3], "--quiet"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith("andi_edge.toolchain"))
export_code = main(["export", "whatever.pt", "-o", sys.argv[3] + ".onnx"])
print(json.dumps({{"detect": detect_code, "export": export_code, "loaded": loaded, "after_import": after_import}}))
"""


def test_runtime_runs_without_torch(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT.format(blocked=BLOCKED),
            str(photos_dir / "ecoassist_md_examples"),
            str(model_320),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["detect"] == 0
    assert report["loaded"] == []
    assert report["after_import"] == [], "importing andi_edge must not load heavy libraries"
    # the toolchain command explains what to install instead of crashing
    assert report["export"] == 5 and "pip install 'andi-edge[toolchain]'" in proc.stderr
    assert len(json.loads(out.read_text())["images"]) == 5
