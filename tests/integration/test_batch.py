"""``andi-edge batch``: both engines equal ``detect``; interrupted runs resume; a dead worker loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_runner import ANDI_EDGE, run_cli
from tests.integration.daemon_harness import wait_until


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Path:
    """A small archive of real photos in nested folders, with a corrupt and an empty file."""
    root = tmp_path_factory.mktemp("archive")
    for folder in ("ecoassist_md_examples", "lowres_trailcam", "edge_cases"):
        shutil.copytree(photos_dir / folder, root / "site_a" / folder, ignore=shutil.ignore_patterns("*.md", "*.json"))
    data = next((photos_dir / "burrowing_owl").glob("RCNX*.JPG")).read_bytes()
    (root / "site_b").mkdir()
    (root / "site_b" / "truncated.JPG").write_bytes(data[: len(data) // 4])
    (root / "site_b" / "empty.jpg").write_bytes(b"")
    return root


def _images(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["images"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def detect_reference(archive: Path, model_320: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "detect.json"
    assert run_cli("detect", archive, "-m", model_320, "-o", out, "-q").returncode == 0
    return out


@pytest.mark.parametrize(("engine", "workers"), [("local", 1), ("local", 2), ("ray", 2)])
def test_engines_give_the_same_results_as_detect(
    tmp_path: Path, archive: Path, model_320: Path, detect_reference: Path, engine: str, workers: int
) -> None:
    out = tmp_path / "results.json"
    proc = run_cli("batch", archive, "-m", model_320, "-o", out, "--engine", engine, "--workers", str(workers),
                   "--chunk-size", "3", env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{engine} engine, {workers} worker(s)" in proc.stdout and "2 failed" in proc.stdout
    assert _images(out) == _images(detect_reference)
    document = json.loads(out.read_text())
    assert document["info"]["format_version"] == "1.6" and document["info"]["andi_edge"]["engine"] == engine
    assert not out.with_name(out.name + ".parts").exists(), "shards are removed once the results are written"


def _start(args: list[str | Path]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(ANDI_EDGE), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


def _big_archive(tmp_path: Path, photos_dir: Path, n: int) -> Path:
    root = tmp_path / "big"
    pool = sorted((photos_dir / "peru_sdzg2").glob("*.JPG")) + sorted((photos_dir / "burrowing_owl").glob("*.JPG"))
    for i in range(n):  # past the pool's end, its photos again under other names
        src = pool[i % len(pool)]
        target = root / f"cam{i % 4}" / (src.name if i < len(pool) else f"again{i}_{src.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return root


def test_interrupted_run_resumes_and_processes_each_photo_once(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    root = _big_archive(tmp_path, photos_dir, 60)
    out = tmp_path / "results.json"
    parts = out.with_name(out.name + ".parts")
    proc = _start(["batch", root, "-m", model_320, "-o", out, "--workers", "1", "--chunk-size", "4", "-q"])
    wait_until(lambda: len(list(parts.glob("part-*.json"))) >= 3, 120, "a few finished chunks")
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, workers included, with no chance to clean up
    proc.wait(timeout=30)
    assert not out.exists()
    saved = sum(len(json.loads(p.read_text())["entries"]) for p in parts.glob("part-*.json"))
    assert 0 < saved < 60
    again = run_cli("batch", root, "-m", model_320, "-o", out, "--workers", "2", "--chunk-size", "4")
    assert again.returncode == 0, again.stderr
    assert f"60 photos: {60 - saved} processed" in again.stdout
    assert f"{saved} from an interrupted run" in again.stdout
    reference = tmp_path / "detect.json"
    assert run_cli("detect", root, "-m", model_320, "-o", reference, "-q").returncode == 0
    assert _images(out) == _images(reference)


def _interrupted(root: Path, out: Path, model: Path) -> int:
    """Start a batch and kill it once a few chunks are saved; how many photos its shards hold."""
    parts = out.with_name(out.name + ".parts")
    proc = _start(["batch", root, "-m", model, "-o", out, "--workers", "1", "--chunk-size", "4", "-q"])
    wait_until(lambda: len(list(parts.glob("part-*.json"))) >= 2, 120, "a few finished chunks")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return sum(len(json.loads(p.read_text())["entries"]) for p in parts.glob("part-*.json"))


def test_resuming_never_takes_another_folders_or_a_changed_files_results(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """Every card has a DCIM/100RECNX/IMG_0001.JPG: an interrupted `batch A -o r.json`, then `batch B -o r.json`,
    gave B's photos A's boxes and even A's photo sizes. And a file changed since it was processed is processed
    again."""
    a, b = tmp_path / "card_a", tmp_path / "card_b"
    pool = sorted((photos_dir / "peru_sdzg2").glob("*.JPG")) + sorted((photos_dir / "burrowing_owl").glob("*.JPG"))
    for card, photos in ((a, pool[:24]), (b, pool[24:48])):
        for i, src in enumerate(photos):
            target = card / "DCIM" / "100RECNX" / f"IMG_{i:04d}.JPG"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    out = tmp_path / "r.json"
    assert _interrupted(a, out, model_320) > 0
    again = run_cli("batch", b, "-m", model_320, "-o", out, "--workers", "2", "--chunk-size", "4")
    assert again.returncode == 0, again.stderr
    assert "24 photos: 24 processed" in again.stdout
    assert "its roots differ from this run's; starting anew" in again.stderr
    reference = tmp_path / "detect.json"
    assert run_cli("detect", b, "-m", model_320, "-o", reference, "-q").returncode == 0
    assert _images(out) == _images(reference)

    out.unlink()
    saved = _interrupted(a, out, model_320)
    parts = out.with_name(out.name + ".parts")
    done_files = [f for p in parts.glob("part-*.json") for f in json.loads(p.read_text())["entries"]]
    changed = a / done_files[0]
    shutil.copy2(pool[40], changed)  # another photo at the same name, processed before: its results are stale
    again = run_cli("batch", a, "-m", model_320, "-o", out, "--workers", "2", "--chunk-size", "4")
    assert again.returncode == 0, again.stderr
    assert f"{saved - 1} from an interrupted run" in again.stdout
    assert run_cli("detect", a, "-m", model_320, "-o", reference, "-q").returncode == 0
    assert _images(out) == _images(reference)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def test_a_worker_that_dies_is_replaced_and_its_photos_retried(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    # enough photos that the kill lands while chunks are still out (40 raced the kill on a loaded machine)
    root = _big_archive(tmp_path, photos_dir, 120)
    out = tmp_path / "results.json"
    parts = out.with_name(out.name + ".parts")
    proc = _start(["--log-level", "info", "batch", root, "-m", model_320, "-o", out, "--workers", "2",
                   "--chunk-size", "4", "-q"])  # fmt: skip
    wait_until(lambda: len(list(parts.glob("part-*.json"))) >= 1, 120, "workers busy")
    # multiprocessing's spawned workers run spawn_main; its resource tracker does not
    workers = [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) == 2, "the batch runs two worker processes"
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr.decode()
    assert "died" in stderr.decode() and "starting another" in stderr.decode()
    images = _images(out)
    assert len(images) == 120 and not [i for i in images if i.get("failure")], "every photo done after one retry"


def test_previous_results_are_reused_and_must_match(
    tmp_path: Path, archive: Path, model_320: Path, detect_reference: Path
) -> None:
    out = tmp_path / "results.json"
    proc = run_cli("batch", archive, "-m", model_320, "-o", out, "--previous-results", detect_reference)
    assert proc.returncode == 0, proc.stderr
    # the two failed photos are not reused: they are tried again
    assert "2 processed" in proc.stdout and "from --previous-results" in proc.stdout
    assert _images(out) == _images(detect_reference)
    other = tmp_path / "md.json"
    other.write_text(json.dumps({"info": {"format_version": "1.6"}, "detection_categories": {"1": "animal"},
                                 "images": []}))  # fmt: skip
    bad = run_cli("batch", archive, "-m", model_320, "-o", out, "--previous-results", other)
    assert bad.returncode == 2 and "categories" in bad.stderr
    bad = run_cli("batch", archive, "-m", model_320, "-o", tmp_path)
    assert bad.returncode == 2 and "is a folder" in bad.stderr and "Traceback" not in bad.stderr
