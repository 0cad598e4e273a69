"""Gradual magnitude pruning (GMP), the recipe of Neural Magic's SparseML, in plain torch.

Unstructured: inside each pruned convolution the weights of smallest magnitude are set to zero, layer by layer,
while the network trains on, so that it recovers as it loses them. The sparsity follows Zhu & Gupta's cubic
schedule ("To prune, or not to prune", 2017), as SparseML's GMP modifier does:

    s(t) = s_final + (s_initial - s_final) * (1 - (t - t_start) / (t_end - t_start)) ** 3

rising fast at first, when many weights are redundant, and slowly at the end; the masks are recomputed every
``update_every`` steps and applied after every optimiser step, so a pruned weight stays zero. After ``t_end`` the
network trains at the final sparsity (recovery). The first convolution (three input channels: every weight
counts) and the detection head are left dense, as SparseML's YOLOv5 recipes leave them.

What sparsity buys depends on the engine: ONNX Runtime's CPU kernels are dense (no faster, but the model
compresses well); only an engine with sparse kernels (DeepSparse) can run it faster. Measured:
benchmarks/results/sparse.md.
"""

# nn.Module.__call__ is typed as returning Any
# mypy: disable-error-code="no-any-return"
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GmpSchedule:
    """Sparsity over training steps (module doc)."""

    final_sparsity: float
    start_step: int
    end_step: int
    update_every: int = 1
    initial_sparsity: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.final_sparsity < 1:
            raise ValueError(f"final sparsity {self.final_sparsity}: expected a fraction between 0 and 1")
        if not 0 <= self.initial_sparsity <= self.final_sparsity:
            raise ValueError("initial sparsity must be between 0 and the final sparsity")
        if self.end_step < self.start_step or self.update_every < 1:
            raise ValueError("the schedule must end after it starts, and update at least every step")

    def sparsity_at(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        if step >= self.end_step:
            return self.final_sparsity
        progress = (step - self.start_step) / max(self.end_step - self.start_step, 1)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** 3

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed at this step (and always once the final sparsity is due)."""
        if step < self.start_step:
            return False
        return (step - self.start_step) % self.update_every == 0 or step == self.end_step


def prunable_convolutions(model: nn.Module, keep_dense: tuple[nn.Module, ...] = ()) -> list[nn.Conv2d]:
    """The convolutions GMP prunes: all but the first (on the 3 image channels) and those inside ``keep_dense``."""
    skipped = {id(m) for module in keep_dense for m in module.modules()}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in skipped]
    return [c for c in convs if c.in_channels > 3]


class MagnitudePruner:
    """Masks for the prunable convolutions of ``model``, kept to ``schedule`` (module doc)."""

    def __init__(self, convolutions: list[nn.Conv2d], schedule: GmpSchedule | None) -> None:
        if not convolutions:
            raise ValueError("nothing to prune: no convolution beyond the first and the head")
        self.layers = convolutions
        self.schedule = schedule
        self.masks = [torch.ones_like(c.weight, dtype=torch.bool) for c in convolutions]
        self.current = 0.0

    @classmethod
    def holding(cls, convolutions: list[nn.Conv2d]) -> MagnitudePruner:
        """No schedule: the zeros these convolutions have now stay zero, and no other weight is pruned (training
        on after pruning, e.g. quantization-aware)."""
        pruner = cls(convolutions, None)
        pruner.masks = [c.weight.detach() != 0 for c in convolutions]
        pruner.current = float(sparsity_report(convolutions)["sparsity"])
        return pruner

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Before the step's forward pass: recompute the masks when the schedule says so, and apply them."""
        if self.schedule is None or not self.schedule.updates_at(step):
            return
        target = self.schedule.sparsity_at(step)
        for i, conv in enumerate(self.layers):
            weight = conv.weight.detach()
            drop = round(target * weight.numel())
            if drop <= 0:
                self.masks[i] = torch.ones_like(weight, dtype=torch.bool)
                continue
            # the ``drop`` smallest magnitudes go; ties broken by position, so exactly ``drop`` weights are zero
            order = torch.argsort(weight.abs().flatten(), stable=True)
            mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
            mask[order[:drop]] = False
            self.masks[i] = mask.view_as(weight)
        self.current = target
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """After every optimiser step: pruned weights back to zero (momentum would revive them)."""
        for conv, mask in zip(self.layers, self.masks, strict=True):
            conv.weight.mul_(mask)

    def done(self, steps_taken: int) -> bool:
        """After ``steps_taken`` steps (0 to steps_taken - 1 run), the final sparsity is applied: from here on the
        network only recovers."""
        return self.schedule is None or steps_taken > self.schedule.end_step

    def report(self) -> dict[str, float | int]:
        return sparsity_report(self.layers)


def sparsity_report(convolutions: list[nn.Conv2d]) -> dict[str, float | int]:
    """How many of these convolutions' weights are zero."""
    zeros = sum(int((c.weight == 0).sum()) for c in convolutions)
    total = sum(c.weight.numel() for c in convolutions)
    return {"layers": len(convolutions), "weights": total, "zeros": zeros, "sparsity": round(zeros / total, 4)}
