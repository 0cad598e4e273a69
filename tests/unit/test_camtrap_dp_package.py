"""A Camtrap DP package from a small run built by hand, checked cell by cell: what GBIF and camtrapdp read.

Two deployments (one a camera folder with a configured start and an IANA timezone, one a whole card with a
fixed offset and a camera without EXIF times), boxes above and below the threshold, an empty photo, a failed
photo, a PNG named .JPG, a video, a photo no longer on the card; then repeats flagged and suppressed, the
template, and the folder rules. Every package is validated against the TDWG 1.0.2 schemas too."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from andi_edge import __version__
from andi_edge.camtrap_config import CamtrapConfig, Contributor, Deployment, Licenses, ProjectSection
from andi_edge.errors import ConfigError, OutputError
from andi_edge.results.records import Box, PhotoRecord, camera_key
from andi_edge.results.review import build_review
from andi_edge.results.run import RunFacts, RunResults
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.sinks.camtrap_dp import ExportOptions, camera_keys, deployment_template, export_camtrap_dp
from andi_edge.state.journal import PhotoRow
from tests.camtrap_validation import package_errors

CLASSES = ("zebra", "person", "vehicle", "chair")
ZEBRA, PERSON, VEHICLE, CHAIR = range(4)
THRESHOLD = 0.5
NOW = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
MTIME = datetime(2024, 5, 2, 8, 0, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 60


def _record(card: str, rel: str, at: datetime | None, boxes: tuple[tuple[int, float], ...] = (),
            failure: str | None = None, **exif: str) -> PhotoRecord:  # fmt: skip
    return PhotoRecord(
        card_id=card,
        rel_path=rel,
        output_key=rel,
        camera_key=camera_key(rel, None),
        capture_time=at,
        file_mtime=MTIME,
        width_px=2048,
        height_px=1536,
        boxes=tuple(Box(c, conf, (0.1 * (k + 1), 0.2, 0.25, 0.125)) for k, (c, conf) in enumerate(boxes)),
        failure=failure,
        camera_make=exif.get("camera_make"),
        camera_model=exif.get("camera_model"),
        camera_serial=exif.get("camera_serial"),
    )


def _media_id(card: str, rel: str) -> str:
    return "m-" + hashlib.sha1(f"{card}\0{rel}".encode(), usedforsecurity=False).hexdigest()[:12]


def _run(
    tmp_path: Path,
    records: list[PhotoRecord],
    files: dict[str, bytes],
    repeats: RepeatSettings,
    species: tuple[str, ...] = (),
) -> RunResults:
    """The run as load_run gives it: the photos that are still on the card have a journal row of their size and
    time, so the writer may read (and copy) them. ``species``: a classifier's labels, as the run recorded them."""
    roots = {"card": tmp_path / "card", "card2": tmp_path / "card2"}
    rows = {}
    for i, record in enumerate(records):
        data = files.get(f"{record.card_id}/{record.rel_path}")
        path = roots[record.card_id] / record.rel_path
        size, mtime_ns = 0, 0
        if data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, ns=(int(MTIME.timestamp() * 1e9),) * 2)
            size, mtime_ns = len(data), path.stat().st_mtime_ns
        rows[record.key] = PhotoRow(i + 1, record.card_id, record.rel_path, size, mtime_ns, None, "done",
                                    record.rel_path, None, record.failure, 1, 0.0)  # fmt: skip
    events = EventSettings(gap_s=60.0)
    classifier = {"name": "species-2", "model_file": "species.onnx", "model_sha256": "cd" * 32} if species else None
    facts = RunFacts(
        model_name="yolov5n-ct", model_file="ct.onnx", model_sha256="ab" * 32, andi_edge_version="9.9",
        class_names=CLASSES, typical_threshold=THRESHOLD, watch_root=tmp_path / "elsewhere",
        output_dir=tmp_path / "out", started_at="2024-05-03T10:00:00+00:00", events=events, repeats=repeats,
        species_names=species, species_threshold=0.6, classifier=classifier,
    )  # fmt: skip
    review = build_review(records, facts.labels, events, repeats, THRESHOLD)
    return RunResults(facts, records, rows, review, {}, roots)


CONFIG = CamtrapConfig(
    project=ProjectSection(
        title="Serengeti trial",
        acronym="SER Trial!",
        description="two cameras",
        url="https://example.org/ser",
        sampling_design="targeted",
    ),
    contributors=(
        Contributor(title="Ada Field", email="ada@example.org", role="principalInvestigator", organization="Uni"),
        Contributor(title="Field Station"),
    ),
    licenses=Licenses(data="CC0-1.0", media="CC-BY-4.0"),
    coordinate_precision=0.01,
    taxa={"zebra": "Equus quagga"},
    deployments=(
        Deployment(
            deployment_id="SER-1",
            cameras=("card/folder:ser",),
            latitude=-2.45,
            longitude=34.82,
            timezone="Africa/Dar_es_Salaam",
            location_id="L1",
            location_name="Kopje",
            start="2024-05-01T00:00",
            camera_height_m=0.5,
            feature_type="trailGame",
            bait_use=False,
            comments="near water",
        ),
        Deployment(
            deployment_id="CARD-2",
            cameras=("card2",),
            latitude=-2.5,
            longitude=34.9,
            timezone="+01:00",
            camera_model="Browning BTC-8E",
        ),
    ),
).validate("test")


def _tables(package: Path) -> dict[str, list[dict[str, str]]]:
    tables = {}
    for table in ("deployments", "media", "observations"):
        with (package / f"{table}.csv").open(newline="", encoding="utf-8") as f:
            tables[table] = list(csv.DictReader(f))
    return tables


def _export(results: RunResults, package: Path, **options: Any) -> tuple[Any, dict[str, list[dict[str, str]]]]:
    summary = export_camtrap_dp(results, CONFIG, package, ExportOptions(threshold=THRESHOLD, now=NOW, **options))
    assert package_errors(package) == []
    return summary, _tables(package)


@pytest.fixture()
def run(tmp_path: Path) -> RunResults:
    t0 = datetime(2024, 5, 1, 6, 0, 0)
    records = [
        _record("card", "ser/IMG_0001.JPG", t0, ((ZEBRA, 0.9), (ZEBRA, 0.4)), camera_make="RECONYX",
                camera_model="HC600"),
        _record("card", "ser/IMG_0002.JPG", t0 + timedelta(seconds=2), ((ZEBRA, 0.8),)),
        _record("card", "ser/IMG_0003.JPG", t0 + timedelta(hours=3)),
        _record("card", "ser/IMG_0004.JPG", t0 + timedelta(hours=3, minutes=30), failure="corrupt: truncated"),
        _record("card2", "DCIM/100RECNX/clip.AVI", None, ((VEHICLE, 0.7), (CHAIR, 0.6))),
    ]  # fmt: skip
    files = {"card/ser/IMG_0001.JPG": JPEG, "card/ser/IMG_0002.JPG": PNG, "card/ser/IMG_0004.JPG": JPEG,
             "card2/DCIM/100RECNX/clip.AVI": b"RIFF" + b"\0" * 60}  # fmt: skip
    return _run(tmp_path, records, files, RepeatSettings(enabled=False))


def test_deployments_rows(run: RunResults, tmp_path: Path) -> None:
    summary, tables = _export(run, tmp_path / "package")
    ser, card2 = tables["deployments"]
    assert ser == {
        "deploymentID": "SER-1", "locationID": "L1", "locationName": "Kopje", "latitude": "-2.45",
        "longitude": "34.82", "coordinateUncertainty": "", "deploymentStart": "2024-05-01T00:00:00+03:00",
        "deploymentEnd": "2024-05-01T09:00:00+03:00", "setupBy": "", "cameraID": "", "cameraModel": "RECONYX-HC600",
        "cameraDelay": "", "cameraHeight": "0.5", "cameraDepth": "", "cameraTilt": "", "cameraHeading": "",
        "detectionDistance": "", "timestampIssues": "true", "baitUse": "false", "featureType": "trailGame",
        "habitat": "", "deploymentGroups": "", "deploymentTags": "",
        "deploymentComments": "near water; clock: 1 photo(s) fall outside the deployment's start and end",
    }  # fmt: skip
    # the failed photo (09:30) does not stretch the deployment: it ends with the last photo read (09:00)
    # no EXIF time: the file's time (08:00 UTC = 09:00 at +01:00), and the clock is flagged with the reason
    assert card2["deploymentStart"] == card2["deploymentEnd"] == "2024-05-02T09:00:00+01:00"
    assert card2["timestampIssues"] == "true" and card2["cameraModel"] == "Browning BTC-8E"
    assert card2["deploymentComments"].startswith("clock: 1 photo(s) have no EXIF capture time")
    assert summary.deployments == 2 and summary.media == 5
    assert summary.warnings == [
        "SER-1: 1 photo(s) fall outside the deployment's start and end",
        "CARD-2: " + card2["deploymentComments"].removeprefix("clock: "),
    ]


def test_media_rows(run: RunResults, tmp_path: Path) -> None:
    summary, tables = _export(run, tmp_path / "package")
    media = {m["fileName"]: m for m in tables["media"]}
    first = media["IMG_0001.JPG"]
    assert first == {
        "mediaID": _media_id("card", "ser/IMG_0001.JPG"), "deploymentID": "SER-1",
        "captureMethod": "activityDetection", "timestamp": "2024-05-01T06:00:00+03:00",
        "filePath": "media/card/ser/IMG_0001.JPG", "filePublic": "true", "fileName": "IMG_0001.JPG",
        "fileMediatype": "image/jpeg",
        "exifData": '{"Make":"RECONYX","Model":"HC600","DateTimeOriginal":"2024:05:01 06:00:00"}',
        "favorite": "", "mediaComments": "",
    }  # fmt: skip
    assert media["IMG_0002.JPG"]["fileMediatype"] == "image/png", "by content: a PNG named .JPG"
    assert media["IMG_0003.JPG"]["fileMediatype"] == "image/jpeg", "not on the card: by name"
    assert media["clip.AVI"]["fileMediatype"] == "video/x-msvideo" and media["clip.AVI"]["exifData"] == ""
    assert media["clip.AVI"]["deploymentID"] == "CARD-2"
    assert media["IMG_0004.JPG"]["mediaComments"] == "not analysed: corrupt: truncated"
    assert summary.private_media == 0 and all(m["filePublic"] == "true" for m in media.values())
    assert summary.copied_media == 0 and summary.not_copied == []


def test_observation_rows(run: RunResults, tmp_path: Path) -> None:
    summary, tables = _export(run, tmp_path / "package")
    rows = tables["observations"]
    assert summary.observations == len(rows)
    m1, m2, m3 = (_media_id("card", f"ser/IMG_000{i}.JPG") for i in (1, 2, 3))
    by_media = {m: [r for r in rows if r["mediaID"] == m] for m in (m1, m2, m3)}
    [zebra] = by_media[m1]  # the 0.4 box is below the threshold
    event_id = zebra["eventID"]
    assert zebra == {
        "observationID": f"{m1}-1", "deploymentID": "SER-1", "mediaID": m1, "eventID": event_id,
        "eventStart": "2024-05-01T06:00:00+03:00", "eventEnd": "2024-05-01T06:00:00+03:00",
        "observationLevel": "media", "observationType": "animal", "cameraSetupType": "",
        "scientificName": "Equus quagga", "count": "1", "lifeStage": "", "sex": "", "behavior": "",
        "individualID": "", "individualPositionRadius": "", "individualPositionAngle": "", "individualSpeed": "",
        "bboxX": "0.1", "bboxY": "0.2", "bboxWidth": "0.25", "bboxHeight": "0.125", "classificationMethod": "machine",
        "classifiedBy": "yolov5n-ct (ct.onnx, sha256 abababababab) via andi-edge 9.9",
        "classificationTimestamp": "2024-05-03T10:00:00Z", "classificationProbability": "0.9",
        "observationTags": "class:zebra", "observationComments": "",
    }  # fmt: skip
    [second] = by_media[m2]
    assert second["eventID"] == event_id and second["classificationProbability"] == "0.8"
    [blank] = by_media[m3]
    assert blank["observationID"] == f"{m3}-blank" and blank["observationType"] == "blank"
    assert blank["scientificName"] == "" and blank["classificationProbability"] == "" and blank["count"] == ""
    assert not [r for r in rows if r["mediaID"] == _media_id("card", "ser/IMG_0004.JPG")], "a failed photo: none"
    events = {r["eventID"]: r for r in rows if r["observationLevel"] == "event"}
    burst = events[event_id]
    assert burst["observationID"] == event_id and burst["mediaID"] == ""
    assert (burst["eventStart"], burst["eventEnd"]) == ("2024-05-01T06:00:00+03:00", "2024-05-01T06:00:02+03:00")
    assert burst["observationType"] == "animal" and burst["scientificName"] == "Equus quagga"
    assert burst["count"] == "1" and burst["classificationProbability"] == "0.9"
    assert burst["observationComments"] == "event of 2 photo(s)" and burst["observationTags"] == "class:zebra"
    assert events[blank["eventID"]]["observationType"] == "blank" and events[blank["eventID"]]["count"] == ""
    clip = [r for r in rows if r["mediaID"] == _media_id("card2", "DCIM/100RECNX/clip.AVI")]
    assert [(r["observationType"], r["scientificName"], r["observationTags"]) for r in clip] == [
        ("vehicle", "", "class:vehicle"),
        ("unknown", "", "class:chair"),
    ]
    assert clip[0]["eventStart"] == "2024-05-02T09:00:00+01:00"
    assert len(events) == 3


def test_descriptor(run: RunResults, tmp_path: Path) -> None:
    _export(run, tmp_path / "package")
    descriptor = json.loads((tmp_path / "package" / "datapackage.json").read_text())
    base = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2"
    assert descriptor["profile"] == f"{base}/camtrap-dp-profile.json"
    assert descriptor["resources"] == [
        {"name": t, "path": f"{t}.csv", "profile": "tabular-data-resource", "format": "csv", "mediatype": "text/csv",
         "encoding": "utf-8", "schema": f"{base}/{t}-table-schema.json"}
        for t in ("deployments", "media", "observations")
    ]  # fmt: skip
    assert descriptor["name"] == "ser-trial" and descriptor["created"] == "2024-06-01T12:00:00Z"
    assert descriptor["title"] == "Serengeti trial"
    assert descriptor["contributors"] == [
        {"title": "Ada Field", "email": "ada@example.org", "role": "principalInvestigator", "organization": "Uni"},
        {"title": "Field Station", "role": "contributor"},
    ]
    assert descriptor["sources"] == [{"title": "andi-edge", "version": __version__}]
    assert descriptor["project"] == {
        "title": "Serengeti trial", "acronym": "SER Trial!", "description": "two cameras",
        "path": "https://example.org/ser", "samplingDesign": "targeted", "captureMethod": ["activityDetection"],
        "individualAnimals": False, "observationLevel": ["media", "event"],
    }  # fmt: skip
    assert descriptor["spatial"] == {
        "type": "Polygon",
        "coordinates": [[[34.82, -2.5], [34.9, -2.5], [34.9, -2.45], [34.82, -2.45], [34.82, -2.5]]],
    }
    assert descriptor["temporal"] == {"start": "2024-05-01", "end": "2024-05-02"}
    assert descriptor["taxonomic"] == [{"scientificName": "Equus quagga", "vernacularNames": {"eng": "zebra"}}]
    assert descriptor["andi_edge"] == {
        "model": "yolov5n-ct (ct.onnx, sha256 abababababab) via andi-edge 9.9", "observation_threshold": THRESHOLD,
        "event_gap_s": 60.0, "repeat_detection": "off", "media_base": "media/",
    }  # fmt: skip
    assert descriptor["licenses"] == [{"name": "CC0-1.0", "scope": "data"}, {"name": "CC-BY-4.0", "scope": "media"}]
    assert descriptor["coordinatePrecision"] == 0.01


def test_spatial_point_and_line_of_points(run: RunResults, tmp_path: Path) -> None:
    one = replace(CONFIG, deployments=(replace(CONFIG.deployments[0], cameras=("card/folder:ser", "card2")),))
    export_camtrap_dp(run, one, tmp_path / "p1", ExportOptions(threshold=THRESHOLD, now=NOW))
    spatial = json.loads((tmp_path / "p1" / "datapackage.json").read_text())["spatial"]
    assert spatial == {"type": "Point", "coordinates": [34.82, -2.45]}
    same_lat = replace(CONFIG, deployments=(CONFIG.deployments[0], replace(CONFIG.deployments[1], latitude=-2.45)))
    export_camtrap_dp(run, same_lat, tmp_path / "p2", ExportOptions(threshold=THRESHOLD, now=NOW))
    spatial = json.loads((tmp_path / "p2" / "datapackage.json").read_text())["spatial"]
    assert spatial == {"type": "MultiPoint", "coordinates": [[34.82, -2.45], [34.9, -2.45]]}


def test_copying_media_and_a_published_base(run: RunResults, tmp_path: Path) -> None:
    package = tmp_path / "package"
    summary, _ = _export(run, package, copy_media=True)
    assert summary.copied_media == 4 and summary.not_copied == ["card/ser/IMG_0003.JPG"]
    assert (package / "media" / "card" / "ser" / "IMG_0002.JPG").read_bytes() == PNG
    copied = package / "media" / "card2" / "DCIM" / "100RECNX" / "clip.AVI"
    assert copied.stat().st_mtime_ns == int(MTIME.timestamp() * 1e9), "copied with its times"
    summary, tables = _export(run, package, media_base="https://data.example.org/ser/")
    assert tables["media"][0]["filePath"] == "https://data.example.org/ser/card/ser/IMG_0001.JPG"
    assert summary.copied_media == 0
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["andi_edge"]["media_base"] == "https://data.example.org/ser/"


def test_repeats_flagged_are_tagged_and_suppressed_are_left_out(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, 6, 0, 0)
    # a knot in the same place in four photos, an hour apart (four events), and a zebra in the last
    records = [
        _record("card", f"ser/IMG_{i:04d}.JPG", t0 + timedelta(hours=i), ((CHAIR, 0.7),) + (((ZEBRA, 0.9),) if i == 3
                else ()))
        for i in range(4)
    ]  # fmt: skip
    flag = RepeatSettings(min_photos=3, iou_threshold=0.8, action="flag")
    _, tables = _export(_run(tmp_path / "a", records, {}, flag), tmp_path / "flagged")
    media_rows = [r for r in tables["observations"] if r["observationLevel"] == "media"]
    knots = [r for r in media_rows if r["observationTags"].startswith("class:chair")]
    assert len(knots) == 4
    pattern = knots[0]["observationTags"].split("repeat-detection:")[1]
    assert all(k["observationTags"] == f"class:chair | repeat-detection:{pattern}" for k in knots)
    assert all(k["observationComments"] == "probable repeat detection: a box at this place in 4 photos of this "
               "camera" for k in knots)  # fmt: skip
    suppress = replace(flag, action="suppress")
    _, tables = _export(_run(tmp_path / "b", records, {}, suppress), tmp_path / "suppressed")
    media_rows = [r for r in tables["observations"] if r["observationLevel"] == "media"]
    assert [r["observationType"] for r in media_rows] == ["blank", "blank", "blank", "animal"]
    assert media_rows[-1]["observationID"].endswith("-2"), "the zebra keeps its index in the photo"
    descriptor = json.loads((tmp_path / "suppressed" / "datapackage.json").read_text())
    assert descriptor["andi_edge"]["repeat_detection"] == "suppress"


def test_a_suppressed_person_hides_nothing_and_a_flagged_one_still_does(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, 6, 0, 0)
    records = [_record("card", f"ser/IMG_{i:04d}.JPG", t0 + timedelta(hours=i), ((PERSON, 0.7),)) for i in range(3)]
    for action, public in (("suppress", "true"), ("flag", "false")):
        repeats = RepeatSettings(min_photos=3, iou_threshold=0.8, action=action)
        _, tables = _export(_run(tmp_path / action, records, {}, repeats), tmp_path / f"p-{action}")
        assert {m["filePublic"] for m in tables["media"]} == {public}, action


def test_the_template_lists_every_camera_with_what_the_photos_tell(run: RunResults) -> None:
    assert camera_keys(run) == ["card/folder:ser", "card2/folder:DCIM"]
    text = deployment_template(run)
    config = yaml.safe_load(text)
    assert config["project"] == {"title": "TODO: project title", "sampling_design": "opportunistic",
                                 "capture_method": ["activityDetection"], "individual_animals": False}  # fmt: skip
    assert config["contributors"] == [{"title": "TODO: your name", "role": "principalInvestigator"}]
    assert config["timezone"] is None and config["taxa"] == {}
    assert config["deployments"] == [
        {"deployment_id": "deployment-1", "cameras": ["card/folder:ser"], "latitude": None, "longitude": None,
         "camera_model": "RECONYX-HC600"},
        {"deployment_id": "deployment-2", "cameras": ["card2/folder:DCIM"], "latitude": None, "longitude": None},
    ]  # fmt: skip
    assert "# 4 photo(s), camera clock 2024-05-01T06:00:00 .. 2024-05-01T09:30:00" in text
    assert "# 1 photo(s), camera clock no EXIF times" in text
    # the animal labels at the threshold, to map to taxa: zebra's two boxes >= 0.5; no vehicle, no chair
    assert '#   "zebra": TODO   # 2 box(es)' in text and '"vehicle"' not in text and '"chair"' not in text
    assert text.startswith("# Camtrap DP export settings for andi-edge export-camtrap-dp --deployment-config")
    assert "andi_edge/assets/camtrap-dp.example.yaml" in text and text.endswith("\n")


def test_a_classifiers_species_are_named_with_its_confidence_and_the_classifier(tmp_path: Path) -> None:
    """Boxes of the category zebra, named by a classifier: at 0.6 or above the species (and its taxon), below it
    the category; the classifier's confidence and name go with a species."""
    t0 = datetime(2024, 5, 1, 6, 0, 0)
    named = Box(ZEBRA, 0.9, (0.1, 0.2, 0.25, 0.125), ((1, 0.8), (0, 0.2)))
    unsure = Box(ZEBRA, 0.7, (0.5, 0.2, 0.25, 0.125), ((1, 0.55), (0, 0.45)))
    records = [
        replace(_record("card", "ser/IMG_0001.JPG", t0), boxes=(named,)),
        replace(_record("card", "ser/IMG_0002.JPG", t0 + timedelta(hours=2)), boxes=(unsure,)),
    ]
    results = _run(tmp_path, records, {}, RepeatSettings(enabled=False), species=("grevys zebra", "plains zebra"))
    config = replace(CONFIG, taxa={"plains zebra": "Equus quagga", "zebra": "Equus"})
    export_camtrap_dp(results, config, tmp_path / "p", ExportOptions(threshold=THRESHOLD, now=NOW))
    assert package_errors(tmp_path / "p") == []
    observations = _tables(tmp_path / "p")["observations"]
    rows = {r["mediaID"]: r for r in observations if r["observationLevel"] == "media"}
    first = rows[_media_id("card", "ser/IMG_0001.JPG")]
    assert first["scientificName"] == "Equus quagga" and first["classificationProbability"] == "0.8"
    assert "species.onnx" in first["classifiedBy"] and "ct.onnx" in first["classifiedBy"]
    assert first["observationTags"] == "class:plains zebra" and first["observationType"] == "animal"
    second = rows[_media_id("card", "ser/IMG_0002.JPG")]
    assert second["scientificName"] == "Equus" and second["classificationProbability"] == "0.7"
    events = [r for r in observations if r["observationLevel"] == "event"]
    assert sorted(r["scientificName"] for r in events) == ["Equus", "Equus quagga"]
    assert sorted(r["classificationProbability"] for r in events) == ["0.7", "0.8"]
    descriptor = json.loads((tmp_path / "p" / "datapackage.json").read_text())
    assert {t["scientificName"] for t in descriptor["taxonomic"]} == {"Equus", "Equus quagga"}
    template = deployment_template(results)
    assert '#   "plains zebra": TODO   # 1 box(es)' in template and '#   "zebra": TODO   # 1 box(es)' in template


def test_what_stops_an_export(run: RunResults, tmp_path: Path) -> None:
    options = ExportOptions(threshold=THRESHOLD, now=NOW)
    with pytest.raises(OutputError, match="holds no finished photo"):
        export_camtrap_dp(replace(run, records=[]), CONFIG, tmp_path / "p", options)
    only_one = replace(CONFIG, deployments=CONFIG.deployments[:1])
    with pytest.raises(ConfigError, match=r"^1 camera\(s\) of this run belong to no deployment: card2/folder:DCIM"):
        export_camtrap_dp(run, only_one, tmp_path / "p", options)
    twice = replace(
        CONFIG, deployments=(CONFIG.deployments[0], replace(CONFIG.deployments[1], cameras=("card/folder:ser",)))
    )
    with pytest.raises(ConfigError, match="card/folder:ser is listed under two deployments: SER-1, CARD-2"):
        export_camtrap_dp(run, twice, tmp_path / "p", options)
    bad_start = replace(CONFIG, deployments=(replace(CONFIG.deployments[0], start="May 1st"), CONFIG.deployments[1]))
    with pytest.raises(ConfigError, match="deployment SER-1: 'May 1st' is not an ISO 8601 date and time"):
        export_camtrap_dp(run, bad_start, tmp_path / "p2", options)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        export_camtrap_dp(run, CONFIG, tmp_path / "file", options)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (other / "media").mkdir()
    with pytest.raises(OutputError, match=r"already holds other files \(notes.txt\)") as held:
        export_camtrap_dp(run, CONFIG, other, options)
    assert held.value.hint is not None and "earlier export" in held.value.hint
    earlier = tmp_path / "earlier"
    export_camtrap_dp(run, CONFIG, earlier, options)
    export_camtrap_dp(run, CONFIG, earlier, options)  # an earlier package is replaced
    assert package_errors(earlier) == []


def test_an_offset_in_the_configured_start_is_kept_and_photos_outside_are_reported(
    run: RunResults, tmp_path: Path
) -> None:
    d = replace(CONFIG.deployments[0], start="2024-05-01T05:00:00+02:00", end="2024-05-01T09:00")
    config = replace(CONFIG, deployments=(d, CONFIG.deployments[1]))
    summary = export_camtrap_dp(run, config, tmp_path / "p", ExportOptions(threshold=THRESHOLD, now=NOW))
    [ser] = [r for r in _tables(tmp_path / "p")["deployments"] if r["deploymentID"] == "SER-1"]
    assert (ser["deploymentStart"], ser["deploymentEnd"]) == ("2024-05-01T05:00:00+02:00", "2024-05-01T09:00:00+03:00")
    assert ser["timestampIssues"] == "true"
    # 06:00+03:00 to 09:00+03:00, both ends included: only the (failed) 09:30 photo is outside
    assert ser["deploymentComments"] == "near water; clock: 1 photo(s) fall outside the deployment's start and end"
    assert "SER-1: 1 photo(s) fall outside the deployment's start and end" in summary.warnings


def test_a_clip_is_video_media_seen_at_its_poster_frames_time(tmp_path: Path) -> None:
    """A clip's media row is video/* (by its name, else by its content), its boxes are observed at its poster
    frame's time in the clip, and a clip without any box is blank for as long as it lasts."""
    t0 = datetime(2024, 5, 1, 6, 0, 0)
    records = [
        replace(_record("card", "ser/CLIP0001.MP4", t0, ((ZEBRA, 0.9),)), poster_frame=90, poster_time_s=3.0,
                clip_duration_s=20.0),
        replace(_record("card", "ser/CLIP0002.JPG", t0 + timedelta(hours=1)), poster_frame=0, clip_duration_s=8.5),
        replace(_record("card", "ser/CLIP0003.BIN", t0 + timedelta(hours=2)), poster_frame=0, clip_duration_s=1.0),
        _record("card", "ser/IMG_0004.JPG", t0 + timedelta(hours=3), ((ZEBRA, 0.8),)),
    ]  # fmt: skip
    files = {"card/ser/CLIP0001.MP4": b"\0\0\0\x18ftypmp42" + b"\0" * 60,
             "card/ser/CLIP0002.JPG": b"\0\0\0\x18ftypmp42" + b"\0" * 60,
             "card/ser/CLIP0003.BIN": b"RIFF\0\0\0\0AVI LIST" + b"\0" * 60,
             "card/ser/IMG_0004.JPG": JPEG}  # fmt: skip
    summary, tables = _export(_run(tmp_path, records, files, RepeatSettings(enabled=False)), tmp_path / "p")
    assert (summary.media, summary.video_media) == (4, 3)
    media = {row["fileName"]: row for row in tables["media"]}
    assert media["CLIP0001.MP4"]["fileMediatype"] == "video/mp4"
    assert media["CLIP0002.JPG"]["fileMediatype"] == "video/mp4", "a clip named like a photo: not image/jpeg"
    assert media["CLIP0003.BIN"]["fileMediatype"] == "video/x-msvideo", "by its content where the name says nothing"
    assert media["IMG_0004.JPG"]["fileMediatype"] == "image/jpeg"
    by_media = {row["mediaID"]: row for row in tables["observations"] if row["observationLevel"] == "media"}
    seen = by_media[media["CLIP0001.MP4"]["mediaID"]]
    assert seen["observationType"] == "animal"
    start = datetime.fromisoformat(media["CLIP0001.MP4"]["timestamp"])
    assert datetime.fromisoformat(seen["eventStart"]) - start == timedelta(seconds=3)
    assert seen["eventEnd"] == seen["eventStart"]
    blank = by_media[media["CLIP0002.JPG"]["mediaID"]]
    assert blank["observationType"] == "blank" and blank["eventStart"] == media["CLIP0002.JPG"]["timestamp"]
    end = datetime.fromisoformat(blank["eventEnd"]) - datetime.fromisoformat(blank["eventStart"])
    assert end == timedelta(seconds=8), "a blank clip spans its length (whole seconds in the stamps)"
    photo = by_media[media["IMG_0004.JPG"]["mediaID"]]
    assert photo["eventStart"] == photo["eventEnd"] == media["IMG_0004.JPG"]["timestamp"]
