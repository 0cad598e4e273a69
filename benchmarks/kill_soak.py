"""The kill -9 soak with the classifier on: every photo exactly once, however often the daemon dies mid-batch.

A card of N real photos (the sample photos, each copy given other bytes after its JPEG end so no two are the
same photo), `andi-edge watch` with YOLOv5n at 320 px and a species classifier (MobileNetV3-small, random weights:
the crops, the batches and the cost are real; the species are not), killed with SIGKILL again and again. Each
kill is aimed inside a batch: the daemon is let make some progress, then killed at a moment the journal shows
photos claimed. After the kills, `watch --once` finishes the card, and the run is checked:

- the journal: every photo done, none failed (a kill is never a photo's fault: no photo may be given up on as
  "crashed" because kills kept landing on it);
- the outputs: one sidecar per photo, each photo once in the batch JSON, every crop a sidecar names on disk, no
  temporary file left, the card's files untouched.

Run: .venv/bin/python benchmarks/kill_soak.py [--photos 1000] [--kills 24] -> results/kill_soak.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import CLI, PHOTOS, RESULTS, WEIGHTS, cli

CONFIG = """
classifier:
  model: {classifier}
  min_conf: 0.1
  classes: [animal]
discovery:
  poll_interval_s: 0.3
  stable_s: 0.5
outputs:
  batch_json_interval_s: 1.0
  crop_threshold: 0.2
"""


def log(message: str) -> None:
    print(f"[kill-soak] {message}", flush=True)


def random_classifier(path: Path) -> Path:
    """MobileNetV3-small with random weights as an ONNX classifier with its card (two labels)."""
    import torch

    from andi_edge.runtime.classifier_card import ClassifierCard
    from andi_edge.toolchain.classifier.export import INPUT_NAME, OUTPUT_NAME, write_classifier_card
    from andi_edge.toolchain.classifier.train import build_model
    from andi_edge.toolchain.export import torch_to_onnx

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 2).eval()
    with torch.no_grad():
        torch_to_onnx(model, torch.zeros(2, 3, 224, 224), path, INPUT_NAME, OUTPUT_NAME, dynamic_batch=True)
    card = ClassifierCard(name="soak", labels=("species a", "species b"), architecture="mobilenet_v3_small")
    write_classifier_card(path, card)
    return path


def fill_card(card: Path, n: int) -> dict[str, str]:
    """N distinct photos in folders of 100, as a camera writes them; their sha256 by path."""
    pool = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"} and "edge" not in p.parts[-2])
    hashes = {}
    for i in range(n):
        rel = f"DCIM/{100 + i // 100}RECNX/IMG_{i:04d}.JPG"
        data = pool[i % len(pool)].read_bytes() + f"soak {i}".encode()  # after the JPEG's end: other bytes
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        (card / rel).write_bytes(data)
        hashes[rel] = hashlib.sha256(data).hexdigest()
    return hashes


def states(journal: Path) -> dict[str, int]:
    if not journal.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM photos GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def start(card: Path, out: Path, state: Path, model: Path, config: Path, logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as f:
        return subprocess.Popen(
            [str(CLI), "--log-level", "info", "watch", str(card), "--model", str(model), "--output", str(out),
             "--state", str(state), "--config", str(config)],
            stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip


def soak(workdir: Path, n: int, kills: int, seed: int) -> dict[str, Any]:
    model = workdir / "yolov5n-320.onnx"
    cli("export", WEIGHTS, "--imgsz", "320", "-o", model)
    classifier = random_classifier(workdir / "classifier.onnx")
    card, out, state = workdir / "card", workdir / "out", workdir / "state"
    card.mkdir()
    hashes = fill_card(card, n)
    config = workdir / "watch.yaml"
    config.write_text(CONFIG.format(classifier=classifier))
    logfile = workdir / "watch.log"
    journal = state / "journal.sqlite3"
    rng = random.Random(seed)
    landed: list[int] = []
    began = time.monotonic()
    while len(landed) < kills:
        proc = start(card, out, state, model, config, logfile)
        target = states(journal).get("done", 0) + rng.randint(5, 35)
        deadline = time.monotonic() + 120
        claimed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            counts = states(journal)
            claimed = counts.get("claimed", 0)
            if counts.get("done", 0) >= min(target, n) and claimed:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.02))
        proc.kill()
        proc.wait(timeout=30)
        landed.append(claimed)
        log(f"kill {len(landed)}: {states(journal)} ({claimed} claimed when aimed)")
        if states(journal).get("done", 0) >= n:
            raise SystemExit("the card finished before the kills did: use more photos")
    killed_s = time.monotonic() - began
    done = subprocess.run(
        [str(CLI), "watch", str(card), "--model", str(model), "--output", str(out), "--state", str(state),
         "--config", str(config), "--once"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"watch --once failed: {done.stderr[-2000:]}")
    return check(card, out, journal, hashes, logfile) | {
        "photos": n,
        "kills": len(landed),
        "kills_with_photos_claimed": sum(1 for c in landed if c),
        "claimed_at_kills": landed,
        "seconds_under_kills": round(killed_s, 1),
    }


def check(card: Path, out: Path, journal: Path, hashes: dict[str, str], logfile: Path) -> dict[str, Any]:
    counts = states(journal)
    with sqlite3.connect(journal) as db:
        failures = db.execute("SELECT rel_path, failure FROM photos WHERE state='failed'").fetchall()
        crashes = db.execute("SELECT COALESCE(SUM(crashes), 0) FROM photos").fetchone()[0]
    batch = json.loads((out / "local" / "megadetector_results.json").read_text())
    files = [image["file"] for image in batch["images"]]
    sidecars = [p for p in out.rglob("*.json") if p.name != "megadetector_results.json"]
    crops_named = [crop for p in sidecars for crop in json.loads(p.read_text())["andi_edge"]["crops"]]
    classified = sum(1 for image in batch["images"] for d in image.get("detections", []) if d.get("classifications"))
    problems = []
    if counts != {"done": len(hashes)}:
        problems.append(f"journal: {counts}, failures {failures[:3]}")
    if sorted(files) != sorted(hashes):
        problems.append(f"batch JSON: {len(files)} entries, {len(set(files))} distinct, {len(hashes)} photos")
    if len(sidecars) != len(hashes):
        problems.append(f"{len(sidecars)} sidecars for {len(hashes)} photos")
    missing = [c for c in crops_named if not (out / "local" / c).is_file()]
    if missing:
        problems.append(f"{len(missing)} crops named in sidecars are missing")
    if list(out.rglob("*.tmp")):
        problems.append("temporary files left behind")
    changed = [rel for rel, digest in hashes.items() if hashlib.sha256((card / rel).read_bytes()).hexdigest() != digest]
    if changed:
        problems.append(f"{len(changed)} originals changed")
    text = logfile.read_text()
    return {
        "exactly_once": not problems,
        "problems": problems,
        "journal": counts,
        "crashes_counted": int(crashes),
        "requeued_at_start": text.count("re-queued"),
        "sidecars": len(sidecars),
        "crops": len(crops_named),
        "classified_boxes": classified,
    }


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kill_soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "kill_soak.md").write_text(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """kill_soak.md, from the JSON result (also rendered into the docs by benchmarks/pages.py)."""
    verdict = "every photo exactly once" if result["exactly_once"] else "FAILED: " + "; ".join(result["problems"])
    lines = [
        "# kill -9 soak, classifier on",
        "",
        f"{result['date']}, {result['machine']}. `benchmarks/kill_soak.py` (see its docstring for the method).",
        "",
        "| photos | kills | kills with photos claimed | claims re-queued at start | crashes counted | sidecars | crops "
        "| classified boxes | result |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {result['photos']} | {result['kills']} | {result['kills_with_photos_claimed']} | "
        f"{result['requeued_at_start']} | {result['crashes_counted']} | {result['sidecars']} | {result['crops']} | "
        f"{result['classified_boxes']} | {verdict} |",
        "",
        "A kill counts as aimed inside a batch when the journal showed photos claimed at that moment. Each claim left "
        "by a kill is counted as a crash of its photo (journal schema 4); such a photo is processed alone next, so "
        "no photo reached `retry.max_crashes` here.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000, help="photos on the card (default 1000)")
    parser.add_argument("--kills", type=int, default=24, help="SIGKILLs while photos are claimed (default 24)")
    parser.add_argument("--seed", type=int, default=20261205, help="random seed of the kill moments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="andi-kill-soak-") as tmp:
        result = soak(Path(tmp), args.photos, args.kills, args.seed)
    result |= {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    write(result)
    log(json.dumps({k: v for k, v in result.items() if k != "claimed_at_kills"}))
    if not result["exactly_once"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
