"""Who may see a photo in a published Camtrap DP package: a photo with a person in it, and every other photo of
that person's event, is ``filePublic=false``; the rest of the camera's photos stay public.

On the sample photos every event with a person has a person box in each of its photos, so the event rule never
bites there; these rows build the runs where it does (records as the journal gives them back, the real review and
the real writer), and validate each package against the TDWG schemas."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from andi_edge.camtrap_config import CamtrapConfig, Contributor, Deployment, Licenses, ProjectSection
from andi_edge.results.records import Box, PhotoRecord, camera_key
from andi_edge.results.review import build_review
from andi_edge.results.run import RunFacts, RunResults
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.sinks.camtrap_dp import ExportOptions, export_camtrap_dp
from tests.camtrap_validation import package_errors

CLASSES = ("animal", "person", "vehicle")
ANIMAL, PERSON, VEHICLE = 0, 1, 2
THRESHOLD = 0.2
START = datetime(2024, 5, 1, 6, 0, 0)


@dataclass(frozen=True)
class Shot:
    """One photo: seconds after START, and its boxes as (class, confidence)."""

    at_s: float
    boxes: tuple[tuple[int, float], ...] = ()


def _record(i: int, shot: Shot, folder: str = "cam1") -> PhotoRecord:
    rel = f"{folder}/IMG_{i:04d}.JPG"
    boxes = tuple(Box(c, conf, (0.1 + 0.05 * k, 0.2, 0.3, 0.25)) for k, (c, conf) in enumerate(shot.boxes))
    return PhotoRecord(
        card_id="card",
        rel_path=rel,
        output_key=rel,
        camera_key=camera_key(rel, None),
        capture_time=START + timedelta(seconds=shot.at_s),
        file_mtime=datetime(2024, 5, 2, tzinfo=UTC),
        width_px=2048,
        height_px=1536,
        boxes=boxes,
        failure=None,
    )


def _export(tmp_path: Path, shots: list[Shot], gap_s: float = 60.0) -> list[bool]:
    """filePublic of each shot's photo, in order, from the package the real writer makes."""
    records = [_record(i, s) for i, s in enumerate(shots)]
    events = EventSettings(gap_s=gap_s)
    repeats = RepeatSettings(enabled=False)
    review = build_review(records, CLASSES, events, repeats, THRESHOLD)
    facts = RunFacts(
        model_name="md-test", model_file="md.onnx", model_sha256="0" * 64, andi_edge_version="test",
        class_names=CLASSES, typical_threshold=THRESHOLD, watch_root=tmp_path / "card", output_dir=tmp_path / "out",
        started_at="2024-05-02T00:00:00+00:00", events=events, repeats=repeats,
    )  # fmt: skip
    results = RunResults(facts, records, {}, review, {}, {})
    config = CamtrapConfig(
        project=ProjectSection(title="privacy rows"),
        contributors=(Contributor(title="Test Person", role="principalInvestigator"),),
        licenses=Licenses(data="CC0-1.0", media="CC-BY-4.0"),
        timezone="UTC",
        deployments=(Deployment(deployment_id="D1", cameras=("card/folder:cam1",), latitude=1.0, longitude=2.0),),
    ).validate("test")
    package = tmp_path / "package"
    summary = export_camtrap_dp(results, config, package, ExportOptions(threshold=THRESHOLD))
    assert package_errors(package) == []
    with (package / "media.csv").open(newline="") as f:
        public = {row["fileName"]: row["filePublic"] for row in csv.DictReader(f)}
    flags = [public[Path(r.rel_path).name] == "true" for r in records]
    assert summary.private_media == flags.count(False)
    return flags


ROWS = {
    # an event of three: the person is in the middle photo only -> the whole event is private
    "person in one photo of its event": ([Shot(0, ((ANIMAL, 0.9),)), Shot(2, ((PERSON, 0.8),)), Shot(4)], None,
                                         [False, False, False]),
    # the person's photo is the last of the burst, the first two have an animal only
    "person in the last photo": ([Shot(0, ((ANIMAL, 0.9),)), Shot(1, ((ANIMAL, 0.7),)),
                                  Shot(3, ((ANIMAL, 0.5), (PERSON, 0.4)))], None, [False, False, False]),
    # a second event of the same camera, beyond the gap, is not the person's event: it stays public
    "another event of the camera": ([Shot(0, ((PERSON, 0.9),)), Shot(5, ((ANIMAL, 0.8),)),
                                     Shot(600, ((ANIMAL, 0.9),)), Shot(602)], None, [False, False, True, True]),
    # the same photos, with a gap shorter than their spacing: three events, only the person's photo private
    "events split by a short gap": ([Shot(0, ((ANIMAL, 0.9),)), Shot(30, ((PERSON, 0.8),)), Shot(60)], 10.0,
                                    [True, False, True]),
    # a person box below the export's threshold is not a person: nothing hidden
    "person below the threshold": ([Shot(0, ((ANIMAL, 0.9),)), Shot(2, ((PERSON, THRESHOLD / 2),))], None,
                                   [True, True]),
    # exactly at the threshold it is one
    "person exactly at the threshold": ([Shot(0, ((ANIMAL, 0.9),)), Shot(2, ((PERSON, THRESHOLD),))], None,
                                        [False, False]),
    # vehicles have drivers, but the rule is about people seen: a vehicle alone leaves the photos public
    "vehicle only": ([Shot(0, ((VEHICLE, 0.9),)), Shot(2, ((ANIMAL, 0.8),))], None, [True, True]),
    # an event labelled by its animal (highest confidence) still hides its person
    "event labelled animal": ([Shot(0, ((ANIMAL, 0.95), (PERSON, 0.3))), Shot(1, ((ANIMAL, 0.9),))], None,
                              [False, False]),
}  # fmt: skip


@pytest.mark.parametrize("scenario", list(ROWS))
def test_a_persons_event_is_private_and_nothing_else(tmp_path: Path, scenario: str) -> None:
    shots, gap_s, expected = ROWS[scenario]
    assert _export(tmp_path, shots, gap_s if gap_s is not None else 60.0) == expected
