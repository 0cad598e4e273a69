"""Backend registry. Backends whose library is missing are skipped with a log line, never a crash.

Register a new backend by adding its module path here; its module defines a class with ``name``, ``load``
and ``run`` (see ``base.Backend``). Nothing else in the runtime changes.
"""

from __future__ import annotations

import importlib
import logging

from andi_edge.errors import BackendError
from andi_edge.runtime.backends.base import Backend, BackendOptions, LoadedModel

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "Backend", "BackendOptions", "LoadedModel", "available_backends", "create_backend"]

#: backend name -> (module, class, the pip extra that provides its library)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "ort": ("andi_edge.runtime.backends.ort", "OnnxRuntimeBackend", "onnxruntime"),
    "openvino": ("andi_edge.runtime.backends.openvino_backend", "OpenVinoBackend", "'andi-edge[openvino]'"),
    # end-of-life upstream and evaluation-only licence: never installed by andi-edge (see the module)
    "deepsparse": ("andi_edge.runtime.backends.deepsparse_backend", "DeepSparseBackend", "deepsparse==1.8.0"),
}


def create_backend(name: str) -> Backend:
    try:
        module_name, class_name, requirement = BACKENDS[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}", hint=f"available backends: {', '.join(sorted(BACKENDS))}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs {requirement}, which is not installed ({exc})",
            hint=f"pip install {requirement}",
        ) from exc
    backend: Backend = getattr(module, class_name)()
    return backend


def available_backends() -> list[str]:
    """Names of the backends whose library imports on this machine."""
    names = []
    for name, (module_name, _, requirement) in BACKENDS.items():
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            log.info("backend %s skipped: %s not importable (%s)", name, requirement, exc)
            continue
        names.append(name)
    return names
