"""The references made from the code itself, so that they cannot drift from it (tests compare them):
the command-line reference from the parsers (docs/cli.md: what `--help` says, command by command), and the config
reference from the settings' declarations (docs/field/config-reference.md: every key, its meaning, type, default,
range and flag).

``python -m andi_edge.cli.reference cli|config`` prints one.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Iterator
from typing import Any

#: the width the reference is formatted at, whatever the terminal that makes it
WIDTH = 100


def _commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def cli_reference() -> str:
    """Markdown: every command's --help, in the order `andi-edge --help` lists them."""
    from andi_edge.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        parser = build_parser()
        sections = [
            "# Command-line reference\n",
            "Made from the parsers by `make cli-reference` (a test fails when this file and `--help` differ).\n",
        ]
        for path, command in _commands(parser, "andi-edge"):
            sections.append(f"## `{path}`\n\n```text\n{command.format_help().rstrip()}\n```\n")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_rows(cls: type[Any], prefix: str) -> Iterator[tuple[str, str]]:
    """(section, row) for each key of ``cls``, sections after the keys of their parent."""
    from andi_edge.declare import declaration, default_text, type_text
    from andi_edge.settings import config_fields

    hints = typing.get_type_hints(cls)
    nested = []
    for field in config_fields(cls):
        annotation = hints[field.name]
        if isinstance(annotation, type) and hasattr(annotation, "__dataclass_fields__"):
            nested.append((field.name, annotation))
            continue
        declared = declaration(field)
        if declared is None:
            continue
        allowed = declared.range_text()
        flag = f"`{declared.flag}`" if declared.flag else ""
        kind = type_text(annotation)
        items = typing.get_args(annotation)
        if typing.get_origin(annotation) is tuple and items and hasattr(items[0], "__dataclass_fields__"):
            nested.append((f"{field.name}[]", items[0]))  # a list of mappings: each item's keys, a section below
            kind = f"list of mappings (`{prefix}{field.name}[]`)"
        row = (
            f"| `{prefix}{field.name}` | {_cell(declared.help)} | {kind} | "
            f"`{_cell(default_text(field, declared))}` | {allowed} | {flag} |"
        )
        yield prefix.rstrip(".") or "top level", row
    for name, section in nested:
        yield from _section_rows(section, f"{prefix}{name}.")


def config_reference() -> str:
    """Markdown: every key of the field config (`watch --config`), section by section."""
    from andi_edge.settings import WatchConfig

    lines = [
        "# Config reference",
        "",
        "Every key of the field config (`andi-edge watch --config FILE`, and the file `service install` writes),",
        "made from the settings' own declarations by `make cli-reference` (a test fails when this page has drifted).",
        "Unknown keys and values out of range are errors that name the key and the file. A flag, where a key has",
        "one, sets it for one run and is the same on `detect`, `batch`, `bench`, `watch` and `check`. The `alerts:`",
        "section is read by `andi-edge alerts` only (docs/field/alerts.md).",
        "",
    ]
    current = None
    for section, row in _section_rows(WatchConfig, ""):
        if section != current:
            current = section
            lines += [
                "",
                f"## {section}",
                "",
                "| key | meaning | type | default | allowed | flag |",
                "|---|---|---|---|---|---|",
            ]
        lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "cli"
    print(config_reference() if which == "config" else cli_reference(), end="")
