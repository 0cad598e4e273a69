"""Classic YOLOv5 (ultralytics/yolov5 v6.x/v7.0, also MegaDetector v5) checkpoints, without the yolov5 repo.

A classic checkpoint is a pickled ``models.yolo.Model``. Instead of putting the yolov5 repository on the import
path, we unpickle it through the checkpoint guard (``checkpoints``: exact names only, no code runs), mapping
each ``models.*`` layer class to our own implementation below. The pickled state (sub-modules, ``f``/``i``
routing attributes, anchors, strides) is restored into these classes unchanged, so the forward pass here is the
architecture's forward pass, written by us from its published structure (Conv-BN-SiLU, C3, SPPF, nearest
upsampling, anchor-based Detect).

``Detect`` decodes its grid inside the graph, as YOLOv5's own export does, so the ONNX output is
``(1, N, 5 + C)``: ``cx, cy, w, h`` in input pixels, objectness and class probabilities after sigmoid.
"""

# nn.Module.__call__ is typed as returning Any; every forward here returns a Tensor.
# mypy: disable-error-code="no-any-return"
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from andi_edge.errors import ModelError
from andi_edge.toolchain.checkpoints import GuardedUnpickler, guarded_load
from andi_edge.toolchain.offline import configure_ultralytics_offline


class Conv(nn.Module):
    """Conv2d -> BatchNorm2d -> activation (SiLU). ``bn`` is absent after fusing."""

    conv: nn.Conv2d
    act: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = getattr(self, "bn", None)
        return self.act(bn(self.conv(x)) if bn is not None else self.conv(x))


class Bottleneck(nn.Module):
    cv1: Conv
    cv2: Conv
    add: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    cv1: Conv
    cv2: Conv
    cv3: Conv
    m: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: one max-pool applied three times in a row."""

    cv1: Conv
    cv2: Conv
    m: nn.MaxPool2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling with parallel max-pools (YOLOv5 before v6.0)."""

    cv1: Conv
    cv2: Conv
    m: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth then convolution (YOLOv5 before v6.0)."""

    conv: Conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1))


class Concat(nn.Module):
    d: int

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=self.d)


class Detect(nn.Module):
    """Anchor-based head: per level, a 1x1 conv to ``na * (5 + nc)`` channels, decoded against its grid."""

    nl: int
    na: int
    no: int
    nc: int
    anchors: torch.Tensor  # (nl, na, 2) in grid units (already divided by the level's stride)
    stride: torch.Tensor
    m: nn.ModuleList

    def raw(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Training: per level, the logits as ``(batch, anchors, ny, nx, 5 + nc)``, nothing decoded."""
        outs = []
        for level, conv in enumerate(self.m):
            feature = conv(xs[level])
            batch, _, ny, nx = feature.shape
            outs.append(feature.view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return outs

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for level, conv in enumerate(self.m):
            feature = conv(xs[level])
            batch, _, ny, nx = feature.shape
            pred = feature.view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
            grid, anchor_grid = self._grids(level, nx, ny, pred)
            xy = (pred[..., 0:2] * 2 + grid) * self.stride[level]
            wh = (pred[..., 2:4] * 2) ** 2 * anchor_grid
            outputs.append(torch.cat((xy, wh, pred[..., 4:]), dim=-1).view(batch, -1, self.no))
        return torch.cat(outputs, dim=1)

    def _grids(self, level: int, nx: int, ny: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ys = torch.arange(ny, device=like.device, dtype=like.dtype)
        xs = torch.arange(nx, device=like.device, dtype=like.dtype)
        yv, xv = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((xv, yv), dim=2).view(1, 1, ny, nx, 2) - 0.5
        anchor_grid = (self.anchors[level] * self.stride[level]).view(1, self.na, 1, 1, 2).to(like.dtype)
        return grid, anchor_grid


class Model(nn.Module):
    """The layer list with YOLOv5's routing: each layer's ``f`` names its input(s), ``save`` what is kept."""

    model: nn.Sequential
    save: list[int]
    names: Any
    stride: torch.Tensor
    yaml: dict[str, Any]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._route(x, raw=False)  # type: ignore[return-value]

    def forward_raw(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Training: the head's per-level logits (see ``Detect.raw``)."""
        return self._route(x, raw=True)  # type: ignore[return-value]

    def _route(self, x: torch.Tensor, raw: bool) -> torch.Tensor | list[torch.Tensor]:
        kept: list[torch.Tensor | None] = []
        out: Any = x
        last = len(self.model) - 1
        for position, layer in enumerate(self.model):
            source: Any = layer.f  # routing attributes restored from the checkpoint: int or list of int
            if source != -1:
                out = kept[source] if isinstance(source, int) else [out if j == -1 else kept[j] for j in source]
            out = layer.raw(out) if raw and position == last and isinstance(layer, Detect) else layer(out)
            index: Any = layer.i
            kept.append(out if index in self.save else None)
        return out

    @property
    def detect(self) -> Detect:
        head = self.model[-1]
        if not isinstance(head, Detect):
            raise ModelError("the checkpoint's last layer is not a YOLOv5 Detect head")
        return head


_LAYER_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (Conv, Bottleneck, C3, SPPF, SPP, Focus, Concat, Detect, Model)
}
_LAYER_CLASSES["DetectionModel"] = Model  # the same class, renamed in YOLOv5 v7.0

_CLASSIC_MODULES = ("models.yolo", "models.common")


class _ClassicUnpickler(GuardedUnpickler):
    """The original repository's ``models.yolo``/``models.common`` classes become ours; everything else a
    checkpoint names goes through the guard (``checkpoints``), Ultralytics' layer classes included so that the
    kind of checkpoint can be told."""

    remap: ClassVar[dict[tuple[str, str], object]] = {
        (module, name): cls for module in _CLASSIC_MODULES for name, cls in _LAYER_CLASSES.items()
    }

    def find_class(self, module: str, name: str) -> Any:
        if module in _CLASSIC_MODULES and (module, name) not in self.remap:
            raise ModelError(
                f"this YOLOv5 checkpoint uses layer {module}.{name}, which andi-edge does not implement",
                hint="supported layers: " + ", ".join(sorted(_LAYER_CLASSES)),
            )
        return super().find_class(module, name)


def is_ultralytics_checkpoint(weights: Path) -> bool:
    """True when the checkpoint pickles ultralytics-package classes (YOLOv5u, YOLOv8, YOLO11, MDv6...).

    The whole checkpoint is read through the guard first, so a checkpoint that names anything it may not is
    refused here (CheckpointRefusedError), before Ultralytics' own loader, which has no guard, ever sees it."""
    return any(module.startswith("ultralytics") for module, _ in _read(weights)[1])


def _read(weights: Path) -> tuple[Any, set[tuple[str, str]]]:
    configure_ultralytics_offline()  # should the checkpoint name Ultralytics' classes, they are imported offline
    return guarded_load(weights, _ClassicUnpickler)


def load_classic(weights: Path) -> tuple[Model, dict[str, Any]]:
    """Load a classic YOLOv5 checkpoint as a float32 eval-mode model. Returns the model and the raw checkpoint."""
    checkpoint, named = _read(weights)
    if any(module.startswith("ultralytics") for module, _ in named):
        raise ModelError(f"{weights} is an ultralytics-package checkpoint, not a classic YOLOv5 one")
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{weights}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    model = checkpoint.get("ema")
    if model is None:
        model = checkpoint.get("model")
    if not isinstance(model, Model):
        raise ModelError(f"{weights}: the checkpoint holds no YOLOv5 model under 'model' or 'ema'")
    model = model.float().eval()
    for module in model.modules():
        if isinstance(module, nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
            module.recompute_scale_factor = None  # attribute added in torch 1.11; old pickles lack it
    return model, checkpoint


def save_classic(checkpoint: dict[str, Any], path: Path) -> None:
    """Save a checkpoint holding our ``Model`` as the original repository pickles one (classes under
    ``models.yolo`` / ``models.common``), so that our loader and YOLOv5's own tools both read it."""
    homes: dict[str, dict[str, type[nn.Module]]] = {
        "models.yolo": {"Model": Model, "DetectionModel": Model, "Detect": Detect},
        "models.common": {c.__name__: c for c in (Conv, Bottleneck, C3, SPPF, SPP, Focus, Concat)},
    }
    saved_modules = {name: sys.modules.get(name) for name in ("models", *homes)}
    saved_names = {cls: (cls.__module__, cls.__qualname__) for members in homes.values() for cls in members.values()}
    try:
        sys.modules["models"] = types.ModuleType("models")
        for module_name, members in homes.items():
            module = types.ModuleType(module_name)
            for name, cls in members.items():
                setattr(module, name, cls)
            sys.modules[module_name] = module
        for module_name, members in homes.items():
            for name, cls in members.items():
                if name != "DetectionModel":
                    cls.__module__, cls.__qualname__ = module_name, name
        torch.save(checkpoint, path)
    finally:
        for cls, (module_name, qualname) in saved_names.items():
            cls.__module__, cls.__qualname__ = module_name, qualname
        for name, previous in saved_modules.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def class_names(model: Model) -> list[str]:
    names = model.names
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def fuse_conv_bn(model: Model) -> Model:
    """Fold each BatchNorm into its convolution (exact in eval mode); smaller graph, friendlier to INT8."""
    for module in model.modules():
        if isinstance(module, Conv) and getattr(module, "bn", None) is not None:
            module.conv = _fused(module.conv, module.bn)  # type: ignore[arg-type]
            del module.bn
    return model


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
    )
    assert bn.running_var is not None and bn.running_mean is not None  # eval-mode BN always has stats
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    conv_bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (conv_bias - bn.running_mean) * scale + bn.bias.detach()  # type: ignore[union-attr]
    return fused.requires_grad_(False)
