"""OpenVINO backend: Intel's runtime reads the ONNX file directly; CPU by default, GPU/NPU by device name.

Optional (`pip install 'andi-edge[openvino]'`), skipped with a clear message when absent. The ONNX file's
``metadata_props`` (the model card) come through as OpenVINO's ``framework`` runtime info.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov

from andi_edge.errors import BackendError, ModelError
from andi_edge.runtime.backends.base import BackendOptions, LoadedModel

log = logging.getLogger(__name__)

#: OpenVINO device names accepted in ``providers`` (ONNX Runtime provider names are ignored here)
DEVICES = ("CPU", "GPU", "NPU", "AUTO")


def _shape(partial: Any) -> tuple[int | str | None, ...]:
    return tuple(int(d.get_length()) if d.is_static else None for d in partial)


class OpenVinoBackend:
    name = "openvino"

    def __init__(self) -> None:
        self._request: Any = None

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel:
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as exc:
            raise ModelError(f"{model_path}: OpenVINO cannot read this model ({exc})") from exc
        devices = [p for p in options.providers if p in DEVICES] or ["CPU"]
        for ignored in (p for p in options.providers if p not in DEVICES):
            log.info("openvino backend ignores provider %s (devices: %s)", ignored, ", ".join(DEVICES))
        # f32: on CPUs with AMX/AVX512-BF16 OpenVINO would otherwise infer in bf16, which moves boxes and scores
        # (measured here: 8 of ONNX Runtime's boxes >= 0.25 had no match). Same numbers as ONNX Runtime first.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if options.intra_op_threads > 0 and devices[0] == "CPU":
            config["INFERENCE_NUM_THREADS"] = options.intra_op_threads
        try:
            compiled = core.compile_model(model, devices[0], config)
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO could not compile the model for {devices[0]}: {exc}") from exc
        self._request = compiled.create_infer_request()
        info = model.get_rt_info()
        framework = info["framework"] if "framework" in list(info.keys()) else {}
        metadata = {str(k): model.get_rt_info(["framework", str(k)]).astype(str) for k in framework}
        return LoadedModel(
            input_name=model.inputs[0].get_any_name(),
            input_shape=_shape(model.inputs[0].get_partial_shape()),
            output_shapes=tuple(_shape(o.get_partial_shape()) for o in model.outputs),
            metadata=metadata,
            backend=self.name,
            backend_version=ov.__version__,
            execution_providers=(devices[0],),
        )

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._request is None:
            raise BackendError("run() called before load()")
        try:
            self._request.infer({0: input_nchw})
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO failed to run the model: {exc}") from exc
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)
