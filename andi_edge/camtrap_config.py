"""The deployment config of ``andi-edge export-camtrap-dp``: who ran the project, where each camera stood, and the
timezone of its clock. Photos carry none of this. Strict like the watch config: unknown keys are errors.

``andi-edge export-camtrap-dp --state S --template FILE`` writes one pre-filled from the journal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from andi_edge.errors import ConfigError
from andi_edge.results.clock import parse_timezone
from andi_edge.results.observation_types import OBSERVATION_TYPES
from andi_edge.settings import build_strict, read_yaml_mapping

SAMPLING_DESIGNS = ("simpleRandom", "systematicRandom", "clusteredRandom", "experimental", "targeted", "opportunistic")
CAPTURE_METHODS = ("activityDetection", "timeLapse")
CONTRIBUTOR_ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher", "contributor")
FEATURE_TYPES = (
    "roadPaved", "roadDirt", "trailHiking", "trailGame", "roadUnderpass", "roadOverpass", "roadBridge", "culvert",
    "burrow", "nestSite", "carcass", "waterSource", "fruitingTree",
)  # fmt: skip


@dataclass(frozen=True)
class ProjectSection:
    title: str = ""
    id: str | None = None
    acronym: str | None = None
    description: str | None = None
    url: str | None = None
    sampling_design: str = "opportunistic"
    capture_method: tuple[str, ...] = ("activityDetection",)
    individual_animals: bool = False


@dataclass(frozen=True)
class Contributor:
    title: str = ""
    email: str | None = None
    role: str = "contributor"
    organization: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Licenses:
    #: licence of the package's tables (an SPDX id such as CC0-1.0 or CC-BY-4.0)
    data: str | None = None
    #: licence of the photos
    media: str | None = None


@dataclass(frozen=True)
class Deployment:
    deployment_id: str = ""
    #: which photos: ``CARD_ID`` (a whole card) or ``CARD_ID/CAMERA`` (as `--template` lists them)
    cameras: tuple[str, ...] = ()
    latitude: float | None = None
    longitude: float | None = None
    #: of the camera's clock: an IANA name (follows daylight saving) or a fixed offset such as +03:00
    timezone: str | None = None
    location_id: str | None = None
    location_name: str | None = None
    coordinate_uncertainty_m: int | None = None
    #: ISO 8601 (with or without offset); unset: the first / last photo's timestamp
    start: str | None = None
    end: str | None = None
    setup_by: str | None = None
    camera_id: str | None = None
    camera_model: str | None = None
    camera_delay_s: int | None = None
    camera_height_m: float | None = None
    camera_depth_m: float | None = None
    camera_tilt_deg: int | None = None
    camera_heading_deg: int | None = None
    detection_distance_m: float | None = None
    #: unset: decided from the photos' clocks (missing EXIF times, unset or reset clocks)
    timestamp_issues: bool | None = None
    bait_use: bool | None = None
    feature_type: str | None = None
    habitat: str | None = None
    groups: str | None = None
    tags: str | None = None
    comments: str | None = None


@dataclass(frozen=True)
class CamtrapConfig:
    project: ProjectSection = field(default_factory=ProjectSection)
    contributors: tuple[Contributor, ...] = ()
    licenses: Licenses = field(default_factory=Licenses)
    #: the default for deployments that do not name their own
    timezone: str | None = None
    #: least precise coordinate precision, e.g. 0.01 when coordinates were rounded to protect a species
    coordinate_precision: float | None = None
    #: model class -> scientific name (classes not listed get none)
    taxa: dict[str, str] = field(default_factory=dict)
    #: model class -> observationType, where the default by name is wrong
    observation_types: dict[str, str] = field(default_factory=dict)
    deployments: tuple[Deployment, ...] = ()

    def validate(self, source: str) -> CamtrapConfig:
        def fail(message: str, hint: str | None = None) -> None:
            raise ConfigError(f"{message} (in {source})", hint)

        placeholder = next(_placeholders(self, ""), None)
        if placeholder is not None:
            fail(
                f"{placeholder} still holds the template's placeholder (TODO)",
                "fill in every TODO of the file `--template` wrote, then export",
            )
        if not self.project.title:
            fail("project.title is not set", "give the project (study) a title")
        if self.project.sampling_design not in SAMPLING_DESIGNS:
            fail(f"project.sampling_design must be one of {', '.join(SAMPLING_DESIGNS)}")
        if not self.project.capture_method or set(self.project.capture_method) - set(CAPTURE_METHODS):
            fail(f"project.capture_method must list some of {', '.join(CAPTURE_METHODS)}")
        if not self.contributors:
            fail("no contributors", "list at least one person or organisation under contributors:")
        for i, person in enumerate(self.contributors):
            if not person.title:
                fail(f"contributors[{i}].title is not set")
            if person.role not in CONTRIBUTOR_ROLES:
                fail(f"contributors[{i}].role must be one of {', '.join(CONTRIBUTOR_ROLES)}")
        if (self.licenses.data is None) != (self.licenses.media is None):
            fail("licenses: give both data and media, or neither")
        for name, kind in self.observation_types.items():
            if kind not in OBSERVATION_TYPES:
                fail(f"observation_types.{name} must be one of {', '.join(OBSERVATION_TYPES)}")
        if self.timezone is not None:
            parse_timezone(self.timezone, f"{source}: timezone")
        seen: set[str] = set()
        for i, d in enumerate(self.deployments):
            where = f"deployments[{i}]" + (f" ({d.deployment_id})" if d.deployment_id else "")
            if not d.deployment_id:
                fail(f"{where}: deployment_id is not set")
            if d.deployment_id in seen:
                fail(f"{where}: deployment_id is used twice")
            seen.add(d.deployment_id)
            if not d.cameras:
                fail(f"{where}: cameras is empty", "list the CARD/CAMERA keys it covers (see --template)")
            if d.latitude is None or not -90 <= d.latitude <= 90:
                fail(f"{where}: latitude must be set, between -90 and 90")
            if d.longitude is None or not -180 <= d.longitude <= 180:
                fail(f"{where}: longitude must be set, between -180 and 180")
            zone = d.timezone or self.timezone
            if zone is None:
                fail(f"{where}: no timezone", "set timezone: for the deployment or at the top (e.g. Europe/Brussels)")
            else:
                parse_timezone(zone, f"{source}: {where}")
            if d.feature_type is not None and d.feature_type not in FEATURE_TYPES:
                fail(f"{where}: feature_type must be one of {', '.join(FEATURE_TYPES)}")
            if d.coordinate_uncertainty_m is not None and d.coordinate_uncertainty_m < 1:
                fail(f"{where}: coordinate_uncertainty_m must be at least 1")
            if d.camera_tilt_deg is not None and not -90 <= d.camera_tilt_deg <= 90:
                fail(f"{where}: camera_tilt_deg must be between -90 and 90")
            if d.camera_heading_deg is not None and not 0 <= d.camera_heading_deg <= 360:
                fail(f"{where}: camera_heading_deg must be between 0 and 360")
            negative = [
                n
                for n in ("camera_delay_s", "camera_height_m", "camera_depth_m", "detection_distance_m")
                if (v := getattr(d, n)) is not None and v < 0
            ]
            if negative:
                fail(f"{where}: {negative[0]} must not be negative")
        return self


def _placeholders(value: Any, where: str) -> Iterator[str]:
    """Where ``value`` (a config section, recursively) still holds a ``TODO`` of the template."""
    if isinstance(value, str):
        if value.strip().upper().startswith("TODO"):
            yield where
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _placeholders(getattr(value, f.name), f"{where}.{f.name}".lstrip("."))
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _placeholders(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _placeholders(item, f"{where}.{key}")


def load_camtrap_config(path: Path) -> CamtrapConfig:
    config: CamtrapConfig = build_strict(CamtrapConfig, read_yaml_mapping(path), str(path))
    return config.validate(str(path))
