"""Field install: unit files checked by systemd-analyze, the installer staged with --root, the card trigger."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from andi_edge.errors import UsageError
from andi_edge.service_install import PROFILES_DIR, render_config
from andi_edge.settings import load_watch_config
from tests.classifier_factory import mean_colour_classifier
from tests.dataset_factory import build_cct
from tests.integration.cli_runner import ANDI_EDGE, run_cli

REPO = Path(__file__).resolve().parents[2]
CARD_SCRIPT = REPO / "andi_edge" / "assets" / "andi-edge-card"
MAX_EXPOSURE = 2.0


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: `make test` installs it (apt-get install systemd)")
    return tool


def _install(root: Path, model: Path) -> subprocess.CompletedProcess[str]:
    proc = run_cli(
        "service", "install", "--root", root, "--watch", "/media/trap", "--model", model, "--profile", "raspberry-pi"
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture()
def staged(tmp_path: Path, model_320: Path) -> Path:
    root = tmp_path / "root"
    _install(root, model_320)
    return root


def _units_for_host(root: Path, tmp_path: Path) -> list[Path]:
    """The staged units, with paths into the staging root so systemd-analyze finds their programs."""
    out = []
    for name, instance in (
        ("andi-edge.service", "andi-edge.service"),
        ("andi-edge-card@.service", "andi-edge-card@sdz1.service"),
    ):
        text = (
            (root / "etc/systemd/system" / name)
            .read_text()
            .replace("/usr/local/lib/andi-edge", f"{root}/usr/local/lib/andi-edge")
        )
        target = tmp_path / instance
        target.write_text(text)
        out.append(target)
    return out


def test_units_verify_and_are_hardened(staged: Path, tmp_path: Path) -> None:
    tool = _analyze()
    for unit in _units_for_host(staged, tmp_path):
        verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        security = subprocess.run(
            [tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True, check=False
        )
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
        assert match, security.stdout + security.stderr
        assert float(match.group(1)) <= MAX_EXPOSURE, security.stdout
    service = (staged / "etc/systemd/system/andi-edge.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=andi-edge",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "MemoryMax=",
        f"ExecStart={ANDI_EDGE} watch",
    ):
        assert line in service


def test_install_is_complete_idempotent_and_uninstalls(staged: Path, model_320: Path) -> None:
    config_path = staged / "etc/andi-edge/config.yaml"
    config = load_watch_config(config_path)
    assert config.watch == "/media/trap" and config.model == "/var/lib/andi-edge/models/yolov5n-320.onnx"
    assert config.output == "/var/lib/andi-edge/output" and config.pipeline.decode_workers == 1
    assert (staged / "var/lib/andi-edge/models/yolov5n-320.onnx").read_bytes() == model_320.read_bytes()
    script = staged / "usr/local/lib/andi-edge/andi-edge-card"
    assert os.access(script, os.X_OK)
    rule = (staged / "etc/udev/rules.d/99-andi-edge-card.rules").read_text()
    assert 'ENV{ID_FS_TYPE}=="vfat|exfat"' in rule and 'KERNEL!="mmcblk0p*"' in rule
    assert 'ENV{SYSTEMD_WANTS}+="andi-edge-card@%k.service"' in rule
    again = _install(staged, model_320)
    writes = [line for line in again.stdout.splitlines() if line.startswith(("write", "copy"))]
    assert writes and all(line.endswith("(unchanged)") for line in writes), again.stdout
    assert "useradd" in again.stdout and "(skipped: staging root)" in again.stdout
    # a config the user edited is kept, the new one goes beside it
    config_path.write_text(config_path.read_text().replace("max_detections: 100", "max_detections: 50"))
    third = _install(staged, model_320)
    assert "kept your edited file" in third.stdout
    assert "max_detections: 50" in config_path.read_text() and (staged / "etc/andi-edge/config.yaml.new").exists()
    removed = run_cli("service", "uninstall", "--root", staged)
    assert removed.returncode == 0, removed.stderr
    assert not (staged / "etc/systemd/system/andi-edge.service").exists()
    assert not (staged / "etc/udev/rules.d/99-andi-edge-card.rules").exists()
    assert config_path.exists() and (staged / "var/lib/andi-edge/models/yolov5n-320.onnx").exists(), "data is kept"


def test_install_with_a_species_classifier(tmp_path: Path, model_320: Path) -> None:
    root = tmp_path / "root"
    classifier = tmp_path / "byo" / "species.onnx"
    classifier.parent.mkdir()
    mean_colour_classifier(classifier, with_card=False)  # someone else's classifier: its card is a YAML beside it
    (classifier.parent / "species.yaml").write_text("labels: [deer, fox, hare]\ninput_size: 32\n")
    proc = run_cli(
        "service", "install", "--root", root, "--watch", "/m", "--model", model_320, "--classifier", classifier
    )
    assert proc.returncode == 0, proc.stderr
    config = load_watch_config(root / "etc/andi-edge/config.yaml")
    assert config.classifier.model == "/var/lib/andi-edge/models/species.onnx"
    assert (root / "var/lib/andi-edge/models/species.onnx").read_bytes() == classifier.read_bytes()
    assert (root / "var/lib/andi-edge/models/species.yaml").read_text().startswith("labels: [deer, fox, hare]")
    missing = run_cli(
        "service", "install", "--root", root, "--watch", "/m", "--model", model_320, "--classifier", tmp_path / "x"
    )
    assert missing.returncode == 2 and "classifier file not found" in missing.stderr


def test_dry_run_prints_everything_and_writes_nothing(tmp_path: Path, model_320: Path) -> None:
    root = tmp_path / "root"
    proc = run_cli("service", "install", "--root", root, "--dry-run", "--watch", "/media/trap", "--model", model_320)
    assert proc.returncode == 0, proc.stderr
    assert not root.exists()
    for expected in (
        "write",
        "andi-edge.service",
        "    | Type=notify",
        "andi-edge-card@.service",
        "config.yaml",
        "useradd",
        "systemctl enable --now andi-edge.service",
    ):
        assert expected in proc.stdout


#: what a user may type for a folder: spaces, a YAML comment, shell syntax, quotes, a systemd specifier
HOSTILE = "out dir #not a comment $(touch PWNED) `touch PWNED` 'q\" 100%n \\x"


def test_install_keeps_hostile_paths_whole(tmp_path: Path, model_320: Path) -> None:
    """A path is one word for systemd, one argument for each command (never a shell), one string in the YAML."""
    from andi_edge.service_install import execute, plan_install

    program_dir = tmp_path / "opt dir #x $(touch PWNED) 100%n"  # systemd refuses quotes in a program's path
    program_dir.mkdir()
    exe = program_dir / "andi-edge"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    output, watch = Path("/srv") / HOSTILE, Path("/media") / HOSTILE
    root = tmp_path / "root"
    plan = plan_install(root, watch, model_320, output, "raspberry-pi", exe=exe)
    execute(plan, dry_run=False)
    config = load_watch_config(root / "etc/andi-edge/config.yaml")
    assert (Path(config.output), Path(config.watch)) == (output, watch)
    commands = [a for a in plan.actions if a.kind == "command"]
    assert all(a.argv and a.argv[0] not in ("sh", "/bin/sh") for a in commands)
    assert any(str(output) in a.argv for a in commands)  # chown: the whole path as one argument
    tool = _analyze()
    for unit in _units_for_host(root, tmp_path):
        verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
        # an unquoted path is split: "ReadWritePaths= path is not absolute, ignoring: dir"; a wrong ExecStart is
        # "not executable"
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    assert not list(tmp_path.rglob("PWNED"))
    quoted = tmp_path / "it's" / "andi-edge"
    with pytest.raises(UsageError, match="quote or a backslash"):
        plan_install(root, watch, model_320, output, "raspberry-pi", exe=quoted)


def test_install_refuses_a_model_a_device_cannot_run(tmp_path: Path, weights_path: Path, model_320: Path) -> None:
    """A PyTorch checkpoint was copied and configured, for a service that could never load it."""
    root = tmp_path / "root"
    refused = run_cli("service", "install", "--root", root, "--watch", "/m", "--model", weights_path)
    assert refused.returncode == 2 and "is a PyTorch checkpoint" in refused.stderr, refused.stderr
    assert "andi-edge export" in refused.stderr and not root.exists()
    classifier_as_model = tmp_path / "species.onnx"
    mean_colour_classifier(classifier_as_model)
    refused = run_cli("service", "install", "--root", root, "--watch", "/m", "--model", classifier_as_model)
    assert refused.returncode == 2 and "is a crop classifier, not a detector" in refused.stderr
    assert not root.exists()


def test_the_installed_config_explains_every_key(staged: Path) -> None:
    text = (staged / "etc/andi-edge/config.yaml").read_text()
    keys = [line for line in text.splitlines() if re.match(r"^ {0,2}[a-z_]+:", line)]
    assert len(keys) > 60 and all("#" in line for line in keys), [k for k in keys if "#" not in k]
    config = load_watch_config(staged / "etc/andi-edge/config.yaml")
    assert config.backend.prefer_int8 and config.watch == "/media/trap"  # the profile's values, in place


def test_the_gated_int8_model_goes_with_the_model_where_the_profile_prefers_it(
    tmp_path: Path, model_320: Path, photos_dir: Path
) -> None:
    site = tmp_path / "models"
    site.mkdir()
    model = site / "yolov5n-320.onnx"
    shutil.copy2(model_320, model)
    cct = build_cct(photos_dir, tmp_path / "cct.json")
    made = run_cli("quantize", model, "--calib", photos_dir / "lila_md_testset", "--calib-count", "8", "--eval", cct,
                   "--images", photos_dir, "--class-map", "coco-to-megadetector", "--max-loss", "1.0")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "accuracy gate passed: mAP@0.5" in made.stdout  # quantize says its gate's outcome
    for profile, expected in (("raspberry-pi", True), ("jetson", False)):
        root = tmp_path / profile
        done = run_cli("service", "install", "--root", root, "--watch", "/m", "--model", model, "--profile", profile)
        assert done.returncode == 0, done.stderr
        installed = root / "var/lib/andi-edge/models/yolov5n-320-int8.onnx"
        assert installed.is_file() == expected, profile


def test_install_mistakes(tmp_path: Path) -> None:
    proc = run_cli("service", "install", "--root", tmp_path, "--watch", "/media/trap")
    assert proc.returncode == 2 and "needs --watch DIR and --model" in proc.stderr
    proc = run_cli("service", "install", "--root", tmp_path, "--watch", "/m", "--model", tmp_path / "none.onnx")
    assert proc.returncode == 2 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("profile", sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
def test_every_profile_gives_a_valid_config(tmp_path: Path, profile: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(render_config(Path("/media/trap"), Path("/m.onnx"), Path("/out"), profile))
    config = load_watch_config(path)
    if profile == "jetson":
        assert config.backend.providers[0] == "TensorrtExecutionProvider"


def _card_env(tmp_path: Path, mount: Path, model: Path) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(render_config(Path("/unused"), model, tmp_path / "unused", "x86"))
    return dict(
        os.environ,
        ANDI_EDGE=str(ANDI_EDGE),
        CARD_MOUNT=str(mount),
        CARD_OUTPUT=str(tmp_path / "cards"),
        CARD_CONFIG=str(config),
    )


def test_card_trigger_processes_a_folder_standing_in_for_a_card(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    card = tmp_path / "mnt"
    (card / "DCIM" / "100RECNX").mkdir(parents=True)
    for src in sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[:3]:
        shutil.copy2(src, card / "DCIM" / "100RECNX" / src.name)
    env = _card_env(tmp_path, card, model_320)
    proc = subprocess.run(
        ["bash", str(CARD_SCRIPT), "process", "sdz1"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "andi-edge-card sdz1: done: photos: done 3, failed 0, waiting 0" in proc.stdout
    status = json.loads((tmp_path / "cards" / "sdz1.status.json").read_text())
    assert status["result"] == "done" and status["journal"]["counts"]["done"] == 3
    batch = json.loads((tmp_path / "cards" / "local" / "megadetector_results.json").read_text())
    assert len(batch["images"]) == 3


def test_card_trigger_skips_a_card_without_photos_and_refuses_bad_input(tmp_path: Path, model_320: Path) -> None:
    empty = tmp_path / "mnt"
    (empty / "MISC").mkdir(parents=True)
    env = _card_env(tmp_path, empty, model_320)
    proc = subprocess.run(
        ["bash", str(CARD_SCRIPT), "process", "sdz2"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    assert json.loads((tmp_path / "cards" / "sdz2.status.json").read_text())["result"] == "skipped"
    for args, message in ((["eject", "sdz2"], "unknown action"), (["process", "../etc"], "bad device name")):
        bad = subprocess.run(["bash", str(CARD_SCRIPT), *args], env=env, capture_output=True, text=True, check=False)
        assert bad.returncode == 2 and message in bad.stderr
    gone = _card_env(tmp_path, tmp_path / "never-mounted", model_320)  # "does not exist" is said as such
    proc = subprocess.run(
        ["bash", str(CARD_SCRIPT), "process", "sdz3"], env=gone, capture_output=True, text=True, check=False
    )
    status = json.loads((tmp_path / "cards" / "sdz3.status.json").read_text())
    assert proc.returncode == 3 and "does not exist" in status["reason"] and "cannot read" not in status["reason"]
    assert status["finished_at"].endswith("Z")


def test_the_alerts_unit_reaches_only_its_hosts_takes_secrets_as_credentials_and_is_hardened(
    staged: Path, tmp_path: Path
) -> None:
    refused = run_cli("service", "install", "--root", staged, "--alerts")
    assert refused.returncode == 2 and "names no destination or no rule" in refused.stderr, refused.stderr
    config = staged / "etc/andi-edge/config.yaml"
    text = config.read_text()
    text = text.replace(
        '    url: ""                              # mqtt://', "    url: mqtts://192.0.2.7:8883/trap7 # mqtt://"
    )
    text = text.replace('    password_file: ""', "    password_file: /etc/andi-edge/mqtt-password", 1)
    text = text.replace(
        "  webhooks: []", "  webhooks: [{url: 'https://198.51.100.9/hook', secret_file: /etc/andi-edge/hook.key}]"
    )
    text = text.replace("  rules: []", "  rules: [{labels: [person, vehicle], min_conf: 0.5}]")
    config.write_text(text)
    assert load_watch_config(config).alerts.mqtt.url == "mqtts://192.0.2.7:8883/trap7"
    installed = run_cli("service", "install", "--root", staged, "--alerts")
    assert installed.returncode == 0, installed.stderr
    unit = (staged / "etc/systemd/system/andi-edge-alerts.service").read_text()
    for line in (
        f"ExecStart={ANDI_EDGE} alerts --config /etc/andi-edge/config.yaml "
        "--alerts-state /var/lib/andi-edge/state-alerts\n",
        "ReadWritePaths=/var/lib/andi-edge/state-alerts\n",
        "IPAddressDeny=any\n",
        "IPAddressAllow=localhost 192.0.2.7 198.51.100.9\n",
        "LoadCredential=mqtt-password:/etc/andi-edge/mqtt-password\n",
        "LoadCredential=webhook-secret-0:/etc/andi-edge/hook.key\n",
        "User=andi-edge\n",
        "ProtectSystem=strict\n",
        "Restart=always\n",
    ):
        assert line in unit, line
    assert "PrivateNetwork=yes" in (staged / "etc/systemd/system/andi-edge.service").read_text(), "watch: no network"
    assert (staged / "var/lib/andi-edge/state-alerts").is_dir()
    tool = _analyze()
    target = tmp_path / "andi-edge-alerts.service"
    target.write_text(unit)
    verify = subprocess.run([tool, "verify", str(target)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [tool, "security", "--offline=yes", str(target)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    assert match and float(match.group(1)) <= MAX_EXPOSURE, security.stdout
    spaced = text.replace("/etc/andi-edge/hook.key", "'/etc/andi-edge/hook key'")
    config.write_text(spaced)
    bad = run_cli("service", "install", "--root", staged, "--alerts")
    assert bad.returncode == 2 and "only as a plain absolute path" in bad.stderr
    removed = run_cli("service", "uninstall", "--root", staged)
    assert removed.returncode == 0 and not (staged / "etc/systemd/system/andi-edge-alerts.service").exists()
