"""The generated pages are what the code says: docs/cli.md is --help (made from the parsers), the config reference
is the settings' declarations, and the benchmarks page is benchmarks/results/*.json; each fails when it has drifted
(`make cli-reference` makes them again)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from andi_edge.cli.reference import cli_reference, config_reference
from andi_edge.declare import declaration
from andi_edge.settings import WatchConfig, config_keys
from benchmarks.pages import page

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_cli_reference_is_current() -> None:
    reference = DOCS / "cli.md"
    assert reference.read_text() == cli_reference(), "docs/cli.md has drifted from --help: run `make cli-reference`"
    assert (
        "## `andi-edge watch`" in reference.read_text() and "## `andi-edge classifier train`" in reference.read_text()
    )


def test_the_config_reference_is_current_and_names_every_key() -> None:
    reference = DOCS / "field" / "config-reference.md"
    text = reference.read_text()
    assert text == config_reference(), "the config reference has drifted: run `make cli-reference`"
    for key in config_keys(WatchConfig):
        assert f"| `{key}` |" in text, key
    assert "| `detector.max_detections` | at most this many boxes per photo" in text
    assert "| between 1 and 1000 | `--max-det` |" in text


def test_every_setting_is_declared_with_its_help() -> None:
    """A config key without a declaration would have no help, no range and no reference row."""

    def walk(cls: type) -> None:
        for field in dataclasses.fields(cls):
            if isinstance(field.default_factory, type) and dataclasses.is_dataclass(field.default_factory):
                walk(field.default_factory)
            elif field.name in {"parallel"}:  # resolved by plan_pipeline, never set by a user
                assert declaration(field) is None
            else:
                declared = declaration(field)
                assert declared is not None and declared.help, f"{cls.__name__}.{field.name}"

    walk(WatchConfig)


def test_the_benchmarks_page_is_rendered_from_the_results() -> None:
    assert (DOCS / "benchmarks.md").read_text() == page(), "docs/benchmarks.md has drifted: run `make cli-reference`"
    assert "## Not measured yet" in page() and "*From `benchmarks/results/latest.json`" in page()
