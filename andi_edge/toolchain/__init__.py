"""Workstation toolchain: export, training, pruning, quantization, evaluation.

Needs the optional ``[toolchain]`` extra (torch, ultralytics, onnx). Nothing in ``andi_edge.runtime`` may import
this package; modules here import torch lazily so ``andi-edge --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from andi_edge.errors import ToolchainMissingError

TOOLCHAIN_MODULES = ("torch", "onnx")


def require_toolchain() -> None:
    """Fail early, before any work, when the toolchain extra is not installed."""
    for name in TOOLCHAIN_MODULES:
        require(name)


def require(module_name: str) -> ModuleType:
    """Import a toolchain dependency or explain how to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolchainMissingError(
            f"this command needs '{module_name}', which is part of the optional toolchain",
            hint="install it with: pip install 'andi-edge[toolchain]' (or run `make venv` in a clone)",
        ) from exc
