"""One name per concept across every command: a walk over every parser enforces the naming rules, every option's
help and default, global options after the command, and the old names still accepted for a release."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Iterator

import pytest

from andi_edge.cli import build_parser

#: names that used to mean one of the concepts below, and may only live on as hidden, warning aliases
RETIRED = {
    "--threshold": "--conf",
    "--lr0": "--lr",
    "--classify-conf": "--classifier-min-conf",
    "--classify-classes": "--classifier-classes",
    "--classify-top-k": "--classifier-top-k",
    "--species-threshold": "--classifier-label-threshold",
}


def _commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
        for action in subs:
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}".strip())

    yield from walk(build_parser(), "")


COMMANDS = dict(_commands())


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_a_default_shown_and_an_agreed_name(command: str) -> None:
    parser = COMMANDS[command]
    text = parser.format_help()
    for action in _visible(parser):
        where = f"{command} {'/'.join(action.option_strings) or action.dest}"
        assert action.help, f"{where}: no help"
        assert not set(action.option_strings) & set(RETIRED), f"{where}: use {RETIRED[action.option_strings[0]]}"
        if "--json" in action.option_strings:
            assert action.nargs == 0, f"{where}: --json is a flag (print JSON); a file to write is -o/--output"
        if "-o" in action.option_strings:
            assert "--output" in action.option_strings or command == "status", f"{where}: -o is --output"
        if "--data" in action.option_strings:
            assert command in {"train", "prune"}, f"{where}: --data is a split folder; a dataset file is --dataset"
        if "--model" in action.option_strings or "-m" in action.option_strings:
            assert action.choices is None, f"{where}: --model is a model file; an architecture is --arch"
        shown = action.default not in (None, False, argparse.SUPPRESS, [], ()) and action.option_strings
        if shown:
            assert "default" in (action.help or "").lower() or f"(default: {action.default})" in " ".join(
                text.split()
            ), f"{where}: its default is not shown"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_global_options_are_accepted_after_the_command(command: str) -> None:
    assert any("--log-level" in a.option_strings for a in COMMANDS[command]._actions), command


def test_a_retired_name_still_works_and_says_what_it_is_now() -> None:
    parser = build_parser()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        args = parser.parse_args(["report", "results.json", "-o", "r.html", "--threshold", "0.3"])
    assert args.threshold == 0.3
    assert "--threshold is now --conf" in stderr.getvalue()
    args = parser.parse_args(["report", "results.json", "-o", "r.html", "--conf", "0.4", "--log-level", "debug"])
    assert args.threshold == 0.4 and args.log_level == "debug"
    for old, new in (
        ("--classify-conf", "--classifier-min-conf"),
        ("--species-threshold", "--classifier-label-threshold"),
    ):
        with contextlib.redirect_stderr(io.StringIO()):
            by_old = parser.parse_args(["detect", "p", "-m", "m.onnx", "-o", "r.json", old, "0.3"])
        by_new = parser.parse_args(["detect", "p", "-m", "m.onnx", "-o", "r.json", new, "0.3"])
        assert vars(by_old) == vars(by_new)
