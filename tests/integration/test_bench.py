"""``andi-edge bench`` reports what it claims to (structure and accuracy logic; speed is not asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.cli_runner import run_cli


def test_model_only(tmp_path: Path, model_320: Path) -> None:
    out = tmp_path / "b.json"
    proc = run_cli("bench", "--model", model_320, "--runs", "1", "--warmup", "1", "-o", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert "photos" not in report
    stats = report["model_only"]["inference_ms"]
    assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["p99.9"] <= stats["max"]
    assert report["model"]["model_sha256"] and report["model"]["model_size_bytes"] > 1_000_000
    assert report["machine"]["cpus_available"] >= 1 and "simd" in report["machine"]
    assert report["cold_start_ms"]["session_create"] > 0 and report["peak_rss_mb"] > 0
    assert "inference (synthetic input)" in proc.stdout


def test_real_photos_and_compare(tmp_path: Path, model_320: Path, photos_dir: Path, weights_path: Path) -> None:
    smaller = tmp_path / "n256.onnx"
    assert run_cli("export", weights_path, "--imgsz", "256", "-o", smaller).returncode == 0
    out = tmp_path / "b.json"
    # small, distant animals: where a smaller input visibly loses boxes (on large close-ups it agrees exactly)
    photos = photos_dir / "serengeti_S1_D04_R6_sequence"
    proc = run_cli(
        "bench",
        "-m",
        model_320,
        "--images",
        photos,
        "--runs",
        "1",
        "--warmup",
        "1",
        "--compare",
        model_320,
        "--compare",
        smaller,
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    run = report["photos"]
    assert run["photos"] == 8 and run["failures"] == 0
    assert set(run["stage_ms"]) == {"read", "decode", "letterbox", "inference", "postprocess", "write"}
    assert run["end_to_end_ms"]["n"] == 8
    throughput = run["throughput_photos_per_s"]
    assert throughput["pipeline_limit"] == min(throughput["decode_only_all_cores"], throughput["inference_only"])
    same, other = report["compare"]
    assert same["accuracy"]["map50"] == 1.0 and same["accuracy"]["recall_at_typical"] == 1.0
    assert same["accuracy"]["reference_boxes"] >= 3
    assert other["accuracy"]["map50"] < 1.0, "a 256 px model does not reproduce the 320 px model exactly"
    assert "against this model's boxes" in proc.stdout


def test_bench_mistakes(tmp_path: Path, model_320: Path) -> None:
    proc = run_cli("bench", "-m", model_320, "--compare", model_320)
    assert proc.returncode == 2 and "--compare needs --images" in proc.stderr
    proc = run_cli("bench", "-m", model_320, "--images", tmp_path)
    assert proc.returncode == 2 and "no photos" in proc.stderr
