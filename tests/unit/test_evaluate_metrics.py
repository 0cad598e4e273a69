from __future__ import annotations

import math

from andi_edge.toolchain.dataset import Box, Dataset, ImageRecord, split_by_class, split_by_location
from andi_edge.toolchain.evaluate import f1_macro


def test_f1_macro_by_hand() -> None:
    e, a, p = frozenset({"empty"}), frozenset({"animal"}), frozenset({"person"})
    truth = [a, a, e, p]
    predicted = [a, e, e, a]
    f1, per_class = f1_macro(truth, predicted)
    # animal: tp 1 (img 0), fp 1 (img 3), fn 1 (img 1) -> 2/4; empty: tp 1, fp 1 -> 2/3; person: fn 1 -> 0
    assert per_class == {"animal": 0.5, "empty": 2 / 3, "person": 0.0}
    assert math.isclose(f1, (0.5 + 2 / 3 + 0.0) / 3)
    assert f1_macro([a, p], [a, p])[0] == 1.0


def _dataset() -> Dataset:
    images = []
    for loc in range(12):
        for i in range(5 + loc):
            cls = "fox" if loc % 3 else "deer"
            boxes = (Box(cls, (1, 1, 5, 5)),) if i % 2 else ()
            images.append(ImageRecord(f"l{loc}/img{i}.jpg", 100, 100, f"loc{loc}", boxes))
    return Dataset(images, ["deer", "fox"], images_root=__import__("pathlib").Path("."))


def test_location_split_never_shares_a_location_and_is_near_the_targets() -> None:
    dataset = _dataset()
    assignment = split_by_location(dataset, val=0.25, test=0.10, seed=0)
    assert set(assignment) == {i.file_name for i in dataset.images}
    split_of_location: dict[str, set[str]] = {}
    for img in dataset.images:
        split_of_location.setdefault(img.location, set()).add(assignment[img.file_name])
    assert all(len(s) == 1 for s in split_of_location.values()), "a location appears in two splits"
    share = sum(1 for s in assignment.values() if s == "train") / len(assignment)
    assert 0.5 <= share <= 0.8
    assert assignment == split_by_location(dataset, val=0.25, test=0.10, seed=0), "deterministic for a seed"


def test_class_split_is_stratified() -> None:
    dataset = _dataset()
    assignment = split_by_class(dataset, val=0.25, test=0.10, seed=1)
    for cls in ("deer", "fox", "empty"):
        members = [i for i in dataset.images if (min(i.classes) if i.classes else "empty") == cls]
        splits = {assignment[i.file_name] for i in members}
        assert splits == {"train", "val", "test"}, cls
