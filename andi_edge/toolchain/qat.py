"""Quantization-aware training (QAT) of a classic YOLOv5 model, the last stage of Neural Magic's recipe.

After gradual magnitude pruning and recovery, the network trains a few more epochs while its forward pass
rounds the way the INT8 model will: every convolution's weights to int8 (per output channel, symmetric,
scale = max |w| / 127 over [-127, 127], as ONNX Runtime's per-channel quantizer does) and every activation a convolution
and its SiLU put out to uint8 (per tensor, over the range seen in training, a moving average of each batch's
min and max). Gradients pass the rounding straight through. The network learns weights that lose little when
rounded, instead of being rounded after the fact.

The model trains with its batch norms folded into the convolutions (``fuse_conv_bn``): what is rounded is
then exactly what the ONNX file holds. At the end the weights are stored already rounded (on the int8 grid of
their own scale), and the checkpoint is a plain fused classic model: ``andi-edge export`` and ``andi-edge
quantize`` (static INT8, MinMax ranges from photos) make the INT8 model from it as from any other, and the
rounding they do is the one the network trained under. A pruned weight is zero, and stays zero: zero is on
every symmetric grid, and the masks are re-applied after each step. The detection head stays in float, as in
``andi-edge quantize``.
"""

# nn.Module.__call__ is typed as returning Any
# mypy: disable-error-code="no-any-return"
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from andi_edge.toolchain.yolov5_classic import Conv, Model, fuse_conv_bn

#: int8 weights, symmetric around zero: ONNX Runtime's symmetric int8 range, scale max |w| / 127
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
#: uint8 activations, asymmetric
ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 255
#: the moving average of each training batch's activation range
RANGE_MOMENTUM = 0.01


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per output channel, symmetric int8, rounded and back to float (module doc)."""
    absmax = weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))).clamp(min=1e-12)
    scale = (absmax / ((WEIGHT_QMAX - WEIGHT_QMIN) / 2)).float()
    zero_point = torch.zeros(weight.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, WEIGHT_QMIN, WEIGHT_QMAX)


class ActivationFakeQuant(nn.Module):
    """uint8 rounding of an activation over the range measured in training (module doc). The range is only
    measured in training mode: evaluating the model never moves it."""

    low: torch.Tensor
    high: torch.Tensor
    seen: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.detach().min().clamp(max=0.0), x.detach().max().clamp(min=0.0)
                if bool(self.seen):
                    self.low.lerp_(low, RANGE_MOMENTUM)
                    self.high.lerp_(high, RANGE_MOMENTUM)
                else:
                    self.low.copy_(low)
                    self.high.copy_(high)
                    self.seen.fill_(True)
        if not bool(self.seen):
            return x
        scale = float((self.high - self.low).clamp(min=1e-8)) / (ACTIVATION_QMAX - ACTIVATION_QMIN)
        zero_point = round(-float(self.low) / scale)
        return torch.fake_quantize_per_tensor_affine(
            x, scale, min(max(zero_point, ACTIVATION_QMIN), ACTIVATION_QMAX), ACTIVATION_QMIN, ACTIVATION_QMAX
        )


def _geometry(conv: nn.Conv2d) -> dict[str, Any]:
    """What makes another convolution of the same shape as ``conv``."""
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel_size": conv.kernel_size,
            "stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups,
            "bias": conv.bias is not None}  # fmt: skip


class QatConv2d(nn.Conv2d):
    """A convolution that rounds its weights to int8 and its output to uint8 as it runs (module doc)."""

    def __init__(self, source: nn.Conv2d) -> None:
        super().__init__(**_geometry(source))
        with torch.no_grad():
            self.weight.copy_(source.weight)
            if source.bias is not None and self.bias is not None:
                self.bias.copy_(source.bias)
        self.output_quant = ActivationFakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_quant(self._conv_forward(x, fake_quantize_weight(self.weight), self.bias))

    def rounded(self) -> nn.Conv2d:
        """A plain convolution holding the rounded weights."""
        plain = nn.Conv2d(**_geometry(self))
        with torch.no_grad():
            plain.weight.copy_(fake_quantize_weight(self.weight.detach()))
            if self.bias is not None and plain.bias is not None:
                plain.bias.copy_(self.bias)
        return plain


def prepare_qat(model: Model) -> Model:
    """Fold the batch norms (their statistics must be measured: ``toolchain.batch_norm``) and make every
    convolution outside the head round as INT8 will (module doc). In place; returns the model, trainable."""
    fuse_conv_bn(model.eval())
    for module in model.modules():
        if isinstance(module, Conv) and not isinstance(module.conv, QatConv2d):
            module.conv = QatConv2d(module.conv)
            module.act = nn.Sequential(module.act, ActivationFakeQuant())
    return model.requires_grad_(True)


def finish_qat(model: Model) -> Model:
    """Back to a plain fused model with the rounded weights. In place; returns the model."""
    for module in model.modules():
        if isinstance(module, Conv) and isinstance(module.conv, QatConv2d):
            module.conv = module.conv.rounded()
            act = module.act
            if isinstance(act, nn.Sequential) and isinstance(act[-1], ActivationFakeQuant):
                module.act = act[0]
    return model.eval()
