"""The backend interface: two methods, ``load`` and ``run``. Everything else in the runtime is backend-agnostic."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt


def static_shape(dims: list[int | str | None]) -> tuple[int | str | None, ...]:
    """ONNX Runtime-style dims: positive ints stay, named dims stay as names, anything else becomes None."""
    return tuple(d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) else None) for d in dims)


@dataclass(frozen=True)
class BackendOptions:
    """Knobs common to backends; a backend ignores what does not apply to it (and says so in the log)."""

    #: threads for one inference (0 = the library's default, usually one per core)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: execution providers in preference order (ONNX Runtime names); empty = CPU only
    providers: tuple[str, ...] = ()
    #: let worker threads spin while waiting for work: lower latency, but steals CPU from decode threads
    allow_spinning: bool = True
    #: ONNX Runtime's memory pattern: one block planned for a run's buffers. Each concurrent run keeps its own,
    #: so the parallel pipeline turns it off (less memory for a little inference time: see the benchmarks)
    memory_pattern: bool = True
    #: inference arithmetic, one of config.INFERENCE_PRECISIONS: OpenVINO takes it as its precision hint;
    #: ONNX Runtime's CPU kernels are f32 (INT8 comes as a model of its own) and refuse anything else
    precision: str = "f32"
    #: how many ``run`` calls may be in flight at once (the parallel pipeline's workers): ONNX Runtime's session
    #: takes any number; OpenVINO keeps one inference request (and CPU stream) for each
    concurrent_runs: int = 1


@dataclass(frozen=True)
class LoadedModel:
    """What a backend reports about the model it loaded."""

    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_shapes: tuple[tuple[int | str | None, ...], ...]
    metadata: dict[str, str]
    backend: str
    backend_version: str
    #: the providers/devices actually in use, which may differ from those requested
    execution_providers: tuple[str, ...] = field(default_factory=tuple)


class Backend(Protocol):
    """An inference engine. ``load`` once, then ``run`` many times, from up to ``options.concurrent_runs``
    threads at once."""

    name: str

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel: ...

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run one batch; returns the first (detection) output."""
        ...
