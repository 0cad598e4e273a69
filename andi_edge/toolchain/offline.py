"""Keep Ultralytics offline: no update checks, no auto-installs, a fixed settings directory."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ANDI_EDGE_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "andi-edge"))


def configure_ultralytics_offline() -> None:
    """Set Ultralytics' environment switches before it is imported (it reads them at import time)."""
    config_dir = cache_dir() / "ultralytics"
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
