"""Commands that run detection: detect, bench, batch, info."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from andi_edge.cli.options import EXIT_OK, add_detection_options, add_media_options, add_renamed, detection_config
from andi_edge.errors import OutputError, UsageError
from andi_edge.results.labels import LabelSpace

log = logging.getLogger("andi_edge")


#: photos between two saves of what `detect` has done (an interrupted or failed run resumes from them)
DETECT_SHARD_PHOTOS = 64
#: what a run looked for, in words, by its media setting
_MEDIA_WORDS = {"all": "photos (jpg, jpeg, png) or video clips", "photos": "photos (jpg, jpeg, png)",
                "videos": "video clips"}  # fmt: skip


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from andi_edge.assemble import assemble
    from andi_edge.batch.shards import ShardStore, file_identity, run_identity
    from andi_edge.photos import find_media
    from andi_edge.pipeline import detect_many, label_space
    from andi_edge.runtime.clips import detect_clip, disguised_clip
    from andi_edge.sinks.atomic import prove_writable
    from andi_edge.sinks.md_batch import batch_document, clip_entry, image_entry, write_batch

    if args.output.is_dir():
        raise UsageError(f"-o {args.output} is a folder; give a file name such as {args.output / 'results.json'}")
    prove_writable(args.output.parent, "results", "-o")
    config = detection_config(args)
    found = find_media(args.paths, config.media)
    root, sources, clips = found.root, found.photos, found.clips
    assembled = assemble(config)
    detector, plan = assembled.detector, assembled.plan
    if not sources and not clips:
        log.warning("no %s found under %s", _MEDIA_WORDS[config.media], ", ".join(map(str, args.paths)))
    provenance = detector.provenance()
    # what is done is saved as it goes: a run interrupted, or one whose final write fails, resumes from it
    everything = found.everything
    store = ShardStore(
        args.output,
        run_identity(list(args.paths), {**provenance, "media": config.media, "video": repr(config.video)}),
        {s.relative: file_identity(s.path) for s in everything},
    )
    done = store.load()
    todo = [s for s in sources if s.relative not in done]
    clips_todo = [s for s in clips if s.relative not in done]
    if done:
        log.info(
            "%d file(s) done by an interrupted run of this command: not processed again",
            len(everything) - len(todo) - len(clips_todo),
        )
    typical = detector.card.thresholds.typical
    start = time.perf_counter()
    show_progress = sys.stderr.isatty() and not args.quiet
    progress = tqdm(total=len(everything), initial=len(everything) - len(todo) - len(clips_todo), unit="file",
                    disable=not show_progress, dynamic_ncols=True)  # fmt: skip
    pending: list[tuple[str, dict[str, Any]]] = []
    all_frames = config.video.all_frames
    # warnings are printed above the bar, not into it
    with progress, logging_redirect_tqdm(loggers=[logging.getLogger("andi_edge")]):
        for source, result in detect_many(detector, todo, plan.settings):
            if disguised_clip(result.failure, source.path, config.media):  # a clip named like a photo
                clip = detect_clip(detector, source.path, config.video)
                pending.append((source.relative, clip_entry(clip, source.relative, all_frames)))
            else:
                pending.append((source.relative, image_entry(result, source.relative)))
            if len(pending) >= DETECT_SHARD_PHOTOS:
                store.save(pending)
                done.update(pending)
                pending = []
            progress.update()
        for source in clips_todo:  # one at a time: a clip's frames are inferred one after the other
            result = detect_clip(detector, source.path, config.video)
            pending.append((source.relative, clip_entry(result, source.relative, all_frames)))
            store.save(pending)
            done.update(pending)
            pending = []
            progress.update()
    store.save(pending)
    done.update(pending)
    elapsed = time.perf_counter() - start
    entries = [done[s.relative] for s in everything]
    document = batch_document(
        entries,
        detector.class_names,
        {**provenance, "image_root": str(root)},
        typical_threshold=typical,
        conservative_threshold=detector.card.thresholds.conservative,
        classification_names=detector.classification_names,
    )
    try:
        write_batch(args.output, document)
    except OutputError as exc:
        raise OutputError(
            f"{exc.message}; the results of all {len(sources)} photo(s) are kept in {store.folder}",
            hint="free space or fix the folder, then run the same command again: it writes them without "
            "processing the photos again",
        ) from exc
    store.remove()
    processed = len(todo) + len(clips_todo)
    rate = processed / elapsed if elapsed > 0 else 0.0
    print(_detect_summary(entries, label_space(detector), typical, processed, elapsed, rate))
    if found.clips_left_out:
        print(f"{found.clips_left_out} video clip(s) left out (--media photos)")
    print(f"results: {args.output}")
    return EXIT_OK


def _detect_summary(
    entries: list[dict[str, Any]], labels: LabelSpace, typical: float, processed: int, elapsed: float, rate: float
) -> str:
    """What a run found, in a biologist's words, from the results themselves (resumed photos included)."""
    from andi_edge.results.labels import count_photos
    from andi_edge.results.records import record_from_entry

    records = [record_from_entry("", str(entry.get("file", "")), None, 0, entry) for entry in entries]
    counts = count_photos(records, labels, typical)
    per_class = ", ".join(f"{name} {n}" for name, n in counts.ranked())
    resumed = len(entries) - processed
    clips = sum(1 for entry in entries if "frames_processed" in entry)
    what = f"{len(entries) - clips} photos" + (f" and {clips} video clip(s)" if clips else "")
    return (
        f"{what} ({processed} processed in {elapsed:.1f} s, {rate:.1f} files/s"
        + (f"; {resumed} from an interrupted run" if resumed else "")
        + f"): {counts.with_detections} with a detection >= {typical}{f' ({per_class})' if per_class else ''}, "
        f"{counts.empty} empty, {counts.failed} failed"
    )


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
    classifier = report.get("photos", {}).get("classifier")
    if classifier:
        with_crops = classifier["ms_per_photo_with_crops"]
        print(
            f"classifier {classifier['model_file']} ({classifier['architecture']}, "
            f"{classifier['input_size'][1]}x{classifier['input_size'][0]}): {classifier['ms_per_crop'] or 0:.2f} ms "
            f"a crop; {with_crops.get('mean', 0):.2f} ms a photo with crops ({classifier['photos_with_crops']} photos, "
            f"{classifier['crops_per_photo_with_crops']} crops each), "
            f"{classifier['ms_per_photo_all'].get('mean', 0):.2f} ms a photo over all; "
            f"{classifier['photos_decoded_again']} photo(s) decoded again, larger, for their crops "
            f"({classifier['crop_decode_ms'].get('mean', 0):.1f} ms each)"
        )
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
    from andi_edge.photos import find_photos
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
    from andi_edge.assemble import assemble

    config = detection_config(args)
    start = time.perf_counter()
    assembled = assemble(config)
    detector, plan = assembled.detector, assembled.plan
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
    pipeline = plan.settings
    if photos:
        report["photos"] = bench.bench_photos(detector, photos, args.runs, args.warmup, pipeline)
        report["images"] = str(args.images)
    compared = []
    for other_path in args.compare:
        other = assemble(dataclasses.replace(config, model=str(other_path)), plan).detector
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

    request = BatchRequest(
        roots=args.paths,
        output=args.output,
        detection=detection_config(args),
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        chunk_size=args.chunk_size,
        previous_results=args.previous_results,
        sidecar_dir=args.sidecars,
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


def cmd_info(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from andi_edge.runtime.backends import BackendOptions, create_backend
    from andi_edge.runtime.classifier import Classifier
    from andi_edge.runtime.classifier_card import CLASSIFIER_CARD_KEY
    from andi_edge.runtime.detector import Detector

    backend = create_backend("ort")
    if args.model.is_file() and CLASSIFIER_CARD_KEY in backend.load(args.model, BackendOptions()).metadata:
        classifier = Classifier(args.model, backend=backend)
        if args.json:
            print(
                json.dumps({"classifier_card": asdict(classifier.card), "runtime": classifier.provenance()}, indent=2)
            )
            return EXIT_OK
        c = classifier.card
        labels = ", ".join(c.labels[:12]) + (f", ... ({len(c.labels)} in all)" if len(c.labels) > 12 else "")
        print(f"{args.model}: species classifier {c.name} ({c.architecture}), {c.input_width_px}x{c.input_height_px}")
        print(f"labels: {labels}")
        print(f"trained on: {c.training_data}; licence: {c.licence}")
        print("the whole card: andi-edge info MODEL --json")
        return EXIT_OK
    detector = Detector(args.model, backend=backend)
    if args.json:
        print(json.dumps({"card": asdict(detector.card), "runtime": detector.provenance()}, indent=2))
        return EXIT_OK
    card = detector.card
    shape = f"{card.input_width}x{card.input_height}" + (", rectangular inference" if card.rect else "")
    t = card.thresholds
    print(f"{args.model}: detector {card.name} ({card.head} head, {shape}, {card.precision})")
    print(
        f"reports: {', '.join(detector.class_names)}"
        + (f" (from {card.num_classes} classes)" if detector.categories else "")
    )
    print(f"thresholds: typical {t.typical:g}, conservative {t.conservative:g}, results kept from {t.conf:g}")
    print(f"trained on: {card.training_data}; licence: {card.licence}; from {card.source_weights}")
    loaded = detector.loaded
    print(f"runs here on {loaded.backend} {loaded.backend_version} [{', '.join(loaded.execution_providers)}]")
    print("the whole card: andi-edge info MODEL --json")
    return EXIT_OK


def register(commands: Any) -> None:
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
    add_detection_options(detect)
    add_media_options(detect)
    detect.set_defaults(handler=cmd_detect)

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
    add_detection_options(bench_cmd)
    bench_cmd.add_argument("--images", type=Path, default=None, help="folder of real photos (recursive)")
    bench_cmd.add_argument("--max-photos", type=int, default=200, help="use at most this many photos (default 200)")
    bench_cmd.add_argument("--runs", type=int, default=3, help="passes over the photos after warm-up (default 3)")
    bench_cmd.add_argument("--warmup", type=int, default=3, help="warm-up photos / inferences (default 3)")
    bench_cmd.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="OTHER.onnx",
        help="another model to measure beside it",
    )
    bench_cmd.add_argument(
        "--output", "-o", dest="json", type=Path, default=None, help="write everything measured to this JSON file"
    )
    add_renamed(bench_cmd, "--output", "--json")
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
    batch.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local worker processes, or a Ray instance"
    )
    batch.add_argument("--workers", type=int, default=0, help="worker processes / actors (default: cores / 2)")
    batch.add_argument("--ray-address", default=None, help="a running Ray cluster (default: start a local one)")
    batch.add_argument("--chunk-size", type=int, default=16, help="photos per unit of work (default 16)")
    batch.add_argument("--previous-results", type=Path, default=None, help="reuse an earlier results file's entries")
    batch.add_argument("--sidecars", type=Path, default=None, help="also write one sidecar JSON per photo here")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_detection_options(batch)
    add_media_options(batch)
    batch.set_defaults(handler=cmd_batch)

    info = commands.add_parser("info", help="what an ONNX model is and how it would run here (--json: its whole card)")
    info.add_argument("model", type=Path, help="ONNX model")
    info.add_argument("--json", action="store_true", help="print the whole card and runtime as JSON")
    info.set_defaults(handler=cmd_info)
