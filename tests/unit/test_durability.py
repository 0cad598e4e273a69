"""Durability, observed: the calls that make an output survive a power cut are made (the real fsync still runs:
the spy only records which file each call was for)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from andi_edge.sinks.atomic import _TMP_NAME, write_json_atomic
from andi_edge.state.journal import Journal


def test_an_atomic_write_fsyncs_its_temp_file_before_the_rename_and_then_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "IMG_0001.JPG.json"
    write_json_atomic(target, {"file": "IMG_0001.JPG"})
    assert target.is_file() and len(synced) == 2
    temp, folder = (Path(p) for p in synced)
    assert temp.parent == tmp_path and _TMP_NAME.match(temp.name), "the data reaches the disk under its temp name"
    assert folder == tmp_path, "then the folder, so that the rename survives too"


def test_the_journal_runs_in_wal_mode_with_full_synchronous_commits(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()
