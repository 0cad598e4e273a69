"""What a photo can do to its processing, and what happens then: the one owner of the failure and retry policy.

Every exception raised while one photo is read, decoded, inferred, classified or written becomes that photo's
fault (``fault_of``), never the end of the loop. A fault that may pass is tried again after a backoff that
doubles each time, up to ``retry.max_attempts``, then recorded as failed (`andi-edge retry-failed` can ask for
it again): a read error on a worn card, a permission, a card reseated, a stale network mount
(``unreadable: ...``), memory short for the moment (``out_of_memory: ...``), an output that could not be
written (``output_error: ...``; a full disk is the space policy's, not a fault). A fault that will not pass is
recorded at once: a folder where a file was, a photo read but not decodable (its bytes will not get better), a
photo that makes the model or the classifier raise (``internal_error: ...``). A photo that ends the process
itself (a native crash, an OOM kill, a hung read) is counted by the journal at the next start
(``Journal.reap_stale_claims``, ``retry.max_crashes``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from andi_edge.errors import OutputError, PhotoError
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


#: failures that may pass once their cause is fixed (`retry-failed` takes these by default); the others are the
#: file's own (corrupt, empty, not a photo, too large, the model raised on it) and would only fail again
RETRYABLE_FAILURES = ("unreadable:", "out_of_memory:", "output_error:", "crashed:", "read_timeout:")


def retryable(failure: str | None) -> bool:
    return bool(failure) and str(failure).startswith(RETRYABLE_FAILURES)


class PhotoFaultError(Exception):
    """What one photo did to its processing (raised in a worker thread, decided on by the policy)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class UnreadableError(PhotoFaultError):
    """A photo's bytes could not be read."""


def unreadable(exc: OSError, name: str) -> UnreadableError:
    return UnreadableError(f"unreadable: {name}: {exc.strerror or exc}", exc.errno in TRANSIENT_ERRNOS)


def fault_of(exc: BaseException, name: str) -> PhotoFaultError:
    """Any exception raised while the photo ``name`` was processed, as its fault (see the module's docstring)."""
    if isinstance(exc, PhotoFaultError):
        return exc
    if isinstance(exc, PhotoError):
        return PhotoFaultError(f"{exc.reason}: {exc.message}", transient=False)
    if isinstance(exc, TimeoutError):
        return PhotoFaultError(f"read_timeout: {name}: {exc} (a card that stopped answering?)", transient=True)
    if isinstance(exc, MemoryError):
        return PhotoFaultError(f"out_of_memory: {name}: not enough memory to process it at the moment", transient=True)
    if isinstance(exc, OutputError):
        return PhotoFaultError(f"output_error: {name}: {exc.message}", transient=True)
    if isinstance(exc, OSError):
        return unreadable(exc, name)
    return PhotoFaultError(f"internal_error: {name}: {type(exc).__name__}: {exc}", transient=False)


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

    def decide(self, error: PhotoFaultError, attempts: int, now: float) -> RetryDecision:
        """``attempts``: how many times the photo has been claimed, this one included."""
        if not error.transient:
            return RetryDecision(None, error.message)
        if attempts >= self.settings.max_attempts:
            return RetryDecision(
                None,
                f"{error.message} (after {attempts} attempts; `andi-edge retry-failed` tries again once it is fixed)",
            )
        return RetryDecision(now + self.backoff_s(attempts), error.message)
