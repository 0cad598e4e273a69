"""OpenVINO backend: Intel's runtime reads the ONNX file directly; CPU by default, GPU/NPU by device name.

Optional (`pip install 'andi-edge[openvino]'`), skipped with a clear message when absent. The ONNX file's
``metadata_props`` (the model card) come through as OpenVINO's ``framework`` runtime info.

Precision: f32 by default, the same numbers as ONNX Runtime. ``bf16`` (``--precision bf16``) lets a CPU with
AMX or AVX512-BF16 infer in bfloat16 (its speed and its boxes against ONNX Runtime's f32 ones: the bench rows in
benchmarks/results/). A CPU without bf16 units runs f32 whatever the hint; the log says which precision was
compiled.

Concurrency: with ``concurrent_runs`` > 1 (the parallel pipeline) the model is compiled for throughput with one
CPU stream per run, and each ``run`` takes one of as many inference requests.
"""

from __future__ import annotations

import logging
import queue
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
        self._requests: queue.Queue[Any] | None = None

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel:
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as exc:
            raise ModelError(f"{model_path}: OpenVINO cannot read this model ({exc})") from exc
        devices = [p for p in options.providers if p in DEVICES] or ["CPU"]
        for ignored in (p for p in options.providers if p not in DEVICES):
            log.info("openvino backend ignores provider %s (devices: %s)", ignored, ", ".join(DEVICES))
        # f32 unless asked: on CPUs with AMX/AVX512-BF16 OpenVINO would otherwise infer in bf16 (module doc)
        streams = max(1, options.concurrent_runs)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": options.precision}
        if streams > 1 and devices[0] == "CPU":
            config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=streams)
            if options.intra_op_threads > 0:
                config["INFERENCE_NUM_THREADS"] = options.intra_op_threads * streams
        else:
            config["PERFORMANCE_HINT"] = "LATENCY"
            if options.intra_op_threads > 0 and devices[0] == "CPU":
                config["INFERENCE_NUM_THREADS"] = options.intra_op_threads
        try:
            compiled = core.compile_model(model, devices[0], config)
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO could not compile the model for {devices[0]}: {exc}") from exc
        requests: queue.Queue[Any] = queue.Queue()
        for _ in range(streams):
            requests.put(compiled.create_infer_request())
        self._requests = requests
        # what was compiled, not what was asked: a CPU without bf16 units runs f32 whatever the hint
        precision = _compiled_property(compiled, "INFERENCE_PRECISION_HINT")
        log.info("openvino: %s, %s, %d stream(s)", devices[0], precision, streams)
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
            execution_providers=(f"{devices[0]} {precision}",),
        )

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._requests is None:
            raise BackendError("run() called before load()")
        request = self._requests.get()
        try:
            request.infer({0: input_nchw})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        except RuntimeError as exc:
            raise BackendError(f"OpenVINO failed to run the model: {exc}") from exc
        finally:
            self._requests.put(request)


def _compiled_property(compiled: Any, name: str) -> str:
    try:
        value = compiled.get_property(name)
    except RuntimeError:
        return "unknown"
    # an element type (the precision) reads as OpenVINO names it: f32, bf16
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)
