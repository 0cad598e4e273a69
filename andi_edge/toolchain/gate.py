"""The accuracy floor: a pruned, quantized or fine-tuned model that loses more mAP@0.5 (a classifier: F1-macro)
than allowed, on a labelled dataset, against the model it came from, is refused. ``refuse_loss`` is the one rule
they all apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from andi_edge.errors import GateError
from andi_edge.toolchain.dataset import Dataset


@dataclass(frozen=True)
class Gate:
    dataset: Dataset
    max_loss: float
    class_map: dict[str, str] = field(default_factory=dict)


def check_gate(gate: Gate, reference: Path, candidate: Path) -> dict[str, float]:
    """mAP@0.5 of both ONNX models on the gate's dataset; raises GateError when the candidate loses too much."""
    from andi_edge.toolchain.evaluate import run_eval

    before = run_eval(reference, gate.dataset, class_map=gate.class_map)["overall"]["map50"]
    after = run_eval(candidate, gate.dataset, class_map=gate.class_map)["overall"]["map50"]
    return refuse_loss(
        before,
        after,
        gate.max_loss,
        what="the compressed model",
        consequence="nothing was written",
        hint="compress less (ratio, calibration photos), train longer, or accept a larger loss with --max-loss",
    )


def loses_too_much(before: float, after: float, max_loss: float) -> bool:
    """The gate's rule: more than ``max_loss`` mAP@0.5 lost; a NaN never passes."""
    return not before - after <= max_loss


def refuse_loss(
    before: float, after: float, max_loss: float, what: str, consequence: str, hint: str, metric: str = "mAP@0.5"
) -> dict[str, float]:
    """Raise GateError when ``after`` is more than ``max_loss`` below ``before`` (``metric``: mAP@0.5 for detectors,
    F1-macro for classifiers)."""
    loss = before - after
    if loses_too_much(before, after, max_loss):
        raise GateError(
            f"{what} loses {loss:.4f} {metric} ({before:.4f} -> {after:.4f}), more than --max-loss {max_loss}: "
            f"{consequence}",
            hint=hint,
        )
    return {"before": before, "after": after, "loss": loss}
