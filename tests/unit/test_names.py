"""Output names: within the file system's limit, deterministic, and never shared by two photos."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from andi_edge.sinks.names import (
    NAME_MAX_BYTES,
    bounded_name,
    derived_stem,
    mirrored_path,
    name_bytes,
    temp_prefix,
)

NON_UTF8 = os.fsdecode(b"caf\xe9.JPG")  # a FAT card mounted without utf8: the byte 0xE9 as a surrogate escape


def test_names_that_fit_are_kept_whole() -> None:
    assert bounded_name("IMG_0001.JPG", ".json") == "IMG_0001.JPG.json"
    assert bounded_name(NON_UTF8) == NON_UTF8
    assert mirrored_path("DCIM/100RECNX/IMG_0001.JPG", ".json") == "DCIM/100RECNX/IMG_0001.JPG.json"


def test_long_names_are_cut_on_characters_and_hashed() -> None:
    cjk = "夜" * 255  # 255 characters, 765 bytes in UTF-8: fine on the card's FAT, too long on ext4
    out = bounded_name(cjk + ".JPG", ".json")
    assert name_bytes(out) <= NAME_MAX_BYTES and out.endswith(".json") and "~" in out
    assert out.encode("utf-8").decode("utf-8") == out, "never half a character"
    assert bounded_name(cjk + ".JPG", ".json") == out, "deterministic"
    assert bounded_name(cjk + "!.JPG", ".json") != out, "names that share a start differ by their hash"
    path = mirrored_path(f"{'a' * 300}/{'b' * 300}/{'c' * 250}.JPG", ".json")
    assert all(name_bytes(part) <= NAME_MAX_BYTES for part in path.split("/")) and path.endswith(".json")


def test_derived_stems_keep_flattened_and_cleaned_names_apart() -> None:
    stems = {derived_stem(key) for key in ("x/y.JPG", "x__y.JPG", "IMG_1.JPG", "IMG_1.PNG", "café.JPG", NON_UTF8)}
    assert len(stems) == 6
    assert derived_stem("DCIM/100RECNX/IMG_0001.JPG").startswith("DCIM__100RECNX__IMG_0001__")
    assert name_bytes(derived_stem("d/" * 200 + "x.JPG") + "__det99.jpg") <= NAME_MAX_BYTES


@given(st.text(min_size=1, max_size=400).filter(lambda s: "/" not in s and "\x00" not in s))
def test_any_name_fits_with_its_temp_file(name: str) -> None:
    final = bounded_name(name, ".json")
    assert name_bytes(final) <= NAME_MAX_BYTES
    random_part, suffix = 8, len(".tmp")  # what mkstemp adds after the prefix
    assert name_bytes(temp_prefix(final)) + random_part + suffix <= NAME_MAX_BYTES


@pytest.mark.parametrize(
    "rel_path",
    [
        "megadetector_results.json/IMG_0001.JPG",
        "Crops/IMG_0001.JPG",
        "crops/animal/IMG_0001.JPG",
        "DCIM/IMG_0001.JPG.json/IMG_0002.JPG",
        "DCIM/img_0001.jpg.JSON/IMG_0002.JPG",
    ],
)
def test_a_card_folder_never_takes_an_outputs_name(rel_path: str) -> None:
    """A card folder named like the batch file, the crops folder or a sidecar is mirrored under another name,
    the same every time, and distinct from every other photo's outputs."""
    mirrored = mirrored_path(rel_path, ".json")
    assert mirrored == mirrored_path(rel_path, ".json")
    folders = mirrored.split("/")[:-1]
    assert folders[0].lower() not in {"megadetector_results.json", "crops"}
    assert not any(f.lower().endswith(".json") for f in folders)
    taken = {"megadetector_results.json", "crops", mirrored_path("DCIM/IMG_0001.JPG", ".json").lower()}
    for depth in range(1, len(folders) + 1):
        assert "/".join(folders[:depth]).lower() not in taken


def test_plain_card_folders_are_mirrored_as_they_are() -> None:
    assert mirrored_path("DCIM/100RECNX/crops/IMG_0001.JPG", ".json") == "DCIM/100RECNX/crops/IMG_0001.JPG.json"
    assert mirrored_path("json/IMG_0001.JPG", ".json") == "json/IMG_0001.JPG.json"
