"""Output names: within the file system's limit, deterministic, and never shared by two photos."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from andi_edge.sinks.names import (
    NAME_MAX_BYTES,
    bounded_name,
    bounded_path,
    derived_stem,
    name_bytes,
    temp_prefix,
)

NON_UTF8 = os.fsdecode(b"caf\xe9.JPG")  # a FAT card mounted without utf8: the byte 0xE9 as a surrogate escape


def test_names_that_fit_are_kept_whole() -> None:
    assert bounded_name("IMG_0001.JPG", ".json") == "IMG_0001.JPG.json"
    assert bounded_name(NON_UTF8) == NON_UTF8
    assert bounded_path("DCIM/100RECNX/IMG_0001.JPG", ".json") == "DCIM/100RECNX/IMG_0001.JPG.json"


def test_long_names_are_cut_on_characters_and_hashed() -> None:
    cjk = "夜" * 255  # 255 characters, 765 bytes in UTF-8: fine on the card's FAT, too long on ext4
    out = bounded_name(cjk + ".JPG", ".json")
    assert name_bytes(out) <= NAME_MAX_BYTES and out.endswith(".json") and "~" in out
    assert out.encode("utf-8").decode("utf-8") == out, "never half a character"
    assert bounded_name(cjk + ".JPG", ".json") == out, "deterministic"
    assert bounded_name(cjk + "!.JPG", ".json") != out, "names that share a start differ by their hash"
    path = bounded_path(f"{'a' * 300}/{'b' * 300}/{'c' * 250}.JPG", ".json")
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
