"""What video costs on this machine (`make video-bench`, not in CI): whole `andi-edge detect` commands on clips made
from the sample photos, one clip a run, alternating nothing else.

- 20 s 1080p clips at 30 frames/s, H.264 (MP4) and MJPEG (AVI), at 1 frame a second, with YOLOv5n at 320 and 640
  px: seconds of video per second of wall time and clips per minute (the command's whole time: start-up, the
  decoder's process, decoding every frame, inferring the sampled ones, writing the results);
- a 10 s 4K (3840x2160) H.264 clip: the peak resident memory of the whole process tree (detect and its decoder);
- what the device install grows by: PyAV's wheel and its installed size.

Writes benchmarks/results/video.json and video.md (rendered into the docs by benchmarks/pages.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import PHOTOS, RESULTS, WEIGHTS, cli

SERENGETI = PHOTOS / "serengeti_S1_D04_R6_sequence"


def make_clip(path: Path, codec: str, seconds: int, rate: int, size: tuple[int, int]) -> Path:
    from tests.clips import encode

    return encode(path, sorted(SERENGETI.glob("*.JPG")), codec, seconds, rate, size)


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its descendants (kB)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            # children started by any thread (the daemon starts a clip's decoder from a decode worker thread)
            children = [
                c for task in Path(f"/proc/{current}/task").iterdir() for c in (task / "children").read_text().split()
            ]
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return total


def _peak(command: list[str]) -> tuple[float, int]:
    """Run a command to its end: its wall seconds and its process tree's peak RSS (kB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"{command[1]} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return time.perf_counter() - start, peak


def run_watch(clip: Path, model: Path, work: Path) -> dict[str, float]:
    """`watch --once` on a card holding one clip: the daemon's process tree's peak RSS (crops and sidecar too)."""
    card = work / "card" / "DCIM" / "100MEDIA"
    card.mkdir(parents=True)
    shutil.copy2(clip, card / clip.name)  # a copy: the daemon never follows a link out of its card
    cli_path = str(Path(sys.executable).with_name("andi-edge"))
    wall, peak = _peak(
        [cli_path, "watch", str(card.parent.parent), "-m", str(model), "-o", str(work / "out"), "--once"]
    )
    [entry] = json.loads((work / "out" / "local" / "megadetector_results.json").read_text())["images"]
    if "failure" in entry or not entry.get("frames_processed"):
        raise SystemExit(f"watch did not analyse the clip: {entry}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1), "frames": len(entry["frames_processed"])}


def run_detect(clip: Path, model: Path, out: Path) -> dict[str, float]:
    """One whole `detect` on one clip: wall seconds and the process tree's peak RSS."""
    cli_path = str(Path(sys.executable).with_name("andi-edge"))
    wall, peak = _peak([cli_path, "detect", str(clip), "-m", str(model), "-o", str(out)])
    entry = json.loads(out.read_text())["images"][0]
    if "failure" in entry:
        raise SystemExit(f"{clip}: {entry['failure']}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1), "frames": len(entry["frames_processed"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2, help="runs of each row (the best is reported)")
    args = parser.parse_args()
    from andi_edge.bench import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {}
        for size in (320, 640):
            models[size] = work / f"yolov5n-{size}.onnx"
            cli("export", WEIGHTS, "--imgsz", str(size), "-o", models[size])
        clips = {
            "1080p H.264 (MP4)": make_clip(work / "h264.mp4", "libx264", 20, 30, (1920, 1080)),
            "1080p MJPEG (AVI)": make_clip(work / "mjpeg.avi", "mjpeg", 20, 30, (1920, 1080)),
        }
        rows = []
        for name, clip in clips.items():
            for size, model in models.items():
                runs = [run_detect(clip, model, work / "out.json") for _ in range(args.runs)]
                best = min(runs, key=lambda r: r["wall_s"])
                rows.append(
                    {
                        "clip": name,
                        "input_px": size,
                        "video_s": 20,
                        "frames_analysed": best["frames"],
                        "wall_s": best["wall_s"],
                        "video_s_per_s": round(20 / best["wall_s"], 2),
                        "clips_per_minute": round(60 / best["wall_s"], 1),
                        "peak_rss_mb": best["peak_rss_mb"],
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
        four_k = make_clip(work / "4k.mp4", "libx264", 10, 30, (3840, 2160))
        memory = run_detect(four_k, models[640], work / "out.json")
        daemon = run_watch(four_k, models[640], work / "watch")
    import av

    with tempfile.TemporaryDirectory() as tmp:  # the wheel a device downloads (the registry is reachable here)
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, f"av=={av.__version__}"],
            capture_output=True,
            check=False,
        )
        wheel_mb = (
            next((p.stat().st_size / 2**20 for p in Path(tmp).glob("av-*.whl")), None) if not got.returncode else None
        )
    site = Path(av.__file__).parent
    installed = sum(f.stat().st_size for d in (site, site.with_name("av.libs")) if d.exists() for f in d.rglob("*"))
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "av_version": av.__version__,
        "av_installed_mb": round(installed / 2**20, 1),
        "av_wheel_mb": None if wheel_mb is None else round(wheel_mb, 1),
        "sample_fps": 1.0,
        "rows": rows,
        "four_k": {"clip": "10 s 3840x2160 H.264, 640 px", **memory},
        "four_k_watch": daemon,
        "memory_max_mb": 1024,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "video.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "video.md").write_text(markdown(result))
    print(markdown(result), end="")


def markdown(result: dict[str, Any]) -> str:
    """video.md, from the JSON result (also rendered into the docs by benchmarks/pages.py)."""
    m = result["machine"]
    lines = [
        "# Video clips",
        "",
        f"{result['date']}, {m.get('cpu_model', '?')}, {m.get('cpus_available', '?')} cores; PyAV "
        f"{result['av_version']}. Whole `andi-edge detect` commands on one clip each (start-up, the decoder's "
        f"process, decoding every frame, inferring {result['sample_fps']:g} frame a second, writing the results); "
        "clips made from the sample photos by `benchmarks/video.py`; the best of the runs.",
        "",
        "| clip (20 s, 30 frames/s) | input | frames analysed | wall s | seconds of video per second | clips per "
        "minute | peak RSS (detect + decoder) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['clip']} | {r['input_px']} px | {r['frames_analysed']} | {r['wall_s']:.2f} | "
            f"{r['video_s_per_s']:.2f} | {r['clips_per_minute']:.1f} | {r['peak_rss_mb']:.0f} MB |"
        )
    k = result["four_k"]
    half = result["memory_max_mb"] / 2
    verdict = "within" if k["peak_rss_mb"] <= half else "over"
    lines += [
        "",
        f"**Memory**: {k['clip']}: peak {k['peak_rss_mb']:.0f} MB for `detect` and its decoder together, {verdict} "
        f"half of the card unit's MemoryMax ({result['memory_max_mb']} MB)"
        + (
            f"; `watch --once` on a card holding it (crops and sidecar written too) peaks at "
            f"{result['four_k_watch']['peak_rss_mb']:.0f} MB"
            if "four_k_watch" in result
            else ""
        )
        + ". Frames are scaled to `video.max_long_side_px` (1280) as they are decoded and only the poster frame "
        "is kept.",
        "",
        f"**Install size**: PyAV {result['av_version']} with FFmpeg inside adds {result['av_installed_mb']:.0f} MB "
        + (f"({result['av_wheel_mb']:.0f} MB wheel) " if result.get("av_wheel_mb") else "")
        + "to the device install; it is a runtime dependency (cameras left in video mode are common).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
