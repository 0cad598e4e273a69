"""Card text in the journal: any name round-trips, and valid UTF-8 names are stored as they are."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from andi_edge.state.journal import text_from_db, text_to_db


@given(st.binary(min_size=1, max_size=80).filter(lambda b: b"\x00" not in b))
def test_any_card_name_round_trips(name: bytes) -> None:
    text = os.fsdecode(name)
    stored = text_to_db(text)
    stored.encode("utf-8")  # SQLite TEXT takes it
    assert text_from_db(stored) == text


@given(st.text(min_size=1, max_size=80).filter(lambda t: not t.startswith("/")))
def test_valid_names_are_stored_unchanged(text: str) -> None:
    assert text_to_db(text) == text


def test_the_escaped_form_is_unambiguous() -> None:
    name = os.fsdecode(b"caf\xe9 100%E9.JPG")
    assert text_to_db(name) == "/caf%E9 100%25E9.JPG"
    assert text_from_db(text_to_db(name)) == name
    assert text_from_db("100%E9.JPG") == "100%E9.JPG", "a stored name without the / mark is taken as it is"
    for odd in ("/", "/caf%E9.JPG"):  # text that itself starts with the mark (hypothesis found "/")
        assert text_from_db(text_to_db(odd)) == odd
