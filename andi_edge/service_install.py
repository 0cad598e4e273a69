"""``andi-edge service install|uninstall``: from a bare device to a running, sandboxed systemd service.

Every step is an action (write a file, copy the model, make a folder, run a command) planned first, then
printed (``--dry-run``) or carried out. ``--root DIR`` installs into a staging tree: files land under DIR and
commands that would change the host (useradd, systemctl, udevadm) are listed as skipped. Running it twice
changes nothing the second time; a config file the user edited is kept, the new one written beside it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from andi_edge.errors import ConfigError, UsageError
from andi_edge.settings import load_watch_config
from andi_edge.sinks.atomic import write_bytes_atomic

SOURCE_ROOT = Path(__file__).resolve().parents[1]
SYSTEMD_TEMPLATES = SOURCE_ROOT / "systemd"
DEPLOY_DIR = SOURCE_ROOT / "deploy"
PROFILES_DIR = DEPLOY_DIR / "profiles"

SERVICE_USER = "andi-edge"
UNIT_DIR = Path("/etc/systemd/system")
UDEV_DIR = Path("/etc/udev/rules.d")
LIBEXEC = Path("/usr/local/lib/andi-edge")
CONFIG_DIR = Path("/etc/andi-edge")
STATE_ROOT = Path("/var/lib/andi-edge")
DEFAULT_OUTPUT = STATE_ROOT / "output"
MODELS_DIR = STATE_ROOT / "models"
CARDS_DIR = STATE_ROOT / "cards"
UNITS = ("andi-edge.service", "andi-edge-card@.service")
UDEV_RULE = "99-andi-edge-card.rules"
CARD_SCRIPT = "andi-edge-card"
#: the device's own system disk, which must never be taken for a camera card, per profile
BOOT_DISKS = {"raspberry-pi": ("mmcblk0",), "jetson": ("mmcblk0",), "x86": ()}


@dataclass(frozen=True)
class Action:
    kind: str  # "dir", "file", "copy", "command", "remove"
    target: str
    content: bytes | None = None
    source: Path | None = None
    mode: int = 0o644
    host_only: bool = False  # a command that changes the host: skipped when staging with --root
    keep_if_edited: bool = False
    #: a command's program and arguments, run without a shell (``target`` is how it is printed)
    argv: tuple[str, ...] = ()
    #: a command that is skipped when this one succeeds (``getent passwd USER`` before ``useradd``)
    unless: tuple[str, ...] = ()
    #: a command whose program may be missing on this device (udevadm): skipped then, and its failure ignored
    optional: bool = False


def command(*argv: str | Path, unless: tuple[str, ...] = (), optional: bool = False) -> Action:
    """A command that changes the host, as an argument list: paths with spaces, quotes or ``$()`` stay one
    argument and are never read by a shell."""
    words = tuple(str(a) for a in argv)
    return Action("command", shlex.join(words), argv=words, unless=unless, optional=optional, host_only=True)


#: characters a systemd unit file takes in a value as they are
_PLAIN_UNIT_VALUE = re.compile(r"[A-Za-z0-9/._+:@,=-]+")


def unit_value(value: str | Path, exec_line: bool = False, program: bool = False) -> str:
    """``value`` written so that systemd reads it back as one word, unchanged: ``%`` doubled (specifiers),
    ``$`` doubled in an Exec line's arguments (variables), and double quotes with C escapes around anything
    beyond plain characters (a space would split ``ReadWritePaths=`` in two). Control characters cannot be
    written, nor quotes or backslashes in an Exec line's ``program`` (systemd refuses such a program name)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UsageError(f"{text!r}: a path with a control character (a newline, a tab) cannot go into a unit file")
    if program and any(c in text for c in "\"'\\"):
        raise UsageError(
            f"{text}: systemd does not start a program whose path holds a quote or a backslash",
            hint="install andi-edge into a folder with a plain name, such as /opt/andi-edge (deploy/README.md)",
        )
    escaped = text.replace("%", "%%")
    if exec_line and not program:
        escaped = escaped.replace("$", "$$")
    if _PLAIN_UNIT_VALUE.fullmatch(text):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class InstallPlan:
    root: Path
    actions: list[Action] = field(default_factory=list)

    def path(self, absolute: Path | str) -> Path:
        return self.root / str(absolute).lstrip("/")

    def describe(self, action: Action) -> str:
        if action.kind == "command":
            skipped = " (skipped: staging root)" if action.host_only and self.root != Path("/") else ""
            if action.unless:
                skipped = f" (unless `{shlex.join(action.unless)}` succeeds)" + skipped
            return f"run   {action.target}{skipped}"
        verb = {"dir": "mkdir", "file": "write", "copy": "copy "}[action.kind]
        extra = f" <- {action.source}" if action.source else ""
        return f"{verb} {self.path(action.target)}{extra}"


def _executable() -> Path:
    exe = Path(sys.executable).with_name("andi-edge")
    return exe if exe.exists() else Path(shutil.which("andi-edge") or exe)


def _template(name: str, folder: Path = SYSTEMD_TEMPLATES) -> str:
    path = folder / name
    if not path.is_file():
        raise UsageError(
            f"{path} is missing: `service install` runs from a checkout of andi-edge",
            hint="clone the repository to /opt/andi-edge and install from there (deploy/README.md)",
        )
    return path.read_text()


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render_config(watch: Path, model: Path, output: Path, profile: str | None, classifier: Path | None = None) -> str:
    """The example config (every key documented) with the site's paths and the device profile applied."""
    example = _template("config.example.yaml", DEPLOY_DIR)
    document: dict[str, Any] = yaml.safe_load(example)
    document.update(watch=str(watch), model=str(model), output=str(output), state=str(STATE_ROOT / "state"))
    if classifier is not None:
        document["classifier"]["model"] = str(classifier)
    if profile is not None:
        profile_path = PROFILES_DIR / f"{profile}.yaml"
        if not profile_path.is_file():
            known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
            raise UsageError(f"unknown device profile {profile!r}", hint=f"profiles: {', '.join(known)}")
        document = _merge(document, yaml.safe_load(profile_path.read_text()) or {})
    header = (
        "# andi-edge watch configuration, written by `andi-edge service install`"
        + (f" (profile {profile})" if profile else "")
        + ".\n# Every key is explained in deploy/config.example.yaml. Check changes with:\n"
        "#   andi-edge check --config /etc/andi-edge/config.yaml\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


def plan_install(
    root: Path,
    watch: Path,
    model: Path,
    output: Path | None,
    profile: str | None,
    exe: Path | None = None,
    classifier: Path | None = None,
) -> InstallPlan:
    """``classifier``: a species classifier installed beside the model (with its YAML card, if it has one
    beside it) and named in the config."""
    if not model.is_file():
        raise UsageError(f"model file not found: {model}", hint="export one first: andi-edge export yolov5n -o ...")
    if classifier is not None and not classifier.is_file():
        raise UsageError(f"classifier file not found: {classifier}", hint="export one: andi-edge classifier export")
    andi_edge = exe or _executable()
    if andi_edge.is_relative_to("/home") or andi_edge.is_relative_to("/root"):
        raise UsageError(
            f"{andi_edge} lies under /home or /root, which the sandboxed service cannot read (ProtectHome=yes)",
            hint="install andi-edge into /opt/andi-edge (deploy/README.md)",
        )
    output = output or DEFAULT_OUTPUT
    installed_model = MODELS_DIR / model.name
    installed_classifier = None if classifier is None else MODELS_DIR / classifier.name
    if installed_classifier == installed_model:
        raise UsageError(f"the model and the classifier are both called {model.name}: rename one")
    config_text = render_config(watch, installed_model, output, profile, installed_classifier)
    plan = InstallPlan(root=root)
    add = plan.actions.append
    for folder in (CONFIG_DIR, STATE_ROOT, MODELS_DIR, output, CARDS_DIR, LIBEXEC, UNIT_DIR, UDEV_DIR):
        add(Action("dir", str(folder)))
    exec_path = unit_value(andi_edge, exec_line=True, program=True)
    service = _template("andi-edge.service").replace("@ANDI_EDGE@", exec_path).replace("@OUTPUT@", unit_value(output))
    card = _template("andi-edge-card@.service").replace("@ANDI_EDGE_ENVIRONMENT@", unit_value(f"ANDI_EDGE={andi_edge}"))
    card = card.replace("@LIBEXEC@", unit_value(LIBEXEC, exec_line=True, program=True))
    excluded = "".join(f'KERNEL!="{disk}p*", ' for disk in BOOT_DISKS.get(profile or "", ("mmcblk0",)))
    rule = _template(UDEV_RULE).replace("@EXCLUDE@", excluded)
    add(Action("file", str(UNIT_DIR / UNITS[0]), service.encode()))
    add(Action("file", str(UNIT_DIR / UNITS[1]), card.encode()))
    add(Action("file", str(UDEV_DIR / UDEV_RULE), rule.encode()))
    add(Action("file", str(LIBEXEC / CARD_SCRIPT), _template(CARD_SCRIPT, DEPLOY_DIR).encode(), mode=0o755))
    add(Action("file", str(CONFIG_DIR / "config.yaml"), config_text.encode(), mode=0o640, keep_if_edited=True))
    add(Action("copy", str(installed_model), source=model))
    if classifier is not None and installed_classifier is not None:
        add(Action("copy", str(installed_classifier), source=classifier))
        card_yaml = classifier.with_suffix(".yaml")
        if card_yaml.is_file():  # a classifier someone else trained: its card goes with it, found beside it again
            add(Action("copy", str(installed_classifier.with_suffix(".yaml")), source=card_yaml))
    user = SERVICE_USER
    plan.actions += [
        command(
            *("useradd", "--system", "--home-dir", STATE_ROOT, "--no-create-home", "--shell", "/usr/sbin/nologin"),
            user,
            unless=("getent", "passwd", user),
        ),
        command("chown", "-R", f"{user}:{user}", STATE_ROOT, output),
        command("chgrp", user, CONFIG_DIR, CONFIG_DIR / "config.yaml"),
        command("systemctl", "daemon-reload"),
        command("udevadm", "control", "--reload", optional=True),
        command("systemctl", "enable", "--now", "andi-edge.service"),
    ]
    return plan


def plan_uninstall(root: Path, purge: bool) -> InstallPlan:
    plan = InstallPlan(root=root)
    add = plan.actions.append
    add(command("systemctl", "disable", "--now", "andi-edge.service", optional=True))
    for target in (UNIT_DIR / UNITS[0], UNIT_DIR / UNITS[1], UDEV_DIR / UDEV_RULE, LIBEXEC / CARD_SCRIPT):
        add(Action("remove", str(target)))
    if purge:
        for target in (CONFIG_DIR, STATE_ROOT):
            add(Action("remove", str(target)))
    add(command("systemctl", "daemon-reload"))
    return plan


def execute(plan: InstallPlan, dry_run: bool) -> list[str]:
    """Carry the plan out (or only describe it). Returns one line per action, saying what happened."""
    lines = []
    for action in plan.actions:
        if action.kind == "remove":
            target = plan.path(action.target)
            lines.append(f"remove {target}" + ("" if target.exists() else " (absent)"))
            if not dry_run and target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            continue
        description = plan.describe(action)
        if dry_run:
            lines.append(description + _preview(action))
            continue
        lines.append(description + _apply(plan, action))
    return lines


def _preview(action: Action) -> str:
    if action.kind == "file" and action.content is not None:
        return "\n" + "\n".join(f"    | {line}" for line in action.content.decode().splitlines())
    return ""


def _apply(plan: InstallPlan, action: Action) -> str:
    target = plan.path(action.target)
    if action.kind == "dir":
        target.mkdir(parents=True, exist_ok=True)
        return ""
    if action.kind == "command":
        if action.host_only and plan.root != Path("/"):
            return ""
        if action.unless and _run(action.unless).returncode == 0:
            return " (not needed)"
        if action.optional and shutil.which(action.argv[0]) is None:
            return f" (skipped: {action.argv[0]} is not installed)"
        done = _run(action.argv)
        if done.returncode != 0 and not action.optional:
            raise UsageError(f"`{action.target}` failed: {done.stderr.strip() or done.returncode}")
        return ""
    data = action.content if action.content is not None else action.source.read_bytes()  # type: ignore[union-attr]
    if target.exists() and target.read_bytes() == data:
        return " (unchanged)"
    target.parent.mkdir(parents=True, exist_ok=True)
    if action.keep_if_edited and target.exists():
        target = target.with_name(target.name + ".new")
        write_bytes_atomic(target, data, action.mode)
        return f" (kept your edited file; the new one is {target.name})"
    write_bytes_atomic(target, data, action.mode)
    return ""


def _run(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), check=False, capture_output=True, text=True)
    except OSError as exc:  # the program is missing or cannot run
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def validate_config_file(path: Path) -> None:
    try:
        load_watch_config(path)
    except ConfigError as exc:
        raise UsageError(f"the written config does not validate: {exc}") from exc
