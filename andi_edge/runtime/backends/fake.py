"""A backend for tests: returns outputs computed by a function of the input, with a given metadata map.

Used where a real model cannot show a behaviour (a head layout we have no checkpoint for, a backend failure).
Tests that can use a real exported ONNX model do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from andi_edge.runtime.backends.base import BackendOptions, LoadedModel


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        produce: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
        input_shape: tuple[int, int, int, int],
        output_shape: tuple[int, int, int],
        metadata: dict[str, str] | None = None,
    ) -> None:
        self._produce = produce
        self._input_shape = input_shape
        self._output_shape = output_shape
        self._metadata = metadata or {}
        self.calls = 0

    def load(self, model_path: Path, options: BackendOptions) -> LoadedModel:
        return LoadedModel(
            input_name="images",
            input_shape=self._input_shape,
            output_shapes=(self._output_shape,),
            metadata=self._metadata,
            backend=self.name,
            backend_version="0",
            execution_providers=("fake",),
        )

    def run(self, input_nchw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.calls += 1
        if input_nchw.shape != self._input_shape:
            raise ValueError(f"fake backend got input {input_nchw.shape}, expected {self._input_shape}")
        return self._produce(input_nchw)
