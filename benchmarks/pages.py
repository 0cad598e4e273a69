"""The benchmarks page of the docs (docs/benchmarks.md), rendered from benchmarks/results/*.json by each benchmark's
own `markdown()` (the same function that wrote its results file): figures are never copied by hand, and a test
fails when the page and the JSON differ (`make cli-reference` makes it again).

    python -m benchmarks.pages > docs/benchmarks.md
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: (results file, module whose markdown() renders it, the command that measures it again)
PAGES: tuple[tuple[str, str, str], ...] = (
    ("latest.json", "benchmarks.suite", "make bench"),
    ("camera_trap_accuracy.json", "benchmarks.camera_trap_accuracy", "make accuracy"),
    ("classifier.json", "benchmarks.classifier", "make classifier-bench"),
    ("sparse.json", "benchmarks.sparse", "python -m benchmarks.sparse"),
    ("big_card.json", "benchmarks.big_card", "python -m benchmarks.big_card"),
    ("megadetector_cpu.json", "benchmarks.megadetector_cpu", "make bench-md"),
    ("megadetector_v6.json", "benchmarks.megadetector_v6", "make bench-md6"),
    ("video.json", "benchmarks.video", "make video-bench"),
    ("kill_soak.json", "benchmarks.kill_soak", "make kill-soak"),
    ("alerts.json", "benchmarks.alerts", "make alerts-bench"),
    ("aarch64_emulation.json", "benchmarks.aarch64_emulation", "make pi-emulation"),
    ("mutation.json", "benchmarks.mutation", "make mutate"),
)

INTRO = """# Benchmarks

Each section below is rendered from a results file in `benchmarks/results/` by the benchmark that wrote it, with
the machine and the date of its run (`python -m benchmarks.pages`; a test fails when this page and the results
differ). Speed figures come from this project's 2-core x86 VM unless a section says otherwise, which is noisy: the
same measurement moves by about 20% between days, so compare rows of one run.

## Not measured yet

- **GPUs**: no CUDA or TensorRT row: the execution providers are implemented and fall back to the CPU with a log
  line, but no GPU was available to the runs below.
- **A real Raspberry Pi or Jetson**: the Pi path is checked for correctness under aarch64 emulation (below), not
  timed on a Pi.
- **Accuracy**: the sample photos carry MegaDetector v5a's boxes, so the accuracy sections measure agreement
  with MDv5a, not accuracy against people's labels.
"""


def _demote(markdown: str) -> str:
    """Headings one level down, so each results page is one section of this one."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def page() -> str:
    sections = [INTRO]
    for results, module_name, command in PAGES:
        path = RESULTS / results
        if not path.is_file():
            continue
        render = importlib.import_module(module_name).markdown
        body = _demote(render(json.loads(path.read_text())).strip())
        sections.append(f"{body}\n\n*From `benchmarks/results/{results}`; measured again by `{command}`.*\n")
    return "\n".join(sections)


if __name__ == "__main__":
    print(page(), end="")
