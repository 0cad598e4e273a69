"""Every `andi-edge` command in the documentation's code blocks uses only commands and options that exist: the
docs cannot drift from the CLI without this failing (the README's set-up commands themselves run in CI)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from andi_edge.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
#: the README, the pages beside the code, and every page of the docs site
DOCS = [
    "README.md",
    "deploy/README.md",
    "models/README.md",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")),
]
_BLOCK = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)
#: a line that runs andi-edge (sudo, or by a path to it, allowed)
_COMMAND = re.compile(r"^(?:sudo\s+)?(?:\S*/)?andi-edge\s+(.*)$")


def _commands(text: str) -> list[str]:
    found = []
    for block in _BLOCK.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for raw in joined.splitlines():
            line = raw.split(" #", 1)[0].strip()
            for part in line.split(";"):
                match = _COMMAND.match(part.strip())
                if match and "COMMAND" not in part and "--help" not in part:
                    found.append(match.group(1))
    return found


CASES = [(doc, command) for doc in DOCS for command in _commands((REPO / doc).read_text())]


def test_the_docs_show_commands() -> None:
    assert len(CASES) > 30


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d}:{c[:40]}" for d, c in CASES])
def test_a_documented_command_parses(doc: str, command: str) -> None:
    tokens = [t for t in shlex.split(command.replace("[", "").replace("]", "")) if t not in ("|", "...")]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(tokens)
    except SystemExit:
        pytest.fail(f"{doc}: `andi-edge {command}`: {err.getvalue().strip().splitlines()[-1]}")
    assert "is now" not in err.getvalue(), f"{doc}: `andi-edge {command}` uses an old option name"
