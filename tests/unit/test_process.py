from __future__ import annotations

import platform
import sys

import pytest

from andi_edge.process import limit_malloc_arenas


def test_malloc_arenas_are_capped_on_glibc_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False, "an explicit MALLOC_ARENA_MAX wins"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert limit_malloc_arenas() is on_glibc
