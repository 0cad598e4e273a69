"""Big cards: what the daemon costs on a card of 10,000 and 100,000 already-processed photos.

For each size: a card of N real photo files (hard links to one sample photo, 1,000 per DCIM folder as cameras
write them) whose journal already holds N finished rows (the photo's real detections, as the daemon wrote them);
then, with `andi-edge watch` running as a subprocess on it:
- idle CPU: the daemon's own CPU time (utime+stime from /proc) over a quiet window, as a share of one core,
  plus the full rescan (every `discovery.full_rescan_s`) amortised over its interval;
- photos/s while processing: the 185 sample photos copied onto the big card, timed until all are done, against
  the same on an empty card (per-photo journal work must not grow with the card);
- render time: the card's batch JSON, events and repeats rebuilt from the journal (the daemon's Renderer,
  in-process), and the longest gap between two watchdog pings during it.

Run: .venv/bin/python benchmarks/big_card.py [--sizes 10000 100000] -> results/big_card.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANDI_EDGE_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "data" / "camera_trap_images"
RESULTS = REPO / "benchmarks" / "results"
ANDI_EDGE = Path(sys.executable).with_name("andi-edge")
PER_FOLDER = 1000
IDLE_TARGET_SHARE = 0.02
CONFIG = """
discovery:
  poll_interval_s: 5.0
  full_rescan_s: {full_rescan_s}
outputs:
  batch_json_interval_s: 5
  crops: false
"""


def log(message: str) -> None:
    print(f"[big-card] {message}", flush=True)


#: hard links to one file, at most (ext4 allows 65,000): then a fresh copy is linked to
LINKS_PER_COPY = 50_000


def build_card(card: Path, photo: Path, n: int) -> list[str]:
    old = time.time() - 86400
    rels = []
    source = card.parent / "source.jpg"
    for i in range(n):
        if i % LINKS_PER_COPY == 0:  # links to our own copy, never to the shared photo
            source = card.parent / f"source-{i // LINKS_PER_COPY}.jpg"
            shutil.copy2(photo, source)
        folder = card / "DCIM" / f"{100 + i // PER_FOLDER}RECNX"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        target = folder / f"IMG_{i % PER_FOLDER:04d}.JPG"
        os.link(source, target)
        rels.append(target.relative_to(card).as_posix())
    for folder in [*card.rglob("*"), card]:
        if folder.is_dir():
            os.utime(folder, (old, old))
    return rels


def fill_journal(state: Path, card: Path, rels: list[str], photo: Path, model: Path) -> None:
    """N finished rows, as the daemon leaves them (written in bulk: this is set-up, not what is measured)."""
    from andi_edge.record import ResultRecord, dump_record
    from andi_edge.runtime.detector import Detector
    from andi_edge.state.journal import Journal

    record_json = dump_record(ResultRecord(result=Detector(model).detect(photo)))
    # each row its own sha256, as on a real card (the hard links share bytes; the daemon never re-reads done rows)
    st = photo.stat()
    journal = Journal(state)
    journal.set_card_root("local", str(card))
    journal.enqueue_many([("local", rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for rel in rels])
    journal.close()
    with sqlite3.connect(state / "journal.sqlite3") as db:
        db.executemany(
            "UPDATE photos SET state='done', sha256=?, output_key=rel_path, record_json=? "
            "WHERE card_id='local' AND rel_path=?",
            [(hashlib.sha256(rel.encode()).hexdigest(), record_json, rel) for rel in rels],
        )
    # ...and the annotations their sidecars carry (events, repeat flags), as the daemon's first render leaves them
    from andi_edge.results.records import record_from_row
    from andi_edge.results.review import build_review, find_patterns
    from andi_edge.settings import EventSettings, RepeatSettings

    journal = Journal(state)
    rows = journal.latest_finished("local")
    records = [record_from_row(r) for r in rows]
    detector = Detector(model)
    review = build_review(
        records,
        detector.class_names,
        EventSettings(),
        RepeatSettings(),
        detector.card.thresholds.typical,
        frozenset(),
        patterns=find_patterns(records, RepeatSettings()),
    )
    journal.set_annotations(
        [
            (row.id, json.dumps(review.annotation(rec).to_json(), sort_keys=True), row.updated_at)
            for row, rec in zip(rows, records, strict=True)
        ]
    )
    journal.close()


def markdown(report: dict[str, Any]) -> str:
    """big_card.md, from the JSON report (also rendered into the docs by benchmarks/pages.py)."""
    m = report["machine"]
    lines = [
        "# Big cards",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus_available']} cores; {report['model']}; {report['when']}.",
        f"Idle window {report['idle_window_s']:.0f} s; full rescan every {report['full_rescan_interval_s']:.0f} s "
        f"(amortised into the idle share); target idle share <= {IDLE_TARGET_SHARE:.0%} of one core.",
        "",
        "| photos on the card | idle CPU (measured) | full rescan | idle CPU incl. rescans | poll | photos/s "
        "processing new ones | render | longest watchdog gap |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['photos']:,} | {r['idle_cpu_share_measured']:.2%} | {r['full_rescan_s']:.2f} s | "
            f"{r['idle_cpu_share_with_full_rescans']:.2%} | {r['incremental_poll_ms']:.1f} ms | "
            f"{r['processing_photos_per_s']:.1f} | {r['render_s']:.2f} s | {r['render_longest_watchdog_gap_s']:.2f} s |"
        )
    return "\n".join(lines) + "\n"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def journal_finished(state: Path) -> int:
    with sqlite3.connect(f"file:{state / 'journal.sqlite3'}?mode=ro", uri=True) as db:
        query = "SELECT COUNT(*) FROM photos WHERE state IN ('done', 'failed', 'duplicate')"
        return int(db.execute(query).fetchone()[0])


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except (OSError, sqlite3.Error):
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def run_daemon(card: Path, out: Path, state: Path, model: Path, config: Path, logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as f:
        return subprocess.Popen(
            [
                str(ANDI_EDGE),
                "watch",
                str(card),
                "--model",
                str(model),
                "--output",
                str(out),
                "--state",
                str(state),
                "--config",
                str(config),
            ],
            stdout=f,
            stderr=f,
        )


def sample_photos() -> list[Path]:
    from andi_edge.photos import find_photos

    return [s.path for s in find_photos([PHOTOS])[1]]


def processing_rate(card: Path, state: Path, already: int, samples: list[Path]) -> float:
    new = card / "DCIM" / "999NEW__"
    new.mkdir(parents=True)
    start = time.monotonic()
    copies = [(src, new / f"NEW_{i:04d}{src.suffix}") for i, src in enumerate(samples * 2)]
    for src, target in copies:
        shutil.copyfile(src, target)
    # a handful of the sample photos are meant to fail (truncated, not images): count what is finished
    wait_for(lambda: journal_finished(state) >= already + len(copies), 900, "the new photos")
    return len(copies) / (time.monotonic() - start)


def measure(n: int, model: Path, photo: Path, workdir: Path, idle_s: float, full_rescan_s: float) -> dict[str, Any]:
    from andi_edge.daemon.context import DaemonContext, DaemonPaths
    from andi_edge.daemon.metrics import DaemonMetrics
    from andi_edge.daemon.notify import Notifier
    from andi_edge.daemon.rendering import Renderer
    from andi_edge.runtime.detector import Detector
    from andi_edge.settings import WatchConfig
    from andi_edge.state.journal import Journal

    base = workdir / f"n{n}"
    card, out, state = base / "card", base / "out", base / "state"
    config = base / "watch.yaml"
    base.mkdir()
    config.write_text(CONFIG.format(full_rescan_s=full_rescan_s))
    log(f"{n} photos: building the card and its journal")
    rels = build_card(card, photo, n) if n else []
    card.mkdir(exist_ok=True)
    fill_journal(state, card, rels, photo, model)

    # Render time, in-process, with the watchdog pings it makes counted.
    class Pings(Notifier):
        def __init__(self) -> None:
            super().__init__({})
            self.times: list[float] = []

        def heartbeat(self) -> None:
            self.times.append(time.monotonic())

    from concurrent.futures import ThreadPoolExecutor

    detector = Detector(model)
    pings = Pings()
    watch = WatchConfig(watch=str(card), model=str(model), output=str(out))
    with ThreadPoolExecutor(1) as writer:
        context = DaemonContext(
            config=watch,
            paths=DaemonPaths(root=card, output_dir=out, state_dir=state),
            notifier=pings,
            metrics=DaemonMetrics(),
            provenance=detector.provenance(),
        )
        renderer = Renderer(context=context, detector=detector, writer=writer)
        journal = Journal(state)
        renderer.start(journal)
        renderer.changed({"local"})
        begin = time.monotonic()
        pings.times.append(begin)
        renderer.render(journal, force=True)
        render_s = time.monotonic() - begin
        pings.times.append(time.monotonic())
        journal.close()
    (out / "local" / "megadetector_results.json").unlink(missing_ok=True)  # the daemon's own comes next
    longest_gap = max((b - a for a, b in zip(pings.times, pings.times[1:], strict=False)), default=0.0)

    # The daemon on the card: start, idle, then new photos.
    logfile = base / "daemon.log"
    proc = run_daemon(card, out, state, model, config, logfile)
    try:
        wait_for(lambda: "watching" in logfile.read_text(), 600, "the daemon to start")
        batch = out / "local" / "megadetector_results.json"
        if n:
            wait_for(batch.exists, 600, "the first render")
        time.sleep(3)
        before = cpu_s(proc.pid)
        time.sleep(idle_s)
        idle_share = (cpu_s(proc.pid) - before) / idle_s
        rate = processing_rate(card, state, n, sample_photos())
    finally:
        proc.terminate()
        proc.wait(timeout=120)

    # The full rescan, timed alone (it runs every full_rescan_s).
    from andi_edge.daemon.watcher import Discovery
    from andi_edge.settings import DiscoverySettings

    discovery = Discovery(card, DiscoverySettings(inotify=False))
    begin = time.perf_counter()
    discovery.poll(force_scan=True)
    full_scan_s = time.perf_counter() - begin
    begin = time.perf_counter()
    discovery.poll(now=time.monotonic() + 10)  # an incremental poll: a stat per folder
    poll_s = time.perf_counter() - begin
    total_idle = idle_share + full_scan_s / full_rescan_s
    shutil.rmtree(base)
    return {
        "photos": n,
        "folders": -(-n // PER_FOLDER),
        "idle_cpu_share_measured": round(idle_share, 4),
        "full_rescan_s": round(full_scan_s, 3),
        "incremental_poll_ms": round(poll_s * 1000, 2),
        "idle_cpu_share_with_full_rescans": round(total_idle, 4),
        "idle_target_met": total_idle <= IDLE_TARGET_SHARE,
        "processing_photos_per_s": round(rate, 1),
        "render_s": round(render_s, 2),
        "render_longest_watchdog_gap_s": round(longest_gap, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--model", type=Path, default=REPO / "build" / "yolov5n-320.onnx")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--full-rescan-s", type=float, default=600.0)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no model (make model builds it)")
    from andi_edge.bench import machine_info

    photo = sorted((PHOTOS / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="andi-big-card-") as tmp:
        for n in args.sizes:
            rows.append(measure(n, args.model, photo, Path(tmp), args.idle_s, args.full_rescan_s))
            log(json.dumps(rows[-1]))
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "model": args.model.name,
        "idle_window_s": args.idle_s,
        "full_rescan_interval_s": args.full_rescan_s,
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "big_card.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "big_card.md").write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
