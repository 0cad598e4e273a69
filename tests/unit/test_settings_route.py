"""One route from flags and config to a detector: each detector setting that declares a flag has it on every
command that runs a detector, and the flag, the config key and the check are the one declaration's."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from andi_edge.cli import build_parser
from andi_edge.cli.options import detection_config, detection_overrides, flag_words
from andi_edge.declare import settings_fields
from andi_edge.errors import ConfigError
from andi_edge.settings import DetectionConfig, load_watch_config

COMMANDS = {
    "detect": ["detect", "photos/", "-m", "m.onnx", "-o", "r.json"],
    "batch": ["batch", "photos/", "-m", "m.onnx", "-o", "r.json"],
    "bench": ["bench", "-m", "m.onnx"],
    "watch": ["watch", "/card", "-m", "m.onnx", "-o", "/out"],
    "check": ["check", "/card", "-m", "m.onnx", "-o", "/out"],
}


def _declared_flags() -> list[tuple[str, str, str, typing.Any]]:
    """(section, key, flag, style) of every detector setting with a flag."""
    hints = typing.get_type_hints(DetectionConfig)
    found = []
    for section in ("detector", "classifier", "backend", "pipeline"):
        for field, declared in settings_fields(hints[section]):
            if declared is not None and declared.flag:
                found.append((section, field.name, declared.flag, declared))
    return found


def _value(declared: typing.Any, annotation: typing.Any) -> tuple[list[str], typing.Any]:
    """Command-line words for a setting, and the value they must give it."""
    if declared.flag_style in ("on", "off"):
        return [declared.flag], declared.flag_style == "on"
    if declared.flag_style == "append":
        return [declared.flag, "CPUExecutionProvider"], ("CPUExecutionProvider",)
    if declared.flag_style == "list":
        return [declared.flag, "animal,person"], ("animal", "person")
    if declared.choices:
        return [declared.flag, declared.choices[-1]], declared.choices[-1]
    base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if base[0] is str:
        return [declared.flag, "x.onnx"], "x.onnx"
    low = declared.min if declared.min is not None else 0
    value = base[0](low + 1 if declared.max is None or low + 1 <= declared.max else low)
    return [declared.flag, str(value)], value


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_declared_flag_reaches_the_setting_on_every_command(command: str) -> None:
    flags = _declared_flags()
    assert len(flags) >= 15
    parser = build_parser()
    for section, name, _, declared in flags:
        hints = typing.get_type_hints(type(getattr(DetectionConfig(), section)))
        words, expected = _value(declared, hints[name])
        args = parser.parse_args([*COMMANDS[command], *words])
        assert detection_overrides(args)[f"{section}.{name}"] == expected, (command, words)


def test_flags_and_the_config_file_meet_in_one_config(tmp_path: Path) -> None:
    parser = build_parser()
    site = tmp_path / "site.yaml"
    site.write_text(
        "watch: /card\nmodel: m.onnx\noutput: /out\ndetector:\n  max_detections: 50\n  conf_threshold: 0.1\n"
    )
    args = parser.parse_args(["watch", "--config", str(site), "--max-det", "7"])
    config = load_watch_config(site, detection_overrides(args))
    assert (config.detector.max_detections, config.detector.conf_threshold) == (7, 0.1), "the flag over the file"
    detect = parser.parse_args(["detect", "p/", "-m", "m.onnx", "-o", "r.json", "--max-det", "7"])
    assert detection_config(detect).detector == config.detection.detector.__class__(max_detections=7)
    assert config.detection.model == "m.onnx"


def test_a_bad_flag_value_is_refused_in_the_words_of_the_command_line() -> None:
    args = build_parser().parse_args(["detect", "p/", "-m", "m.onnx", "-o", "r.json", "--max-det", "5000"])
    with pytest.raises(ConfigError, match=r"--max-det \(detector\.max_detections\) must be between 1 and 1000"):
        detection_config(args)
    error = flag_words(ConfigError("detector.conf_threshold must be between 0 and 1 (in site.yaml)"))
    assert error.message.startswith("--conf (detector.conf_threshold)")
