"""What benchmark scripts share: where the repository, the sample data and the results are, and the command."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def stamped(result: dict[str, Any], machine: str | None = None) -> dict[str, Any]:
    """The result with the date of the run and the machine it ran on."""
    return result | {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine or f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def matrix_units() -> str:
    """Which of the CPU's int8/bf16 instruction sets a run may use (VNNI, AVX512-BF16, AMX)."""
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    found = [f for f in wanted if f in flags]
    return ", ".join(found) if found else "none of VNNI, AVX512-BF16, AMX"


def cpu_machine() -> str:
    """The machine with its CPU's name: where a result depends on the CPU's instruction sets."""
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu_name()}), Python {platform.python_version()}"


def save(name: str, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """results/NAME.json, and results/NAME.md rendered from it by the benchmark's own ``markdown()``."""
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
