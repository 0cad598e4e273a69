from __future__ import annotations

from pathlib import Path

from andi_edge.daemon.card import LOCAL_CARD, Mount, card_id_for, read_mounts


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
    assert mounts[1] == Mount(Path("/media/my card"), "/dev/mmcblk0p1")
