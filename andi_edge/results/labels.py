"""What a box is called to a biologist: its species, when a classifier named it with enough confidence, else its
detector category (animal, person, vehicle). The one place that decides it, for crop folders, events, the report
and Camtrap DP alike.

Labels live in one index space: the detector's categories first, then the classifier's labels after them, so an
event or a report row holds one index whichever named it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from andi_edge.results.observation_types import observation_type

if TYPE_CHECKING:
    from andi_edge.results.records import PhotoRecord

EMPTY_LABEL = "empty"


@dataclass(frozen=True)
class LabelSpace:
    class_names: tuple[str, ...]
    #: the classifier's labels (empty: no classifier ran, every box keeps its category)
    species_names: tuple[str, ...] = ()
    #: a species names a box at or above this classifier confidence
    species_threshold: float = 0.5

    @property
    def names(self) -> tuple[str, ...]:
        return self.class_names + self.species_names

    def index(self, class_index: int, classifications: Sequence[tuple[int, float]]) -> int:
        """The label of a box of ``class_index`` with these (label id, confidence) classifications, best first.

        A classifier's "empty"/"background" label never names a box: the detector found something there, and
        saying "empty" about a box would hide it; the box keeps its category."""
        if self.species_names and classifications:
            best, conf = classifications[0]
            if (
                conf >= self.species_threshold
                and 0 <= best < len(self.species_names)
                and observation_type(self.species_names[best]) != "blank"
            ):
                return len(self.class_names) + best
        return class_index

    def labelled(
        self, class_index: int, conf: float, classifications: Sequence[tuple[int, float]]
    ) -> tuple[int, float, bool]:
        """The label of a box, how sure it is (the classifier's confidence for a species, else the detector's),
        and whether it is a species."""
        index = self.index(class_index, classifications)
        if self.is_species(index):
            return index, classifications[0][1], True
        return index, conf, False

    def name(self, index: int | None) -> str:
        if index is None:
            return EMPTY_LABEL
        names = self.names
        if 0 <= index < len(names):
            return names[index]
        return f"class_{index}"

    def is_species(self, index: int) -> bool:
        return index >= len(self.class_names)


@dataclass(frozen=True)
class PhotoCounts:
    """What photos show at a confidence threshold, in a reviewer's words."""

    #: photos with at least one box of the label (a photo with two labels counts under both)
    per_label: dict[str, int]
    with_detections: int
    empty: int
    failed: int

    def ranked(self) -> list[tuple[str, int]]:
        return sorted(self.per_label.items(), key=lambda kv: -kv[1])


def count_photos(records: Iterable[PhotoRecord], labels: LabelSpace, threshold: float) -> PhotoCounts:
    """Per label, empty and failed photos among ``records``, boxes counted at or above ``threshold``."""
    per_label: dict[str, int] = {}
    with_detections = empty = failed = 0
    for record in records:
        if record.failure is not None:
            failed += 1
            continue
        names = {
            labels.name(labels.index(b.class_index, b.classifications)) for b in record.boxes if b.conf >= threshold
        }
        if not names:
            empty += 1
            continue
        with_detections += 1
        for name in names:
            per_label[name] = per_label.get(name, 0) + 1
    return PhotoCounts(per_label, with_detections, empty, failed)
