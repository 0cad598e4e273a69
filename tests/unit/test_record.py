"""The record of a processed photo: its own schema, through the journal bit for bit, and older journals read into it."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andi_edge.detections import ClipInfo, Detections, FrameResult, ImageResult, PhotoInfo
from andi_edge.record import RECORD_SCHEMA, OutputFacts, RecordError, ResultRecord, dump_record, load_record
from andi_edge.state.journal import DB_NAME, SCHEMA_VERSION, Journal, open_existing

f32 = st.floats(min_value=0, max_value=8000, allow_nan=False, width=32)
unit32 = st.floats(min_value=0, max_value=1, allow_nan=False, width=32)
text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\udce9", "\udc80", "%", "/"]), max_size=12)


@st.composite
def detections(draw: st.DrawFn) -> Detections:
    n = draw(st.integers(0, 6))
    corners = [sorted(draw(st.lists(f32, min_size=2, max_size=2))) for _ in range(2 * n)]
    xyxy = np.array(
        [[corners[2 * i][0], corners[2 * i + 1][0], corners[2 * i][1], corners[2 * i + 1][1]] for i in range(n)],
        np.float32,
    )
    conf = np.array(draw(st.lists(unit32, min_size=n, max_size=n)), np.float32)
    cls = np.array(draw(st.lists(st.integers(0, 79), min_size=n, max_size=n)), np.int64)
    if not draw(st.booleans()):
        return Detections(xyxy.reshape(-1, 4), conf, cls)
    k = draw(st.integers(0, 3))
    ids = np.array(draw(st.lists(st.integers(-1, 500), min_size=n * k, max_size=n * k)), np.int64).reshape(n, k)
    confs = np.array(draw(st.lists(unit32, min_size=n * k, max_size=n * k)), np.float32).reshape(n, k)
    return Detections(xyxy.reshape(-1, 4), conf, cls, ids, confs)


@st.composite
def records(draw: st.DrawFn) -> ResultRecord:
    path = Path("DCIM/100RECNX") / (draw(text) or "x")
    if draw(st.integers(0, 3)) == 0:  # a clip: its facts and every analysed frame's boxes
        clip = ClipInfo(
            width_px=draw(st.integers(2, 8000)),
            height_px=draw(st.integers(2, 8000)),
            frame_rate=draw(st.floats(0, 240)),
            duration_s=draw(st.none() | st.floats(0, 36000)),
            codec=draw(st.none() | st.sampled_from(["h264", "mjpeg", "hevc"])),
            creation_time=draw(st.none() | st.just("2024-05-01T03:12:00.000000Z")),
            rotation=draw(st.sampled_from([0, 90, -90, 180])),
            partial=draw(st.none() | text),
        )
        frames = tuple(
            FrameResult(n * 30, n * 1.0, draw(detections()), {"inference": draw(st.floats(0, 100))})
            for n in range(draw(st.integers(1, 4)))
        )
        result = ImageResult(
            path=path,
            detections=frames[0].detections,
            photo=PhotoInfo(clip.width_px, clip.height_px, "h264"),
            clip=clip,
            frames=frames,
        )
    elif draw(st.booleans()):
        result = ImageResult(path=path, failure="corrupt: " + draw(text))
    else:
        photo = PhotoInfo(
            width_px=draw(st.integers(1, 20000)),
            height_px=draw(st.integers(1, 20000)),
            format=draw(st.none() | st.sampled_from(["JPEG", "PNG"])),
            capture_time=draw(st.none() | st.just("2024-05-01T03:12:00")),
            camera_make=draw(st.none() | text),
            camera_model=draw(st.none() | text),
            camera_serial=draw(st.none() | text),
            exif_orientation=draw(st.integers(1, 8)),
        )
        timings = draw(st.dictionaries(st.sampled_from(["read", "decode", "inference"]), st.floats(0, 1e4)))
        result = ImageResult(path=path, detections=draw(detections()), photo=photo, timings_ms=timings)
    outputs = OutputFacts(
        crops=tuple(draw(st.lists(text, max_size=3))),
        crops_skipped=draw(st.none() | text),
        crops_scale=draw(st.none() | st.floats(0.01, 1.0)),
    )
    return ResultRecord(result=result, outputs=outputs, run_id=draw(st.none() | st.just("0123456789abcdef")))


def _same(a: ResultRecord, b: ResultRecord) -> None:
    """Equal, and every array equal bit for bit (dtype, shape and bytes)."""
    assert (a.outputs, a.run_id, a.kind) == (b.outputs, b.run_id, b.kind)
    ra, rb = a.result, b.result
    assert (ra.path, ra.photo, ra.failure, ra.timings_ms) == (rb.path, rb.photo, rb.failure, rb.timings_ms)
    assert (ra.clip, len(ra.frames)) == (rb.clip, len(rb.frames))
    _same_detections(ra.detections, rb.detections)
    for fa, fb in zip(ra.frames, rb.frames, strict=True):
        assert (fa.frame_number, fa.time_s, fa.timings_ms) == (fb.frame_number, fb.time_s, fb.timings_ms)
        _same_detections(fa.detections, fb.detections)


def _same_detections(da: Detections | None, db: Detections | None) -> None:
    assert (da is None) == (db is None)
    if da is not None and db is not None:
        for name in ("xyxy_px", "confidence", "class_id", "classification_id", "classification_conf"):
            x, y = getattr(da, name), getattr(db, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


@settings(max_examples=150, deadline=None)
@given(records())
def test_a_record_survives_its_text_bit_for_bit(record: ResultRecord) -> None:
    _same(load_record(dump_record(record), record.result.path), record)


@settings(max_examples=40, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4))
def test_a_record_survives_the_journal_bit_for_bit(
    tmp_path_factory: pytest.TempPathFactory, given_records: list[ResultRecord]
) -> None:
    state = tmp_path_factory.mktemp("state")
    journal = Journal(state)
    for i, record in enumerate(given_records):
        journal.enqueue("card", str(record.result.path) + f"#{i}", 1, i)
    for row, record in zip(journal.claim(len(given_records)), given_records, strict=True):
        journal.mark_finished(
            row.id,
            ResultRecord(
                result=dataclasses.replace(record.result, path=Path(row.rel_path)),
                outputs=record.outputs,
                run_id=record.run_id,
            ),
        )
    journal.close()
    reader = open_existing(state)
    rows = reader.finished("card")
    reader.close()
    by_path = {row.rel_path: row for row in rows}
    for i, record in enumerate(given_records):
        row = by_path[str(record.result.path) + f"#{i}"]
        assert row.record is not None
        stored = row.record
        assert stored.result.path == Path(row.rel_path)
        expected = ResultRecord(
            result=dataclasses.replace(record.result, path=stored.result.path),
            outputs=record.outputs,
            run_id=record.run_id,
        )
        _same(stored, expected)
        assert row.state == ("failed" if record.failure else "done") and row.failure == record.failure


def test_records_it_cannot_read_are_refused_with_the_reason() -> None:
    good = json.loads(dump_record(ResultRecord(result=ImageResult(Path("a"), failure="corrupt: x"))))
    for bad, reason in (
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({**good, "schema": RECORD_SCHEMA + 1}), "a newer one wrote it"),
        (json.dumps({**good, "kind": "hologram"}), "unknown kind"),
        (json.dumps({**good, "failure": None}), "damaged record"),  # neither detections nor a failure
        (json.dumps({"schema": 1, "kind": "photo", "photo": {"width_px": 1.5, "height_px": 2}}), "damaged"),
        (
            json.dumps(
                {
                    "schema": 1,
                    "kind": "photo",
                    "detections": {"xyxy_px": [[0, 0, 1, 1]], "conf": [2.0], "class_id": [0]},
                }
            ),
            "damaged record: Detections confidence",
        ),
    ):
        with pytest.raises(RecordError, match=reason):
            load_record(bad, Path("a"))


SCHEMA_4_ENTRY = {
    "file": "DCIM/a.JPG",
    "detections": [
        {"category": "1", "conf": 0.912, "bbox": [0.1, 0.2, 0.3, 0.4], "classifications": [["3", 0.8], ["1", 0.1]]},
        {"category": "2", "conf": 0.05, "bbox": [0.5, 0.5, 0.25, 0.125]},
    ],
    "width": 2048,
    "height": 1536,
    "datetime": "2024-05-01T03:12:00",
    "exif_metadata": {"Make": "RECONYX", "SerialNumber": "H500-1"},
}


def _schema_4_journal(state: Path) -> None:
    """A journal as andi-edge wrote it before records: MegaDetector entries in result_json."""
    journal = Journal(state)
    for rel in ("DCIM/a.JPG", "DCIM/b.JPG", "DCIM/c.JPG"):
        journal.enqueue("card", rel, 1, 1)
    journal.close()
    with sqlite3.connect(state / DB_NAME) as db:
        db.execute("ALTER TABLE photos DROP COLUMN record_json")
        for rel, state_name, entry in (
            ("DCIM/a.JPG", "done", SCHEMA_4_ENTRY),
            ("DCIM/b.JPG", "failed", {"file": "DCIM/b.JPG", "failure": "corrupt: truncated"}),
        ):
            db.execute(
                "UPDATE photos SET state=?, result_json=?, failure=? WHERE rel_path=?",
                (state_name, json.dumps(entry), entry.get("failure"), rel),
            )
        db.execute("UPDATE photos SET state='done', result_json='{damaged' WHERE rel_path='DCIM/c.JPG'")
        db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")


def _check_migrated(rows: dict[str, object]) -> None:
    a = rows["DCIM/a.JPG"].record  # type: ignore[attr-defined]
    assert a is not None and a.result.photo is not None and a.result.detections is not None
    assert (a.result.photo.width_px, a.result.photo.height_px, a.result.photo.camera_serial) == (2048, 1536, "H500-1")
    assert a.result.photo.capture_time == "2024-05-01T03:12:00" and a.result.photo.camera_make == "RECONYX"
    d = a.result.detections
    expected = np.array([[204.8, 307.2, 819.2, 921.6], [1024, 768, 1536, 960]], np.float32)
    np.testing.assert_allclose(d.xyxy_px, expected, rtol=1e-6)
    assert d.class_id.tolist() == [0, 1] and d.confidence.tolist() == pytest.approx([0.912, 0.05])
    assert d.classifications(0) == [(2, pytest.approx(0.8)), (0, pytest.approx(0.1))] and d.classifications(1) == []
    b = rows["DCIM/b.JPG"].record  # type: ignore[attr-defined]
    assert b is not None and b.failure == "corrupt: truncated"
    assert rows["DCIM/c.JPG"].record is None, "a damaged row is left out, not a stop"  # type: ignore[attr-defined]


def test_an_older_journal_is_read_as_it_stands_and_migrated_to_records(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _schema_4_journal(state)
    reader = open_existing(state)  # read-only (status on an older daemon's card): read into records, file untouched
    _check_migrated({row.rel_path: row for row in reader.finished("card")})
    reader.close()
    with sqlite3.connect(state / DB_NAME) as db:
        assert "record_json" not in {row[1] for row in db.execute("PRAGMA table_info(photos)")}
    journal = Journal(state)  # the daemon's open: migrated in place
    _check_migrated({row.rel_path: row for row in journal.finished("card")})
    journal.close()
    with sqlite3.connect(state / DB_NAME) as db:
        stored = dict(db.execute("SELECT rel_path, result_json IS NULL AND record_json IS NOT NULL FROM photos"))
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert stored == {"DCIM/a.JPG": 1, "DCIM/b.JPG": 1, "DCIM/c.JPG": 0} and version == str(SCHEMA_VERSION)
