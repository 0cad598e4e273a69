"""What happens when a photo cannot be read: the one owner of the read-failure and retry policy.

A read that fails for a reason that may pass (an I/O error on a worn card, a permission, a card reseated, a
stale network mount) is tried again after a backoff that doubles each time, up to ``retry.max_attempts``;
then the photo is recorded as failed (``unreadable: ...``), and `andi-edge retry-failed` can ask for it
again. A read that fails for a reason that will not pass (a folder where a file was, a name too long for the
kernel) is recorded at once. A photo that was read but cannot be decoded is final too (see
``pipeline.photo_failure``): its bytes will not get better.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from andi_edge.settings import RetrySettings

#: errors of a read that may well succeed later
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EACCES,
        errno.EPERM,
        errno.ENXIO,
        errno.ENODEV,
        errno.ETIMEDOUT,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ESTALE,
        errno.EINTR,
        errno.ENOMEDIUM,
        errno.EREMOTEIO,
        errno.ENOLINK,
        errno.ECONNRESET,
    }
)


class UnreadableError(Exception):
    """A photo's bytes could not be read (raised in the decode thread, decided on by the policy)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def unreadable(exc: OSError, name: str) -> UnreadableError:
    return UnreadableError(f"unreadable: {name}: {exc.strerror or exc}", exc.errno in TRANSIENT_ERRNOS)


@dataclass(frozen=True)
class RetryDecision:
    #: None: record the photo as failed now, with ``failure``
    retry_at: float | None
    failure: str


class RetryPolicy:
    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt: backoff_s, doubling, capped at max_backoff_s."""
        return float(min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** max(attempts - 1, 0)))

    def decide(self, error: UnreadableError, attempts: int, now: float) -> RetryDecision:
        """``attempts``: how many times the photo has been claimed, this one included."""
        if not error.transient:
            return RetryDecision(None, error.message)
        if attempts >= self.settings.max_attempts:
            return RetryDecision(
                None,
                f"{error.message} (after {attempts} attempts; `andi-edge retry-failed` tries again once it is fixed)",
            )
        return RetryDecision(now + self.backoff_s(attempts), error.message)
