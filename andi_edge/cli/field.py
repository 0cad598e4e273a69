"""Commands for the field device: watch, check, status, service."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi_edge.cli.options import (
    EXIT_OK,
    add_detection_options,
    add_media_options,
    add_renamed,
    detection_overrides,
    flag_words,
)
from andi_edge.errors import ConfigError, UsageError
from andi_edge.logs import configure_logging

log = logging.getLogger("andi_edge")

if TYPE_CHECKING:  # types only: the heavy modules load inside the commands that need them
    from andi_edge.assemble import Assembled
    from andi_edge.daemon.memory import MemoryPlan
    from andi_edge.pipeline import PipelinePlan
    from andi_edge.settings import WatchConfig
    from andi_edge.state.journal import Journal

# -- watch / check / status -----------------------------------------------------------------------------------


def _watch_config(args: argparse.Namespace) -> WatchConfig:
    """The config file, the flags over it: the detector's flags are the same as `detect`'s (one declaration each)."""
    from andi_edge.settings import load_watch_config

    overrides = {
        "watch": str(args.dir) if args.dir else None,
        "output": str(args.output) if args.output else None,
        "state": str(args.state) if args.state else None,
        **detection_overrides(args),
    }
    try:
        return load_watch_config(args.config, overrides)
    except ConfigError as exc:
        raise (flag_words(exc) if "(in command line)" in exc.message else exc) from exc


def _assemble(config: WatchConfig, before_load: Callable[[Path], None] | None = None) -> Assembled:
    from andi_edge.assemble import assemble

    assembled = assemble(config.detection, before_load=before_load)
    log.info("model %s (%s)", assembled.detector.model_path, assembled.model_reason)
    classifier = assembled.detector.classifier
    if classifier is not None:
        log.info("classifier %s (%s)", classifier.model_path, assembled.classifier_reason)
    return assembled


def _photos_at_once(plan: PipelinePlan) -> int:
    """The photos decoded at once in watch: the pipeline's decode workers and the writer cutting crops."""
    return plan.settings.decode_workers + 1


def _tensors_ahead(plan: PipelinePlan) -> int:
    """The inputs prepared ahead of the inference: the split pipeline's ``max_in_flight`` (parallel workers
    decode and infer each their own photo)."""
    return 0 if plan.parallel else plan.settings.max_in_flight


def _one_at_a_time(config: WatchConfig, plan: PipelinePlan) -> WatchConfig | None:
    """``config`` running one inference at a time on every core, where a memory limit may ask for it: how many
    inferences run at once was left to the machine and the plan runs several (``pipeline.left_to_the_machine``)."""
    import dataclasses

    from andi_edge.pipeline import left_to_the_machine, one_inference_at_a_time

    if plan.backend.concurrent_runs <= 1 or not left_to_the_machine(config.pipeline, config.backend):
        return None
    pipeline, backend = one_inference_at_a_time(config.pipeline, config.backend)
    return dataclasses.replace(config, pipeline=pipeline, backend=backend)


def _plan_memory(config: WatchConfig, assembled: Assembled, limit: int) -> tuple[MemoryPlan, WatchConfig | None]:
    """The memory rule watch applies at its start (``daemon.memory.plan_memory``) for this config and model, and
    the config that runs one inference at a time where the plan is that instead of the one asked for."""
    from andi_edge.assemble import plan_for
    from andi_edge.daemon.memory import plan_memory

    single = _one_at_a_time(config, assembled.plan)
    single_photos = None if single is None else _photos_at_once(plan_for(single.detection))
    plan = assembled.plan
    memory = plan_memory(
        assembled.detector,
        _photos_at_once(plan),
        plan.backend.concurrent_runs,
        limit,
        one_at_a_time_photos=single_photos,
        tensors_ahead=_tensors_ahead(plan),
    )
    return memory, (single if memory.instead_of is not None else None)


def _assemble_within_memory(config: WatchConfig) -> tuple[WatchConfig, Assembled]:
    """The detector watch runs, within its memory limit (the cgroup's; none: as configured). Where several
    inferences at once would not fit and one does, and how many run at once was left to the machine, the model is
    loaded again to run one inference at a time on every core, and the log says so; otherwise a model that does
    not fit is refused before any photo is touched, with what to change."""
    from andi_edge.daemon.memory import (
        MIB,
        cgroup_memory_limit,
        fit_to_memory,
        planned_bytes,
        refuse_unloadable,
        release_freed_memory,
    )
    from andi_edge.pipeline import one_inference_at_a_time_words

    assembled = _assemble(config, before_load=refuse_unloadable)
    limit = cgroup_memory_limit()
    if limit is None:
        return config, assembled
    memory, single = _plan_memory(config, assembled, limit)
    if single is not None and memory.instead_of is not None:
        asked = memory.instead_of
        log.warning(
            "memory: %d inferences at once need at least %d MiB of the %d MiB planned under the memory limit of "
            "%d MiB, one at a time %d MiB: running one inference at a time on %d threads (as %s would; set the "
            "pipeline's workers or threads to choose otherwise)",
            asked.concurrent_runs,
            asked.needed // MIB,
            planned_bytes(asked.limit) // MIB,
            asked.limit // MIB,
            memory.needed // MIB,
            single.backend.threads,
            one_inference_at_a_time_words(single.backend.threads),
        )
        del assembled  # its model's memory is given back before the model is loaded again
        release_freed_memory()
        config, assembled = single, _assemble(single, before_load=refuse_unloadable)
        memory, _ = _plan_memory(config, assembled, limit)  # one run at a time: nothing left to give way
    fit_to_memory(assembled.detector, memory)
    return config, assembled


def cmd_watch(args: argparse.Namespace) -> int:
    from andi_edge.daemon.service import RunOptions, WatchService

    config = _watch_config(args)
    configure_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    if not Path(config.watch).is_dir() and args.once:
        raise UsageError(f"{config.watch}: no such folder to watch")
    card_id = None
    if args.volume_file is not None:
        from andi_edge.daemon.card import card_name, read_volume_file

        card_id = card_name(read_volume_file(args.volume_file))
    config, assembled = _assemble_within_memory(config)
    detector, plan = assembled.detector, assembled.plan
    log.info("pipeline %s", plan.describe())
    service = WatchService(
        config=config,
        detector=detector,
        pipeline=plan.settings,
        state_dir=config.journal_dir,
        options=RunOptions(
            once=args.once, new_journal=args.new_journal, card_id=card_id, wait_for_lock=args.wait_for_lock
        ),
    )
    service.install_signal_handlers()
    if sys.stderr.isatty() and not os.environ.get("JOURNAL_STREAM"):  # a person at a terminal: a bar, logs above
        from tqdm.contrib.logging import logging_redirect_tqdm

        service.show_bar = True
        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            return service.run()
    return service.run()


def cmd_check(args: argparse.Namespace) -> int:
    from andi_edge.service_install import check_device_model
    from andi_edge.sinks.atomic import prove_writable

    config = _watch_config(args)
    check_device_model(Path(config.model), "model")
    assembled = _assemble(config)
    detector, plan = assembled.detector, assembled.plan
    why, classifier_why = assembled.model_reason, assembled.classifier_reason
    watch = Path(config.watch)
    print(f"config ok: {args.config or 'command line'}")
    print(
        f"model ok: {detector.model_path} ({detector.card.name}, {detector.card.head} head, "
        f"{detector.card.num_classes} classes, {detector.card.input_width}x{detector.card.input_height}, "
        f"{detector.loaded.backend} {','.join(detector.loaded.execution_providers)})"
    )
    print(f"watch folder: {watch} ({'present' if watch.is_dir() else 'not present now: the daemon will wait for it'})")
    for folder, what, key in ((Path(config.output), "outputs", "output"), (config.journal_dir, "journal", "state")):
        prove_writable(folder, what, f"{key} (in the config or --{key})", create=False)
    print(f"output: {config.output}; state: {config.journal_dir} (both writable)")
    print(f"model choice: {why}")
    classifier = detector.classifier
    if classifier is None:
        print("classifier: none (boxes keep the detector's categories)")
    else:
        card = classifier.card
        classes = ", ".join(detector.class_names[i] for i in sorted(detector.classified_classes))
        print(
            f"classifier ok: {classifier.model_path} ({card.name}, {card.architecture}, {len(card.labels)} labels, "
            f"{card.input_width_px}x{card.input_height_px}, card: {card.source}); classifies {classes} boxes "
            f">= {classifier.settings.min_conf}, names a species >= {classifier.settings.label_threshold}"
        )
        print(f"classifier choice: {classifier_why}")
    print(f"pipeline: {plan.describe()}")
    _check_memory(config, assembled)
    if config.alerts.configured or config.alerts.rules:
        from andi_edge.alerts.probe import check_destinations, check_rules

        config.alerts.validate(str(args.config or "the command line"))
        labels = list(detector.class_names) + (list(classifier.card.labels) if classifier is not None else [])
        check_rules(config.alerts, labels)
        print(f"alerts: {len(config.alerts.rules)} rule(s) ok")
        for line in check_destinations(config.alerts):
            print(line)
    return EXIT_OK


def _check_memory(config: WatchConfig, assembled: Assembled) -> None:
    """Whether the model fits the watch unit's memory limit (the installed unit's, else the shipped one's), by the
    rule ``watch`` applies at its start."""
    from andi_edge.daemon.memory import SHIPPED_UNIT, unit_memory_max
    from andi_edge.pipeline import one_inference_at_a_time_words
    from andi_edge.service_install import UNIT_DIR, UNITS

    installed = UNIT_DIR / UNITS[0]
    unit = installed if installed.is_file() else SHIPPED_UNIT
    limit = unit_memory_max(unit)
    if limit is None:
        print(f"memory: {unit} sets no MemoryMax")
        return
    memory, single = _plan_memory(config, assembled, limit)
    if single is not None and memory.instead_of is not None:
        print(
            f"memory ok: {memory.instead_of.concurrent_runs} inferences at once would not fit "
            f"({memory.instead_of.describe()}); watch will run one inference at a time on {single.backend.threads} "
            f"threads ({one_inference_at_a_time_words(single.backend.threads)}), where {memory.describe()}"
        )
        return
    if memory.fits:
        print(f"memory ok: {memory.describe()}")
        return
    print(
        f"warning: memory: {memory.describe()}: `watch` under that unit would refuse to start. To fix: "
        f"{memory.remedy()} ({unit}, on a device with the memory for it)",
        file=sys.stderr,
    )


def _results_file_status(path: Path, as_json: bool) -> int:
    """`status` of a results file: what it holds, in a reviewer's words."""
    import json

    from andi_edge.results.labels import count_photos
    from andi_edge.results.run import load_results_file
    from andi_edge.sinks.names import display_text

    results = load_results_file(path)
    threshold = results.facts.typical_threshold
    counts = count_photos(results.records, results.facts.labels, threshold)
    failures = [r for r in results.records if r.failure is not None]
    report = {
        "source": str(path),
        "photos": sum(1 for r in results.records if not r.is_clip),
        "video_clips": sum(1 for r in results.records if r.is_clip),
        "threshold": threshold,
        "photos_with": counts.per_label,
        "empty": counts.empty,
        "failed": [{"file": r.rel_path, "failure": r.failure} for r in failures],
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    with_text = ", ".join(f"{n} with {name}" for name, n in counts.ranked())
    clips = sum(1 for r in results.records if r.is_clip)
    media = f"{len(results.records) - clips} photos" + (f" and {clips} video clip(s)" if clips else "")
    print(f"{path}: {media} by {results.facts.model_name}")
    print(
        f"at confidence >= {threshold:g}: {with_text or 'no detections'}; {counts.empty} empty; "
        f"{counts.failed} unreadable"
    )
    for record in failures[:10]:
        print(f"unreadable: {display_text(record.rel_path)}: {display_text(record.failure or '')}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    import json
    import shutil

    from andi_edge.cli.review import results_source
    from andi_edge.daemon.progress import iso_utc
    from andi_edge.daemon.retry import retryable
    from andi_edge.sinks.names import display_text
    from andi_edge.state.journal import find_state_dir, open_existing

    source = results_source(args)
    try:
        if source.is_file():
            return _results_file_status(source, args.json)
        source = find_state_dir(source) or source  # an output folder names its daemon's state folder
    except PermissionError:
        pass  # a folder this user may not look into: open_existing says so
    args.state = source
    journal = open_existing(args.state)
    try:
        counts = journal.counts()
        clips = journal.finished_clips()
        last = journal.last_finished()
        failures = journal.recent_failures(args.failures)
        retrying = journal.retrying(args.failures)
        found = _found_line(journal)
    finally:
        journal.close()
    disk_path = args.output or args.state
    usage = shutil.disk_usage(disk_path)
    report: dict[str, Any] = {
        "state": str(args.state),
        "counts": counts,
        "last_photo": None
        if last is None
        else {"card_id": last.card_id, "file": last.rel_path, "state": last.state, "at": iso_utc(last.updated_at)},
        "recent_failures": [
            {"card_id": f.card_id, "file": f.rel_path, "failure": f.failure, "retryable": retryable(f.failure)}
            for f in failures
        ],
        "retrying": [
            {
                "card_id": r.card_id,
                "file": r.rel_path,
                "error": r.last_error,
                "attempts": r.attempts,
                "next_at": iso_utc(r.retry_at) if r.retry_at is not None else None,
            }
            for r in retrying
        ],
        "free_bytes": usage.free,
        "free_path": str(disk_path),
        "finished_video_clips": clips,
    }
    daemon = _daemon_facts(args.state)
    report["daemon"] = daemon
    report["alerts"] = _alerts_summary(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    waiting = counts.get("pending", 0) + counts.get("claimed", 0)
    repeats = counts.get("duplicate", 0)
    print(
        f"photos: done {counts.get('done', 0)}, failed {counts.get('failed', 0)}, waiting {waiting}"
        + (f", {repeats} already done before (a card inserted again)" if repeats else "")
        + (f" (of the done ones, {clips} video clip(s))" if clips else "")
    )
    if found is not None:
        print(found)
    print(_daemon_line(daemon))
    if last is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.updated_at))
        print(f"last photo: {last.card_id}/{display_text(last.rel_path)} ({last.state}, {when})")
    for f in failures:
        kind = "can be retried once fixed" if retryable(f.failure) else "final: the file itself"
        print(f"failed ({kind}): {f.card_id}/{display_text(f.rel_path)}: {display_text(f.failure or '')}")
    for r in retrying:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.retry_at or 0))
        print(
            f"retrying: {r.card_id}/{display_text(r.rel_path)}: {display_text(r.last_error or '')} "
            f"({r.attempts} attempt(s) so far, next at {when})"
        )
    if any(retryable(f.failure) for f in failures):
        print(f"to try failed photos again once fixed: andi-edge retry-failed --state {args.state}")
    print(f"free disk at {disk_path}: {usage.free / (1 << 30):.2f} GiB")
    if report["alerts"] is not None:
        print(_alerts_line(report["alerts"]))
    return EXIT_OK


def _alerts_summary(args: argparse.Namespace) -> dict[str, Any] | None:
    """The alerts' last status and their queue now, when `andi-edge alerts` ran on this journal."""
    from andi_edge.alerts.outbox import read_summary
    from andi_edge.alerts.service import default_delivery_dir

    return read_summary(args.alerts_state or default_delivery_dir(Path(args.state)))


def _alerts_line(summary: dict[str, Any]) -> str:
    backlog = summary.get("backlog") or {}
    waiting = sum(int(n) for n in backlog.values())
    links = summary.get("links") or {}
    down = [f"{name}: {state}" for name, state in links.items() if state != "ok"]
    held = summary.get("held_back_today") or {}
    parts = [
        f"alerts: {waiting} waiting to be delivered"
        + (f" ({', '.join(f'{k} {v}' for k, v in backlog.items())})" if waiting else ""),
        f"{summary.get('alerts_today', 0)} raised today",
    ]
    if held:
        parts.append("held back today: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in held.items()))
    if summary.get("thumbnails_dropped"):
        parts.append(f"{summary['thumbnails_dropped']} thumbnail(s) dropped (backlog bound)")
    parts.append("links: " + ("; ".join(down) if down else "ok") + f" (as of {summary.get('time')})")
    text = "; ".join(parts)
    for warning in summary.get("warnings") or []:
        text += f"\nwarning: {warning}"
    return text


def _found_line(journal: Journal) -> str | None:
    """What the finished photos show, at the run's typical threshold, in a reviewer's words."""
    from andi_edge.results.labels import count_photos
    from andi_edge.results.records import record_from_row
    from andi_edge.results.run import RunFacts

    meta = journal.get_meta("run")
    if meta is None:
        return None
    facts = RunFacts.from_meta(meta)
    threshold = facts.typical_threshold
    done = (
        record_from_row(row) for card in journal.cards() for row in journal.latest_finished(card) if row.state == "done"
    )
    counts = count_photos(done, facts.labels, threshold)
    found = ", ".join(f"{n} with {name}" for name, n in counts.ranked()) or "no detections"
    return f"at confidence >= {threshold:g}: {found}; {counts.empty} empty"


def _daemon_facts(state: Path) -> dict[str, object]:
    import json

    from andi_edge.daemon.progress import DAEMON_FILE
    from andi_edge.daemon.service import daemon_running

    running = daemon_running(state)
    facts: dict[str, object] = {"running": running}
    if running:
        with contextlib.suppress(OSError, ValueError):
            facts.update(json.loads((state / DAEMON_FILE).read_text()))
    return facts


def _daemon_line(facts: dict[str, object]) -> str:
    if facts.get("running") is None:
        return "daemon: cannot tell whether one is running (this user may not open the state folder's lock)"
    if not facts.get("running"):
        return "daemon: not running"
    detail = ", ".join(
        part
        for part in (
            f"pid {facts['pid']}" if "pid" in facts else "",
            f"since {facts['started_at']}" if "started_at" in facts else "",
            f"{facts['photos_per_s']} photos/s" if facts.get("photos_per_s") else "",
        )
        if part
    )
    return f"daemon: running ({detail})" if detail else "daemon: running"


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from andi_edge.daemon.retry import RETRYABLE_FAILURES
    from andi_edge.daemon.service import state_lock_if_free
    from andi_edge.state.journal import needs_upgrade, open_existing

    open_existing(args.state).close()  # a wrong --state is said as such
    with state_lock_if_free(args.state) as free:
        if not free and needs_upgrade(args.state):
            raise UsageError(
                f"the journal in {args.state} is of an older andi-edge, whose watch is running on it: retry-failed "
                "would upgrade it under that daemon",
                hint="stop the running watch (systemctl stop andi-edge), or upgrade and restart it first",
            )
        journal = open_existing(args.state, writable=True)
        try:
            reasons = args.reason or (None if args.all else RETRYABLE_FAILURES)
            n = journal.retry_failed(card_id=args.card, reason=reasons)
            left = 0 if reasons is None else journal.counts().get("failed", 0)
        finally:
            journal.close()
    scope = "".join(
        part for part in (f" of card {args.card}" if args.card else "", f" ({args.reason}...)" if args.reason else "")
    )
    if n:
        print(
            f"{n} failed photo(s){scope} back in the queue: a running daemon takes them within a poll, otherwise "
            "the next `andi-edge watch` does"
        )
    else:
        print(f"no failed photos{scope} to try again in {args.state}")
    if left:
        print(f"{left} failure(s) of the file itself left alone (corrupt, empty, not a photo): --all takes them too")
    return EXIT_OK


# -- service install / uninstall ------------------------------------------------------------------------------


def cmd_service(args: argparse.Namespace) -> int:
    from andi_edge import service_install as si

    root = args.root or Path("/")
    if args.action == "install" and args.alerts:
        if args.watch is not None or args.model is not None:
            raise UsageError(
                "--alerts is a step of its own: install the watch service first (--watch, --model), set the alerts: "
                "section of its config, then run `service install --alerts`"
            )
        plan = si.plan_install_alerts(root)
    elif args.action == "install":
        if args.watch is None or args.model is None:
            raise UsageError("service install needs --watch DIR and --model MODEL.onnx")
        plan = si.plan_install(root, args.watch, args.model, args.output, args.profile, classifier=args.classifier)
    else:
        plan = si.plan_uninstall(root, purge=args.purge)
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        raise UsageError("installing into / needs root", hint="run with sudo, or stage with --root DIR / --dry-run")
    for line in si.execute(plan, dry_run=args.dry_run):
        print(line)
    if args.action == "install" and args.alerts and not args.dry_run:
        print(f"alerts installed; see them with: journalctl -u {si.ALERTS_UNIT} and andi-edge status")
    elif args.action == "install" and not args.dry_run:
        si.validate_config_file(plan.path(si.CONFIG_DIR / "config.yaml"))
        where = "" if root == Path("/") else f" under {root}"
        print(f"installed{where}; check it with: andi-edge check --config {si.CONFIG_DIR / 'config.yaml'}")
    return EXIT_OK


def register(commands: Any) -> None:
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
    watch.add_argument("--output", "-o", type=Path, help="where outputs go (or `output:` in the config)")
    watch.add_argument("--state", type=Path, help="journal folder (default: OUTPUT/.andi-edge-state)")
    watch.add_argument(
        "--config",
        "-c",
        type=Path,
        help="YAML config file (every key: andi_edge/assets/config.example.yaml; `service install` writes one)",
    )
    watch.add_argument("--once", action="store_true", help="process what is there now, write outputs, exit 0")
    watch.add_argument(
        "--new-journal",
        action="store_true",
        help="begin a new journal although outputs of an earlier run exist (after a lost or damaged journal: "
        "every photo is processed again, its outputs rewritten in place)",
    )
    watch.add_argument(
        "--wait-for-lock",
        action="store_true",
        help="if another watch uses the same --state folder, wait for it to finish instead of failing (card units)",
    )
    watch.add_argument(
        "--volume-file",
        type=Path,
        default=None,
        help="DIR is one card whose volume is described by this file (`blkid -o export` output, written by the "
        "card script's privileged mount step): its card id comes from there, not from /dev (hidden in the sandbox)",
    )
    watch.add_argument("--log-format", choices=["plain", "json"], default=None, help="log line format")
    add_detection_options(watch, model_required=False)
    add_media_options(watch)
    watch.set_defaults(handler=cmd_watch)

    check = commands.add_parser(
        "check", help="validate a watch config and its model without running", description="Validate config and model."
    )
    check.add_argument("dir", nargs="?", type=Path, help="folder to watch (overrides the config)")
    check.add_argument("--config", "-c", type=Path, help="YAML config file")
    check.add_argument("--output", "-o", type=Path, help="output folder (overrides the config)")
    check.add_argument("--state", type=Path, help="journal folder (overrides the config)")
    add_detection_options(check, model_required=False)
    check.set_defaults(handler=cmd_check)

    status = commands.add_parser(
        "status",
        help="what a run has done: counts, last photo, failures, free disk",
        description="Read the journal of `andi-edge watch` (or a results file) and report.",
    )
    status.add_argument(
        "source",
        nargs="?",
        type=Path,
        metavar="SOURCE",
        help="a watch output or state folder, or a results file (detect's -o, MegaDetector's, AddaxAI's)",
    )
    status.add_argument("--state", type=Path, default=None, help="the daemon's state folder (the same as SOURCE)")
    status.add_argument(
        "--disk",
        dest="output",
        type=Path,
        default=None,
        help="the folder whose free space to say (default: the state's)",
    )
    add_renamed(status, "--disk", "--output", "-o")
    status.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    status.add_argument(
        "--alerts-state",
        type=Path,
        default=None,
        help="the alerts' delivery state, if not beside the journal (alerts.state in the config)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    retry = commands.add_parser(
        "retry-failed",
        help="process failed photos again (after a card was cleaned or reseated, or a file made readable)",
        description=(
            "Put photos recorded as failed back in the queue, with their attempts reset. A running daemon picks them "
            "up within a poll; otherwise the next `watch` does. Their outputs are rewritten in place."
        ),
    )
    retry.add_argument("--state", type=Path, required=True, help="the daemon's state folder")
    retry.add_argument("--card", default=None, help="only photos of this card id (as in `status`)")
    retry.add_argument("--reason", default=None, help="only failures starting with this, e.g. unreadable, crashed")
    retry.add_argument(
        "--all",
        action="store_true",
        help="also failures of the file itself (corrupt, empty, not a photo), which would only fail again unless "
        "the file was replaced",
    )
    retry.set_defaults(handler=cmd_retry_failed)

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
    service.add_argument("action", choices=["install", "uninstall"], help="install or remove the service")
    service.add_argument("--watch", type=Path, help="folder or card mount point to watch (install)")
    service.add_argument("--model", "-m", type=Path, help="ONNX model to install (install)")
    service.add_argument(
        "--classifier", type=Path, default=None, help="species classifier (ONNX) to install beside it (install)"
    )
    service.add_argument(
        "--output", "-o", type=Path, default=None, help="output folder (default /var/lib/andi-edge/output)"
    )
    service.add_argument("--profile", choices=["raspberry-pi", "jetson", "x86"], default=None, help="device profile")
    service.add_argument("--root", type=Path, default=None, help="stage into this folder instead of /")
    service.add_argument("--dry-run", action="store_true", help="print every file and command; change nothing")
    service.add_argument("--purge", action="store_true", help="uninstall: also remove config and all data")
    service.add_argument(
        "--alerts",
        action="store_true",
        help="install: the live-alerts unit (andi-edge-alerts.service) from the installed config's alerts: section "
        "(a step of its own, after the watch service; network only to the configured hosts)",
    )
    service.set_defaults(handler=cmd_service)
