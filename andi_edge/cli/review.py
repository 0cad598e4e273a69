"""Commands for the desk after the field: report, export-camtrap-dp, repeats."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi_edge.cli.options import EXIT_OK, add_renamed
from andi_edge.errors import UsageError

if TYPE_CHECKING:
    from andi_edge.results.records import PhotoRecord
    from andi_edge.results.run import RunResults


def _threshold(args: argparse.Namespace, default: float) -> float:
    value = default if args.threshold is None else float(args.threshold)
    if not 0 <= value <= 1:
        raise UsageError(f"--conf must be between 0 and 1, got {value}")
    return value


def results_source(args: argparse.Namespace) -> Path:
    """SOURCE or --state: one of them, as the user gave it."""
    if args.source is not None and args.state is not None:
        raise UsageError("give SOURCE or --state, not both")
    source = args.source if args.source is not None else args.state
    if source is None:
        raise UsageError(
            "which results? give a results file (detect's -o, a MegaDetector or AddaxAI .json), a watch output "
            "folder, or --state STATE_FOLDER"
        )
    return Path(source)


def load_source(args: argparse.Namespace) -> RunResults:
    from andi_edge.results.run import load_results, load_run

    source = results_source(args)
    return load_run(source) if args.state is not None else load_results(source, args.images)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        metavar="SOURCE",
        help="results to read: a MegaDetector batch file (detect's -o; MegaDetector's or AddaxAI's own), a watch "
        "output folder, or a watch state folder",
    )
    parser.add_argument("--state", type=Path, default=None, help="a watch state folder (the same as SOURCE)")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="the folder a results file's paths are relative to (default: the file's image_root, else its folder)",
    )


def cmd_report(args: argparse.Namespace) -> int:
    from andi_edge.sinks.report_html import ReportOptions, write_report

    if args.samples < 0 or args.empty_samples < 0:
        raise UsageError("--samples and --empty-samples must not be negative")
    results = load_source(args)
    options = ReportOptions(
        threshold=_threshold(args, results.facts.typical_threshold),
        detection_samples=args.samples,
        empty_samples=args.empty_samples,
    )
    summary = write_report(results, args.output, options)
    print(
        f"wrote {summary.path}: {_media_words(results.records)}, {len(results.review.events)} events, "
        f"{summary.thumbnails} thumbnails"
        + (
            f" ({summary.missing_photos} photo(s) not readable here: shown as placeholders)"
            if summary.missing_photos
            else ""
        )
    )
    return EXIT_OK


def cmd_export_camtrap_dp(args: argparse.Namespace) -> int:
    from andi_edge.camtrap_config import load_camtrap_config
    from andi_edge.sinks.camtrap_dp import ExportOptions, deployment_template, export_camtrap_dp

    results = load_source(args)
    if args.template is not None:
        if args.template.exists():
            raise UsageError(f"{args.template} already exists", hint="give a new file name; nothing was overwritten")
        args.template.write_text(deployment_template(results), encoding="utf-8")
        print(f"wrote {args.template}: fill in the TODOs, then run with --deployment-config {args.template}")
        return EXIT_OK
    if args.output is None or args.deployment_config is None:
        raise UsageError(
            "export-camtrap-dp needs -o PACKAGE_DIR and --deployment-config FILE",
            hint="no deployment config yet? `--template FILE` writes one listing this run's cameras",
        )
    if not _valid_media_base(args.media_base):
        raise UsageError(
            f"--media-base {args.media_base!r} must be a URL or a relative folder inside the package",
            hint="Camtrap DP file paths may not start with '/', '.' or '~' nor contain '..'; e.g. media/ or "
            "https://example.org/photos/",
        )
    config = load_camtrap_config(args.deployment_config)
    options = ExportOptions(
        threshold=_threshold(args, results.facts.typical_threshold),
        media_base=args.media_base,
        copy_media=args.copy_media,
    )
    summary = export_camtrap_dp(results, config, args.output, options)
    for warning in summary.warnings:
        print(f"warning: {warning}")
    print(
        f"wrote Camtrap DP 1.0.2 package {summary.package_dir}: {summary.deployments} deployment(s), "
        f"{summary.media} media ({summary.video_media} of them video clips; {summary.private_media} not public: "
        f"people), {summary.observations} observations"
        + (f"; copied {summary.copied_media} photo(s)" if args.copy_media else "")
    )
    if summary.not_copied:
        print(
            f"warning: {len(summary.not_copied)} photo(s) not copied, their card is not mounted at "
            f"{results.facts.watch_root} (e.g. {summary.not_copied[0]}); insert it and export again"
        )
    for failure in summary.copy_failures:
        print(f"warning: {failure}")
    return EXIT_OK


def _valid_media_base(base: str) -> bool:
    if base.startswith(("https://", "http://")):
        return True
    return bool(base) and not base.startswith((".", "/", "~")) and ".." not in base


def cmd_repeats(args: argparse.Namespace) -> int:
    from andi_edge.results.run import load_run
    from andi_edge.state.journal import open_existing

    if args.keep or args.unkeep:
        journal = open_existing(args.state, writable=True)
        try:
            known = {p.pattern_id for p in load_run(args.state).review.patterns} | journal.kept_patterns()
            for pattern_id in args.keep:
                if pattern_id not in known:
                    raise UsageError(
                        f"no repeat pattern {pattern_id}", hint="list them with `andi-edge repeats --state`"
                    )
                journal.keep_pattern(pattern_id)
                print(f"kept {pattern_id} as real: it is no longer flagged")
            for pattern_id in args.unkeep:
                if not journal.unkeep_pattern(pattern_id):
                    raise UsageError(f"{pattern_id} was not kept")
                print(f"{pattern_id} is flagged again")
        finally:
            journal.close()
        print("outputs follow at the daemon's next batch render (or its next run)")
        return EXIT_OK
    results = load_run(args.state)
    patterns = results.review.patterns
    if not patterns:
        print("no repeat detections")
    status = "suppressed" if results.review.suppress else "flagged"
    for p in patterns:
        x, y, w, h = p.xywh_norm
        print(
            f"{p.pattern_id}  {'kept' if p.kept else status:10s}  {len(p.photos):5d} photos  {p.card_id}/{p.camera_key}"
            f"  box x={x:.3f} y={y:.3f} w={w:.3f} h={h:.3f}  e.g. {p.photos[0][1]}"
        )
    return EXIT_OK


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="one self-contained HTML page to review a run: from detect's results, a watch run, or MegaDetector's",
        description=(
            "Counts per class and per camera, a timeline of events, repeat patterns, and thumbnails with boxes for a "
            "sample of detections and of empty photos. No network needed to open it."
        ),
    )
    add_source_arguments(report)
    report.add_argument("--output", "-o", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--conf", dest="threshold", type=float, default=None, help="confidence to count and draw (default: model's)"
    )
    add_renamed(report, "--conf", "--threshold")
    report.add_argument("--samples", type=int, default=24, help="photos with detections to show")
    report.add_argument("--empty-samples", type=int, default=12, help="empty photos to show")
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser(
        "export-camtrap-dp",
        help="a Camtrap DP 1.0.2 package (GBIF, Agouti, Wildlife Insights) from any run's results",
        description=(
            "Write datapackage.json, deployments.csv, media.csv and observations.csv. Where and when each camera "
            "stood, its clock's timezone and the project's people come from --deployment-config (YAML); "
            "--template FILE writes one listing this run's cameras."
        ),
    )
    add_source_arguments(export)
    export.add_argument("--output", "-o", type=Path, default=None, help="package folder to write")
    export.add_argument("--deployment-config", type=Path, default=None, help="project, people, deployments (YAML)")
    export.add_argument("--template", type=Path, default=None, help="write a deployment config to fill in, and stop")
    export.add_argument(
        "--conf", dest="threshold", type=float, default=None, help="confidence for observations (default: model's)"
    )
    add_renamed(export, "--conf", "--threshold")
    export.add_argument(
        "--media-base", default="media/", help="prefix of media.filePath: a folder in the package or a URL"
    )
    export.add_argument("--copy-media", action="store_true", help="copy the photos into PACKAGE/media/")
    export.set_defaults(handler=cmd_export_camtrap_dp)

    repeats = commands.add_parser(
        "repeats",
        help="list repeat-detection patterns; keep one that is a real animal",
        description=(
            "Boxes at the same place in many photos of one camera are flagged as probable false positives "
            "(settings: repeats: in the watch config). --keep ID marks a pattern as real (no longer flagged); "
            "--unkeep ID flags it again."
        ),
    )
    repeats.add_argument("--state", type=Path, required=True, help="the watch daemon's state folder")
    repeats.add_argument("--keep", action="append", default=[], metavar="ID", help="this pattern is real")
    repeats.add_argument("--unkeep", action="append", default=[], metavar="ID", help="flag this pattern again")
    repeats.set_defaults(handler=cmd_repeats)


def _media_words(records: list[PhotoRecord]) -> str:
    """How many photos and video clips, in words."""
    clips = sum(1 for r in records if r.is_clip)
    return f"{len(records) - clips} photos" + (f" and {clips} video clip(s)" if clips else "")
