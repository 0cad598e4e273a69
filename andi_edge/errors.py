"""Typed exceptions. Each message says what went wrong and what the user can do about it.

Only the CLI prints these and chooses exit codes; library code raises them.
"""

from __future__ import annotations

import errno


class AndiEdgeError(Exception):
    """Base class for every error andi-edge raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(AndiEdgeError):
    """A setting is missing, unknown or out of range."""

    exit_code = 2


class UsageError(AndiEdgeError):
    """The command line asks for something that cannot be done (bad path, conflicting flags)."""

    exit_code = 2


class ModelError(AndiEdgeError):
    """A model file is missing, unreadable, or not a model andi-edge understands."""

    exit_code = 3


class ModelNotFoundError(ModelError):
    """The model or weights file is not where we looked (and we cannot download it offline)."""


class BackendError(AndiEdgeError):
    """An inference backend is unavailable or failed to load or run a model."""

    exit_code = 4


class PhotoError(AndiEdgeError):
    """One photo could not be read or decoded. Recorded as that photo's failure; the run goes on."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        #: short machine-readable reason: empty_file, unreadable, corrupt, unsupported_format, too_large
        self.reason = reason


class ToolchainMissingError(AndiEdgeError):
    """A workstation command needs the optional [toolchain] extra (torch, ultralytics, onnx)."""

    exit_code = 5


class GateError(AndiEdgeError):
    """A compressed model lost more accuracy than its floor allows; nothing was written."""

    exit_code = 7


class OutputError(AndiEdgeError):
    """Results could not be written (permissions, full disk)."""

    exit_code = 6


class JournalError(AndiEdgeError):
    """The journal is damaged, or missing while outputs exist: starting over would silently redo or lose work."""

    exit_code = 8


class JournalFullError(OutputError):
    """The state volume has no room for the journal's next write (SQLite's own disk-full error)."""


class DiskFullGiveUpError(AndiEdgeError):
    """`watch --once` waited disk.once_give_up_s for space (outputs or journal) and gave up; nothing was lost."""

    exit_code = 9


#: what a full disk (or an exhausted quota) looks like to the operating system
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is the operating system saying the disk is full."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
            return True
        cause = cause.__cause__
    return False
