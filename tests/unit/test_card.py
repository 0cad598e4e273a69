from __future__ import annotations

from pathlib import Path

import pytest

from andi_edge.daemon.card import (
    LOCAL_CARD,
    Mount,
    Volume,
    card_id_for,
    card_name,
    read_mounts,
    read_volume_file,
    volume_of,
)
from andi_edge.errors import UsageError


def test_plain_folder_is_local(tmp_path: Path) -> None:
    assert card_id_for(tmp_path, [Mount(Path("/"), "/dev/vda")]) == LOCAL_CARD
    assert card_id_for(tmp_path, []) == LOCAL_CARD


def test_mounted_volume_gets_its_own_id(tmp_path: Path) -> None:
    mounts = [Mount(Path("/"), "/dev/vda"), Mount(tmp_path, "/dev/sdz9"), Mount(tmp_path / "x", "tmpfs")]
    card = card_id_for(tmp_path / "DCIM", mounts)
    assert card.startswith("vol-") and "sdz9" in card
    assert card_id_for(tmp_path / "x" / "DCIM", mounts) == LOCAL_CARD  # not a block device


def test_mountinfo_parsing(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "99 22 179:1 / /media/my\\040card rw,nosuid - vfat /dev/mmcblk0p1 ro\n"
    )
    mounts = read_mounts(info)
    assert mounts[1] == Mount(Path("/media/my card"), "/dev/mmcblk0p1", "179:1", "99")


def test_inside_the_sandbox_the_volume_id_comes_from_udevs_database(tmp_path: Path) -> None:
    """PrivateDevices=yes hides /dev/disk/by-uuid: without udev's database every card in the slot was vol-sda1."""
    udev = tmp_path / "udev"
    udev.mkdir()
    (udev / "b8:1").write_text("S:disk/by-uuid/1234-ABCD\nE:ID_FS_UUID=1234-ABCD\nE:ID_FS_LABEL=TRAP_07\n")
    (udev / "b8:17").write_text("E:ID_FS_UUID=9999-0000\nE:ID_FS_TYPE=vfat\n")
    card = tmp_path / "card"
    first = card_id_for(card / "DCIM", [Mount(card, "/dev/sda1", "8:1", "40")], udev_data=udev)
    second = card_id_for(card / "DCIM", [Mount(card, "/dev/sda1", "8:17", "41")], udev_data=udev)
    assert first == "vol-TRAP_07-1234-ABCD"
    assert second == "vol-9999-0000"
    unknown = card_id_for(card / "DCIM", [Mount(card, "/dev/sda1", "8:33", "42")], udev_data=udev)
    assert unknown == "vol-sda1"  # the last resort, logged as a warning


def test_the_volume_file_of_the_mount_step_names_the_card(tmp_path: Path) -> None:
    path = tmp_path / "sda1.volume"
    path.write_text("DEVNAME=/dev/sda1\nLABEL=My\\ Trap\\ \\$1\nUUID=5E2A-11C3\nTYPE=vfat\n")
    volume = read_volume_file(path)
    assert volume == Volume(label="My Trap $1", uuid="5E2A-11C3", device="/dev/sda1")
    assert card_name(volume) == "vol-My_Trap_1-5E2A-11C3"
    assert card_name(Volume(label="x" * 300, uuid="u")) == "vol-" + "x" * 64 + "-u"
    path.write_text("DEVNAME=/dev/sda1\nTYPE=vfat\n")
    with pytest.raises(UsageError, match="names no volume"):
        read_volume_file(path)
    with pytest.raises(UsageError, match="cannot read the volume file"):
        read_volume_file(tmp_path / "missing.volume")


def test_one_card_gets_one_id_whichever_source_names_it(tmp_path: Path) -> None:
    """A label with spaces: blkid's volume file, udev's by-label link (``\\x20``) and udev's database
    (``ID_FS_LABEL_ENC``; ``ID_FS_LABEL`` has ``_``) gave three ids for one card, so it could be processed twice."""
    volume_file = tmp_path / "sda1.volume"
    volume_file.write_text("DEVNAME=/dev/sda1\nLABEL=TRAP\\ 7\\ caf\xe9\nUUID=5E2A-11C3\n", encoding="utf-8")
    from_blkid = card_name(read_volume_file(volume_file))
    device = tmp_path / "sda1"
    device.write_bytes(b"")
    links = tmp_path / "disk"
    (links / "by-label").mkdir(parents=True)
    (links / "by-uuid").mkdir()
    (links / "by-label" / "TRAP\\x207\\x20caf\\xc3\\xa9").symlink_to(device)
    (links / "by-uuid" / "5E2A-11C3").symlink_to(device)
    from_links = card_name(volume_of(Mount(tmp_path, str(device)), tmp_path / "no-udev", links))
    udev = tmp_path / "udev"
    udev.mkdir()
    (udev / "b8:1").write_text(
        "E:ID_FS_UUID=5E2A-11C3\nE:ID_FS_UUID_ENC=5E2A-11C3\nE:ID_FS_LABEL=TRAP_7_caf\xe9\n"
        "E:ID_FS_LABEL_ENC=TRAP\\x207\\x20caf\\xc3\\xa9\n",
        encoding="utf-8",
    )
    from_udev = card_name(volume_of(Mount(tmp_path, "/dev/sdz1", "8:1"), udev, tmp_path / "no-links"))
    assert from_blkid == from_links == from_udev == "vol-TRAP_7_caf_-5E2A-11C3"
