"""What several parts of the daemon share, handed to each by the loop that composes them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from andi_edge.daemon.metrics import DaemonMetrics
from andi_edge.daemon.notify import Notifier
from andi_edge.settings import WatchConfig


@dataclass(frozen=True)
class DaemonPaths:
    #: the watched folder (the card's mount point): photos are read relative to it
    root: Path
    #: where each card's outputs go (OUTPUT/CARD/...)
    output_dir: Path
    #: the journal's folder
    state_dir: Path


@dataclass(frozen=True)
class DaemonContext:
    """The config, the three folders, how to tell the world, the stop flag and what produces results."""

    config: WatchConfig
    paths: DaemonPaths
    notifier: Notifier
    metrics: DaemonMetrics
    #: what produced the results (model, backend, thresholds): recorded in every output
    provenance: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def output_dir(self) -> Path:
        return self.paths.output_dir

    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir

    @staticmethod
    def now() -> float:
        """Wall-clock time, for decisions stored in the journal (retries); monotonic time stays each part's own."""
        return time.time()

    @cached_property
    def run_id(self) -> str:
        """The key this provenance is kept under in the journal; each record names the one that produced it."""
        return run_id(self.provenance)


def run_id(provenance: dict[str, Any]) -> str:
    text = json.dumps(provenance, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
