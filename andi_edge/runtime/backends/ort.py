"""ONNX Runtime backend: CPU by default; CUDA, TensorRT, OpenVINO execution providers when present."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from andi_edge.errors import BackendError, ModelError
from andi_edge.runtime.backends.base import BackendOptions, LoadedModel, static_shape

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"


class OnnxRuntimeBackend:
    name = "ort"

    def __init__(self) -> None:
        self._session: ort.InferenceSession | None = None
        self._input_name = ""
        self._output_name = ""

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel:
        if options.precision != "f32":
            raise BackendError(
                f"ONNX Runtime runs f32 on the CPU, not {options.precision}",
                hint="bf16 inference needs --backend openvino; for INT8 run a quantized model (andi-edge quantize)",
            )
        providers = self._choose_providers(options.providers)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.enable_mem_pattern = options.memory_pattern
        session_options.log_severity_level = 3  # errors only; ORT's warnings go through our log lines instead
        if not options.allow_spinning:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model_path), sess_options=session_options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, NoSuchFile...)
            if not model_path.exists():
                raise ModelError(f"model file not found: {model_path}") from exc
            raise ModelError(
                f"{model_path}: ONNX Runtime cannot load this model ({exc})",
                hint="is it a complete .onnx file? re-export it with `andi-edge export`",
            ) from exc
        active = tuple(session.get_providers())
        if providers and providers[0] != active[0]:
            log.warning("execution provider %s did not start; running on %s", providers[0], active[0])
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{model_path}: expected one image input, found {len(inputs)}")
        self._session = session
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        meta = session.get_modelmeta()
        return LoadedModel(
            input_name=inputs[0].name,
            input_shape=static_shape(inputs[0].shape),
            output_shapes=tuple(static_shape(o.shape) for o in outputs),
            metadata=dict(meta.custom_metadata_map),
            backend=self.name,
            backend_version=ort.__version__,
            execution_providers=active,
        )

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._session is None:
            raise BackendError("run() called before load()")
        try:
            (output,) = self._session.run([self._output_name], {self._input_name: input_nchw})
        except Exception as exc:  # ORT's own exception types; a failed run is a backend fault, not a photo's
            raise BackendError(f"ONNX Runtime failed to run the model: {exc}") from exc
        return np.asarray(output, dtype=np.float32)

    @staticmethod
    def _choose_providers(requested: tuple[str, ...]) -> list[str]:
        available = ort.get_available_providers()
        chosen = [p for p in requested if p in available]
        for missing in (p for p in requested if p not in available):
            log.warning("execution provider %s is not available here (have: %s)", missing, ", ".join(available))
        if CPU_PROVIDER not in chosen:
            chosen.append(CPU_PROVIDER)
        return chosen
