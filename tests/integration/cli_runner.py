"""Run the installed ``andi-edge`` command as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ANDI_EDGE = Path(sys.executable).with_name("andi-edge")


def run_cli(
    *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ANDI_EDGE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd,
    )
