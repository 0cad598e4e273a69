from __future__ import annotations

import os
from pathlib import Path

import pytest

from andi_edge.errors import UsageError
from andi_edge.photos import find_photos, is_photo_name


def test_photo_names() -> None:
    for name in ("a.jpg", "B.JPG", "c.Jpeg", "d.png", "E.PNG"):
        assert is_photo_name(name)
    for name in (".hidden.jpg", "._IMG_0001.JPG", "notes.txt", "clip.mp4", "jpg"):
        assert not is_photo_name(name)


def test_walk_is_recursive_sorted_and_skips_hidden_and_outside_links(tmp_path: Path) -> None:
    root = tmp_path / "card"
    (root / "DCIM" / "101RECNX").mkdir(parents=True)
    (root / "DCIM" / "100RECNX").mkdir(parents=True)
    (root / ".Trashes").mkdir()
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    for rel in (
        "DCIM/101RECNX/IMG_0001.JPG",
        "DCIM/100RECNX/IMG_0002.jpeg",
        "DCIM/100RECNX/._IMG_0002.jpeg",
        ".Trashes/IMG_0009.JPG",
        "top.PNG",
        "DCIM/readme.txt",
    ):
        (root / rel).write_bytes(b"x")
    os.symlink(outside, root / "DCIM" / "escape.jpg")
    os.symlink(root / "top.PNG", root / "DCIM" / "inside.png")
    common, sources = find_photos([root])
    assert common == root
    assert [s.relative for s in sources] == [
        "DCIM/100RECNX/IMG_0002.jpeg",
        "DCIM/101RECNX/IMG_0001.JPG",
        "DCIM/inside.png",
        "top.PNG",
    ]


def test_files_and_folders_mixed_share_a_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "1.jpg").write_bytes(b"x")
    (tmp_path / "b" / "2.jpg").write_bytes(b"x")
    common, sources = find_photos([tmp_path / "a", tmp_path / "b" / "2.jpg", tmp_path / "a"])
    assert common == tmp_path
    assert [s.relative for s in sources] == ["a/1.jpg", "b/2.jpg"]


def test_folder_given_through_a_symlink_keeps_its_own_paths(tmp_path: Path) -> None:
    real = tmp_path / "real" / "card"
    (real / "DCIM").mkdir(parents=True)
    (real / "DCIM" / "IMG_0001.JPG").write_bytes(b"x")
    link = tmp_path / "mnt"
    os.symlink(real, link)
    common, sources = find_photos([link])
    assert common == link
    assert [s.relative for s in sources] == ["DCIM/IMG_0001.JPG"]
    assert sources[0].path == link / "DCIM" / "IMG_0001.JPG"


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        find_photos([tmp_path / "nope"])
