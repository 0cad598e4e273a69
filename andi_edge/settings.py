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

from andi_edge.alerts.config import AlertSettings
from andi_edge.config import (
    MEDIA_KINDS,
    BackendSettings,
    ClassifierSettings,
    DetectorSettings,
    PipelineSettings,
    VideoSettings,
)
from andi_edge.declare import check, declaration, setting
from andi_edge.errors import ConfigError


@dataclass(frozen=True)
class DiscoverySettings:
    """How new photos are found on the card."""

    inotify: bool = setting(True, "use inotify for low-latency discovery; periodic rescans run regardless")
    poll_interval_s: float = setting(
        5.0,
        "how often folders are looked at for new photos (what events miss: FAT/exFAT cards, network mounts); only "
        "folders whose mtime changed are listed again, so a big card costs a stat per folder",
        above=0,
    )
    full_rescan_s: float = setting(
        600.0,
        "how often every file is looked at again (a photo rewritten in place leaves its folder's mtime alone); at "
        "least poll_interval_s",
        above=0,
    )
    stable_s: float = setting(
        2.0,
        "a file is read once its size and mtime have not changed for this long (or it was closed after writing)",
        min=0,
    )

    def __post_init__(self) -> None:
        check(self, "discovery")


@dataclass(frozen=True)
class OutputSettings:
    """What is written beside each card's batch file."""

    sidecars: bool = setting(True, "a JSON file beside each photo's place in the output folder, with its result")
    crops: bool = setting(True, "a JPEG crop of each box above crop_threshold, in crops/<label>/")
    crop_threshold: float = setting(0.2, "crops are cut for detections at or above this confidence", min=0, max=1)
    crop_padding: float = setting(0.1, "padding around each crop, as a fraction of the box's larger side", min=0, max=1)
    crop_jpeg_quality: int = setting(90, "JPEG quality of the crops", min=1, max=100)
    batch_json_interval_s: float = setting(
        60.0,
        "each card's MegaDetector batch JSON (and the sidecars whose event changed) is rendered from the journal "
        "this often, and at exit",
        above=0,
    )

    def __post_init__(self) -> None:
        check(self, "outputs")


@dataclass(frozen=True)
class DiskSettings:
    """Full disks: crops stop first, then everything pauses (nothing is lost)."""

    crops_min_free_mb: int = setting(500, "below this much free space in the output folder (MiB), crops stop", min=0)
    min_free_mb: int = setting(100, "below this (MiB), nothing is written: the daemon pauses and retries", min=0)
    retry_interval_s: float = setting(10.0, "how often a paused daemon looks for space again", above=0)
    once_give_up_s: float = setting(
        600.0, "`watch --once` (the card unit) gives up after waiting this long for space, with exit code 9", min=0
    )

    def __post_init__(self) -> None:
        check(self, "disk")


@dataclass(frozen=True)
class RetrySettings:
    """A photo that cannot be read for a reason that may pass (an I/O error, a permission, a card reseated) is
    tried again after a backoff, doubling each time; after ``max_attempts`` it is recorded as failed.
    A photo that was read but cannot be decoded fails at once (it will not get better)."""

    max_attempts: int = setting(5, "reads of a photo before it is recorded as failed", min=1)
    backoff_s: float = setting(30.0, "the wait before the second attempt, doubling after each", above=0)
    max_backoff_s: float = setting(900.0, "the longest wait between attempts (at least backoff_s)", above=0)
    max_crashes: int = setting(
        3,
        "a photo being processed each time the daemon died (a decoder crash, an OOM kill, a read hung until the "
        "watchdog) is recorded as failed ('crashed') at the start after this many, and the card goes on",
        min=1,
    )
    read_timeout_s: float = setting(
        60.0,
        "a photo whose read, decode and inference take longer is given up on for now and tried again later (a read "
        "stuck on a card that stopped answering); below the unit's WatchdogSec (120 s)",
        above=0,
        max=110,
    )

    def __post_init__(self) -> None:
        check(self, "retry")


@dataclass(frozen=True)
class MetricsSettings:
    textfile: str = setting(
        "", "Prometheus text file (node_exporter's textfile collector), rewritten atomically; empty: off"
    )
    interval_s: float = setting(15.0, "how often the metrics file is rewritten", above=0)

    def __post_init__(self) -> None:
        check(self, "metrics")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = setting("info", "log level", choices=("debug", "info", "warning", "error"))
    format: str = setting(
        "plain", "plain, or json: one object per line (journald-friendly either way)", choices=("plain", "json")
    )

    def __post_init__(self) -> None:
        check(self, "logging")


@dataclass(frozen=True)
class EventSettings:
    """Photos of one camera close in time are one event (a sequence, a visit)."""

    gap_s: float = setting(
        60.0, "photos of one camera taken at most this far apart (EXIF capture time) belong to one event", min=0
    )
    label_threshold: float | None = setting(
        None,
        "an event is labelled with its most confident detection at or above this; none that high makes it an "
        "empty event",
        min=0,
        max=1,
        none_means="the model's typical threshold",
    )

    def __post_init__(self) -> None:
        check(self, "events")


@dataclass(frozen=True)
class RepeatSettings:
    """Boxes recurring at one place in many photos of one camera (a rock, a branch): probable false positives."""

    enabled: bool = setting(True, "look for repeated boxes")
    action: str = setting(
        "flag",
        "flag: mark them in every output, keep their confidence; suppress: also negate their confidence in the "
        "MegaDetector outputs (MegaDetector's repeat-detection convention: viewers hide them at any threshold), and "
        "leave them out of event labels, Camtrap DP and the report's counts. Reversible either way",
        choices=("flag", "suppress"),
    )
    iou_threshold: float = setting(
        0.85, "two boxes are 'the same place' when their IoU is at least this", above=0, max=1
    )
    min_photos: int = setting(
        10, "a place is a repeat when it holds a box in at least this many photos of one camera", min=2
    )
    min_conf: float = setting(0.1, "boxes below this confidence are not considered", min=0, max=1)
    max_area: float = setting(
        0.2, "boxes larger than this fraction of the photo are never flagged (an animal close up)", above=0, max=1
    )
    interval_s: float = setting(
        300.0,
        "the daemon searches a card again at most this often (about a second per 10,000 photos on a laptop core); "
        "always at start, at exit and when a card is pulled. Events are updated at every render",
        min=0,
    )

    def __post_init__(self) -> None:
        check(self, "repeats")


def _model_setting() -> Any:
    return setting("", "the detector's ONNX file (from `andi-edge export`)")


def _media_setting() -> Any:
    """The media setting, declared once for the detection and the watch configs (a field belongs to one class)."""
    return setting(
        "all",
        "which files are processed: photos and video clips, photos only, or clips only",
        choices=MEDIA_KINDS,
        flag="--media",
    )


@dataclass(frozen=True)
class DetectionConfig:
    """What runs a detector, the same for `detect`, `batch`, `bench` and `watch`: the model and four sections."""

    model: str = _model_setting()
    media: str = _media_setting()
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    video: VideoSettings = field(default_factory=VideoSettings)


@dataclass(frozen=True)
class WatchConfig:
    watch: str = setting("", "the folder watched: the card's mount point (flag: the DIR argument)")
    model: str = _model_setting()
    output: str = setting("", "where each card's results go: OUTPUT/CARD/megadetector_results.json, sidecars, crops")
    state: str = setting("", "the journal's folder (empty: OUTPUT/.andi-edge-state)")
    media: str = _media_setting()
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    #: the second stage: a crop classifier naming the species (classifier.model empty: none)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    disk: DiskSettings = field(default_factory=DiskSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    events: EventSettings = field(default_factory=EventSettings)
    repeats: RepeatSettings = field(default_factory=RepeatSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    #: read by `andi-edge alerts` (its own process and unit), never by `watch`
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @property
    def journal_dir(self) -> Path:
        """The journal's folder: ``state``, else OUTPUT/.andi-edge-state."""
        from andi_edge.state.journal import DEFAULT_STATE_NAME

        return Path(self.state) if self.state else Path(self.output) / DEFAULT_STATE_NAME

    @property
    def detection(self) -> DetectionConfig:
        return DetectionConfig(
            model=self.model,
            media=self.media,
            detector=self.detector,
            classifier=self.classifier,
            backend=self.backend,
            pipeline=self.pipeline,
            video=self.video,
        )

    def validate(self, source: str) -> WatchConfig:
        """What no single setting can check: the required keys, and settings bounded by each other (each setting's
        own range is checked by its section, as declared). Returns self so it chains."""
        for name in ("watch", "model", "output"):
            if not getattr(self, name):
                raise ConfigError(f"'{name}' is not set in {source}", hint=f"set it in the file or pass --{name}")
        checks = [
            (
                self.discovery.full_rescan_s >= self.discovery.poll_interval_s,
                "discovery.full_rescan_s must be at least discovery.poll_interval_s",
            ),
            (self.retry.backoff_s <= self.retry.max_backoff_s, "retry.backoff_s must be at most retry.max_backoff_s"),
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


def config_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` a config file may set. A class that declares its settings (``declare.setting``) takes
    only those, and its sections: its other fields are the program's own (``PipelineSettings.parallel``); any other
    class (the Camtrap DP deployment file's) takes each of its fields."""
    hints = typing.get_type_hints(cls)
    declares = any(declaration(f) is not None for f in fields(cls))
    return [
        f for f in fields(cls) if not declares or declaration(f) is not None or dataclasses.is_dataclass(hints[f.name])
    ]


def config_keys(cls: type[Any], prefix: str = "") -> list[str]:
    """Every dotted key a config file of ``cls`` may set, in declaration order."""
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for f in config_fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def build_strict(cls: type[Any], values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """A dataclass from a mapping: unknown keys and wrong types are ConfigErrors naming the key and file."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in config_fields(cls)}
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


def _with_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``raw`` with the dotted keys of ``overrides`` set (None: not given, the file's or the default holds)."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = list(value) if isinstance(value, tuple) else value
    return raw


def load_watch_config(path: Path | None, overrides: dict[str, Any] | None = None) -> WatchConfig:
    """Read the YAML file (if any), apply command-line overrides (dotted keys), validate."""
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        raw = read_yaml_mapping(path)
    config: WatchConfig = build_strict(WatchConfig, _with_overrides(raw, overrides), source)
    return config.validate(source)


def load_detection_config(overrides: dict[str, Any]) -> DetectionConfig:
    """The detector's settings from command-line flags (dotted keys, as ``load_watch_config`` takes them)."""
    config: DetectionConfig = build_strict(DetectionConfig, _with_overrides({}, overrides), "command line")
    return config
