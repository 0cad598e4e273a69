"""Options several commands share: the detector's flags (made from the settings' declarations), the accuracy gate."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi_edge.declare import Declared, default_text, settings_fields
from andi_edge.errors import ConfigError

if TYPE_CHECKING:  # types only: the heavy modules load inside the commands that need them
    from andi_edge.settings import DetectionConfig
    from andi_edge.toolchain.gate import Gate

EXIT_OK = 0


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default (unless it says one already, or has none worth saying)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or not action.option_strings
            or default in (None, False, argparse.SUPPRESS, [], ())
        ):
            return text
        return f"{text} (default: %(default)s)"


class _RenamedOption(argparse.Action):
    """An option's old name, still accepted for a release: it says so and stores into the new option's place."""

    def __init__(self, option_strings: list[str], dest: str, new_name: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_name = new_name

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"andi-edge: warning: {option_string} is now {self.new_name}; the old name goes in a later release",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_renamed(parser: argparse.ArgumentParser, new: str, *old: str) -> None:
    """Accept the ``old`` names (not shown in --help) of the option already added as ``new``."""
    action = next(a for a in parser._actions if new in a.option_strings)
    extra: dict[str, Any] = {"type": action.type} if action.type is not None else {}
    parser.add_argument(
        *old,
        dest=action.dest,
        action=_RenamedOption,
        new_name=new,
        metavar=action.metavar,
        help=argparse.SUPPRESS,
        **extra,
    )


log = logging.getLogger("andi_edge")


def _metavar(field_type: Any, declared: Declared) -> str | None:
    if declared.metavar is not None:
        return declared.metavar
    if declared.choices is not None or declared.flag is None:
        return None
    return declared.flag.lstrip("-").upper().replace("-", "_")


def _flag_help(section: str, field: dataclasses.Field[Any], declared: Declared) -> str:
    default = default_text(field, declared)
    if declared.flag_style == "off":
        return f"{declared.help} (config: {_key(section, field.name)}: false)"
    if declared.flag_style == "on":
        return f"{declared.help} (config: {_key(section, field.name)}: true)"
    shown = f"default: {default}; " if default not in ("", '""', "(none)") else ""
    return f"{declared.help} ({shown}config: {_key(section, field.name)})"


def _key(section: str, name: str) -> str:
    """A setting's config key: ``SECTION.NAME``, or ``NAME`` at the top level (``section`` empty)."""
    return f"{section}.{name}" if section else name


def add_declared_flags(group: argparse._ArgumentGroup, cls: type[Any], section: str) -> None:
    """A flag for each setting of ``cls`` that declares one, storing into its config key (``SECTION.NAME``; None
    when not given: the config file's value, or the declared default, holds)."""
    hints = typing.get_type_hints(cls)
    for field, declared in settings_fields(cls):
        if declared is None or declared.flag is None:
            continue
        dest = _key(section, field.name)
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": _flag_help(section, field, declared)}
        style = declared.flag_style
        if style in ("on", "off"):
            kwargs.update(action="store_const", const=style == "on")
        else:
            if style == "append":
                kwargs["action"] = "append"
            elif style == "list":
                kwargs["type"] = class_list
            else:
                base = [a for a in typing.get_args(hints[field.name]) if a is not type(None)] or [hints[field.name]]
                kwargs["type"] = base[0]
            if declared.choices is not None:
                kwargs["choices"] = declared.choices
            kwargs["metavar"] = _metavar(hints[field.name], declared)
        group.add_argument(declared.flag, **kwargs)


#: the sections of a DetectionConfig, with the help group their flags appear under
_DETECTION_SECTIONS: tuple[tuple[str, str], ...] = (
    ("detector", "inference"),
    ("backend", "inference"),
    ("pipeline", "inference"),
    ("classifier", "species classifier (second stage)"),
)


def add_detection_options(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    """The detector's flags, the same on every command that runs one (detect, batch, bench, watch, check): each
    from its setting's declaration (``config``, ``settings``)."""
    from andi_edge.settings import DetectionConfig

    groups: dict[str, argparse._ArgumentGroup] = {}
    inference = groups["inference"] = parser.add_argument_group("inference")
    inference.add_argument(
        "--model",
        "-m",
        type=Path,
        required=model_required,
        default=None,
        help="the detector's ONNX file (from `andi-edge export`)" + ("" if model_required else " (config: model)"),
    )
    hints = typing.get_type_hints(DetectionConfig)
    for section, title in _DETECTION_SECTIONS:
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        add_declared_flags(group, hints[section], section)
    add_renamed(parser, "--classifier-min-conf", "--classify-conf")
    add_renamed(parser, "--classifier-classes", "--classify-classes")
    add_renamed(parser, "--classifier-top-k", "--classify-top-k")
    add_renamed(parser, "--classifier-label-threshold", "--species-threshold")


def add_media_options(parser: argparse.ArgumentParser) -> None:
    """Which files a run takes (photos, video clips) and how clips are sampled: the media and video settings'
    flags, from their declarations."""
    from andi_edge.config import VideoSettings
    from andi_edge.settings import DetectionConfig

    group = parser.add_argument_group("video clips")
    add_declared_flags(group, DetectionConfig, "")  # its top-level settings with a flag: media
    add_declared_flags(group, VideoSettings, "video")


def detection_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detector settings given on the command line, as dotted config keys (``detector.conf_threshold``)."""
    given: dict[str, Any] = {}
    if getattr(args, "model", None) is not None:
        given["model"] = str(args.model)
    if getattr(args, "media", None) is not None:
        given["media"] = args.media
    sections = {*dict(_DETECTION_SECTIONS), "video"}
    for key, value in vars(args).items():
        if "." in key and key.split(".", 1)[0] in sections and value is not None:
            given[key] = tuple(value) if isinstance(value, list) else value
    return given


def flag_words(error: ConfigError) -> ConfigError:
    """A settings error in the words of the command line: each config key named with its flag."""
    from andi_edge.settings import DetectionConfig

    message = error.message
    hints = typing.get_type_hints(DetectionConfig)
    for section, _ in _DETECTION_SECTIONS:
        for field, declared in settings_fields(hints[section]):
            key = _key(section, field.name)
            if declared is not None and declared.flag and key in message:
                message = message.replace(key, f"{declared.flag} ({key})")
    return ConfigError(message, error.hint)


def detection_config(args: argparse.Namespace) -> DetectionConfig:
    """The detector settings of `detect`, `batch` and `bench`: the flags over the declared defaults."""
    from andi_edge.settings import load_detection_config

    try:
        return load_detection_config(detection_overrides(args))
    except ConfigError as exc:
        raise flag_words(exc) from exc


def class_list(text: str) -> tuple[str, ...]:
    """Detector classes named on a command line: ``A,B``, or ``all`` (every class: an empty tuple)."""
    if text.strip().lower() == "all":
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    gate = parser.add_argument_group("accuracy gate (refuse the compressed model, write nothing)")
    gate.add_argument("--eval", type=Path, default=None, help="a labelled dataset (CCT JSON or YOLO folder)")
    gate.add_argument("--images", type=Path, default=None, help="the CCT dataset's image root")
    gate.add_argument("--max-loss", type=float, default=0.01, help="largest mAP@0.5 loss allowed (default 0.01)")
    gate.add_argument("--class-map", default=None, help="model -> dataset class names: YAML or a built-in map")


def gate_from_args(args: argparse.Namespace) -> Gate | None:
    if args.eval is None:
        return None
    from andi_edge.toolchain.dataset import load_dataset
    from andi_edge.toolchain.evaluate import load_class_map
    from andi_edge.toolchain.gate import Gate

    return Gate(load_dataset(args.eval, args.images), args.max_loss, load_class_map(args.class_map))
