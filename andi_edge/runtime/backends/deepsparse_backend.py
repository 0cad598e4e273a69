"""DeepSparse backend (Neural Magic), optional and off the critical path.

DeepSparse is end-of-life upstream (June 2025), 1.8 pins old onnx/numpy, and its licence is evaluation-only,
so it is never a dependency: install it in its own environment if you have a licence and want to compare.
When it is absent, the registry reports the backend as unavailable and ``--backend deepsparse`` says so.
The model card is read with ONNX Runtime's metadata reader (ONNX Runtime is always present).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from deepsparse import Engine

from andi_edge.errors import BackendError, ModelError
from andi_edge.runtime.backends.base import BackendOptions, LoadedModel, static_shape

log = logging.getLogger(__name__)


class DeepSparseBackend:
    name = "deepsparse"

    def __init__(self) -> None:
        self._engine: Any = None

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel:
        try:
            reader = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{model_path}: not a readable ONNX model ({exc})") from exc
        cores = options.intra_op_threads or None
        try:
            self._engine = Engine(model=str(model_path), batch_size=1, num_cores=cores)
        except Exception as exc:  # DeepSparse raises plain exceptions for unsupported graphs and licences
            raise BackendError(f"DeepSparse could not compile {model_path.name}: {exc}") from exc
        import deepsparse

        return LoadedModel(
            input_name=reader.get_inputs()[0].name,
            input_shape=static_shape(reader.get_inputs()[0].shape),
            output_shapes=tuple(static_shape(o.shape) for o in reader.get_outputs()),
            metadata=dict(reader.get_modelmeta().custom_metadata_map),
            backend=self.name,
            backend_version=str(deepsparse.__version__),
            execution_providers=("deepsparse-cpu",),
        )

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._engine is None:
            raise BackendError("run() called before load()")
        outputs = self._engine([input_nchw])
        return np.asarray(outputs[0], dtype=np.float32)
