"""The command-line reference, made from the parsers themselves (docs/cli.md): what `--help` says, command by
command, so the written reference cannot drift from the CLI (a test compares them)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

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


if __name__ == "__main__":
    print(cli_reference(), end="")
