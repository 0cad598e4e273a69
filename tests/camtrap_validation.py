"""Offline validation of a Camtrap DP package against the TDWG 1.0.2 profile and table schemas in tests/data.

- datapackage.json: JSON Schema (Draft 4) validation against the profile's Camtrap DP part. Its two remote
  references are resolved locally: the generic Data Package schema (the profile's first ``allOf``) is left to
  frictionless, which carries its own copy; GeoJSON (for ``spatial``) is checked by a small stand-in that
  requires a geometry type and coordinates (the full GeoJSON schema is not available offline).
- the CSV tables: frictionless, against the local Table Schemas: types, formats, required fields, enums,
  patterns, uniqueness, and the foreign keys from media and observations to deployments and media.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frictionless import Package
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMAS = Path(__file__).parent / "data" / "camtrap_dp"
TABLES = ("deployments", "media", "observations")
GEOJSON_URL = "http://json.schemastore.org/geojson.json"
GEOJSON_STAND_IN: dict[str, Any] = {
    "type": "object",
    "required": ["type", "coordinates"],
    "properties": {
        "type": {"enum": ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]},
        "coordinates": {"type": "array", "minItems": 1},
    },
}


def descriptor_errors(descriptor: dict[str, Any]) -> list[str]:
    profile = json.loads((SCHEMAS / "camtrap-dp-profile.json").read_text())
    camtrap_part = {"$schema": profile["$schema"], "$defs": profile["$defs"], **profile["allOf"][1]}
    registry: Registry[Any] = Registry().with_resource(
        GEOJSON_URL, Resource.from_contents(GEOJSON_STAND_IN, default_specification=DRAFT4)
    )
    validator = Draft4Validator(camtrap_part, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(descriptor)]


def table_errors(package_dir: Path, descriptor: dict[str, Any]) -> list[str]:
    local = json.loads(json.dumps(descriptor))
    # The generic Data Package profile, which frictionless carries; the Camtrap DP part is descriptor_errors'.
    local["profile"] = "data-package"
    for resource in local["resources"]:
        name = resource["name"]
        if name not in TABLES:
            continue  # a package may carry resources of its own (the TDWG example has an individuals table)
        resource["schema"] = json.loads((SCHEMAS / f"{name}-table-schema.json").read_text())
    package = Package(local, basepath=str(package_dir))
    report = package.validate()
    errors = []
    for task in report.tasks:
        for error in task.errors:
            errors.append(f"{task.name}: {error.type}: {error.message}")
    errors.extend(f"package: {e.type}: {e.message}" for e in report.errors)
    return errors


def package_errors(package_dir: Path) -> list[str]:
    descriptor = json.loads((package_dir / "datapackage.json").read_text())
    return descriptor_errors(descriptor) + table_errors(package_dir, descriptor)
