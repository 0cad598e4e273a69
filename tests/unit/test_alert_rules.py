"""Alert rules on finished rows: labels and species, events, per photo, quiet hours, cooldowns, the daily cap; the
queue (ids, positions, acknowledgements, the thumbnail bound); the payload; the settings and their errors."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from andi_edge.alerts.config import AlertRule, AlertSettings, MqttSettings, WebhookSettings, parse_rule
from andi_edge.alerts.outbox import NewMessage, Outbox, read_summary
from andi_edge.alerts.payload import PAYLOAD_SCHEMA, alert_payload, topic_level
from andi_edge.alerts.rules import Evaluator, Finished, RuleState, in_quiet_hours, sightings
from andi_edge.alerts.thumbnail import crop_for_label, fit_jpeg, thumbnail_jpeg
from andi_edge.alerts.transports import read_secret, signature
from andi_edge.detections import ClipInfo, Detections, FrameResult, ImageResult, PhotoInfo
from andi_edge.errors import ConfigError
from andi_edge.results.labels import LabelSpace
from andi_edge.settings import load_watch_config
from andi_edge.sinks.names import bounded_name, safe_name

LABELS = LabelSpace(("animal", "person", "vehicle"), ("zebra", "lion", "blank"), 0.5)
START = datetime(2026, 3, 1, 3, 12, 0)
T0 = 1_772_000_000.0  # a device time (epoch seconds)


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Quiet hours and days are device local time: the tests fix it."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()


def _detections(*boxes: tuple[int, float], species: list[tuple[int, float]] | None = None) -> Detections:
    n = len(boxes)
    xyxy = np.array([[10 * i, 10, 10 * i + 50, 80] for i in range(n)], np.float32).reshape(-1, 4)
    conf = np.array([c for _, c in boxes], np.float32)
    cls = np.array([k for k, _ in boxes], np.int64)
    if species is None:
        return Detections(xyxy, conf, cls)
    ids = np.array([[s] for s, _ in species], np.int64)
    confs = np.array([[c] for _, c in species], np.float32)
    return Detections(xyxy, conf, cls, ids, confs)


def _row(
    seq: int,
    detections: Detections,
    *,
    seconds: float = 0.0,
    camera: str = "folder:DCIM",
    card: str = "card",
    finished_at: float | None = None,
    capture: bool = True,
) -> Finished:
    return Finished(
        seq=seq,
        card_id=card,
        rel_path=f"DCIM/IMG_{seq:04d}.JPG",
        size_bytes=1000 + seq,
        mtime_ns=seq,
        generation=0,
        finished_at=T0 + seq if finished_at is None else finished_at,
        camera_key=camera,
        capture_time=START + timedelta(seconds=seconds) if capture else None,
        result=ImageResult(Path(f"IMG_{seq:04d}.JPG"), detections=detections, photo=PhotoInfo(200, 100)),
    )


def _settings(*rules: AlertRule, cap: int = 200) -> AlertSettings:
    return AlertSettings(mqtt=MqttSettings(url="mqtt://127.0.0.1:1883/site"), rules=rules, daily_cap=cap)


def _evaluate(
    settings: AlertSettings, rows: list[Finished], state: RuleState | None = None
) -> list[tuple[str, str, int]]:
    evaluator = Evaluator(settings, LABELS, 60.0, state or RuleState())
    return [(d.kind, d.sighting.label, d.row.seq) for d in evaluator.evaluate(rows)]


def test_a_sighting_is_the_species_when_the_classifier_named_one_and_counts_boxes_over_the_rule_confidence() -> None:
    detections = _detections((0, 0.9), (0, 0.6), (1, 0.3), species=[(0, 0.8), (2, 0.9), (-1, 0.0)])
    seen = {s.label: s for s in sightings(ImageResult(Path("x"), detections=detections), LABELS, 0.5)}
    assert set(seen) == {"zebra", "animal"}, "a 'blank' label never names a box; the person is below 0.5"
    assert (
        seen["zebra"].category == "animal"
        and seen["zebra"].is_species
        and seen["zebra"].label_conf == pytest.approx(0.8)
    )
    assert seen["zebra"].count == 1 and seen["zebra"].box_xyxy_px == (0.0, 10.0, 50.0, 80.0)
    assert not seen["animal"].is_species and seen["animal"].conf == pytest.approx(0.6)


def test_a_clip_is_seen_over_every_frame_with_the_most_boxes_in_one_frame() -> None:
    frames = (
        FrameResult(0, 0.0, _detections((0, 0.55))),
        FrameResult(30, 1.0, _detections((1, 0.7), (1, 0.8))),
        FrameResult(60, 2.0, _detections((1, 0.9))),
    )
    result = ImageResult(Path("c.MP4"), detections=frames[2].detections, clip=ClipInfo(200, 100, 30.0), frames=frames)
    seen = {s.label: s for s in sightings(result, LABELS, 0.5)}
    assert seen["person"].count == 2 and seen["person"].conf == pytest.approx(0.9) and seen["person"].frame_number == 60
    assert seen["animal"].frame_number == 0


def test_per_event_rules_alert_on_the_first_photo_and_update_after_it() -> None:
    rule = AlertRule(labels=("person",), min_conf=0.5)
    rows = [
        _row(1, _detections((1, 0.9)), seconds=0),
        _row(2, _detections((1, 0.8)), seconds=30),
        _row(3, _detections((0, 0.9)), seconds=40),  # an animal: no rule asks for it
        _row(4, _detections((1, 0.7)), seconds=80),  # within 60 s of the previous person photo: the same event
        _row(5, _detections((1, 0.7)), seconds=300),  # a new event
        _row(6, _detections((1, 0.7)), seconds=310, camera="folder:CAM2"),  # another camera: its own event
        _row(7, _detections((1, 0.4)), seconds=320),  # below the rule's confidence
    ]
    assert _evaluate(_settings(rule), rows) == [
        ("alert", "person", 1),
        ("update", "person", 2),
        ("update", "person", 4),
        ("alert", "person", 5),
        ("alert", "person", 6),
    ]


def test_an_update_names_the_event_it_continues_and_its_running_totals() -> None:
    evaluator = Evaluator(_settings(AlertRule(labels=("person",))), LABELS, 60.0, RuleState())
    first, second = evaluator.evaluate(
        [_row(1, _detections((1, 0.9))), _row(2, _detections((1, 0.6), (1, 0.7)), seconds=20)]
    )
    assert second.event_id == first.event_id and second.id != first.id
    assert (second.event_photos, second.event_count) == (2, 2) and second.event_conf == pytest.approx(0.9)


def test_per_photo_rules_alert_on_every_photo_and_a_photo_without_a_time_is_its_own_event() -> None:
    rule = AlertRule(labels=("vehicle",), per="photo")
    rows = [_row(1, _detections((2, 0.9))), _row(2, _detections((2, 0.9)), seconds=5)]
    assert _evaluate(_settings(rule), rows) == [("alert", "vehicle", 1), ("alert", "vehicle", 2)]
    timeless = [_row(1, _detections((2, 0.9)), capture=False), _row(2, _detections((2, 0.9)), capture=False)]
    assert _evaluate(_settings(AlertRule(labels=("vehicle",))), timeless) == [
        ("alert", "vehicle", 1),
        ("alert", "vehicle", 2),
    ]


def test_a_category_rule_matches_its_species_and_a_species_rule_only_that_species() -> None:
    zebra = _row(1, _detections((0, 0.9), species=[(0, 0.9)]))
    lion = _row(2, _detections((0, 0.9), species=[(1, 0.9)]), seconds=600)
    assert _evaluate(_settings(AlertRule(labels=("Animal",))), [zebra, lion]) == [
        ("alert", "zebra", 1),
        ("alert", "lion", 2),
    ]
    assert _evaluate(_settings(AlertRule(labels=("lion",))), [zebra, lion]) == [("alert", "lion", 2)]


def test_quiet_hours_span_midnight_and_an_event_held_back_alerts_once_they_end() -> None:
    rule = AlertRule(labels=("person",), quiet_hours="22:00-06:00")
    night = datetime(2026, 3, 1, 5, 55).timestamp()
    assert in_quiet_hours(rule, datetime(2026, 3, 1, 23, 0).timestamp())
    assert in_quiet_hours(rule, night) and not in_quiet_hours(rule, datetime(2026, 3, 1, 6, 0).timestamp())
    assert not in_quiet_hours(AlertRule(labels=("x",), quiet_hours="09:00-17:00"), datetime(2026, 3, 1, 8).timestamp())
    rows = [
        _row(1, _detections((1, 0.9)), seconds=0, finished_at=night),
        _row(2, _detections((1, 0.9)), seconds=30, finished_at=night + 240),  # 05:59: still quiet
        _row(3, _detections((1, 0.9)), seconds=50, finished_at=night + 301),  # 06:00:01: the event alerts now
        _row(4, _detections((1, 0.9)), seconds=70, finished_at=night + 320),
    ]
    state = RuleState()
    assert _evaluate(_settings(rule), rows, state) == [("alert", "person", 3), ("update", "person", 4)]
    assert state.suppressed["2026-03-01"] == {"quiet_hours": 2}


def test_cooldown_per_rule_and_label_and_a_daily_cap_over_all_rules() -> None:
    cool = AlertRule(labels=("person", "vehicle"), per="photo", cooldown_s=100)
    rows = [
        _row(1, _detections((1, 0.9)), finished_at=T0),
        _row(2, _detections((1, 0.9), (2, 0.9)), finished_at=T0 + 50),  # person cooling down; vehicle is not
        _row(3, _detections((1, 0.9)), finished_at=T0 + 101),
    ]
    assert _evaluate(_settings(cool), rows) == [("alert", "person", 1), ("alert", "vehicle", 2), ("alert", "person", 3)]
    capped = _settings(AlertRule(labels=("person",), per="photo"), AlertRule(labels=("vehicle",), per="photo"), cap=2)
    many = [_row(i, _detections((1, 0.9), (2, 0.9)), finished_at=T0 + i) for i in range(1, 4)]
    state = RuleState()
    assert _evaluate(capped, many, state) == [("alert", "person", 1), ("alert", "vehicle", 1)]
    day = time.strftime("%Y-%m-%d", time.localtime(T0))
    assert state.daily[day] == 2 and state.suppressed[day] == {"daily_cap": 4}
    tomorrow = [_row(9, _detections((1, 0.9)), finished_at=T0 + 86400)]
    assert _evaluate(capped, tomorrow, state) == [("alert", "person", 9)], "a new day, a new cap"


def test_evaluating_the_same_rows_again_gives_the_same_ids_and_failures_never_alert() -> None:
    settings = _settings(AlertRule(labels=("person",)))
    rows = [_row(1, _detections((1, 0.9))), _row(2, _detections((1, 0.9)), seconds=10)]
    saved = RuleState().to_json()
    once = Evaluator(settings, LABELS, 60.0, RuleState.from_json(saved)).evaluate(rows)
    again = Evaluator(settings, LABELS, 60.0, RuleState.from_json(json.loads(json.dumps(saved)))).evaluate(rows)
    assert [d.id for d in once] == [d.id for d in again] and len({d.id for d in once}) == 2
    failed = Finished(**{**_row(3, _detections()).__dict__, "result": ImageResult(Path("x"), failure="corrupt: x")})
    assert Evaluator(settings, LABELS, 60.0, RuleState()).evaluate([failed]) == []


def test_the_payload_is_versioned_and_says_what_a_ranger_needs() -> None:
    evaluator = Evaluator(_settings(AlertRule(labels=("person",))), LABELS, 60.0, RuleState())
    [decision] = evaluator.evaluate([_row(7, _detections((1, 0.912), (1, 0.6)))])
    payload = alert_payload(decision, "trap-7")
    assert payload["schema"] == PAYLOAD_SCHEMA and payload["type"] == "alert" and payload["id"] == decision.id
    assert (payload["rule"], payload["label"], payload["conf"], payload["count"]) == ("person", "person", 0.912, 2)
    assert payload["card"] == "card" and payload["file"] == "DCIM/IMG_0007.JPG" and payload["device"] == "trap-7"
    assert payload["time"]["camera"] == "2026-03-01T03:12:00"
    assert datetime.fromisoformat(payload["time"]["detected"]).utcoffset() is not None, "device time with its offset"
    assert payload["event"]["id"].startswith("ev-") and payload["media"] == "photo"
    json.dumps(payload)
    assert topic_level("Red deer/#+") == "red_deer_"


def _message(i: int, thumbnail: bytes | None = None) -> NewMessage:
    return NewMessage(f"al-{i}", "alert", "card", "person", {"id": f"al-{i}"}, thumbnail, journal_seq=i)


def test_the_queue_keeps_ids_once_and_delivers_per_transport_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "q")
    outbox.register("mqtt")
    assert outbox.position is None
    assert outbox.commit([_message(1), _message(2)], 5, {"k": 1}) == 2
    assert outbox.commit([_message(2), _message(3)], 7, {"k": 2}) == 1, "al-2 was queued already"
    assert outbox.position == 7 and outbox.rule_state == {"k": 2}
    outbox.register("hook")  # a transport added later gets what is queued from now on
    outbox.commit([_message(4)], 8, {})
    assert [m.id for m in outbox.pending("mqtt", 10)] == ["al-1", "al-2", "al-3", "al-4"]
    assert [m.id for m in outbox.pending("hook", 10)] == ["al-4"]
    first = outbox.pending("mqtt", 2)
    outbox.acknowledge("mqtt", [first[0].seq])
    assert [m.id for m in outbox.pending("mqtt", 10)] == ["al-2", "al-3", "al-4"]
    assert outbox.backlog(["mqtt", "hook"]) == {"mqtt": 3, "hook": 1}
    outbox.close()
    reopened = Outbox(tmp_path / "q")  # a restart (or a kill -9) keeps it all
    assert reopened.position == 8 and reopened.backlog(["mqtt", "hook"]) == {"mqtt": 3, "hook": 1}
    reopened.restart_from(0)
    assert reopened.commit([_message(1)], 1, {}) == 0, "a journal evaluated again does not queue twice"
    reopened.close()


def test_thumbnails_beyond_the_bound_go_oldest_first_and_never_the_alerts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "q")
    outbox.register("mqtt")
    outbox.commit([_message(i, b"x" * 1000) for i in range(1, 6)], 5, {})
    assert outbox.bound_thumbnails(2500) == 3
    waiting = outbox.pending("mqtt", 10)
    assert [m.thumbnail is not None for m in waiting] == [False, False, False, True, True]
    assert [m.thumbnail_dropped for m in waiting] == [True, True, True, False, False] and len(waiting) == 5
    outbox.acknowledge("mqtt", [m.seq for m in waiting])
    outbox.prune(["mqtt"])
    assert outbox.bound_thumbnails(0) == 0, "delivered thumbnails were let go"
    outbox.prune(["mqtt"], now=time.time() + 31 * 86400)
    assert outbox.pending("mqtt", 10) == [] and outbox.commit([_message(1)], 6, {}) == 0, "ids outlive bodies"
    outbox.close()


def test_status_reads_the_published_summary_with_the_queue_counted_now(tmp_path: Path) -> None:
    assert read_summary(tmp_path / "q") is None
    outbox = Outbox(tmp_path / "q")
    outbox.register("mqtt")
    outbox.commit([_message(1), _message(2)], 2, {})
    (tmp_path / "q" / "status.json").write_text(json.dumps({"backlog": {"mqtt": 0}, "time": "t"}))
    summary = read_summary(tmp_path / "q")
    assert summary is not None and summary["backlog"] == {"mqtt": 2} and summary["backlog_counted_now"]
    outbox.close()


def test_a_thumbnail_fits_its_size_from_the_crop_or_from_the_unchanged_photo(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = tmp_path / "p.jpg"
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), np.uint8)).save(photo, quality=95)
    info = photo.stat()
    kwargs = {"photo_size_bytes": info.st_size, "photo_mtime_ns": info.st_mtime_ns, "photo_width_px": 1600}
    thumb = thumbnail_jpeg(
        crop_file=None, photo_file=photo, box_xyxy_px=(100.0, 100.0, 900.0, 700.0), max_bytes=20_000, **kwargs
    )
    assert thumb is not None and len(thumb) <= 20_000
    with Image.open(io.BytesIO(thumb)) as small:
        assert max(small.size) <= 320 and abs(small.width / small.height - 880 / 680) < 0.05, "the box, padded"
    kwargs["photo_mtime_ns"] += 1  # another photo at that path now (a card swapped)
    assert (
        thumbnail_jpeg(crop_file=None, photo_file=photo, box_xyxy_px=(0, 0, 9, 9), max_bytes=20_000, **kwargs) is None
    )
    assert fit_jpeg(Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)), 100) is None, "cannot fit: none"
    deer = f"crops/{bounded_name(safe_name('red deer'))}/a__det01.jpg"  # the folder as `watch` names it
    assert crop_for_label(("crops/animal/a__det00.jpg", deer), "red deer") == deer
    assert crop_for_label(("crops/animal/a__det00.jpg", "crops/person/a__det01.jpg"), "person") == (
        "crops/person/a__det01.jpg"
    )


def test_settings_refuse_what_would_fail_in_the_field(tmp_path: Path) -> None:
    assert parse_rule("person,vehicle:0.6") == AlertRule(labels=("person", "vehicle"), min_conf=0.6)
    assert parse_rule("lion").min_conf == 0.5
    for bad, words in (
        ("person:high", "is not a confidence"),
        ("person:1.5", "min_conf must be between 0 and 1"),
        (":0.5", "needs at least one label"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_rule(bad)
    with pytest.raises(ConfigError, match="quiet_hours must be HH:MM-HH:MM"):
        AlertRule(labels=("person",), quiet_hours="22-6")
    with pytest.raises(ConfigError, match="must be mqtt://HOST or mqtts://HOST"):
        MqttSettings(url="http://broker/x")
    with pytest.raises(ConfigError, match="must not hold a user name or password"):
        MqttSettings(url="mqtt://user:secret@broker:1883/x")
    with pytest.raises(ConfigError, match="must be https://HOST or http://HOST"):
        WebhookSettings(url="ftp://x")
    with pytest.raises(ConfigError, match="no alert rule"):
        _settings().validate("site.yaml")
    with pytest.raises(ConfigError, match="no alert transport"):
        AlertSettings(rules=(AlertRule(labels=("person",)),)).validate("site.yaml")
    site = tmp_path / "site.yaml"
    site.write_text(
        "watch: /m\nmodel: m.onnx\noutput: /o\nalerts:\n  mqtt: {url: 'mqtt://10.0.0.2/trap7'}\n"
        "  rules:\n    - {labels: [person], per: sometimes}\n"
    )
    with pytest.raises(ConfigError, match=r"alerts.rules\[\].per must be one of photo, event.*site.yaml"):
        load_watch_config(site)


def test_secrets_come_from_systemd_credentials_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "hook.key"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="may be read by others"):
        read_secret("webhook-secret-0", str(secret), "alerts.webhooks[0].secret_file")
    secret.chmod(0o600)
    assert read_secret("webhook-secret-0", str(secret), "k") == "s3cret"
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "webhook-secret-0").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert read_secret("webhook-secret-0", str(secret), "k") == "from-systemd"
    assert read_secret("mqtt-password", "", "k") is None
    body = b'{"id": "al-1"}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_a_card_name_that_is_not_utf8_and_a_damaged_photo_still_make_an_alert(tmp_path: Path) -> None:
    """Names are bytes from the card; the photo may be truncated by the time the thumbnail is cut."""
    evaluator = Evaluator(_settings(AlertRule(labels=("person",))), LABELS, 60.0, RuleState())
    row = _row(3, _detections((1, 0.9)))
    row = Finished(**{**row.__dict__, "rel_path": "DCIM/caf\udce9 <b>x</b>.JPG"})
    [decision] = evaluator.evaluate([row])
    payload = alert_payload(decision, "trap-7")
    assert payload["file"] == "DCIM/caf\\xe9 <b>x</b>.JPG"
    assert json.loads(json.dumps(payload, ensure_ascii=False).encode("utf-8"))["id"] == decision.id
    broken = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (90, 120, 60)).save(buffer, format="JPEG")
    broken.write_bytes(buffer.getvalue()[:300])  # a copy cut short
    info = broken.stat()
    assert (
        thumbnail_jpeg(
            crop_file=tmp_path / "absent.jpg",
            photo_file=broken,
            photo_size_bytes=info.st_size,
            photo_mtime_ns=info.st_mtime_ns,
            box_xyxy_px=(10.0, 10.0, 200.0, 200.0),
            photo_width_px=800,
            max_bytes=20_000,
        )
        is None
    )
