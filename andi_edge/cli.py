"""The ``andi-edge`` command. A thin layer: parse arguments, configure logging, call the library, print.

Only this module prints and chooses exit codes. Heavy imports (onnxruntime, torch) happen inside commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from andi_edge import __version__
from andi_edge.errors import AndiEdgeError, UsageError

log = logging.getLogger("andi_edge")

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in andi-edge, not the user's mistake
EXIT_INTERRUPTED = 130


def _configure_logging(level: str, fmt: str = "plain") -> None:
    from andi_edge.logs import configure_logging

    configure_logging(level, fmt)


# -- detect ---------------------------------------------------------------------------------------------------


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference")
    group.add_argument("--model", "-m", type=Path, required=True, help="ONNX model (from `andi-edge export`)")
    group.add_argument(
        "--backend", default="ort", help="inference backend: ort (ONNX Runtime, default) or openvino (optional extra)"
    )
    group.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="EP",
        help="ONNX Runtime execution provider to try first, e.g. CUDAExecutionProvider "
        "(repeatable; CPU is always the fallback)",
    )
    group.add_argument(
        "--threads", type=int, default=0, help="inference threads (default 0 = the cores the decode workers leave)"
    )
    group.add_argument(
        "--conf",
        type=float,
        default=None,
        help="keep boxes at or above this confidence (default: the model card's, 0.005)",
    )
    group.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: the model card's, 0.45)")
    group.add_argument("--max-det", type=int, default=100, help="at most this many boxes per photo (default: 100)")
    group.add_argument(
        "--full-decode",
        action="store_true",
        help="decode every JPEG at full resolution (slower; the fast path uses DCT-scaled decoding)",
    )
    group.add_argument("--decode-workers", type=int, default=1, help="threads decoding ahead of inference (default: 1)")


def _detector_settings(args: argparse.Namespace) -> object:
    from andi_edge.config import DetectorSettings

    return DetectorSettings(
        conf_threshold=args.conf,
        iou_threshold=args.iou,
        max_detections=args.max_det,
        reduced_decode=not args.full_decode,
    )


def _build_detector(args: argparse.Namespace) -> object:
    from andi_edge.config import DetectorSettings
    from andi_edge.pipeline import PipelineSettings, backend_options_for
    from andi_edge.runtime.detector import Detector

    settings = _detector_settings(args)
    assert isinstance(settings, DetectorSettings)
    options = backend_options_for(args.threads, tuple(args.provider), PipelineSettings(args.decode_workers))
    return Detector(args.model, settings=settings, backend=args.backend, backend_options=options)


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from andi_edge.errors import UsageError
    from andi_edge.photos import find_photos
    from andi_edge.pipeline import PipelineSettings, detect_many
    from andi_edge.runtime.detector import Detector
    from andi_edge.sinks.atomic import write_json_atomic
    from andi_edge.sinks.md_batch import batch_document, image_entry

    if args.output.is_dir():
        raise UsageError(f"-o {args.output} is a folder; give a file name such as {args.output / 'results.json'}")
    root, sources = find_photos(args.paths)
    detector = _build_detector(args)
    assert isinstance(detector, Detector)
    if not sources:
        log.warning("no photos (jpg, jpeg, png) found under %s", ", ".join(map(str, args.paths)))
    entries = []
    failures = 0
    with_detections = 0
    typical = detector.card.thresholds.typical
    start = time.perf_counter()
    show_progress = sys.stderr.isatty() and not args.quiet
    progress = tqdm(total=len(sources), unit="photo", disable=not show_progress, dynamic_ncols=True)
    with progress:
        for source, result in detect_many(detector, sources, PipelineSettings(decode_workers=args.decode_workers)):
            entries.append(image_entry(result, source.relative))
            if result.failure is not None:
                failures += 1
            elif result.detections is not None and len(result.detections.above(typical)):
                with_detections += 1
            progress.update()
    elapsed = time.perf_counter() - start
    document = batch_document(
        entries,
        detector.card.class_names,
        {**detector.provenance(), "image_root": str(root)},
        typical_threshold=typical,
        conservative_threshold=detector.card.thresholds.conservative,
    )
    write_json_atomic(args.output, document)
    rate = len(sources) / elapsed if elapsed > 0 else 0.0
    print(
        f"{len(sources)} photos in {elapsed:.1f} s ({rate:.1f} photos/s): "
        f"{with_detections} with a detection >= {typical}, {len(sources) - failures - with_detections} empty, "
        f"{failures} failed"
    )
    print(f"results: {args.output}")
    return EXIT_OK


# -- watch / check / status -----------------------------------------------------------------------------------


def _watch_config(args: argparse.Namespace) -> object:
    from andi_edge.settings import load_watch_config

    overrides = {
        "watch": str(args.dir) if args.dir else None,
        "model": str(args.model) if args.model else None,
        "output": str(args.output) if args.output else None,
        "state": str(args.state) if args.state else None,
    }
    return load_watch_config(args.config, overrides)


def _state_dir(config: object) -> Path:
    from andi_edge.settings import WatchConfig

    assert isinstance(config, WatchConfig)
    return Path(config.state) if config.state else Path(config.output) / ".andi-edge-state"


def _detector_from_config(config: object) -> object:
    from andi_edge.pipeline import PipelineSettings, backend_options_for
    from andi_edge.runtime.detector import Detector
    from andi_edge.settings import WatchConfig

    assert isinstance(config, WatchConfig)
    pipeline = PipelineSettings(config.pipeline.decode_workers, config.pipeline.max_in_flight)
    options = backend_options_for(config.backend.threads, config.backend.providers, pipeline)
    return Detector(Path(config.model), settings=config.detector, backend=config.backend.name, backend_options=options)


def cmd_watch(args: argparse.Namespace) -> int:
    from andi_edge.daemon.service import WatchService
    from andi_edge.errors import UsageError
    from andi_edge.runtime.detector import Detector
    from andi_edge.settings import WatchConfig

    config = _watch_config(args)
    assert isinstance(config, WatchConfig)
    _configure_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    if not Path(config.watch).is_dir() and args.once:
        raise UsageError(f"{config.watch}: no such folder to watch")
    detector = _detector_from_config(config)
    assert isinstance(detector, Detector)
    service = WatchService(config, detector, _state_dir(config), once=args.once)
    service.install_signal_handlers()
    return service.run()


def cmd_check(args: argparse.Namespace) -> int:
    from andi_edge.settings import WatchConfig

    config = _watch_config(args)
    assert isinstance(config, WatchConfig)
    detector = _detector_from_config(config)
    from andi_edge.runtime.detector import Detector

    assert isinstance(detector, Detector)
    watch = Path(config.watch)
    print(f"config ok: {args.config or 'command line'}")
    print(
        f"model ok: {config.model} ({detector.card.name}, {detector.card.head} head, "
        f"{detector.card.num_classes} classes, {detector.card.input_width}x{detector.card.input_height}, "
        f"{detector.loaded.backend} {','.join(detector.loaded.execution_providers)})"
    )
    print(f"watch folder: {watch} ({'present' if watch.is_dir() else 'not present now: the daemon will wait for it'})")
    print(f"output: {config.output}; state: {_state_dir(config)}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import shutil

    from andi_edge.state.journal import open_readonly

    journal = open_readonly(args.state)
    try:
        counts = journal.counts()
        last = journal.last_finished()
        failures = journal.recent_failures(args.failures)
    finally:
        journal.close()
    disk_path = args.output or args.state
    usage = shutil.disk_usage(disk_path)
    report = {
        "state": str(args.state),
        "counts": counts,
        "last_photo": None
        if last is None
        else {"card_id": last.card_id, "file": last.rel_path, "state": last.state, "at": last.updated_at},
        "recent_failures": [{"card_id": f.card_id, "file": f.rel_path, "failure": f.failure} for f in failures],
        "free_bytes": usage.free,
        "free_path": str(disk_path),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print("photos: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if last is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.updated_at))
        print(f"last photo: {last.card_id}/{last.rel_path} ({last.state}, {when})")
    for f in failures:
        print(f"failed: {f.card_id}/{f.rel_path}: {f.failure}")
    print(f"free disk at {disk_path}: {usage.free / (1 << 30):.2f} GiB")
    return EXIT_OK


# -- bench ----------------------------------------------------------------------------------------------------


def _print_bench_table(report: dict[str, Any]) -> None:
    model = report["model"]
    print(
        f"model {model['model_file']} ({model['model_size_bytes'] / 1e6:.1f} MB, sha256 {model['model_sha256'][:12]}) "
        f"on {model['backend']} {model['backend_version']} [{','.join(model['execution_providers'])}], "
        f"threads {model['threads'] or 'auto'}"
    )
    machine = report["machine"]
    print(f"machine {machine['cpu_model']} x{machine['cpus_available']}, SIMD {' '.join(machine['simd']) or '-'}")
    cold = report["cold_start_ms"]
    since_start = cold.get("process_start_to_first_result")
    print(
        f"cold start: session {cold['session_create']:.0f} ms, first result {cold['first_result']:.0f} ms"
        + (f", process start to first result {since_start:.0f} ms" if since_start else "")
    )
    rows = []
    if "model_only" in report:
        rows.append(("inference (synthetic input)", report["model_only"]["inference_ms"]))
    if "photos" in report:
        rows += [(f"  {stage}", stats) for stage, stats in report["photos"]["stage_ms"].items()]
        rows.append(("end to end", report["photos"]["end_to_end_ms"]))
    print(f"{'stage (ms)':<30}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'mean':>9}")
    for name, stats in rows:
        if stats:
            print(
                f"{name:<30}{stats['p50']:>9.2f}{stats['p90']:>9.2f}{stats['p99']:>9.2f}{stats['p99.9']:>9.2f}"
                f"{stats['mean']:>9.2f}"
            )
    if "photos" in report:
        tp = report["photos"]["throughput_photos_per_s"]
        print(
            f"throughput (photos/s): single-stream {tp['single_stream']}, pipelined {tp['pipelined']}; "
            f"limit {tp['pipeline_limit']} (decode-only {tp['decode_only_all_cores']}, "
            f"inference-only {tp['inference_only']}, each on all cores): pipelined at {tp['pipelined_vs_limit']:.0%} "
            f"of it; both sharing the cores bound it at {tp['shared_core_bound']}"
        )
    elif "model_only" in report:
        print(f"throughput (model only): {report['model_only']['throughput_photos_per_s']} inferences/s")
    print(f"peak RSS {report['peak_rss_mb']:.0f} MB")
    for compared in report.get("compare", []):
        acc = compared["accuracy"]
        print(
            f"{compared['model']['model_file']} against this model's boxes: mAP@0.5 {acc['map50']:.3f}, "
            f"recall {acc['recall_at_typical']:.3f} on {acc['reference_boxes']} reference boxes; its end-to-end p50 "
            f"{compared['photos']['end_to_end_ms'].get('p50', float('nan')):.2f} ms, pipelined "
            f"{compared['photos']['throughput_photos_per_s']['pipelined']} photos/s"
        )


def cmd_bench(args: argparse.Namespace) -> int:

    from andi_edge import bench
    from andi_edge.errors import UsageError
    from andi_edge.photos import find_photos
    from andi_edge.pipeline import PipelineSettings
    from andi_edge.runtime.detector import Detector
    from andi_edge.sinks.atomic import write_json_atomic

    if args.runs < 1 or args.warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    photos: list[Path] = []
    if args.images is not None:
        _, sources = find_photos([args.images])
        photos = [s.path for s in sources][: args.max_photos]
        if not photos:
            raise UsageError(f"no photos (jpg, jpeg, png) under {args.images}")
    if args.compare and not photos:
        raise UsageError("--compare needs --images: accuracy is measured on real photos")
    start = time.perf_counter()
    detector = _build_detector(args)
    assert isinstance(detector, Detector)
    session_ms = (time.perf_counter() - start) * 1000
    if photos:
        detector.detect(photos[0])
    else:
        bench.bench_model_only(detector, runs=1, warmup=0)
    first_ms = (time.perf_counter() - start) * 1000
    age = bench.process_age_ms()
    report: dict[str, Any] = {
        "model": bench.model_info(detector),
        "machine": bench.machine_info(),
        "cold_start_ms": {
            "session_create": round(session_ms, 1),
            "first_result": round(first_ms, 1),
            "process_start_to_first_result": None if age is None else round(age, 1),
        },
        "model_only": bench.bench_model_only(detector, args.runs * 20, args.warmup * 5 + 5),
    }
    pipeline = PipelineSettings(decode_workers=args.decode_workers)
    if photos:
        report["photos"] = bench.bench_photos(detector, photos, args.runs, args.warmup, pipeline)
        report["images"] = str(args.images)
    compared = []
    for other_path in args.compare:
        other_args = argparse.Namespace(**{**vars(args), "model": other_path})
        other = _build_detector(other_args)
        assert isinstance(other, Detector)
        compared.append(
            {
                "model": bench.model_info(other),
                "model_only": bench.bench_model_only(other, args.runs * 20, args.warmup * 5 + 5),
                "photos": bench.bench_photos(other, photos, args.runs, args.warmup, pipeline),
                "accuracy": bench.accuracy_delta(detector, other, photos),
            }
        )
    if compared:
        report["compare"] = compared
    report["peak_rss_mb"] = round(bench.peak_rss_mb(), 1)
    _print_bench_table(report)
    if args.json:
        write_json_atomic(args.json, report, indent=2)
        print(f"json: {args.json}")
    return EXIT_OK


# -- batch ----------------------------------------------------------------------------------------------------


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from andi_edge.batch.runner import BatchRequest, run_batch
    from andi_edge.config import DetectorSettings

    settings = _detector_settings(args)
    assert isinstance(settings, DetectorSettings)
    request = BatchRequest(
        roots=args.paths,
        model=args.model,
        output=args.output,
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        chunk_size=args.chunk_size,
        previous_results=args.previous_results,
        sidecar_dir=args.sidecars,
        settings=settings,
        threads=args.threads,
        providers=tuple(args.provider),
    )
    bar = tqdm(unit="photo", disable=not sys.stderr.isatty() or args.quiet, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with bar:
        summary = run_batch(request, progress)
    rate = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"{summary.photos} photos: {summary.processed} processed ({rate:.1f} photos/s, {summary.engine} engine, "
        f"{summary.workers} worker(s)), {summary.reused_from_shards} from an interrupted run, "
        f"{summary.reused_from_previous} from --previous-results; {summary.failed} failed"
    )
    print(f"results: {args.output}")
    return EXIT_OK


# -- service install / uninstall ------------------------------------------------------------------------------


def cmd_service(args: argparse.Namespace) -> int:
    from andi_edge import service_install as si

    root = args.root or Path("/")
    if args.action == "install":
        if args.watch is None or args.model is None:
            raise UsageError("service install needs --watch DIR and --model MODEL.onnx")
        plan = si.plan_install(root, args.watch, args.model, args.output, args.profile)
    else:
        plan = si.plan_uninstall(root, purge=args.purge)
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        raise UsageError("installing into / needs root", hint="run with sudo, or stage with --root DIR / --dry-run")
    for line in si.execute(plan, dry_run=args.dry_run):
        print(line)
    if args.action == "install" and not args.dry_run:
        si.validate_config_file(plan.path(si.CONFIG_DIR / "config.yaml"))
        where = "" if root == Path("/") else f" under {root}"
        print(f"installed{where}; check it with: andi-edge check --config {si.CONFIG_DIR / 'config.yaml'}")
    return EXIT_OK


# -- export / info --------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.export import ExportRequest, export_onnx
    from andi_edge.toolchain.weights import resolve_weights

    weights = resolve_weights(args.weights)
    output = args.output or Path(f"{weights.path.stem}-{args.imgsz}.onnx")
    card = export_onnx(
        ExportRequest(weights=weights, output=output, imgsz=args.imgsz, name=args.name, licence=args.licence)
    )
    print(f"exported {weights.path} ({card.head} head, {card.num_classes} classes, {args.imgsz} px) -> {output}")
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map
    from andi_edge.toolchain.gate import Gate
    from andi_edge.toolchain.quantize import QuantizeRequest, quantize

    if args.calib_count < 1:
        raise UsageError("--calib-count must be at least 1")
    if not args.calib.is_dir():
        raise UsageError(f"--calib {args.calib}: no such folder of calibration photos")
    gate = None
    if args.eval is not None:
        gate = Gate(load_dataset(args.eval, args.images), args.max_loss, load_class_map(args.class_map))
    output = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    quantize(
        QuantizeRequest(
            model=args.model, calibration_dir=args.calib, output=output, max_photos=args.calib_count, gate=gate
        )
    )
    print(f"quantized {args.model} -> {output} ({output.stat().st_size / 1e6:.1f} MB)")
    print(f"measure what it costs: andi-edge bench --model {args.model} --images {args.calib} --compare {output}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.train import TrainRequest, train

    result = train(
        TrainRequest(
            data=args.data,
            model=args.model,
            weights=args.weights,
            epochs=args.epochs,
            imgsz=args.imgsz,
            output=args.output,
            patience=args.patience,
            batch=args.batch,
            seed=args.seed,
        )
    )
    print(f"carried {result.transferred} of {result.total_source} pretrained tensors into {args.model} (YOLOv5u)")
    if result.metrics:
        print("final validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    print(f"best weights: {result.best}; run config: {args.output / 'run_config.json'}")
    print(f"next: andi-edge export {result.best} --imgsz {args.imgsz} -o {args.model}-finetuned-{args.imgsz}.onnx")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from andi_edge.toolchain import require_toolchain

    require_toolchain()
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map
    from andi_edge.toolchain.gate import Gate
    from andi_edge.toolchain.prune import PruneRequest, prune

    gate = None
    if args.eval is not None:
        gate = Gate(load_dataset(args.eval, args.images), args.max_loss, load_class_map(args.class_map))
    result = prune(
        PruneRequest(
            weights=args.weights,
            ratio=args.ratio,
            data=args.data,
            epochs=args.epochs,
            output=args.output,
            imgsz=args.imgsz,
            batch=args.batch,
            gate=gate,
        )
    )
    print(
        f"pruned {args.weights} -> {result.output}: parameters {result.params_before:,} -> {result.params_after:,}, "
        f"MACs {result.macs_before / 1e6:.0f}M -> {result.macs_after / 1e6:.0f}M at {args.imgsz} px"
    )
    print(f"next: andi-edge export {result.output} --imgsz {args.imgsz}")
    return EXIT_OK


def cmd_dataset_split(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.dataset import load_dataset, split_by_class, split_by_location, write_split

    dataset = load_dataset(args.data, args.images)
    for note in dataset.notes:
        if args.by == "location":
            raise UsageError(f"{args.data}: {note}", hint="use --by class, or add locations to the dataset")
    splitter = split_by_location if args.by == "location" else split_by_class
    assignment = splitter(dataset, args.val, args.test, args.seed)
    report = write_split(dataset, assignment, args.output, args.by, args.seed)
    names = sorted({c for counts in report.class_counts.values() for c in counts})
    print(f"{'class':<24}" + "".join(f"{s:>8}" for s in report.class_counts))
    for name in names:
        print(f"{name:<24}" + "".join(f"{report.class_counts[s].get(name, 0):>8}" for s in report.class_counts))
    print("locations: " + "; ".join(f"{s} {len(locs)}" for s, locs in report.locations.items()))
    for missing in report.missing_from_train:
        print(f"WARNING: class '{missing}' has no image in the training split: the model cannot learn it")
    print(f"split written to {args.output} (data.yaml, manifest.json)")
    return EXIT_OK


def cmd_dataset_balance(args: argparse.Namespace) -> int:
    from andi_edge.toolchain.balance import BalanceRequest, balance

    outcome = balance(
        BalanceRequest(
            split_dir=args.split_dir,
            upsample_below=args.upsample_below,
            max_factor=args.max_factor,
            copy_paste=args.copy_paste,
            jitter=args.jitter,
            seed=args.seed,
        )
    )
    print(f"added {outcome['added']} training images under {args.split_dir / 'images' / 'train' / '_balance'}")
    print("training images per class: " + ", ".join(f"{k} {v}" for k, v in outcome["train_counts"].items()))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from andi_edge.sinks.atomic import write_json_atomic
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map, run_eval

    dataset = load_dataset(args.data, args.images)
    report = run_eval(args.model, dataset, args.split_manifest, args.reference, load_class_map(args.class_map))
    print(f"{'images':<18}{'n':>6}{'F1-macro':>10}{'mAP@0.5':>10}")
    for key in ("overall", "seen_locations", "unseen_locations"):
        scores = report.get(key)
        if scores:
            print(
                f"{key.replace('_', ' '):<18}{scores['images']:>6}{scores['f1_macro']:>10.4f}{scores['map50']:>10.4f}"
            )
    timing = report["inference_ms_per_image"]
    print(f"inference per image: mean {timing['mean']:.1f} ms, p50 {timing['p50']:.1f} ms")
    if "against_reference" in report:
        ref = report["against_reference"]
        print(
            f"against {ref['reference']}: mAP@0.5 {ref['map50']:.4f}, recall {ref['recall_at_typical']:.4f}, "
            f"small-object recall {ref['small_object_recall']}"
        )
    if args.json:
        write_json_atomic(args.json, report, indent=2)
        print(f"json: {args.json}")
    else:
        print(json.dumps(report["overall"]["f1_per_class"]))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from andi_edge.runtime.detector import Detector

    detector = Detector(args.model)
    print(json.dumps({"card": asdict(detector.card), "runtime": detector.provenance()}, indent=2))
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="andi-edge",
        description="Detect animals, people and vehicles in camera-trap photos, on the device, without torch.",
        epilog="Run `andi-edge COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"andi-edge {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: warning (watch: info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    detect = commands.add_parser(
        "detect",
        help="run detection on photos and folders, write a MegaDetector 1.6 results file",
        description=(
            "Walk PATHs (folders recursively; jpg/jpeg/png in any case; hidden and ._ files skipped), detect, and "
            "write a MegaDetector batch-output file (format 1.6) that Timelapse and AddaxAI open. Photos that cannot "
            "be read are recorded with a failure reason and the run goes on."
        ),
    )
    detect.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photo files or folders")
    detect.add_argument("--output", "-o", type=Path, required=True, help="results JSON to write")
    detect.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_runtime_options(detect)
    detect.set_defaults(handler=cmd_detect)

    export = commands.add_parser(
        "export",
        help="export a YOLO checkpoint to ONNX with its model card inside (needs the [toolchain] extra)",
        description=(
            "Export a classic YOLOv5 checkpoint (e.g. yolov5n.pt, MegaDetector v5) or an ultralytics checkpoint "
            "(YOLOv5u, YOLOv8, YOLO11) to ONNX at a fixed input size. The model card (class names, input size, head, "
            "thresholds, weights sha256, licence, tool versions) is stored in the file's metadata. Runs offline."
        ),
    )
    export.add_argument("weights", help="a .pt file, or a known model name such as yolov5n (see models/registry.yaml)")
    export.add_argument("--imgsz", type=int, default=320, help="square input size, a multiple of 32 (default: 320)")
    export.add_argument("--output", "-o", type=Path, default=None, help="ONNX file to write (default: STEM-IMGSZ.onnx)")
    export.add_argument("--name", default=None, help="model name for the card (default: STEM-IMGSZ)")
    export.add_argument("--licence", default=None, help="licence of the weights, for the card")
    export.set_defaults(handler=cmd_export)

    bench_cmd = commands.add_parser(
        "bench",
        help="measure latency, throughput, memory (and accuracy against another model) on this machine",
        description=(
            "Without --images: model-only latency on synthetic input. With --images: the real pipeline on real "
            "photos (read, decode, letterbox, inference, postprocess, sidecar write), p50/p90/p99/p99.9, single-stream "
            "and pipelined throughput against the pipeline's limit, cold start, peak RSS. --compare OTHER.onnx adds "
            "OTHER's speed and its accuracy against this model's boxes (mAP@0.5, recall)."
        ),
    )
    _add_runtime_options(bench_cmd)
    bench_cmd.add_argument("--images", type=Path, default=None, help="folder of real photos (recursive)")
    bench_cmd.add_argument("--max-photos", type=int, default=200, help="use at most this many photos (default 200)")
    bench_cmd.add_argument("--runs", type=int, default=3, help="passes over the photos after warm-up (default 3)")
    bench_cmd.add_argument("--warmup", type=int, default=3, help="warm-up photos / inferences (default 3)")
    bench_cmd.add_argument("--compare", type=Path, action="append", default=[], metavar="OTHER.onnx")
    bench_cmd.add_argument("--json", type=Path, default=None, help="write everything measured to this file")
    bench_cmd.set_defaults(handler=cmd_bench)

    batch = commands.add_parser(
        "batch",
        help="back-process whole archives on all cores or a Ray cluster; resumable",
        description=(
            "Process every photo under the ROOTs with worker processes (--engine local, all cores) or Ray Data "
            "(--engine ray: a local Ray instance, or a cluster with --ray-address) and write one MegaDetector 1.6 "
            "file. Both engines run the same runtime code: results are identical whichever engine and worker "
            "count. Finished chunks are saved beside the output, so a rerun after a crash or Ctrl-C continues "
            "where it stopped. A worker that dies is replaced and its photos retried once."
        ),
    )
    batch.add_argument("paths", nargs="+", type=Path, metavar="ROOT", help="photo files or folders")
    batch.add_argument("--output", "-o", type=Path, required=True, help="results JSON to write")
    batch.add_argument("--engine", choices=["local", "ray"], default="local")
    batch.add_argument("--workers", type=int, default=0, help="worker processes / actors (default: cores / 2)")
    batch.add_argument("--ray-address", default=None, help="a running Ray cluster (default: start a local one)")
    batch.add_argument("--chunk-size", type=int, default=16, help="photos per unit of work (default 16)")
    batch.add_argument("--previous-results", type=Path, default=None, help="reuse an earlier results file's entries")
    batch.add_argument("--sidecars", type=Path, default=None, help="also write one sidecar JSON per photo here")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_runtime_options(batch)
    batch.set_defaults(handler=cmd_batch)

    watch = commands.add_parser(
        "watch",
        help="the field daemon: process every new photo under DIR exactly once",
        description=(
            "Watch DIR (a camera card or a folder) and process each complete photo exactly once: a sidecar JSON per "
            "photo, crops per class, and a MegaDetector 1.6 batch file per card, mirrored into OUTPUT. Survives "
            "kill -9, power loss, corrupt files, full disks and card swaps. Settings come from --config (YAML); "
            "flags override it."
        ),
    )
    watch.add_argument("dir", nargs="?", type=Path, help="folder to watch (or `watch:` in the config)")
    watch.add_argument("--model", "-m", type=Path, help="ONNX model (or `model:` in the config)")
    watch.add_argument("--output", "-o", type=Path, help="where outputs go (or `output:` in the config)")
    watch.add_argument("--state", type=Path, help="journal folder (default: OUTPUT/.andi-edge-state)")
    watch.add_argument("--config", "-c", type=Path, help="YAML config file (see deploy/config.example.yaml)")
    watch.add_argument("--once", action="store_true", help="process what is there now, write outputs, exit 0")
    watch.add_argument("--log-format", choices=["plain", "json"], default=None, help="log line format")
    watch.set_defaults(handler=cmd_watch)

    check = commands.add_parser(
        "check", help="validate a watch config and its model without running", description="Validate config and model."
    )
    check.add_argument("dir", nargs="?", type=Path, help="folder to watch (overrides the config)")
    check.add_argument("--config", "-c", type=Path, help="YAML config file")
    check.add_argument("--model", "-m", type=Path, help="ONNX model (overrides the config)")
    check.add_argument("--output", "-o", type=Path, help="output folder (overrides the config)")
    check.add_argument("--state", type=Path, help="journal folder (overrides the config)")
    check.set_defaults(handler=cmd_check)

    status = commands.add_parser(
        "status",
        help="what the daemon has done: counts, last photo, failures, free disk",
        description="Read the journal of `andi-edge watch` and report.",
    )
    status.add_argument("--state", type=Path, required=True, help="the daemon's state folder")
    status.add_argument("--output", "-o", type=Path, default=None, help="output folder (for the free-space line)")
    status.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    service = commands.add_parser(
        "service",
        help="install or remove the systemd service, SD-card trigger, config and user",
        description=(
            "install: write the hardened systemd units, the SD-card udev rule and trigger script, a documented "
            "config (with a device profile), copy the model, create the andi-edge user and enable the service. "
            "Idempotent. --root DIR stages everything under DIR (host commands are listed, not run); --dry-run "
            "prints every file and command and writes nothing. uninstall removes units, rule and script, and keeps "
            "config and data unless --purge."
        ),
    )
    service.add_argument("action", choices=["install", "uninstall"])
    service.add_argument("--watch", type=Path, help="folder or card mount point to watch (install)")
    service.add_argument("--model", "-m", type=Path, help="ONNX model to install (install)")
    service.add_argument(
        "--output", "-o", type=Path, default=None, help="output folder (default /var/lib/andi-edge/output)"
    )
    service.add_argument("--profile", choices=["raspberry-pi", "jetson", "x86"], default=None, help="device profile")
    service.add_argument("--root", type=Path, default=None, help="stage into this folder instead of /")
    service.add_argument("--dry-run", action="store_true", help="print every file and command; change nothing")
    service.add_argument("--purge", action="store_true", help="uninstall: also remove config and all data")
    service.set_defaults(handler=cmd_service)

    quant = commands.add_parser(
        "quantize",
        help="static INT8 quantization (ONNX Runtime QDQ, per-channel), calibrated on real photos",
        description=(
            "Quantize an fp32 ONNX model to INT8 with ONNX Runtime's static quantizer (QDQ format, per-channel "
            "weights, MinMax calibration). Calibration photos pass through the runtime's own decode and letterbox; "
            "the detection head stays in float. The model card records precision int8 and the calibration set's "
            "sha256. Needs the [toolchain] extra."
        ),
    )
    quant.add_argument("model", type=Path, help="fp32 ONNX model from `andi-edge export`")
    quant.add_argument("--calib", type=Path, required=True, help="folder of real camera-trap photos")
    quant.add_argument("--calib-count", type=int, default=64, help="photos used, spread over the folder (default 64)")
    quant.add_argument("--output", "-o", type=Path, default=None, help="default: MODEL-int8.onnx")
    quant.add_argument("--eval", type=Path, default=None, help="gate: a labelled dataset (CCT JSON or YOLO folder)")
    quant.add_argument("--images", type=Path, default=None, help="gate: the CCT dataset's image root")
    quant.add_argument("--max-loss", type=float, default=0.01, help="gate: largest mAP@0.5 loss allowed (0.01)")
    quant.add_argument("--class-map", default=None, help="gate: model -> dataset class names (YAML or built-in)")
    quant.set_defaults(handler=cmd_quantize)

    dataset_cmd = commands.add_parser("dataset", help="camera-trap datasets: location-aware splits")
    dataset_actions = dataset_cmd.add_subparsers(dest="dataset_action", metavar="ACTION", required=True)
    split = dataset_actions.add_parser(
        "split",
        help="COCO Camera Traps JSON (or a YOLO folder) -> a YOLO split and a manifest",
        description=(
            "Split a camera-trap dataset for training. --by location (default) never puts one location in two "
            "splits and keeps each class's share close to the targets; --by class reproduces a stratified split. "
            "Writes images/ (symlinks), labels/, data.yaml and manifest.json; prints per-split class counts and "
            "warns when a class is absent from training. Empty images are kept as background."
        ),
    )
    split.add_argument("data", type=Path, help="COCO Camera Traps JSON, or a YOLO dataset folder")
    split.add_argument("--images", type=Path, default=None, help="image root for a CCT JSON's file_name paths")
    split.add_argument("--by", choices=["location", "class"], default="location")
    split.add_argument("--val", type=float, default=0.25)
    split.add_argument("--test", type=float, default=0.10)
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--output", "-o", type=Path, required=True, help="split folder to write")
    split.set_defaults(handler=cmd_dataset_split)
    bal = dataset_actions.add_parser(
        "balance",
        help="upsample rare classes and paste animals onto empty frames from other locations (train split only)",
        description=(
            "The original study's data fixes on a split's training images: --upsample-below N repeats the images of "
            "classes with fewer than N (at most --max-factor times); --copy-paste K pastes animal crops onto empty "
            "frames from other locations (object isolation); --jitter J adds colour jitter to what it makes. "
            "Validation and test images are never touched; a rerun replaces the earlier additions."
        ),
    )
    bal.add_argument("split_dir", type=Path, help="SPLIT_DIR from `andi-edge dataset split`")
    bal.add_argument("--upsample-below", type=int, default=0, help="repeat images of classes with fewer than N")
    bal.add_argument("--max-factor", type=int, default=2, help="at most this many times a class's images (2)")
    bal.add_argument("--copy-paste", type=int, default=0, help="make K object-isolation images")
    bal.add_argument("--jitter", type=float, default=0.0, help="colour jitter amount for new images, e.g. 0.2")
    bal.add_argument("--seed", type=int, default=0)
    bal.set_defaults(handler=cmd_dataset_balance)

    tr = commands.add_parser(
        "train",
        help="fine-tune YOLOv5 n/m on a split, offline, from the pretrained classic checkpoint",
        description=(
            "Fine-tune on a split from `andi-edge dataset split`. The classic YOLOv5 checkpoint's backbone and neck "
            "are carried into Ultralytics' YOLOv5u (same layers), the head is learnt, and Ultralytics' trainer runs "
            "offline on the CPU with early stopping (patience 5). The run config is saved in RUN_DIR/run_config.json; "
            "then `andi-edge export RUN_DIR/train/weights/best.pt` makes the ONNX model. Needs the [toolchain] extra."
        ),
    )
    tr.add_argument("--data", type=Path, required=True, help="SPLIT_DIR (holds data.yaml)")
    tr.add_argument("--model", choices=["yolov5n", "yolov5m"], default="yolov5n")
    tr.add_argument("--weights", default=None, help="classic checkpoint (default: the --model name, see models/)")
    tr.add_argument("--epochs", type=int, default=50)
    tr.add_argument("--imgsz", type=int, default=320)
    tr.add_argument("--batch", type=int, default=16)
    tr.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (the study used 5)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--output", "-o", type=Path, required=True, help="RUN_DIR")
    tr.set_defaults(handler=cmd_train)

    pr = commands.add_parser(
        "prune",
        help="structured channel pruning (torch-pruning) with recovery fine-tuning",
        description=(
            "Remove a fraction of each layer's channels (L2-magnitude ranking, the head left whole), then fine-tune "
            "to recover, keeping the pruned structure. With --eval DATASET --max-loss, the pruned model is refused "
            "(nothing written) when it loses more mAP@0.5 than allowed. Needs the [toolchain] extra."
        ),
    )
    pr.add_argument("weights", type=Path, help="an ultralytics checkpoint, e.g. RUN_DIR/train/weights/best.pt")
    pr.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove (default 0.5)")
    pr.add_argument("--data", type=Path, required=True, help="SPLIT_DIR for recovery fine-tuning")
    pr.add_argument("--epochs", type=int, default=10, help="recovery epochs (0: none)")
    pr.add_argument("--imgsz", type=int, default=320)
    pr.add_argument("--batch", type=int, default=16)
    pr.add_argument("--output", "-o", type=Path, required=True, help="PRUNED.pt")
    pr.add_argument("--eval", type=Path, default=None, help="gate: a labelled dataset (CCT JSON or YOLO folder)")
    pr.add_argument("--images", type=Path, default=None, help="gate: the CCT dataset's image root")
    pr.add_argument("--max-loss", type=float, default=0.01, help="gate: largest mAP@0.5 loss allowed (0.01)")
    pr.add_argument("--class-map", default=None, help="gate: model -> dataset class names")
    pr.set_defaults(handler=cmd_prune)

    ev = commands.add_parser(
        "eval",
        help="F1-macro and mAP@0.5, overall and for seen vs unseen locations; loss against a reference model",
        description=(
            "Evaluate an ONNX model on a labelled camera-trap dataset: image-level F1-macro (every class, empty "
            "included, at the card's typical threshold) and mAP@0.5, per-image inference time. With "
            "--split-manifest: the val and test images, split into locations seen in training and unseen ones. "
            "With --reference: mAP@0.5, recall and small-object recall against the reference model's own boxes."
        ),
    )
    ev.add_argument("--model", "-m", type=Path, required=True)
    ev.add_argument("--data", type=Path, required=True, help="COCO Camera Traps JSON, or a YOLO dataset folder")
    ev.add_argument("--images", type=Path, default=None, help="image root for a CCT JSON")
    ev.add_argument("--split-manifest", type=Path, default=None, help="SPLIT_DIR from `andi-edge dataset split`")
    ev.add_argument("--reference", type=Path, default=None, help="reference ONNX model (e.g. the fp32 one)")
    ev.add_argument("--class-map", default=None, help="model -> dataset class names: YAML, or coco-to-megadetector")
    ev.add_argument("--json", type=Path, default=None, help="write the report here")
    ev.set_defaults(handler=cmd_eval)

    info = commands.add_parser("info", help="print an ONNX model's card and how it would run here")
    info.add_argument("model", type=Path, help="ONNX model")
    info.set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.log_level or "warning")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except AndiEdgeError as exc:
        print(f"andi-edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("andi-edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        print(
            f"andi-edge: internal error: {type(exc).__name__}: {exc}\n"
            "  hint: this is a bug in andi-edge; rerun with --log-level debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
