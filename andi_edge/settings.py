"""The daemon's configuration file: typed sections, strict validation, command-line overrides.

Unknown keys are errors that name the key and the file. Values are checked for type and range once, at
start (``andi-edge check --config FILE``), so a typo never surfaces at 3 a.m. in the field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from andi_edge.config import INFERENCE_PRECISIONS, PIPELINE_MODES, ClassifierSettings, DetectorSettings
from andi_edge.errors import ConfigError


@dataclass(frozen=True)
class BackendSettings:
    name: str = "ort"
    #: inference threads (0 = auto: the cores the decode workers leave, without spinning)
    threads: int = 0
    providers: tuple[str, ...] = ()
    #: run MODEL-int8.onnx beside the model when its card says it passed the accuracy gate (runtime.model_choice)
    prefer_int8: bool = False
    #: inference arithmetic (config.INFERENCE_PRECISIONS): bf16 needs the openvino backend
    precision: str = "f32"


@dataclass(frozen=True)
class DiscoverySettings:
    #: use inotify (watchdog) for low-latency discovery; periodic rescans run regardless
    inotify: bool = True
    #: how often folders are looked at for new photos (catches what events miss: FAT/exFAT cards, network
    #: mounts). Only folders whose mtime changed are listed again, so a big card costs a stat per folder.
    poll_interval_s: float = 5.0
    #: how often every file is looked at again (a photo rewritten in place, which leaves its folder's mtime alone)
    full_rescan_s: float = 600.0
    #: a file is read once its size and mtime have not changed for this long (or it was closed after writing)
    stable_s: float = 2.0


@dataclass(frozen=True)
class OutputSettings:
    sidecars: bool = True
    crops: bool = True
    #: crops are cut for detections at or above this confidence
    crop_threshold: float = 0.2
    #: padding around each crop, as a fraction of the box's larger side
    crop_padding: float = 0.1
    crop_jpeg_quality: int = 90
    #: the MegaDetector batch JSON of each card is re-rendered from the journal this often (and at exit)
    batch_json_interval_s: float = 60.0


@dataclass(frozen=True)
class DiskSettings:
    #: below this much free space in the output folder, crops stop first
    crops_min_free_mb: int = 500
    #: below this, nothing is written: the daemon pauses and retries
    min_free_mb: int = 100
    retry_interval_s: float = 10.0
    #: `watch --once` (the card unit) gives up after waiting this long for space, with exit code 9
    once_give_up_s: float = 600.0


@dataclass(frozen=True)
class RetrySettings:
    """A photo that cannot be read for a reason that may pass (an I/O error, a permission, a card reseated) is
    tried again after a backoff, doubling each time; after ``max_attempts`` it is recorded as failed.
    A photo that was read but cannot be decoded fails at once (it will not get better)."""

    max_attempts: int = 5
    backoff_s: float = 30.0
    max_backoff_s: float = 900.0
    #: a photo being processed each time the daemon died (a decoder crash, an OOM kill, a read hung until the
    #: watchdog) is recorded as failed ("crashed") at the start after this many, and the card goes on
    max_crashes: int = 3
    #: a photo whose read, decode and inference take longer than this is given up on for now and tried again
    #: later (a read stuck on a card that stopped answering); below the unit's WatchdogSec (120 s)
    read_timeout_s: float = 60.0


@dataclass(frozen=True)
class PipelineSettingsSection:
    #: auto, parallel or split (see andi_edge.pipeline)
    mode: str = "auto"
    #: parallel: photos read, decoded and inferred at once (0 = one per core)
    workers: int = 0
    #: split: threads decoding ahead of inference
    decode_workers: int = 1
    max_in_flight: int = 4


@dataclass(frozen=True)
class MetricsSettings:
    #: Prometheus text file (node_exporter textfile collector), rewritten atomically; empty = off
    textfile: str = ""
    interval_s: float = 15.0


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "info"
    #: plain or json (one object per line; journald-friendly either way)
    format: str = "plain"


@dataclass(frozen=True)
class EventSettings:
    #: photos of one camera taken at most this far apart (EXIF capture time) belong to one event
    gap_s: float = 60.0
    #: an event is labelled with its highest-confidence detection at or above this (unset: the model's typical
    #: threshold); none that high makes it an empty event
    label_threshold: float | None = None


@dataclass(frozen=True)
class RepeatSettings:
    """Boxes recurring at one place in many photos of one camera (a rock, a branch): probable false positives."""

    enabled: bool = True
    #: flag: mark them in every output, keep their confidence; suppress: also negate their confidence in the
    #: MegaDetector outputs (MegaDetector's repeat-detection convention: viewers hide them at any threshold),
    #: leave them out of event labels, Camtrap DP and the report's counts. Reversible either way.
    action: str = "flag"
    #: two boxes are "the same place" when their IoU is at least this
    iou_threshold: float = 0.85
    #: ...and a place is a repeat when it holds a box in at least this many photos of one camera
    min_photos: int = 10
    #: boxes below this confidence are not considered
    min_conf: float = 0.1
    #: boxes larger than this fraction of the photo are never flagged (an animal close up fills the frame)
    max_area: float = 0.2
    #: the daemon re-runs the search on a card at most this often (about a second per 10,000 photos on a
    #: laptop core); always at start, at exit and when a card is pulled. Events are updated at every render.
    interval_s: float = 300.0


@dataclass(frozen=True)
class WatchConfig:
    watch: str = ""
    model: str = ""
    output: str = ""
    state: str = ""
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    #: the second stage: a crop classifier naming the species (classifier.model empty: none)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    disk: DiskSettings = field(default_factory=DiskSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    pipeline: PipelineSettingsSection = field(default_factory=PipelineSettingsSection)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    events: EventSettings = field(default_factory=EventSettings)
    repeats: RepeatSettings = field(default_factory=RepeatSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def validate(self, source: str) -> WatchConfig:
        """Range checks across fields; returns self so it chains."""
        for name in ("watch", "model", "output"):
            if not getattr(self, name):
                raise ConfigError(f"'{name}' is not set in {source}", hint=f"set it in the file or pass --{name}")
        checks = [
            (0 <= self.outputs.crop_threshold <= 1, "outputs.crop_threshold must be between 0 and 1"),
            (0 <= self.outputs.crop_padding <= 1, "outputs.crop_padding must be between 0 and 1"),
            (1 <= self.outputs.crop_jpeg_quality <= 100, "outputs.crop_jpeg_quality must be 1..100"),
            (self.outputs.batch_json_interval_s > 0, "outputs.batch_json_interval_s must be positive"),
            (self.discovery.poll_interval_s > 0, "discovery.poll_interval_s must be positive"),
            (
                self.discovery.full_rescan_s >= self.discovery.poll_interval_s,
                "discovery.full_rescan_s must be at least discovery.poll_interval_s",
            ),
            (self.discovery.stable_s >= 0, "discovery.stable_s must not be negative"),
            (self.disk.min_free_mb >= 0 and self.disk.crops_min_free_mb >= 0, "disk thresholds must not be negative"),
            (self.disk.retry_interval_s > 0, "disk.retry_interval_s must be positive"),
            (self.disk.once_give_up_s >= 0, "disk.once_give_up_s must not be negative"),
            (self.retry.max_attempts >= 1, "retry.max_attempts must be at least 1"),
            (self.retry.max_crashes >= 1, "retry.max_crashes must be at least 1"),
            (0 < self.retry.read_timeout_s <= 110, "retry.read_timeout_s must be in (0, 110]: below the watchdog"),
            (0 < self.retry.backoff_s <= self.retry.max_backoff_s, "retry: 0 < backoff_s <= max_backoff_s"),
            (self.pipeline.decode_workers >= 0, "pipeline.decode_workers must be >= 0"),
            (self.pipeline.mode in PIPELINE_MODES, f"pipeline.mode must be one of {', '.join(PIPELINE_MODES)}"),
            (self.pipeline.workers >= 0, "pipeline.workers must be >= 0 (0 = one per core)"),
            (self.pipeline.max_in_flight >= 1, "pipeline.max_in_flight must be >= 1"),
            (self.backend.threads >= 0, "backend.threads must be >= 0"),
            (
                self.backend.precision in INFERENCE_PRECISIONS,
                f"backend.precision must be one of {', '.join(INFERENCE_PRECISIONS)}",
            ),
            (
                self.backend.precision == "f32" or self.backend.name == "openvino",
                "backend.precision bf16 needs backend.name: openvino (ONNX Runtime's CPU kernels are f32)",
            ),
            (self.logging.level in {"debug", "info", "warning", "error"}, "logging.level: debug|info|warning|error"),
            (self.logging.format in {"plain", "json"}, "logging.format must be plain or json"),
            (self.metrics.interval_s > 0, "metrics.interval_s must be positive"),
            (self.events.gap_s >= 0, "events.gap_s must not be negative"),
            (
                self.events.label_threshold is None or 0 <= self.events.label_threshold <= 1,
                "events.label_threshold must be between 0 and 1",
            ),
            (self.repeats.action in {"flag", "suppress"}, "repeats.action must be flag or suppress"),
            (0 < self.repeats.iou_threshold <= 1, "repeats.iou_threshold must be in (0, 1]"),
            (self.repeats.min_photos >= 2, "repeats.min_photos must be at least 2"),
            (0 <= self.repeats.min_conf <= 1, "repeats.min_conf must be between 0 and 1"),
            (0 < self.repeats.max_area <= 1, "repeats.max_area must be in (0, 1]"),
            (self.repeats.interval_s >= 0, "repeats.interval_s must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message} (in {source})")
        return self


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check a YAML value against a field's type; dataclass sections recurse."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {source} must be a mapping, got {type(value).__name__}")
        return build_strict(annotation, value, source, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key, source)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' in {source} must be a list")
        item = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {source} must be a mapping")
        item = typing.get_args(annotation)[1]
        return {str(k): _coerce(v, item, f"{key}.{k}", source) for k, v in value.items()}
    expected: dict[Any, tuple[type, ...]] = {
        bool: (bool,),
        int: (int,),
        float: (int, float),
        str: (str,),
    }
    allowed = expected.get(annotation)
    if allowed is None:
        raise ConfigError(f"'{key}' in {source} has an unsupported type")
    if not isinstance(value, allowed) or (annotation is not bool and isinstance(value, bool)):
        raise ConfigError(f"'{key}' in {source} must be {annotation.__name__}, got {value!r}")
    if annotation is float and not math.isfinite(typing.cast(float, value)):
        raise ConfigError(f"'{key}' in {source} must be a finite number, got {value!r}")
    return float(typing.cast(float, value)) if annotation is float else value


def build_strict(cls: type[Any], values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """A dataclass from a mapping: unknown keys and wrong types are ConfigErrors naming the key and file."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' in {source}",
            hint=f"known keys here: {', '.join(prefix + k for k in sorted(known))}",
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name, source) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (in {source})", exc.hint) from exc


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level")
    return loaded


def load_watch_config(path: Path | None, overrides: dict[str, Any] | None = None) -> WatchConfig:
    """Read the YAML file (if any), apply command-line overrides (dotted keys), validate."""
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        raw = read_yaml_mapping(path)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = value
    config: WatchConfig = build_strict(WatchConfig, raw, source)
    return config.validate(source)
