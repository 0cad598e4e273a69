"""Settings declared once. A setting is a field of a frozen settings dataclass made with ``setting()``: its type is the
field's annotation, and its default, range, help and command-line flag are declared beside it. From that one
declaration come the config file's key (``settings.build_strict``), the check of its value (``check``, at
construction), the command-line flag of every command that runs a detector (``cli.options``) and the docs' config
reference (``cli.reference``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from andi_edge.errors import ConfigError

#: how a flag sets its setting: a value; a switch that sets True; a switch that sets False (``--full-decode`` turns
#: reduced decoding off); a repeatable flag that collects a list; a comma-separated list (``all``: every one, empty)
FLAG_STYLES = ("value", "on", "off", "append", "list")
_METADATA_KEY = "andi_edge.setting"


@dataclass(frozen=True)
class Declared:
    """What is declared of one setting besides its type and default."""

    help: str
    #: inclusive bounds
    min: float | None = None
    max: float | None = None
    #: exclusive lower bound (a setting that must be positive: ``above=0``)
    above: float | None = None
    choices: tuple[str, ...] | None = None
    #: the command-line flag (``--conf``), for the settings a run may change per command
    flag: str | None = None
    flag_style: str = "value"
    metavar: str | None = None
    #: what None means, for a setting whose default is None (``the model card's``)
    none_means: str | None = None

    def range_text(self) -> str:
        """The allowed values in words: ``between 0 and 1``, ``positive``, ``at least 1``, ``one of a, b``; empty
        when any value of its type goes."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        low = None if self.min is None else _number(self.min)
        high = None if self.max is None else _number(self.max)
        if self.above is not None:
            lower = "positive" if self.above == 0 else f"above {_number(self.above)}"
            return lower + (f" and at most {high}" if high is not None else "")
        if low is not None and high is not None:
            return f"between {low} and {high}"
        if low is not None:
            return f"at least {low}"
        if high is not None:
            return f"at most {high}"
        return ""


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    flag_style: str = "value",
    metavar: str | None = None,
    none_means: str | None = None,
) -> Any:
    """A settings dataclass field with its declaration (see the module docstring)."""
    if flag_style not in FLAG_STYLES:
        raise ValueError(f"flag_style must be one of {FLAG_STYLES}")
    declared = Declared(help, min, max, above, choices, flag, flag_style, metavar, none_means)
    metadata = {_METADATA_KEY: declared}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declaration(field: dataclasses.Field[Any]) -> Declared | None:
    found = field.metadata.get(_METADATA_KEY)
    return found if isinstance(found, Declared) else None


def settings_fields(cls: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], Declared | None]]:
    """The fields of a settings dataclass with their declarations (None for a section: a nested settings class)."""
    for field in dataclasses.fields(cls):
        yield field, declaration(field)


def is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def check(instance: Any, section: str) -> None:
    """Each declared setting of ``instance`` within its range (None passes: it means a default found elsewhere).
    ConfigError names the key (``section.name``), what is allowed and what was given."""
    for field, declared in settings_fields(type(instance)):
        if declared is None:
            continue
        value = getattr(instance, field.name)
        if value is None:
            continue
        key = f"{section}.{field.name}" if section else field.name
        if declared.choices is not None and value not in declared.choices:
            raise ConfigError(f"{key} must be {declared.range_text()}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        too_low = (declared.min is not None and value < declared.min) or (
            declared.above is not None and value <= declared.above
        )
        too_high = declared.max is not None and value > declared.max
        if too_low or too_high:
            raise ConfigError(f"{key} must be {declared.range_text()}, got {value!r}")


def default_text(field: dataclasses.Field[Any], declared: Declared) -> str:
    """The default as a reader should see it (what None means, a list as ``a, b``, empty as ``""``)."""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    if value is None:
        return declared.none_means or "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value)) if value else "(none)"
    if value == "":
        return '""'
    return str(value)


def type_text(annotation: Any) -> str:
    """A field's type in the config file's words."""
    hints = {bool: "true/false", int: "integer", float: "number", str: "text"}
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is tuple:
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return f"mapping of {type_text(args[-1])}"
    if args and len(args) == 1:  # X | None
        return type_text(args[0])
    return hints.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
