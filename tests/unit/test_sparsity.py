"""Gradual magnitude pruning's schedule and masks, on a small real torch network."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from andi_edge.toolchain.sparsity import GmpSchedule, MagnitudePruner, prunable_convolutions


def test_the_cubic_schedule_rises_fast_then_slowly_to_the_final_sparsity() -> None:
    s = GmpSchedule(final_sparsity=0.8, start_step=10, end_step=110, update_every=10)
    assert s.sparsity_at(0) == 0.0 and s.sparsity_at(9) == 0.0, "dense before it starts"
    assert s.sparsity_at(10) == pytest.approx(0.05) and s.sparsity_at(110) == 0.8 and s.sparsity_at(500) == 0.8
    values = [s.sparsity_at(t) for t in range(10, 111)]
    assert all(b >= a for a, b in itertools.pairwise(values)), "never less sparse"
    # cubic: half way through, 1 - (1/2)^3 = 7/8 of the way from initial to final
    assert s.sparsity_at(60) == pytest.approx(0.8 + (0.05 - 0.8) * 0.125)
    assert [t for t in range(0, 130) if s.updates_at(t)] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    odd = GmpSchedule(final_sparsity=0.5, start_step=0, end_step=7, update_every=3)
    assert [t for t in range(9) if odd.updates_at(t)] == [0, 3, 6, 7], "the final step always updates"
    for bad in ({"final_sparsity": 1.0}, {"final_sparsity": 0.5, "initial_sparsity": 0.6},
                {"final_sparsity": 0.5, "update_every": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            GmpSchedule(**{"start_step": 0, "end_step": 10, **bad})  # type: ignore[arg-type]


def _net() -> tuple[nn.Sequential, nn.Conv2d, nn.Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    first, middle, head = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Conv2d(16, 6, 1)
    return nn.Sequential(first, nn.ReLU(), middle, nn.ReLU(), head), first, middle, head


def test_masks_zero_exactly_the_smallest_weights_of_each_layer_and_keep_them_zero() -> None:
    net, first, middle, head = _net()
    convs = prunable_convolutions(net, keep_dense=(head,))
    assert convs == [middle], "the first convolution (3 image channels) and the head stay dense"
    pruner = MagnitudePruner(convs, GmpSchedule(final_sparsity=0.75, start_step=0, end_step=4, update_every=2))
    weight = middle.weight
    magnitudes = weight.detach().abs().flatten().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    for step in range(6):
        pruner.update(step)
        if step == 0:  # the first masks: exactly the smallest magnitudes went
            kept = magnitudes[weight.detach().flatten() != 0]
            dropped = magnitudes[weight.detach().flatten() == 0]
            assert len(dropped) == round(0.05 * weight.numel()) and dropped.max() <= kept.min()
        loss = net(torch.randn(2, 3, 9, 9)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.apply()
        assert pruner.schedule is not None
        expected = round(pruner.schedule.sparsity_at(step - step % 2 if step < 4 else 4) * weight.numel())
        assert int((weight == 0).sum()) == expected, step
    assert pruner.done(5) and not pruner.done(4), "the final masks come at step 4: done once it has run"
    assert pruner.current == 0.75
    assert int((weight == 0).sum()) == round(0.75 * weight.numel())
    assert bool((first.weight != 0).all()) and bool((head.weight != 0).all()), "dense layers untouched"
    assert pruner.report() == {"layers": 1, "weights": weight.numel(), "zeros": 864, "sparsity": 0.75}


def test_nothing_to_prune_is_said() -> None:
    with pytest.raises(ValueError, match="nothing to prune"):
        MagnitudePruner([], GmpSchedule(final_sparsity=0.5, start_step=0, end_step=1))
