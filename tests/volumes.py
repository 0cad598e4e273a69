"""Real small volumes for the tests of full and read-only disks: tmpfs, mounted as root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_volume(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "1m") at ``path``, unmounted afterwards. Root only (the suite runs as root in
    CI); elsewhere the test skips and says so."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
