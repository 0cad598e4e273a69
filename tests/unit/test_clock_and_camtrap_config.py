from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from andi_edge.camtrap_config import load_camtrap_config
from andi_edge.errors import ConfigError
from andi_edge.results.clock import clock_issues, localize, parse_timezone
from andi_edge.results.observation_types import observation_type
from andi_edge.results.records import PhotoRecord

EXAMPLE = Path(__file__).resolve().parents[2] / "andi_edge" / "assets" / "camtrap-dp.example.yaml"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def photo(name: str, taken: datetime | None) -> PhotoRecord:
    return PhotoRecord(
        card_id="card",
        rel_path=name,
        output_key=name,
        camera_key="folder:.",
        capture_time=taken,
        file_mtime=datetime(2024, 6, 1, 10, 0, tzinfo=UTC),
        width_px=1,
        height_px=1,
        boxes=(),
        failure=None,
    )


def test_timezones_follow_daylight_saving_or_a_fixed_offset() -> None:
    brussels = parse_timezone("Europe/Brussels", "test")
    summer = localize(photo("a", datetime(2024, 7, 1, 12, 0)), brussels)
    winter = localize(photo("b", datetime(2024, 1, 1, 12, 0)), brussels)
    assert summer.isoformat() == "2024-07-01T12:00:00+02:00"
    assert winter.isoformat() == "2024-01-01T12:00:00+01:00"
    assert parse_timezone("+03:00", "t") == timezone(timedelta(hours=3))
    assert parse_timezone("-0330", "t") == timezone(-timedelta(hours=3, minutes=30))
    assert parse_timezone("UTC", "t") == UTC
    # no EXIF time: the file's time, converted into the deployment's zone
    assert localize(photo("c", None), parse_timezone("+02:00", "t")).isoformat() == "2024-06-01T12:00:00+02:00"
    for bad in ("Mars/Olympus", "+15:00", ""):
        with pytest.raises(ConfigError, match="timezone"):
            parse_timezone(bad, "deployment X")


def test_clock_issues_spot_unset_future_reset_and_missing_clocks() -> None:
    good = [photo(f"IMG_{i:04d}.JPG", datetime(2024, 5, 1) + timedelta(minutes=i)) for i in range(5)]
    assert clock_issues(good, NOW) == []
    assert "no EXIF capture time" in clock_issues([*good, photo("IMG_9999.JPG", None)], NOW)[0]
    assert "before 2000" in clock_issues([photo("IMG_0001.JPG", datetime(1999, 12, 31))], NOW)[0]
    assert "future" in clock_issues([photo("IMG_0001.JPG", datetime(2027, 1, 1))], NOW)[0]
    reset = [*good, photo("IMG_0100.JPG", datetime(2016, 1, 1))]  # a later file number, years earlier: reset
    assert "backwards" in clock_issues(reset, NOW)[0]


def test_observation_types_by_class_name() -> None:
    assert [observation_type(n) for n in ("person", "car", "empty", "chair", "zebra", "animal", "bobcat")] == [
        "human",
        "vehicle",
        "blank",
        "unknown",
        "animal",
        "animal",
        "animal",
    ]
    assert observation_type("dog", {"dog": "unknown"}) == "unknown"


def test_the_example_deployment_config_loads_and_documents_every_key() -> None:
    import dataclasses

    import yaml

    from andi_edge.camtrap_config import CamtrapConfig, Deployment

    config = load_camtrap_config(EXAMPLE)
    assert config.deployments[0].deployment_id == "SER-D04-R6"
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(CamtrapConfig)}
    assert set(raw["deployments"][0]) == {f.name for f in dataclasses.fields(Deployment)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("project: {title: ''}", "project.title is not set"),
        ("contributors: []", "no contributors"),
        ("contributors: [{title: A, role: boss}]", "role must be one of"),
        ("licenses: {data: CC0-1.0}", "both data and media"),
        ("{timezone: null, deployments: [{deployment_id: A, cameras: [c], latitude: 1, longitude: 0}]}", "no timezone"),
        ("timezone: Moon/Base", "unknown timezone"),
        ("deployments: [{deployment_id: A, cameras: [c], latitude: 95, longitude: 0}]", "latitude must be set"),
        ("deployments: [{deployment_id: A, cameras: [], latitude: 1, longitude: 0}]", "cameras is empty"),
        ("deployments: [{deployment_id: A, cameras: [c], latitude: 1, longitude: 0, colour: red}]", "unknown key"),
        ("observation_types: {dog: pet}", "observation_types.dog"),
        ("project: {title: 'TODO: project title'}", r"project.title still holds the template's placeholder"),
        ("contributors: [{title: 'TODO: your name'}]", r"contributors\[0\].title still holds"),
        ("taxa: {zebra: TODO}", r"taxa.zebra still holds"),
    ],
)
def test_deployment_config_errors_name_the_key_and_the_file(tmp_path: Path, change: str, message: str) -> None:
    import yaml

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(yaml.safe_load(change))
    path = tmp_path / "deployments.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as err:
        load_camtrap_config(path)
    assert str(path) in str(err.value)
