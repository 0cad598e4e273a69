"""What benchmark scripts share: where the repository, the sample data and the results are, and the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANDI_EDGE_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "data" / "camera_trap_images"
WEIGHTS = SHARED / "models" / "yolov5n.pt"
RESULTS = REPO / "benchmarks" / "results"
CLI = Path(sys.executable).with_name("andi-edge")


def cli(*args: str | Path) -> str:
    """Run ``andi-edge ARGS``; its stdout, or the end of its stderr as the reason the benchmark stops."""
    done = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"andi-edge {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done.stdout
