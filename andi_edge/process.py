"""Process-wide settings that the CLI applies once, at start, before any thread exists."""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's mallopt parameter for the number of malloc arenas
_M_ARENA_MAX = -8
#: arenas for the whole process: the main thread, the pipeline's workers and the writer share them
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (by default up to eight per core, one taken by each thread that allocates).

    Memory freed in one arena is not reused by the others, so the parallel pipeline's worker threads each hold
    their own high-water mark; two arenas keep the peak lower at the same speed (benchmarks: peak RSS).
    MALLOC_ARENA_MAX in the environment wins; elsewhere than on
    glibc (musl, macOS) nothing is done. True when the cap was set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
