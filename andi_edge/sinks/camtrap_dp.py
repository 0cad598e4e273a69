"""Camtrap DP 1.0.2 (TDWG): datapackage.json + deployments.csv + media.csv + observations.csv, for GBIF, Agouti,
Wildlife Insights and camtrapdp (R).

- timestamps carry the deployment's offset (EXIF has none; the deployment config gives the timezone)
- ``timestampIssues`` is true when a camera's clock looks wrong (see ``results.clock``), with the reasons in
  ``deploymentComments``
- one media-level observation per box at or above the threshold (``bboxX/Y/Width/Height`` as MegaDetector's
  normalised top-left box), a ``blank`` one for a photo without any, and one event-level observation per event,
  labelled with its highest-confidence class; all ``classificationMethod=machine`` with the model named
- a photo with a person in it, or in the same event as one, is ``filePublic=false``
- repeat detections that the run suppresses are left out; flagged ones are kept and tagged
- text that would start a spreadsheet formula (``=``, ``+``, ``-``, ``@``) is prefixed with ``'`` (``_cell``)
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import mimetypes
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path, PurePosixPath
from typing import Any

from andi_edge import __version__
from andi_edge.camtrap_config import CamtrapConfig, Deployment
from andi_edge.errors import ConfigError, OutputError
from andi_edge.results.clock import clock_issues, localize, parse_timezone
from andi_edge.results.events import Event
from andi_edge.results.observation_types import observation_type
from andi_edge.results.records import PhotoRecord
from andi_edge.results.review import Review
from andi_edge.results.run import RunResults
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.sinks.names import bounded_name, display_text

log = logging.getLogger(__name__)

CAMTRAP_DP_VERSION = "1.0.2"
_BASE_URL = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}"
PROFILE_URL = f"{_BASE_URL}/camtrap-dp-profile.json"
TABLES = ("deployments", "media", "observations")
DEPLOYMENT_FIELDS = (
    "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
    "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
    "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse", "featureType",
    "habitat", "deploymentGroups", "deploymentTags", "deploymentComments",
)  # fmt: skip
MEDIA_FIELDS = (
    "mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName", "fileMediatype",
    "exifData", "favorite", "mediaComments",
)  # fmt: skip
OBSERVATION_FIELDS = (
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
    "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior", "individualID",
    "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY", "bboxWidth",
    "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp", "classificationProbability",
    "observationTags", "observationComments",
)  # fmt: skip
BBOX_DECIMALS = 4
CONF_DECIMALS = 3
MEDIA_DIR = "media"


@dataclass(frozen=True)
class ExportOptions:
    #: boxes at or above this confidence become observations
    threshold: float
    #: prefix of media.filePath: a folder inside the package, or a URL where the photos will be published
    media_base: str = MEDIA_DIR + "/"
    #: copy the photos that can be read into PACKAGE/media/ (matching the default media_base)
    copy_media: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class ExportSummary:
    package_dir: Path
    deployments: int = 0
    media: int = 0
    #: of the media, video clips
    video_media: int = 0
    observations: int = 0
    private_media: int = 0
    copied_media: int = 0
    #: photos --copy-media could not copy: their card is not mounted here
    not_copied: list[str] = field(default_factory=list)
    #: photos --copy-media could not copy for another reason (a read error, a full disk), each said
    copy_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _short_id(prefix: str, *parts: str) -> str:
    return (
        prefix
        + hashlib.sha1("\0".join(parts).encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()[:12]
    )


def _csv(fields: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


#: a text cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """One CSV cell. Text starting like a formula (``=HYPERLINK(...)`` in an EXIF camera model) gets a leading
    apostrophe, OWASP's advice against CSV injection: spreadsheets show it as text, and the value stays readable.
    Numbers are written as numbers (a negative longitude is no formula)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        value = display_text(value)  # a card name's non-UTF-8 bytes as \xe9: CSV is UTF-8 text
        if value.startswith(FORMULA_STARTS):
            return "'" + value
    return value


def _mediatype(path: Path | None, rel_path: str, clip: bool = False) -> str:
    """By content when the file can be read (a PNG named .JPG happens), else by name; a clip is ``video/*``."""
    head = b""
    if path is not None:
        with contextlib.suppress(OSError), path.open("rb") as f:
            head = f.read(8)
    guessed, _ = mimetypes.guess_type(rel_path)
    if clip:
        if guessed and guessed.startswith("video/"):
            return guessed
        return "video/x-msvideo" if head[:4] == b"RIFF" else "video/mp4"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    return guessed if guessed and guessed.startswith(("image/", "video/")) else "image/jpeg"


class _Matcher:
    """Photos to deployments, by ``CARD`` or ``CARD/CAMERA`` key."""

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        self._by_key: dict[str, Deployment] = {}
        for d in deployments:
            for key in d.cameras:
                if key in self._by_key:
                    raise ConfigError(
                        f"{key} is listed under two deployments: {self._by_key[key].deployment_id}, {d.deployment_id}"
                    )
                self._by_key[key] = d

    def find(self, record: PhotoRecord) -> Deployment | None:
        return self._by_key.get(f"{record.card_id}/{record.camera_key}") or self._by_key.get(record.card_id)


def camera_keys(results: RunResults) -> list[str]:
    """The ``CARD/CAMERA`` keys of a run, as a deployment config lists them."""
    return sorted({f"{r.card_id}/{r.camera_key}" for r in results.records})


def export_camtrap_dp(
    results: RunResults, config: CamtrapConfig, package_dir: Path, options: ExportOptions
) -> ExportSummary:
    if not results.records:
        raise OutputError("the journal holds no finished photo yet: nothing to export")
    matcher = _Matcher(config.deployments)
    by_deployment: dict[str, list[PhotoRecord]] = defaultdict(list)
    unmatched: set[str] = set()
    for record in results.records:
        deployment = matcher.find(record)
        if deployment is None:
            unmatched.add(f"{record.card_id}/{record.camera_key}")
        else:
            by_deployment[deployment.deployment_id].append(record)
    if unmatched:
        listed = ", ".join(sorted(unmatched)[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise ConfigError(
            f"{len(unmatched)} camera(s) of this run belong to no deployment: {listed}",
            hint="add them to a deployment's cameras: list (`--template FILE` writes a config that lists them all)",
        )
    _prepare_folder(package_dir)
    summary = ExportSummary(package_dir)
    review = results.review
    facts = results.facts
    deployments = [d for d in config.deployments if by_deployment.get(d.deployment_id)]
    zones = {
        d.deployment_id: parse_timezone(d.timezone or config.timezone or "UTC", d.deployment_id) for d in deployments
    }
    classified_at = _stamp(datetime.fromisoformat(facts.started_at)) if facts.started_at else None
    deployment_rows: list[dict[str, Any]] = []
    media_rows: list[dict[str, Any]] = []
    observation_rows: list[dict[str, Any]] = []
    used_classes: set[str] = set()
    spans: list[tuple[datetime, datetime]] = []
    record_of = {r.key: r for r in results.records}

    def machine(row: dict[str, Any], conf: float | None, class_name: str | None) -> dict[str, Any]:
        row["classificationMethod"] = "machine"
        row["classifiedBy"] = facts.classified_by
        row["classificationTimestamp"] = classified_at
        row["classificationProbability"] = None if conf is None else round(conf, CONF_DECIMALS)
        if class_name is not None and class_name != "empty":
            row["scientificName"] = config.taxa.get(class_name)
            row.setdefault("observationTags", f"class:{class_name}")
            if config.taxa.get(class_name):
                used_classes.add(class_name)
        return row

    for d in deployments:
        zone = zones[d.deployment_id]
        timed = sorted(
            ((localize(r, zone), r) for r in by_deployment[d.deployment_id]), key=lambda t: (t[0], t[1].rel_path)
        )
        stamps = [stamp for stamp, _ in timed]
        records = [record for _, record in timed]
        # a file that could not be read has only its file time: it never stretches the deployment (a failed
        # zero-byte file dated today did); outside the span it is counted below as a clock issue
        read = [stamp for stamp, record in timed if record.failure is None] or stamps
        start = _configured_time(d.start, zone, d.deployment_id) or min(read)
        end = _configured_time(d.end, zone, d.deployment_id) or max(read)
        issues = clock_issues(records, options.now)
        outside = sum(1 for s in stamps if not start <= s <= end)
        if outside:
            issues.append(f"{outside} photo(s) fall outside the deployment's start and end")
        if issues:
            summary.warnings.extend(f"{d.deployment_id}: {issue}" for issue in issues)
        spans.append((start, end))
        comments = "; ".join(x for x in (d.comments, *(f"clock: {i}" for i in issues)) if x)
        deployment_rows.append(
            {
                "deploymentID": d.deployment_id,
                "locationID": d.location_id,
                "locationName": d.location_name,
                "latitude": d.latitude,
                "longitude": d.longitude,
                "coordinateUncertainty": d.coordinate_uncertainty_m,
                "deploymentStart": _stamp(start),
                "deploymentEnd": _stamp(end),
                "setupBy": d.setup_by,
                "cameraID": d.camera_id or next((r.camera_serial for r in records if r.camera_serial), None),
                "cameraModel": d.camera_model or _camera_model(records),
                "cameraDelay": d.camera_delay_s,
                "cameraHeight": d.camera_height_m,
                "cameraDepth": d.camera_depth_m,
                "cameraTilt": d.camera_tilt_deg,
                "cameraHeading": d.camera_heading_deg,
                "detectionDistance": d.detection_distance_m,
                "timestampIssues": d.timestamp_issues if d.timestamp_issues is not None else bool(issues),
                "baitUse": d.bait_use,
                "featureType": d.feature_type,
                "habitat": d.habitat,
                "deploymentGroups": d.groups,
                "deploymentTags": d.tags,
                "deploymentComments": comments or None,
            }
        )
        with_people = {r.key for r in records if _has_type(results, r, "human", options.threshold, config)}
        private_events = {event.event_id for key in with_people if (event := review.event_of(key)) is not None}
        events_done: set[str] = set()
        for record, stamp in zip(records, stamps, strict=True):
            media_id = _short_id("m-", record.card_id, record.rel_path)
            event = review.event_of(record.key)
            private = record.key in with_people or (event is not None and event.event_id in private_events)
            summary.private_media += private
            path = results.photo_path(record)
            media_rows.append(
                {
                    "mediaID": media_id,
                    "deploymentID": d.deployment_id,
                    "captureMethod": config.project.capture_method[0],
                    "timestamp": _stamp(stamp),
                    "filePath": f"{options.media_base}{record.card_id}/{package_path(record.rel_path)}",
                    "filePublic": not private,
                    "fileName": Path(record.rel_path).name,
                    "fileMediatype": _mediatype(path, record.rel_path, record.is_clip),
                    "exifData": _exif_json(record),
                    "favorite": None,
                    "mediaComments": f"not analysed: {record.failure}" if record.failure else None,
                }
            )
            if options.copy_media:
                # copied under the name media.csv gives it (its display form), so the package's links hold
                target = package_dir / MEDIA_DIR / record.card_id / package_path(record.rel_path)
                try:
                    copied = path is not None and _copy_photo(path, target)
                except OutputError as exc:  # this photo's copy, not the export: it goes on
                    summary.copy_failures.append(exc.message)
                    copied = False
                else:
                    if not copied:
                        summary.not_copied.append(f"{record.card_id}/{record.rel_path}")
                summary.copied_media += copied
            if record.failure is not None:
                continue
            event_id = event.event_id if event is not None else None
            boxes = [
                (i, box)
                for i, box in enumerate(record.boxes)
                if box.conf >= options.threshold and not review.suppressed((record.key, i))
            ]
            # a clip's boxes are its poster frame's: seen at that frame's time; a clip without any, blank throughout
            seen = stamp + timedelta(seconds=record.poster_time_s)
            until = stamp + timedelta(seconds=record.clip_duration_s)
            base = {
                "deploymentID": d.deployment_id,
                "mediaID": media_id,
                "eventID": event_id,
                "eventStart": _stamp(seen),
                "eventEnd": _stamp(seen),
                "observationLevel": "media",
            }
            blank_end = _stamp(until) if record.is_clip else _stamp(stamp)
            if not boxes:
                blank = {**base, "eventStart": _stamp(stamp), "eventEnd": blank_end}
                observation_rows.append(
                    machine({**blank, "observationID": media_id + "-blank", "observationType": "blank"}, None, None)
                )
            for i, box in boxes:
                label = review.box_label(box)
                name = review.label_name(label)
                x, y, w, h = box.xywh_norm
                row = {
                    **base,
                    "observationID": f"{media_id}-{i + 1}",
                    "observationType": observation_type(name, config.observation_types),
                    "count": 1,
                    "bboxX": round(x, BBOX_DECIMALS),
                    "bboxY": round(y, BBOX_DECIMALS),
                    "bboxWidth": max(round(w, BBOX_DECIMALS), 10**-BBOX_DECIMALS),
                    "bboxHeight": max(round(h, BBOX_DECIMALS), 10**-BBOX_DECIMALS),
                }
                pattern = review.flagged((record.key, i))
                if pattern is not None:
                    row["observationTags"] = f"class:{name} | repeat-detection:{pattern.pattern_id}"
                    row["observationComments"] = (
                        f"probable repeat detection: a box at this place in {len(pattern.photos)} photos of this camera"
                    )
                # a species is as sure as the classifier was of it; a category as the detector was
                observation_rows.append(machine(row, review.box_label_conf(box), name))
            if event is not None and event.event_id not in events_done:
                events_done.add(event.event_id)
                observation_rows.append(_event_row(event, d.deployment_id, zone, record_of, review, config, machine))
    summary.deployments = len(deployment_rows)
    summary.media = len(media_rows)
    summary.video_media = sum(1 for row in media_rows if str(row["fileMediatype"]).startswith("video/"))
    summary.observations = len(observation_rows)
    descriptor = _descriptor(config, deployments, spans, used_classes, options, results)
    write_bytes_atomic(package_dir / "deployments.csv", _csv(DEPLOYMENT_FIELDS, deployment_rows))
    write_bytes_atomic(package_dir / "media.csv", _csv(MEDIA_FIELDS, media_rows))
    write_bytes_atomic(package_dir / "observations.csv", _csv(OBSERVATION_FIELDS, observation_rows))
    write_bytes_atomic(package_dir / "datapackage.json", (json.dumps(descriptor, indent=2) + "\n").encode())
    return summary


def _event_row(
    event: Event,
    deployment_id: str,
    zone: tzinfo,
    record_of: dict[tuple[str, str], PhotoRecord],
    review: Review,
    config: CamtrapConfig,
    machine: Callable[[dict[str, Any], float | None, str | None], dict[str, Any]],
) -> dict[str, Any]:
    first, last = record_of[event.photos[0]], record_of[event.photos[-1]]
    name = review.label_name(event.label_index)
    kind = "blank" if event.label_index is None else observation_type(name, config.observation_types)
    row = {
        "observationID": event.event_id,
        "deploymentID": deployment_id,
        "eventID": event.event_id,
        "eventStart": _stamp(localize(first, zone)),
        "eventEnd": _stamp(localize(last, zone)),
        "observationLevel": "event",
        "observationType": kind,
        "count": event.label_count or None,
        "observationComments": f"event of {len(event.photos)} photo(s)",
    }
    return machine(row, event.label_conf, None if event.label_index is None else name)


def _has_type(results: RunResults, record: PhotoRecord, kind: str, threshold: float, config: CamtrapConfig) -> bool:
    review = results.review
    return any(
        box.conf >= threshold
        and not review.suppressed((record.key, i))
        and observation_type(review.label_name(review.box_label(box)), config.observation_types) == kind
        for i, box in enumerate(record.boxes)
    )


def _camera_model(records: list[PhotoRecord]) -> str | None:
    for r in records:
        if r.camera_make or r.camera_model:
            return "-".join(x for x in (r.camera_make, r.camera_model) if x)
    return None


def _exif_json(record: PhotoRecord) -> str | None:
    exif = {
        k: v
        for k, v in (
            ("Make", record.camera_make),
            ("Model", record.camera_model),
            ("SerialNumber", record.camera_serial),
            ("DateTimeOriginal", record.capture_time.strftime("%Y:%m:%d %H:%M:%S") if record.capture_time else None),
        )
        if v
    }
    return json.dumps(exif, separators=(",", ":")) if exif else None


def _configured_time(text: str | None, zone: tzinfo, where: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"deployment {where}: {text!r} is not an ISO 8601 date and time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def package_path(rel_path: str) -> str:
    """A photo's path in the package (media.csv's filePath, the copy's name): its display form (a byte that is
    not UTF-8 as ``\\xe9``, four characters for one byte), each name bounded to the file system's 255 bytes."""
    return "/".join(bounded_name(display_text(part)) for part in PurePosixPath(rel_path).parts)


def _copy_photo(source: Path, target: Path) -> bool:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot copy {display_text(str(source))} into the package: {exc.strerror or exc}") from exc
    return True


def _prepare_folder(package_dir: Path) -> None:
    """Refuse to write into a folder that holds something other than an earlier package."""
    if package_dir.exists():
        if not package_dir.is_dir():
            raise OutputError(f"{package_dir} exists and is not a folder")
        others = {p.name for p in package_dir.iterdir()} - {
            "datapackage.json",
            MEDIA_DIR,
            *(f"{t}.csv" for t in TABLES),
        }
        if others:
            raise OutputError(
                f"{package_dir} already holds other files ({', '.join(sorted(others)[:3])})",
                hint="give an empty or new folder, or the folder of an earlier export to replace it",
            )
    try:
        package_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {package_dir}: {exc.strerror or exc}") from exc


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "camera-trap-data"


def _spatial(deployments: list[Deployment]) -> dict[str, Any]:
    points = sorted(
        {(d.longitude, d.latitude) for d in deployments if d.longitude is not None and d.latitude is not None}
    )
    if len(points) == 1:
        return {"type": "Point", "coordinates": list(points[0])}
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    if min(lons) == max(lons) or min(lats) == max(lats):
        return {"type": "MultiPoint", "coordinates": [list(p) for p in points]}
    w, e, s, n = min(lons), max(lons), min(lats), max(lats)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _descriptor(
    config: CamtrapConfig,
    deployments: list[Deployment],
    spans: list[tuple[datetime, datetime]],
    used_classes: set[str],
    options: ExportOptions,
    results: RunResults,
) -> dict[str, Any]:
    project = config.project
    descriptor: dict[str, Any] = {
        "resources": [
            {
                "name": table,
                "path": f"{table}.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": f"{_BASE_URL}/{table}-table-schema.json",
            }
            for table in TABLES
        ],
        "profile": PROFILE_URL,
        "name": _slug(project.acronym or project.title),
        "created": _stamp(options.now.replace(microsecond=0)),
        "title": project.title,
        "contributors": [
            {
                k: v
                for k, v in (
                    ("title", c.title),
                    ("email", c.email),
                    ("path", c.path),
                    ("role", c.role),
                    ("organization", c.organization),
                )
                if v
            }
            for c in config.contributors
        ],
        "sources": [{"title": "andi-edge", "version": __version__}],
        "project": {
            k: v
            for k, v in (
                ("id", project.id),
                ("title", project.title),
                ("acronym", project.acronym),
                ("description", project.description),
                ("path", project.url),
                ("samplingDesign", project.sampling_design),
                ("captureMethod", list(project.capture_method)),
                ("individualAnimals", project.individual_animals),
                ("observationLevel", ["media", "event"]),
            )
            if v is not None
        },
        "spatial": _spatial(deployments),
        "temporal": {
            "start": min(s for s, _ in spans).date().isoformat(),
            "end": max(e for _, e in spans).date().isoformat(),
        },
        "taxonomic": [
            {"scientificName": config.taxa[name], "vernacularNames": {"eng": name}} for name in sorted(used_classes)
        ],
        "andi_edge": {
            "model": results.facts.classified_by,
            "observation_threshold": options.threshold,
            "event_gap_s": results.facts.events.gap_s,
            "repeat_detection": results.facts.repeats.action if results.facts.repeats.enabled else "off",
            "media_base": options.media_base,
        },
    }
    if config.licenses.data and config.licenses.media:
        descriptor["licenses"] = [
            {"name": config.licenses.data, "scope": "data"},
            {"name": config.licenses.media, "scope": "media"},
        ]
    if config.coordinate_precision is not None:
        descriptor["coordinatePrecision"] = config.coordinate_precision
    return descriptor


def _taxa_hint(results: RunResults) -> list[str]:
    """Comment lines naming the animal labels (species or categories) this run gave boxes, most boxes first."""
    review = results.review
    counts: Counter[str] = Counter()
    for record in results.records:
        for i, box in enumerate(record.boxes):
            name = review.label_name(review.box_label(box))
            kept = box.conf >= results.facts.typical_threshold and not review.suppressed((record.key, i))
            if kept and observation_type(name) == "animal":
                counts[name] += 1
    if not counts:
        return []
    return ["#   labels of this run's animal boxes (replace {} with lines such as these):"] + [
        f"#   {json.dumps(name)}: TODO   # {n} box(es)" for name, n in counts.most_common()
    ]


def deployment_template(results: RunResults) -> str:
    """A deployment config for this run, one deployment per camera, with what the photos tell filled in."""
    by_key: dict[str, list[PhotoRecord]] = defaultdict(list)
    for record in results.records:
        by_key[f"{record.card_id}/{record.camera_key}"].append(record)
    lines = [
        "# Camtrap DP export settings for andi-edge export-camtrap-dp --deployment-config THIS_FILE",
        "# Fill in every TODO, then export. Keys: andi_edge/assets/camtrap-dp.example.yaml.",
        "project:",
        '  title: "TODO: project title"',
        "  sampling_design: opportunistic   # simpleRandom|systematicRandom|clusteredRandom|experimental|targeted|"
        "opportunistic",
        "  capture_method: [activityDetection]",
        "  individual_animals: false",
        "contributors:",
        '  - title: "TODO: your name"',
        "    role: principalInvestigator   # contact|principalInvestigator|rightsHolder|publisher|contributor",
        "# licenses: {data: CC0-1.0, media: CC-BY-4.0}",
        "timezone: null   # TODO: the cameras' clock, e.g. Africa/Dar_es_Salaam or +03:00",
        "taxa: {}   # model class -> scientific name, e.g. {zebra: Equus quagga}",
        *_taxa_hint(results),
        "deployments:",
    ]
    for i, (key, records) in enumerate(sorted(by_key.items()), start=1):
        timed = sorted(r.capture_time for r in records if r.capture_time is not None)
        span = f"{timed[0].isoformat()} .. {timed[-1].isoformat()}" if timed else "no EXIF times"
        lines += [
            f"  - deployment_id: {json.dumps(f'deployment-{i}')}",
            f"    cameras: [{json.dumps(key)}]   # {len(records)} photo(s), camera clock {span}",
            "    latitude: null    # TODO",
            "    longitude: null   # TODO",
        ]
        model = _camera_model(records)
        if model:
            lines.append(f"    camera_model: {json.dumps(model)}")
    return "\n".join(lines) + "\n"
