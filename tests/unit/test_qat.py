"""Quantization-aware training's rounding, on real torch modules and the real YOLOv5n checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from andi_edge.toolchain.qat import (
    ActivationFakeQuant,
    QatConv2d,
    fake_quantize_weight,
    finish_qat,
    prepare_qat,
)
from andi_edge.toolchain.sparsity import MagnitudePruner, prunable_convolutions
from andi_edge.toolchain.yolov5_classic import Conv, load_classic


def _on_int8_grid(weight: torch.Tensor) -> bool:
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    steps = weight / scale
    return bool(torch.allclose(steps, steps.round(), atol=1e-3)) and bool(steps.abs().max() <= 127 + 1e-3)


def test_weights_round_per_channel_to_onnx_runtimes_symmetric_grid_and_zeros_stay_zero() -> None:
    weight = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)
    weight[0, 0] = 0.0
    rounded = fake_quantize_weight(weight)
    assert _on_int8_grid(rounded) and torch.all(rounded[0, 0] == 0)
    # each channel keeps its own scale: rounding errors at most half a step of it
    step = weight.abs().amax(dim=(1, 2, 3)) / 127
    assert torch.all((rounded - weight).abs().amax(dim=(1, 2, 3)) <= step / 2 + 1e-7)
    # gradients pass the rounding straight through
    weight.requires_grad_(True)
    fake_quantize_weight(weight).sum().backward()  # type: ignore[no-untyped-call]
    assert weight.grad is not None and torch.all(weight.grad == 1)


def test_activation_range_is_learnt_in_training_only() -> None:
    quant = ActivationFakeQuant()
    x = torch.linspace(-1.0, 3.0, 1000)
    assert torch.equal(quant.eval()(x), x), "no range measured yet: nothing to round to"
    quant.train()(x)
    assert float(quant.low) == -1.0 and float(quant.high) == 3.0
    quant.eval()(x * 100)
    assert float(quant.high) == 3.0, "evaluation never moves the range"
    out = quant(x)
    assert len(torch.unique(out)) <= 256 and (out - x).abs().max() <= 4.0 / 255 / 2 + 1e-6
    quant.train()(x * 2)
    assert 3.0 < float(quant.high) < 6.0, "a moving average, not the last batch's range"


def test_prepare_and_finish_on_the_real_checkpoint(weights_path: Path) -> None:
    model, _ = load_classic(weights_path)
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        reference = model(x)[0]
    convs = prunable_convolutions(model, keep_dense=(model.detect,))
    pruner = MagnitudePruner.holding(convs)
    assert pruner.current == 0.0 and pruner.done(0)
    prepare_qat(model)
    wrapped = [m for m in model.modules() if isinstance(m, Conv)]
    assert wrapped and all(isinstance(m.conv, QatConv2d) and not hasattr(m, "bn") for m in wrapped)
    assert not any(isinstance(m, QatConv2d) for m in model.detect.modules()), "the head stays in float"
    model.train()
    model.forward_raw(x)  # one training pass measures every activation's range
    model.eval()
    with torch.no_grad():
        simulated = model(x)[0]
    finish_qat(model)
    assert not any(isinstance(m, QatConv2d | ActivationFakeQuant) for m in model.modules())
    assert all(_on_int8_grid(m.conv.weight.detach()) for m in wrapped)
    with torch.no_grad():
        after = model(x)[0]
    # INT8 rounding moves the outputs a little, never wildly (objectness and boxes of the 80-class COCO head)
    assert (simulated[..., 4] - reference[..., 4]).abs().max() < 0.2
    assert (after[..., 4] - reference[..., 4]).abs().max() < 0.2


def test_holding_keeps_the_zeros_and_prunes_nothing_more() -> None:
    conv = nn.Conv2d(8, 8, 3)
    with torch.no_grad():
        conv.weight[:, :4] = 0.0
    pruner = MagnitudePruner.holding([conv])
    assert pruner.current == 0.5
    pruner.update(0)
    with torch.no_grad():
        conv.weight.add_(1.0)  # an optimiser step revives everything
    pruner.apply()
    assert torch.all(conv.weight[:, :4] == 0) and torch.all(conv.weight[:, 4:] != 0)
