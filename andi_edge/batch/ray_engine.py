"""The Ray engine: Ray Data maps chunks of photo paths through an actor pool of inference sessions.

Runs on a local Ray instance with no set-up, or on a cluster given its address (``ray start --head`` on one
machine, ``ray start --address HEAD:6379`` on the others, then ``--ray-address HEAD:6379``; every machine needs
andi-edge installed and the photos and model at the same paths, e.g. on a shared mount). Ray restarts a dead
actor once and retries its batch once. Ray is the optional ``[ray]`` extra, imported only here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from andi_edge.batch.work import WorkerSpec, run_chunk
from andi_edge.errors import ToolchainMissingError
from andi_edge.photos import PhotoSource

log = logging.getLogger(__name__)

Entries = list[tuple[str, dict[str, Any]]]


class _RayDetector:
    """One inference session per actor, built once."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = WorkerSpec(**spec)
        self.detector = self.spec.detector()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        sources = [PhotoSource(Path(str(r)), Path(str(p))) for r, p in zip(batch["root"], batch["path"], strict=True)]
        entries = run_chunk(self.detector, self.spec, sources)
        return {"file": [f for f, _ in entries], "entry": [json.dumps(e) for _, e in entries]}


def run_ray(
    spec: WorkerSpec,
    chunks: list[list[PhotoSource]],
    workers: int,
    address: str | None,
    cpus: int,
    on_chunk: Callable[[Entries], None],
) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ToolchainMissingError(
            "--engine ray needs Ray, which is not installed", hint="pip install 'andi-edge[ray]'"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            num_cpus=None if address else cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        rows = [{"root": str(s.root), "path": str(s.path)} for chunk in chunks for s in chunk]
        if not rows:
            return
        chunk_size = max(len(c) for c in chunks)
        per_actor = max(1.0, (cpus if not address else 1) / max(workers, 1))
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(chunks)))
        results = dataset.map_batches(
            _RayDetector,
            fn_constructor_kwargs={"spec": spec.to_dict()},
            batch_size=chunk_size,
            concurrency=workers,
            num_cpus=per_actor if not address else 1,
            batch_format="numpy",
            max_restarts=1,
            max_task_retries=1,
        )
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            on_chunk([(str(f), json.loads(str(e))) for f, e in zip(batch["file"], batch["entry"], strict=True)])
    finally:
        if started_here:
            ray.shutdown()
