"""A photo rewritten in place with the same size and mtime (a camera whose clock reset writing the same names,
a copy tool that keeps times) is noticed: its ctime moves, its fingerprint differs, and it is a new photo."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from tests.integration.daemon_harness import make_daemon


def _rows(state: Path, rel: str) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(state / "journal.sqlite3") as db:
        return list(db.execute("SELECT generation, state, output_key FROM photos WHERE rel_path=? ORDER BY id", (rel,)))


def test_a_photo_rewritten_in_place_with_the_same_size_and_mtime_is_processed_again(
    tmp_path: Path, card_copy: Path, photos_dir: Path, model_320: Path
) -> None:
    daemon = make_daemon(tmp_path, model_320)
    daemon.run_once()
    target = sorted(card_copy.rglob("*.JPG"))[0]
    rel = target.relative_to(card_copy).as_posix()
    before = next(i for i in daemon.batch()["images"] if i["file"] == rel)
    st = target.stat()
    # Another real photo, smaller, padded after its end-of-image marker to the same size (decoders ignore it).
    other = next(
        p
        for p in sorted(photos_dir.rglob("*.JPG"))
        if p.stat().st_size < st.st_size and "serengeti_S1_D04_R6" not in str(p)
    )
    data = other.read_bytes()
    original = target.read_bytes()
    with target.open("r+b") as f:  # in place: same inode, same name
        f.write(data + b"\0" * (st.st_size - len(data)))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    daemon.run_once()
    rows = _rows(daemon.state, rel)
    assert [(g, s) for g, s, _ in rows] == [(0, "done"), (1, "done")], daemon.log.read_text()[-2000:]
    assert rows[1][2] != rows[0][2]  # outputs of its own: the first photo's stay as they were
    assert "rewritten in place" in daemon.log.read_text()
    after = next(i for i in daemon.batch()["images"] if i["file"] == rel)
    assert after != before  # the batch file describes what is on the card now
    sidecars = [json.loads(p.read_text()) for p in daemon.sidecars()]
    assert sum(1 for s in sidecars if s["file"] == rel) == 2

    # Only the ctime moves (chmod): read, compared, and left alone.
    target.chmod(0o600)
    daemon.run_once()
    assert len(_rows(daemon.state, rel)) == 2
    assert daemon.log.read_text().count("rewritten in place") == 1

    # Back to the first bytes (gen 0 -> 1 -> 0): processed again, and the results are the first photo's again,
    # not those of generation 1 that the path held last.
    with target.open("r+b") as f:
        f.write(original)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    daemon.run_once()
    assert [(g, state) for g, state, _ in _rows(daemon.state, rel)] == [(0, "done"), (1, "done"), (2, "done")]
    again = next(i for i in daemon.batch()["images"] if i["file"] == rel)
    assert again["detections"] == before["detections"]


def test_photos_dated_past_2262_or_before_1970_are_processed(tmp_path: Path, card_copy: Path, model_320: Path) -> None:
    """A file time is a claim from the card: one past 2262 has more nanoseconds than 64 bits hold (SQLite's
    INTEGER), and stopped the card at every start."""
    daemon = make_daemon(tmp_path, model_320)
    photos = sorted(card_copy.rglob("*.JPG"))
    year_2300 = 10_413_792_000  # seconds since 1970
    os.utime(photos[0], (year_2300, year_2300))
    os.utime(photos[1], (-86_400 * 365 * 30, -86_400 * 365 * 30))  # 1940
    daemon.run_once()
    assert daemon.counts() == {"done": 3}
    assert len(daemon.batch()["images"]) == 3
    daemon.run_once()  # known files, held at the same times: nothing is done twice
    assert daemon.counts() == {"done": 3}


def test_a_photo_copied_back_onto_the_card_is_a_duplicate_and_its_outputs_stay_as_they_were(
    tmp_path: Path, card_copy: Path, model_320: Path
) -> None:
    """Same bytes, new mtime (a card re-copied from a backup): recognised by its sha256, not processed again."""
    daemon = make_daemon(tmp_path, model_320)
    daemon.run_once()
    photo = sorted(card_copy.rglob("*.JPG"))[2]
    rel = photo.relative_to(card_copy).as_posix()
    sidecar = daemon.out / "local" / f"{rel}.json"
    before = (sidecar.read_bytes(), sidecar.stat().st_mtime_ns)
    data = photo.read_bytes()
    photo.unlink()
    photo.write_bytes(data)
    os.utime(photo, (1_700_000_000, 1_700_000_000))
    daemon.run_once()
    assert daemon.counts() == {"done": 3, "duplicate": 1}
    assert (sidecar.read_bytes(), sidecar.stat().st_mtime_ns) == before
    assert [i["file"] for i in daemon.batch()["images"]].count(rel) == 1
    assert "already processed (same bytes)" in daemon.log.read_text()


def test_a_row_from_before_fingerprints_is_checked_by_its_sha256(
    tmp_path: Path, card_copy: Path, photos_dir: Path, model_320: Path
) -> None:
    """A device upgraded from schema 2: its rows have neither ctime nor fingerprint. The first scan notes the
    ctime; a later rewrite in place is compared by the whole file's sha256, and processed again."""
    daemon = make_daemon(tmp_path, model_320)
    daemon.run_once()
    target = sorted(card_copy.rglob("*.JPG"))[0]
    rel = target.relative_to(card_copy).as_posix()
    with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
        db.execute("UPDATE photos SET ctime_ns=NULL, fingerprint=NULL")  # what a schema-2 journal leaves
    daemon.run_once()  # the ctime is seen for the first time: noted, nothing read
    target.chmod(0o600)  # the ctime moves, the bytes do not: compared by sha256, left alone, fingerprinted
    daemon.run_once()
    assert [s for _, s, _ in _rows(daemon.state, rel)] == ["done"]
    with sqlite3.connect(daemon.state / "journal.sqlite3") as db:
        assert db.execute("SELECT fingerprint FROM photos WHERE rel_path=?", (rel,)).fetchone()[0]
        db.execute("UPDATE photos SET fingerprint=NULL")
    st = target.stat()
    other = next(p for p in sorted(photos_dir.rglob("*.JPG")) if p.stat().st_size < st.st_size)
    with target.open("r+b") as f:
        f.write(other.read_bytes() + b"\0" * (st.st_size - other.stat().st_size))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    daemon.run_once()
    assert [(g, s) for g, s, _ in _rows(daemon.state, rel)] == [(0, "done"), (1, "done")]
