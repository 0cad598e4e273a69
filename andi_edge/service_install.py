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

from andi_edge.errors import BackendError, ConfigError, ModelError, UsageError
from andi_edge.runtime.model_choice import choose_model, int8_sibling
from andi_edge.settings import load_watch_config
from andi_edge.sinks.atomic import write_bytes_atomic

#: what the installer writes, shipped inside the package (a wheel install has no checkout beside it)
ASSETS = Path(__file__).resolve().parent / "assets"
SYSTEMD_TEMPLATES = ASSETS / "systemd"
PROFILES_DIR = ASSETS / "profiles"

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
ALERTS_UNIT = "andi-edge-alerts.service"
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
            hint="install andi-edge into a folder with a plain name, such as /opt/andi-edge (docs/field/install.md)",
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
            f"{path} is missing: this andi-edge installation is incomplete",
            hint="install andi-edge again: python3 -m venv /opt/andi-edge && /opt/andi-edge/bin/pip install andi-edge",
        )
    return path.read_text()


def render_config(watch: Path, model: Path, output: Path, profile: str | None, classifier: Path | None = None) -> str:
    """The example config, every key with its comment, with the site's paths and the device profile applied."""
    example = _template("config.example.yaml", ASSETS)
    values: dict[str, Any] = {
        "watch": str(watch),
        "model": str(model),
        "output": str(output),
        "state": str(STATE_ROOT / "state"),
    }
    if classifier is not None:
        values["classifier.model"] = str(classifier)
    if profile is not None:
        profile_path = PROFILES_DIR / f"{profile}.yaml"
        if not profile_path.is_file():
            known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
            raise UsageError(f"unknown device profile {profile!r}", hint=f"profiles: {', '.join(known)}")
        values.update(_flatten(yaml.safe_load(profile_path.read_text()) or {}))
    header = (
        "# andi-edge watch configuration, written by `andi-edge service install`"
        + (f" (profile {profile})" if profile else "")
        + ".\n# Each key is explained by its comment. Check changes with:\n"
        "#   andi-edge check --config /etc/andi-edge/config.yaml\n"
    )
    body = _set_values(example, values).split("\n\n", 1)[1]  # the example's own header gives way to this one
    rendered = header + "\n" + body
    if yaml.safe_load(rendered) != _with_values(yaml.safe_load(example), values):
        raise UsageError("internal: the installed config does not read back as it was written")
    return rendered


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"backend": {"threads": 2}}`` -> ``{"backend.threads": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_values(document: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    for dotted, value in values.items():
        *sections, key = dotted.split(".")
        target = document
        for name in sections:
            target = target[name]
        target[key] = value
    return document


def _yaml_scalar(value: Any) -> str:
    """One value as YAML writes it on a line of its own (quoted where it must be: ``#``, ``: ``, quotes)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text.removesuffix("...").strip()


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


def _set_values(text: str, values: dict[str, Any]) -> str:
    """The example config's text with ``values`` (dotted keys) put in place, every comment kept: the installed
    config explains each of its keys. A key the example lacks is an error (the example documents every key)."""
    lines = text.split("\n")
    section = ""
    where: dict[str, int] = {}
    for number, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        if not match["indent"]:
            section = match["key"]
            where[section] = number
        elif len(match["indent"]) == 2:
            where[f"{section}.{match['key']}"] = number
    for dotted, value in values.items():
        if dotted not in where:
            raise UsageError(f"internal: the example config has no key {dotted}")
        match = _KEY_LINE.match(lines[where[dotted]])
        assert match is not None  # found above
        rest = match["rest"]
        start = _comment_start(rest)
        old, comment = (rest, "") if start is None else (rest[:start], rest[start:])
        new = f" {_yaml_scalar(value)}"
        padding = " " * max(1, len(old) - len(new)) if comment else ""
        lines[where[dotted]] = f"{match['indent']}{match['key']}:{new}{padding}{comment}"
    return "\n".join(lines)


def _comment_start(rest: str) -> int | None:
    """Where a YAML comment starts on a value's line (a ``#`` after a space, outside quotes), if any."""
    quote = ""
    for i, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1] == " "):
            return i
    return None


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
    check_device_model(model, "--model")
    if classifier is not None:
        check_device_model(classifier, "--classifier", classifier=True)
    andi_edge = exe or _executable()
    if andi_edge.is_relative_to("/home") or andi_edge.is_relative_to("/root"):
        raise UsageError(
            f"{andi_edge} lies under /home or /root, which the sandboxed service cannot read (ProtectHome=yes)",
            hint="install andi-edge into /opt/andi-edge (docs/field/install.md)",
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
    add(Action("file", str(LIBEXEC / CARD_SCRIPT), _template(CARD_SCRIPT, ASSETS).encode(), mode=0o755))
    add(Action("file", str(CONFIG_DIR / "config.yaml"), config_text.encode(), mode=0o640, keep_if_edited=True))
    add(Action("copy", str(installed_model), source=model))
    if profile_prefers_int8(profile):  # the device runs the gated INT8 model beside the model: it goes with it
        for source, installed in ((model, installed_model), (classifier, installed_classifier)):
            if source is not None and installed is not None:
                chosen = choose_model(source, prefer_int8=True)
                if chosen.path != source:
                    add(Action("copy", str(int8_sibling(installed)), source=chosen.path))
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


def plan_install_alerts(root: Path, exe: Path | None = None) -> InstallPlan:
    """The alerts unit, from the installed config's ``alerts:`` section (set it first, then install): the hosts
    it names resolved now into the unit's address allow-list, and its secret files made systemd credentials."""
    from andi_edge.alerts.service import delivery_dir
    from andi_edge.alerts.transports import webhook_credential

    config_path = CONFIG_DIR / "config.yaml"
    staged = root / str(config_path).lstrip("/")
    if not staged.is_file():
        raise UsageError(
            f"{staged} is missing: the alerts follow the watch service's journal",
            hint="install the watch service first: andi-edge service install --watch DIR --model MODEL.onnx",
        )
    config = load_watch_config(staged)
    alerts = config.alerts
    if not alerts.configured or not alerts.rules:
        raise UsageError(
            f"the alerts: section of {config_path} names no destination or no rule",
            hint="set alerts.mqtt.url (or alerts.webhooks) and alerts.rules there (docs/field/alerts.md), check it "
            f"with `andi-edge check --config {config_path}`, then run this again",
        )
    delivery = delivery_dir(alerts, config.journal_dir)
    andi_edge = exe or _executable()
    credentials = []
    for name, path in (
        ("mqtt-password", alerts.mqtt.password_file),
        ("mqtt-client-cert", alerts.mqtt.cert_file),
        ("mqtt-client-key", alerts.mqtt.key_file),
        *((webhook_credential(i), w.secret_file) for i, w in enumerate(alerts.webhooks)),
    ):
        if not path:
            continue
        if not _PLAIN_UNIT_VALUE.fullmatch(path) or not path.startswith("/"):
            raise UsageError(
                f"{path}: systemd takes a credential's file only as a plain absolute path (no spaces, quotes or %)",
                hint=f"move it to e.g. /etc/andi-edge/{name}, name that path in the config, and install again",
            )
        credentials.append(f"LoadCredential={name}:{path}")
    urls = [alerts.mqtt.url] if alerts.mqtt.url else []
    urls += [w.url for w in alerts.webhooks]
    addresses = allowed_addresses(urls, root / "etc/resolv.conf")
    unit = (
        _template(ALERTS_UNIT)
        .replace("@ANDI_EDGE@", unit_value(andi_edge, exec_line=True, program=True))
        .replace("@ALERTS_STATE@", unit_value(delivery))
        .replace("@CREDENTIALS@", "\n".join(credentials) or "# (none configured)")
        .replace("@ADDRESSES@", " ".join(addresses))
    )
    plan = InstallPlan(root=root)
    plan.actions += [
        Action("dir", str(delivery)),
        Action("file", str(UNIT_DIR / ALERTS_UNIT), unit.encode()),
        command("chown", f"{SERVICE_USER}:{SERVICE_USER}", delivery),
        command("chmod", "0700", delivery),
        command("systemctl", "daemon-reload"),
        command("systemctl", "enable", "--now", ALERTS_UNIT),
    ]
    return plan


def allowed_addresses(urls: list[str], resolv_conf: Path) -> list[str]:
    """What the alerts unit may reach: this host, each URL's host (resolved now where it is a name), and, when a
    name has to be resolved at run time, the resolvers ``resolv_conf`` names."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    found = ["localhost"]
    named = False
    for url in urls:
        host = urlsplit(url).hostname or ""
        try:
            found.append(str(ipaddress.ip_address(host)))
            continue
        except ValueError:
            named = True
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise UsageError(
                f"cannot resolve {host} now ({exc}): the alerts unit may only reach addresses known at install",
                hint="install it where the name resolves, or put the address in the URL",
            ) from exc
        found += [str(info[4][0]) for info in infos]
    if named:
        try:
            lines = resolv_conf.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                found.append(parts[1].split("%")[0])
    return list(dict.fromkeys(found))


def plan_uninstall(root: Path, purge: bool) -> InstallPlan:
    plan = InstallPlan(root=root)
    add = plan.actions.append
    add(command("systemctl", "disable", "--now", "andi-edge.service", optional=True))
    if (plan.path(UNIT_DIR / ALERTS_UNIT)).exists():
        add(command("systemctl", "disable", "--now", ALERTS_UNIT, optional=True))
        add(Action("remove", str(UNIT_DIR / ALERTS_UNIT)))
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


#: the first bytes of files that are no ONNX model: a PyTorch checkpoint (zip, or a pickle)
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def check_device_model(path: Path, option: str, classifier: bool = False) -> None:
    """A device runs ONNX models: a PyTorch checkpoint (or anything else the runtime cannot load as a detector, or
    as a ``classifier``) is refused before anything is installed, with what to do instead."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from exc
    if path.suffix.lower() in {".pt", ".pth", ".ckpt"} or head.startswith(_CHECKPOINT_MAGIC):
        raise UsageError(
            f"{option} {path} is a PyTorch checkpoint: a device runs an ONNX model (no torch on the device)",
            hint=f"export it on a workstation first: andi-edge export {path} --imgsz 320 -o {path.stem}-320.onnx",
        )
    from andi_edge.runtime.classifier import Classifier
    from andi_edge.runtime.detector import Detector

    try:
        Classifier(path) if classifier else Detector(path)
    except (ModelError, BackendError) as exc:
        raise UsageError(f"{option} {path}: {exc.message}", hint=exc.hint) from exc


def profile_prefers_int8(profile: str | None) -> bool:
    if profile is None:
        return False
    document = yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text()) or {}
    return bool((document.get("backend") or {}).get("prefer_int8"))


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
