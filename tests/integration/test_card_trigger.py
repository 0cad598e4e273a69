"""The SD-card trigger's script (andi_edge/assets/andi-edge-card) against a real FAT card image on a loop device, its
processing step run as an unprivileged user, and two card units at once.

The mount step needs root and a loop device; those tests skip elsewhere, saying so."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from andi_edge.service_install import render_config
from tests.integration.cli_runner import ANDI_EDGE

REPO = Path(__file__).resolve().parents[2]
CARD_SCRIPT = REPO / "andi_edge" / "assets" / "andi-edge-card"
UNPRIVILEGED = "nobody"
#: the unit's UMask: without uid=/fmask= in the mount options a FAT card would be a 0750 root-owned folder
UNIT_UMASK = 0o027


def _root_with_loop() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a card image needs root")
    if shutil.which("losetup") is None or not Path("/dev/loop-control").exists():
        pytest.skip("no loop devices here")
    if shutil.which("mkfs.vfat") is None and not Path("/usr/sbin/mkfs.vfat").exists():
        pytest.fail("mkfs.vfat is missing: `make test` installs it (apt-get install dosfstools)")


@pytest.fixture()
def open_dir() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path is 0700 root's): mount point, outputs, the stand-in."""
    path = Path(tempfile.mkdtemp(prefix="andi-card-"))
    path.chmod(0o755)
    yield path
    for mount in (path / "run" / "andi-edge-cards").glob("*"):
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _kernel_has(fstype: str) -> bool:
    return any(line.split()[-1] == fstype for line in Path("/proc/filesystems").read_text().splitlines() if line)


def _card(image: Path, fstype: str, photos: list[Path], label: str, mode: int = 0o644) -> str:
    """A card image holding DCIM/100RECNX/<photos> (files of ``mode`` where the filesystem has modes), attached to
    a loop device; returns the device name. FAT is what cameras write; this machine's kernel may lack it."""
    if not _kernel_has(fstype):
        pytest.skip(f"this kernel cannot mount {fstype} (no module); a camera card's FAT is tested where it can")
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    mkfs = ["mkfs.vfat", "-F", "32", "-n", label] if fstype == "vfat" else ["mkfs.ext4", "-q", "-L", label]
    subprocess.run([shutil.which(mkfs[0]) or f"/usr/sbin/{mkfs[0]}", *mkfs[1:], str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    staging = image.with_suffix(".rw")
    staging.mkdir()
    subprocess.run(["mount", device, str(staging)], check=True)
    try:
        folder = staging / "DCIM" / "100RECNX"
        folder.mkdir(parents=True)
        for src in photos:
            shutil.copyfile(src, folder / src.name)
            if fstype != "vfat":
                (folder / src.name).chmod(mode)
    finally:
        subprocess.run(["umount", str(staging)], check=True)
        staging.rmdir()
    return Path(device).name


def _env(base: Path, device: str, model: Path, **extra: str) -> dict[str, str]:
    config = base / "config.yaml"
    config.write_text(render_config(Path("/unused"), model, base / "unused", "x86"))
    config.chmod(0o644)
    out = base / "cards"
    out.mkdir(exist_ok=True, mode=0o777)
    out.chmod(0o777)
    return dict(
        os.environ,
        ANDI_EDGE=str(ANDI_EDGE),
        CARD_USER=UNPRIVILEGED,
        # as on the device: the mount step makes the folders above the mount point itself, under UMask=0027
        CARD_MOUNT=str(base / "run" / "andi-edge-cards" / device),
        CARD_VOLUME=str(base / "run" / "andi-edge-cards" / f"{device}.volume"),
        CARD_OUTPUT=str(out),
        CARD_CONFIG=str(config),
        **extra,
    )


def _script(*args: str, env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(CARD_SCRIPT), *args]
    if user is not None:  # the unit's User=: a real switch of user, as systemd does it
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, preexec_fn=lambda: os.umask(UNIT_UMASK)
    )


def _stand_in(base: Path) -> Path:
    """What runs in andi-edge's place for the unprivileged step. This machine's Python lives under /root, which
    no other user may enter, so the real andi-edge cannot run as `nobody` here: the stand-in does what matters for
    the mount (it reads every photo on the card as that user) and records the arguments it was given."""
    stand_in = base / "andi-edge"
    stand_in.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = status ]; then echo "{}"; exit 0; fi\n'
        f'printf "%s\\n" "$@" > {base}/cards/args.txt\n'
        f'find "$2" -type f -iname "*.jpg" -exec cat {{}} + | wc -c > {base}/cards/read_bytes.txt\n'
    )
    stand_in.chmod(0o755)
    return stand_in


@pytest.mark.parametrize("fstype", ["vfat", "ext4"])
def test_a_card_is_mounted_readable_by_the_daemon_user_and_named_after_its_volume(
    open_dir: Path, photos_dir: Path, model_320: Path, fstype: str
) -> None:
    _root_with_loop()
    photos = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[:3]
    device = _card(open_dir / "card.img", fstype, photos, "TRAP07")
    try:
        env = _env(open_dir, device, model_320, CARD_DEV_DIR="/dev")
        mounted = _script("mount", device, env=env)
        assert mounted.returncode == 0, mounted.stdout + mounted.stderr
        assert "ro,nosuid,nodev,noexec" in mounted.stdout
        if fstype == "vfat":  # FAT has no owners: the mount gives the files to the daemon's user
            assert f"uid={pwd.getpwnam(UNPRIVILEGED).pw_uid}" in mounted.stdout and "utf8" in mounted.stdout
        volume = Path(env["CARD_VOLUME"]).read_text()
        assert "LABEL=TRAP07" in volume and "UUID=" in volume

        # The unit's ExecStart= runs as the daemon's user: it can read every photo on the card.
        as_user = _script("process", device, env={**env, "ANDI_EDGE": str(_stand_in(open_dir))}, user=UNPRIVILEGED)
        assert as_user.returncode == 0, as_user.stdout + as_user.stderr
        assert int((open_dir / "cards" / "read_bytes.txt").read_text()) == sum(p.stat().st_size for p in photos)
        args = (open_dir / "cards" / "args.txt").read_text().split("\n")
        assert "--wait-for-lock" in args and args[args.index("--volume-file") + 1] == env["CARD_VOLUME"]

        # The real andi-edge on the real mount: the card is named after its volume, not after the device.
        processed = _script("process", device, env=env)
        assert processed.returncode == 0, processed.stdout + processed.stderr
        uuid = next(line[5:] for line in volume.splitlines() if line.startswith("UUID="))
        batch = json.loads((open_dir / "cards" / f"vol-TRAP07-{uuid}" / "megadetector_results.json").read_text())
        assert sorted(i["file"] for i in batch["images"]) == [f"DCIM/100RECNX/{p.name}" for p in photos]
        assert json.loads((open_dir / "cards" / f"{device}.status.json").read_text())["result"] == "done"

        unmounted = _script("unmount", device, env=env)
        assert unmounted.returncode == 0 and not Path(env["CARD_VOLUME"]).exists()
        assert not Path(env["CARD_MOUNT"]).exists()
    finally:
        subprocess.run(["umount", "-l", env["CARD_MOUNT"]], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", f"/dev/{device}"], check=False)


def test_a_card_that_cannot_be_mounted_fails_loudly(open_dir: Path, model_320: Path) -> None:
    _root_with_loop()
    blank = open_dir / "blank.img"
    subprocess.run(["truncate", "-s", "8M", str(blank)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(blank)], check=True, capture_output=True, text=True)
    device = Path(loop.stdout.strip()).name
    try:
        env = _env(open_dir, device, model_320)
        mounted = _script("mount", device, env=env)
        assert mounted.returncode == 3
        status = json.loads((open_dir / "cards" / f"{device}.status.json").read_text())
        assert status["result"] == "failed" and "no filesystem" in status["reason"]
        assert "FAILED: blkid finds no filesystem" in mounted.stdout
    finally:
        subprocess.run(["losetup", "-d", f"/dev/{device}"], check=False)


@pytest.mark.parametrize("unreadable", ["mount point", "camera folder"])
def test_a_card_the_daemon_user_cannot_read_fails_and_is_never_skipped(
    open_dir: Path, model_320: Path, unreadable: str
) -> None:
    """What the old mount options gave under UMask=0027: a 0750 root-owned card, reported as "skipped"."""
    _root_with_loop()
    env = _env(open_dir, "sdz5", model_320)
    mount = Path(env["CARD_MOUNT"])
    (mount / "DCIM" / "100RECNX").mkdir(parents=True)
    (mount / "DCIM" / "100RECNX" / "IMG_0001.JPG").write_bytes(b"x")
    (mount if unreadable == "mount point" else mount / "DCIM").chmod(0o750)
    proc = _script("process", "sdz5", env=env, user=UNPRIVILEGED)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    status = json.loads((open_dir / "cards" / "sdz5.status.json").read_text())
    assert status["result"] == "failed" and f"cannot read {mount}" in status["reason"]
    assert f"as user {UNPRIVILEGED}" in status["reason"] and "FAILED" in proc.stdout


def test_two_cards_inserted_together_are_both_processed(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """Both card units use one state folder: the second waits for the first's lock instead of failing."""
    sequence = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))
    procs = []
    for n, (device, photos) in enumerate((("sdy1", sequence[:3]), ("sdx1", sequence[3:5]))):
        mount = tmp_path / device
        (mount / "DCIM" / "100RECNX").mkdir(parents=True)
        for src in photos:  # both cards hold IMG names of their own camera: make them collide on purpose
            shutil.copyfile(src, mount / "DCIM" / "100RECNX" / f"IMG_{photos.index(src):04d}.JPG")
        volume = tmp_path / f"{device}.volume"
        volume.write_text(f"DEVNAME=/dev/{device}\nUUID=0000-000{n}\nTYPE=vfat\n")
        env = dict(_env(tmp_path, device, model_320), CARD_MOUNT=str(mount), CARD_VOLUME=str(volume))
        procs.append(
            subprocess.Popen(
                ["bash", str(CARD_SCRIPT), "process", device],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    for device, uuid, count in (("sdy1", "0000-0000", 3), ("sdx1", "0000-0001", 2)):
        assert json.loads((tmp_path / "cards" / f"{device}.status.json").read_text())["result"] == "done"
        batch = json.loads((tmp_path / "cards" / f"vol-{uuid}" / "megadetector_results.json").read_text())
        assert len(batch["images"]) == count
        assert batch["info"]["andi_edge"]["image_root"] == str(tmp_path / device)
