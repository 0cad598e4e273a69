"""docs/cli.md is what --help says: it is made from the parsers, and this fails when it has drifted."""

from __future__ import annotations

from pathlib import Path

from andi_edge.cli.reference import cli_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_current() -> None:
    assert REFERENCE.read_text() == cli_reference(), "docs/cli.md has drifted from --help: run `make cli-reference`"
    assert (
        "## `andi-edge watch`" in REFERENCE.read_text() and "## `andi-edge classifier train`" in REFERENCE.read_text()
    )
