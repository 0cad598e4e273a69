"""Incremental discovery on real folders: between full rescans only folders whose mtime changed are listed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pytest import MonkeyPatch

from andi_edge.daemon.watcher import Discovery, FoundPhoto
from andi_edge.settings import DiscoverySettings

OLD = time.time() - 3600


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 a photo")
    os.utime(path, (OLD, OLD))
    return path


def _age(folder: Path, mtime: float = OLD) -> None:
    os.utime(folder, (mtime, mtime))


def _names(found: list[FoundPhoto]) -> list[str]:
    return sorted(f.rel_path for f in found)


def test_only_changed_folders_are_listed_between_full_rescans(tmp_path: Path) -> None:
    folder = tmp_path / "DCIM" / "100RECNX"
    _photo(folder / "IMG_0001.JPG")
    for f in (folder, folder.parent, tmp_path):
        _age(f)
    discovery = Discovery(tmp_path, DiscoverySettings(inotify=False, poll_interval_s=1, full_rescan_s=100))
    assert _names(discovery.poll(now=0, force_scan=True)) == ["DCIM/100RECNX/IMG_0001.JPG"]

    _photo(folder / "IMG_0002.JPG")  # a new photo changes its folder's mtime
    assert _names(discovery.poll(now=2)) == ["DCIM/100RECNX/IMG_0002.JPG"]
    _photo(folder.parent / "101RECNX" / "IMG_0003.JPG")  # a new folder changes its parent's
    assert _names(discovery.poll(now=4)) == ["DCIM/101RECNX/IMG_0003.JPG"]

    for f in (folder, folder.parent, folder.parent / "101RECNX"):
        _age(f)
    assert discovery.poll(now=6) == []  # listed once more (their mtimes changed), nothing new
    # A change that leaves the folder's mtime as it was is not seen by a poll (no file is stat'ed)...
    _photo(folder / "IMG_0004.JPG")
    _age(folder)
    assert discovery.poll(now=8) == []
    # ...only by the full rescan, every full_rescan_s
    assert _names(discovery.poll(now=120)) == ["DCIM/100RECNX/IMG_0004.JPG"]


def test_a_recently_modified_folder_is_listed_again_even_if_its_mtime_looks_unchanged(tmp_path: Path) -> None:
    """FAT keeps times to 2 s: two photos written within one tick leave the same folder mtime."""
    folder = tmp_path / "DCIM"
    _photo(folder / "IMG_0001.JPG")
    tick = time.time() - 1
    _age(folder, tick)
    discovery = Discovery(tmp_path, DiscoverySettings(inotify=False, poll_interval_s=1, full_rescan_s=100))
    assert len(discovery.poll(now=0, force_scan=True)) == 1
    _photo(folder / "IMG_0002.JPG")
    _age(folder, tick)  # the same coarse mtime as at the listing
    assert _names(discovery.poll(now=2)) == ["DCIM/IMG_0002.JPG"]


def test_a_photo_let_go_by_the_journal_is_handed_over_again(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "DCIM" / "IMG_0001.JPG")
    discovery = Discovery(tmp_path, DiscoverySettings(inotify=False, poll_interval_s=1, full_rescan_s=100))
    assert _names(discovery.poll(now=0, force_scan=True)) == ["DCIM/IMG_0001.JPG"]
    assert discovery.poll(now=0, force_scan=True) == []  # handed over once
    discovery.hand_over_again("DCIM/IMG_0001.JPG")  # the journal forgot it (it seemed to vanish)
    assert _names(discovery.poll(now=0, force_scan=True)) == ["DCIM/IMG_0001.JPG"]
    assert photo.exists()


def test_folders_dated_in_the_future_are_not_listed_at_every_poll(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    folder = tmp_path / "DCIM" / "100RECNX"
    for i in range(20):
        _photo(folder / f"IMG_{i:04d}.JPG")
    future = time.time() + 86400  # the camera's clock a day ahead
    for f in (folder, folder.parent, tmp_path):
        _age(f, future)
    discovery = Discovery(tmp_path, DiscoverySettings(inotify=False, poll_interval_s=1, full_rescan_s=100))
    assert len(discovery.poll(now=0, force_scan=True)) == 20
    calls: list[str] = []
    real_lstat = os.lstat

    def counting_lstat(path: str | Path) -> os.stat_result:
        calls.append(str(path))
        return real_lstat(path)

    monkeypatch.setattr(os, "lstat", counting_lstat)
    assert discovery.poll(now=2) == []
    assert calls == []  # no photo stat'ed: nothing changed
    _photo(folder / "IMG_0100.JPG")  # a new photo: its folder's mtime becomes now, and it is seen
    assert _names(discovery.poll(now=4)) == ["DCIM/100RECNX/IMG_0100.JPG"]
