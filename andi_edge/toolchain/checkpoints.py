"""Reading PyTorch checkpoints from strangers without running their code.

A checkpoint is a pickle, and a pickle may name any importable callable (``os.system``, or a dotted path such as
``pathlib.os.system`` that walks from an innocent module to a dangerous one) and call it while it loads. This
module is the one place that decides what a checkpoint may name: exact ``(module, name)`` pairs, plus a few
families checked by what the name resolves to (a ``torch.nn`` layer class, a storage class, a dtype), never by a
module prefix alone. Names with a dot are refused outright, and so is everything else, before it is called.

Three readers use it: ``yolov5_classic`` (the original repository's classes mapped onto ours), the check that
comes before an Ultralytics checkpoint is handed to Ultralytics' own loader (which unpickles without a guard),
and classifier checkpoints (``torch.load(weights_only=True)``: tensors and plain containers only).
"""

from __future__ import annotations

import importlib
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from andi_edge.errors import ModelError

#: callables and classes a checkpoint may name, exactly
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("__builtin__", "set"),
        ("_codecs", "encode"),
        ("argparse", "Namespace"),
        ("types", "SimpleNamespace"),
        ("pathlib", "PosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "PureWindowsPath"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.storage", "UntypedStorage"),
        ("torch.storage", "TypedStorage"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Tensor"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        # Ultralytics' own non-layer objects that its checkpoints carry (training arguments, metrics)
        ("ultralytics.utils", "IterableSimpleNamespace"),
        ("ultralytics.cfg", "IterableSimpleNamespace"),
    }
)

#: modules whose classes may be named when the class is a torch layer (checked after the lookup)
_LAYER_MODULE_PREFIXES = ("torch.nn.", "ultralytics.nn.")


class CheckpointRefusedError(ModelError):
    """The checkpoint names something it may not: it is never loaded further."""


def _is_layer_class(obj: object) -> bool:
    import torch

    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _resolve(module: str, name: str) -> object:
    mod = importlib.import_module(module)
    return vars(mod)[name]


def _family_member(module: str, name: str) -> bool:
    """Classes and values allowed by what they are, not by a list: layers, storages, dtypes, numpy dtype classes.
    ``module`` is imported only when its prefix is one of ours (importing runs the module's own code)."""
    import torch

    if module == "torch":
        obj = vars(torch).get(name)
        return isinstance(obj, torch.dtype) or (isinstance(obj, type) and name.endswith("Storage"))
    if module == "numpy.dtypes":
        import numpy as np

        obj = vars(importlib.import_module(module)).get(name)
        return isinstance(obj, type) and issubclass(obj, np.dtype)
    if module.startswith(_LAYER_MODULE_PREFIXES):
        try:
            return _is_layer_class(_resolve(module, name))
        except (ImportError, KeyError):
            return False
    return False


def _refuse(module: str, name: str, path: object) -> CheckpointRefusedError:
    return CheckpointRefusedError(
        f"{path}: refusing to load this checkpoint: it names {module}.{name}, which a model checkpoint never needs",
        hint="load checkpoints only from sources you trust; this one may have been made to run code",
    )


class GuardedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allowed globals (see the module's docstring). ``remap`` replaces named
    classes (the classic repository's ``models.yolo.Model`` by ours)."""

    remap: ClassVar[Mapping[tuple[str, str], object]] = {}
    #: what error messages call the file
    source: object = "checkpoint"

    def find_class(self, module: str, name: str) -> Any:
        if "." in name or name.startswith("__"):
            raise _refuse(module, name, self.source)
        if (module, name) in self.remap:
            return self.remap[(module, name)]
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve("builtins" if module == "__builtin__" else module, name)
        if _family_member(module, name):
            return _resolve(module, name)
        raise _refuse(module, name, self.source)


def pickle_module(unpickler: type[GuardedUnpickler]) -> types.ModuleType:
    """What ``torch.load(pickle_module=...)`` takes: every pickle it reads (the legacy format's header pickles
    too, not just the zip format's ``data.pkl``) goes through ``unpickler``."""
    module = types.ModuleType(f"andi_edge_guarded_{unpickler.__name__}")

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return unpickler(file, **kwargs).load()

    module.__dict__.update(Unpickler=unpickler, load=load, UnpicklingError=pickle.UnpicklingError)
    return module


def guarded_load(path: Path, unpickler: type[GuardedUnpickler]) -> tuple[Any, set[tuple[str, str]]]:
    """The checkpoint's object, read through ``unpickler``, and every global it named. CheckpointRefusedError for
    a forbidden name; ModelError for a file that is not a readable checkpoint."""
    import torch

    seen: set[tuple[str, str]] = set()

    class Recording(unpickler):  # type: ignore[valid-type,misc]
        source = path

        def find_class(self, module: str, name: str) -> Any:
            seen.add((module, name))
            return super().find_class(module, name)

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module(Recording))
    except ModelError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    return obj, seen


def load_plain(path: Path, what: str = "checkpoint") -> Any:
    """A checkpoint of tensors and plain containers (state dicts, our classifier checkpoints): torch's own
    weights-only reader, which refuses every other global."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such {what}") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointRefusedError(
            f"{path}: refusing to load this {what}: it holds objects beyond tensors and plain values ({exc})",
            hint="load checkpoints only from sources you trust; this one may have been made to run code",
        ) from exc
    except Exception as exc:  # torch's several exception types for a file that is not a checkpoint
        raise ModelError(f"{path}: not a {what} ({exc})") from exc
