"""The docs' pictures of the report, made from a real run on the sample photos (`make demo`'s report) by headless
Chromium: never drawn or cropped by hand, and made again by every `make docs`.

    python docs/scripts/screenshots.py build/demo/report.html docs/img
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

#: (file name, window width, window height): the report's first screen on a laptop, and the page on a phone
SHOTS = (("report.png", 1400, 1000), ("report-narrow.png", 800, 1400))


def chromium() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("headless Chromium is missing: `make tools` installs it (package chromium-headless-shell)")


def main(report: Path, out: Path) -> None:
    if not report.is_file():
        raise SystemExit(f"{report}: no report to photograph; `make demo` writes it")
    out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    for name, width, height in SHOTS:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
                "--virtual-time-budget=5000",
                f"--window-size={width},{height}",
                f"--screenshot={out / name}",
                report.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        if not (out / name).is_file() or (out / name).stat().st_size < 10_000:
            raise SystemExit(f"{out / name}: Chromium wrote no picture of the report")
        print(f"{out / name}")  # noqa: T201 - a script: what it made


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
