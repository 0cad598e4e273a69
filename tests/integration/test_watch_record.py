"""One record from the detector to every output: `watch --once` and `detect` find the same boxes in the same photos,
and the daemon writes each photo's outputs once (its sidecar is rendered from the journal, not written by processing
and then again by the renderer)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from andi_edge.daemon.service import RunOptions, WatchService
from andi_edge.pipeline import plan_pipeline
from andi_edge.runtime.detector import Detector
from andi_edge.settings import load_watch_config
from andi_edge.sinks import atomic
from tests.integration.cli_runner import run_cli

#: photos from several sets, each in a folder of its own: one camera each, so no photo's event grows with another's
SETS = ("lila_md_testset", "serengeti_S1_D04_R6_sequence", "md_hard_cases", "peru_sdzg2", "burrowing_owl")


def _photos(photos_dir: Path) -> list[Path]:
    chosen = []
    for name in SETS:
        found = sorted(p for p in (photos_dir / name).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        chosen.extend(found[:2])
    assert len(chosen) >= 8, "the sample photos of ../shared"
    return chosen


class _CountingOs:
    """The ``os`` module as ``sinks.atomic`` sees it, with its renames counted on their way."""

    def __init__(self, replace: Any) -> None:
        self.replace = replace

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _detections(entry: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (d["category"], abs(d["conf"]), tuple(d["bbox"]), tuple(map(tuple, d.get("classifications") or ())))
        for d in entry.get("detections") or ()
    ]


def test_watch_and_detect_give_the_same_boxes_and_each_output_is_written_once(
    tmp_path: Path, photos_dir: Path, model_320: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon runs in this process, so that every file that lands in the outputs (an atomic write's rename onto
    its final name) is counted: nothing is mocked, the renames are only counted on their way."""
    card = tmp_path / "card"
    for i, photo in enumerate(_photos(photos_dir)):
        target = card / f"CAM{i:02d}" / photo.name
        target.parent.mkdir(parents=True)
        shutil.copy2(photo, target)
    out = tmp_path / "out"
    config = load_watch_config(
        None, {"watch": str(card), "model": str(model_320), "output": str(out), "outputs.crop_threshold": 0.2}
    )
    landed: Counter[str] = Counter()
    real_replace = os.replace

    def counted_replace(src: str | Path, dst: str | Path) -> None:
        landed[str(dst)] += 1
        real_replace(src, dst)

    monkeypatch.setattr(atomic, "os", _CountingOs(counted_replace))
    plan = plan_pipeline(config.pipeline, 0, ())
    service = WatchService(
        config=config,
        detector=Detector(model_320),
        pipeline=plan.settings,
        state_dir=tmp_path / "state",
        options=RunOptions(once=True),
    )
    assert service.run() == 0
    monkeypatch.undo()

    detected = run_cli("detect", card, "--model", model_320, "-o", tmp_path / "detect.json")
    assert detected.returncode == 0, detected.stderr
    by_detect = {e["file"]: e for e in json.loads((tmp_path / "detect.json").read_text())["images"]}
    by_watch = {e["file"]: e for e in json.loads((out / "local" / "megadetector_results.json").read_text())["images"]}
    assert set(by_watch) == set(by_detect) and len(by_watch) >= 8
    assert sum(len(_detections(e)) for e in by_watch.values()) > 0
    for name, entry in by_watch.items():
        assert _detections(entry) == _detections(by_detect[name]), name
        assert (entry["width"], entry["height"]) == (by_detect[name]["width"], by_detect[name]["height"])

    sidecars = sorted(p for p in (out / "local").rglob("*.json") if p.name != "megadetector_results.json")
    crops = list((out / "local" / "crops").rglob("*.jpg"))
    assert len(sidecars) == len(by_watch) and crops
    for output in [*sidecars, *crops]:
        assert landed[str(output)] == 1, f"{output} written {landed[str(output)]} times"
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["andi_edge"]["model_sha256"] and "rewritten" not in sidecar["andi_edge"]
