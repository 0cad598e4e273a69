"""The local engine: N worker processes, each holding one inference session, fed chunks over its own pipe.

Talking to each worker over its own pipe (rather than a shared queue) means the parent always knows which
chunk a worker holds. A worker that dies is replaced; its chunk is retried once, photo by photo, so a photo
that kills the decoder ends as that photo's failure and takes no other photo with it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from andi_edge.batch.work import WorkerSpec, init_local_worker, run_local_chunk
from andi_edge.detections import ImageResult
from andi_edge.errors import AndiEdgeError, BackendError
from andi_edge.photos import PhotoSource, is_video_name
from andi_edge.sinks.md_batch import clip_entry, image_entry

log = logging.getLogger(__name__)

Entries = list[tuple[str, dict[str, Any]]]
WORKER_DIED = "worker_died: the worker process died while processing this photo (retried once)"


def _worker_main(spec: dict[str, Any], conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        init_local_worker(spec)
    except AndiEdgeError as exc:
        conn.send(("fatal", str(exc)))
        return
    conn.send(("ready", None))
    while True:
        message = conn.recv()
        if message is None:
            return
        chunk_id, tasks = message
        conn.send(("done", chunk_id, run_local_chunk(tasks)))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    chunk: int | None = None
    ready: bool = False


def run_local(
    spec: WorkerSpec, chunks: list[list[PhotoSource]], workers: int, on_chunk: Callable[[Entries], None]
) -> None:
    context = multiprocessing.get_context("spawn")  # never fork a process that holds ONNX Runtime threads
    queue: deque[int] = deque(range(len(chunks)))
    work: dict[int, tuple[list[PhotoSource], int]] = {i: (chunk, 0) for i, chunk in enumerate(chunks)}
    pool: list[_Worker] = []
    retry_ids = itertools.count(len(chunks))

    def spawn() -> None:
        parent, child = context.Pipe()
        # not daemonic: a worker starts a decoder process of its own for each video clip (a daemonic process may
        # have no children); the finally below stops every worker however the run ends
        process = context.Process(target=_worker_main, args=(spec.to_dict(), child), daemon=False)
        process.start()
        child.close()
        pool.append(_Worker(process, parent))

    def died(worker: _Worker) -> None:
        pool.remove(worker)
        worker.conn.close()
        log.warning("worker %s died (exit code %s); starting another", worker.process.pid, worker.process.exitcode)
        if worker.chunk is not None:
            tasks, attempt = work.pop(worker.chunk)
            if attempt == 0:
                for task in tasks:  # retry once, one photo at a time
                    retry = next(retry_ids)
                    work[retry] = ([task], 1)
                    queue.appendleft(retry)
            else:
                on_chunk([(t.relative, _died_entry(t)) for t in tasks])
        spawn()

    for _ in range(max(1, min(workers, len(chunks)))):
        spawn()
    try:
        while work:
            for worker in pool:
                if worker.ready and worker.chunk is None and queue:
                    worker.chunk = queue.popleft()
                    worker.conn.send((worker.chunk, work[worker.chunk][0]))
            ready = wait([w.conn for w in pool] + [w.process.sentinel for w in pool], timeout=5.0)
            for worker in list(pool):
                if worker.conn in ready:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=5)
                        died(worker)
                        continue
                    if message[0] == "fatal":
                        raise BackendError(f"a batch worker could not start: {message[1]}")
                    if message[0] == "ready":
                        worker.ready = True
                    elif message[0] == "done":
                        _, chunk_id, entries = message
                        work.pop(chunk_id, None)
                        worker.chunk = None
                        on_chunk(entries)
                elif worker.process.sentinel in ready and not worker.process.is_alive():
                    died(worker)
    finally:
        for worker in pool:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()


def _died_entry(task: PhotoSource) -> dict[str, Any]:
    """The entry of a photo or clip whose worker died twice on it (a clip's in MegaDetector's video convention)."""
    failed = ImageResult(path=task.path, failure=WORKER_DIED)
    return clip_entry(failed, task.relative) if is_video_name(task.path.name) else image_entry(failed, task.relative)
